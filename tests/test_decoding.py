"""Greedy decoding: EOS handling and early exit on a scripted model, and
equality with uncached argmax decoding on the real encoder-decoder."""
import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax import decoding
from encdec_jax.models.encoder_decoder import (EncoderDecoder, init_cache,
                                               make_tokens_to_logits)
from encdec_jax.nn.config import TransformerConfig

EOS = 1


def scripted_model(script_BxT, fed_tokens: list):
  """Emits script[:, step]; its cache is the step. Records what it is fed."""

  def tokens_to_logits(tokens_Bx1, step):
    jax.debug.callback(lambda t: fed_tokens.append(np.asarray(t)),
                       tokens_Bx1[:, 0], ordered=True)
    return jax.nn.one_hot(script_BxT[:, step], 10), step + 1

  return tokens_to_logits


def run_greedy(script_BxT, max_len, start_id=0):
  fed_tokens = []
  tokens_to_logits = scripted_model(jnp.asarray(script_BxT), fed_tokens)
  greedy = jax.jit(lambda cache: decoding.greedy_decode(
      tokens_to_logits, cache, len(script_BxT), max_len, EOS,
      start_id=start_id))
  tokens_BxT = greedy(jnp.array(0, jnp.int32))
  jax.effects_barrier()
  return np.asarray(tokens_BxT), np.stack(fed_tokens)


def test_stops_at_eos_pads_after_and_exits_early():
  script_BxT = [[4, 5, EOS, 6, 7, 8, 9],
                [EOS, 3, 3, 3, 3, 3, 3],
                [2, 2, 2, 2, EOS, 5, 5]]
  tokens_BxT, fed_NxB = run_greedy(script_BxT, max_len=7, start_id=7)
  np.testing.assert_array_equal(tokens_BxT, [[4, 5, EOS, 0, 0, 0, 0],
                                             [EOS, 0, 0, 0, 0, 0, 0],
                                             [2, 2, 2, 2, EOS, 0, 0]])
  # Five steps (the last EOS is at step 5), each fed the previous output.
  np.testing.assert_array_equal(fed_NxB, [[7, 7, 7], [4, EOS, 2], [5, 0, 2],
                                          [EOS, 0, 2], [0, 0, 2]])


def test_runs_max_len_steps_without_eos():
  script_BxT = [[4, 5, 6, 7], [3, 3, 3, 3]]
  tokens_BxT, fed_NxB = run_greedy(script_BxT, max_len=4)
  np.testing.assert_array_equal(tokens_BxT, script_BxT)
  assert len(fed_NxB) == 4


def uncached_greedy(model, params, inputs_BxS, max_len, eos_id):
  """Reference: re-run the full teacher-forced forward pass at every step."""
  forward = jax.jit(lambda targets_in_BxT: model.apply(
      {"params": params}, inputs_BxS, targets_in_BxT))
  batch_size = inputs_BxS.shape[0]
  targets_in_BxT = np.zeros((batch_size, max_len), np.int32)  # Start token 0.
  tokens_BxT = np.zeros((batch_size, max_len), np.int32)
  finished_B = np.zeros(batch_size, bool)
  for t in range(max_len):
    # Causal decoder: the not-yet-written future slots cannot matter.
    next_B = np.argmax(forward(targets_in_BxT)[:, t], axis=-1)
    next_B = np.where(finished_B, 0, next_B)
    tokens_BxT[:, t] = next_B
    finished_B |= next_B == eos_id
    if t + 1 < max_len:
      targets_in_BxT[:, t + 1] = next_B
  return tokens_BxT


def test_greedy_matches_uncached_argmax_decoding():
  config = TransformerConfig(
      vocab_size=20, emb_dim=32, num_heads=2, qkv_dim=32, mlp_dim=64,
      num_encoder_layers=1, num_decoder_layers=2, max_len=16,
      logits_via_embedding=False)  # Random tied models mostly echo the input.
  model = EncoderDecoder(config)
  inputs_BxS = jnp.array([[3, 5, 7, 2, 9, 0], [4, 4, 8, 0, 0, 0],
                          [12, 13, 14, 15, 16, 17]], jnp.int32)
  max_len = 8
  params = model.init(jax.random.key(0), inputs_BxS,
                      jnp.zeros((3, max_len), jnp.int32))["params"]

  @jax.jit
  def greedy(params, inputs_BxS, eos_id):
    batch_size, source_len = inputs_BxS.shape
    encoded = model.apply({"params": params}, inputs_BxS,
                          method=EncoderDecoder.encode)
    cache = init_cache(model, batch_size, max_len, source_len)
    return decoding.greedy_decode(make_tokens_to_logits(model, params, encoded),
                                  cache, batch_size, max_len, eos_id)

  # Make the token that row 1 emits at step 2 the EOS: some rows stop early
  # (then emit pad) while others go on.
  no_eos_BxT = uncached_greedy(model, params, inputs_BxS, max_len, eos_id=-1)
  eos_id = int(no_eos_BxT[1, 2])
  expected_BxT = uncached_greedy(model, params, inputs_BxS, max_len, eos_id)
  assert eos_id != 0 and len(set(no_eos_BxT.ravel())) > 3  # Non-trivial case.
  assert (expected_BxT[1, 3:] == 0).all()
  assert (expected_BxT != 0).all(axis=1).any()  # Some row never finishes.

  np.testing.assert_array_equal(greedy(params, inputs_BxS, -1), no_eos_BxT)
  np.testing.assert_array_equal(greedy(params, inputs_BxS, eos_id),
                                expected_BxT)
