"""Prompts (force_prefix) for greedy, sampling and beam search: toy models with
known distributions, and the decoder-only LM against full forward passes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import decoding
from encdec_jax.models.contract import init_cache, make_tokens_to_logits, shift_right
from encdec_jax.models.language_model import DecoderOnlyLM
from encdec_jax.nn.config import TransformerConfig

EOS = 1
# Right-padded prompts of lengths 3, 1 and 2.
PREFIX_BxP = np.array([[5, 6, 7], [4, 0, 0], [3, 3, 0]], np.int32)
PROMPT_LENS_B = (PREFIX_BxP != 0).sum(axis=1)


def table_model(logits_BxTxV):
  """Logits depend on the row and the step only: cache = (step, table)."""
  logits_BxTxV = jnp.asarray(logits_BxTxV, jnp.float32)

  def tokens_to_logits(tokens_Nx1, cache):
    step, table_NxTxV = cache
    return table_NxTxV[:, step], (step + 1, table_NxTxV)

  return tokens_to_logits, (jnp.array(0, jnp.int32), logits_BxTxV)


def markov_model(logits_VxV):
  """Next-token logits given the fed token only; the cache is unused."""
  logits_VxV = jnp.asarray(logits_VxV, jnp.float32)
  return lambda tokens_Nx1, cache: (logits_VxV[tokens_Nx1[:, 0]], cache)


def random_logits(key, shape, eos_logit=-1e9):
  """Random logits, pad never likely (the output would look finished)."""
  logits = np.array(jax.random.normal(jax.random.key(key), shape))
  logits[..., 0] = -1e9
  logits[..., EOS] = eos_logit
  return logits


def test_greedy_continues_each_row_from_its_prompt():
  # Deterministic successor of each token: the continuation must start from
  # the prompt's last token, i.e. the model was fed the prompt.
  successor_V = np.array([2, 2, 3, 4, 5, 6, 7, 8, 9, 2])
  logits_VxV = np.where(np.arange(10) == successor_V[:, None], 5.0, 0.0)
  tokens_to_logits = decoding.force_prefix(markov_model(logits_VxV),
                                           PREFIX_BxP)
  cache = decoding.prefix_cache(jnp.zeros(()))
  out_BxT = jax.jit(lambda c: decoding.greedy_decode(
      tokens_to_logits, c, 3, 6, EOS))(cache)
  np.testing.assert_array_equal(out_BxT, [[5, 6, 7, 8, 9, 2],
                                          [4, 5, 6, 7, 8, 9],
                                          [3, 3, 4, 5, 6, 7]])


def test_without_a_prompt_nothing_changes():
  logits_BxTxV = random_logits(0, (3, 6, 10))
  tokens_to_logits, cache = table_model(logits_BxTxV)
  free_BxT = decoding.greedy_decode(tokens_to_logits, cache, 3, 6, EOS)
  for prefix_BxP in np.zeros((3, 2), np.int32), np.zeros((3, 0), np.int32):
    np.testing.assert_array_equal(decoding.greedy_decode(
        decoding.force_prefix(tokens_to_logits, prefix_BxP),
        decoding.prefix_cache(cache), 3, 6, EOS), free_BxT)


def test_an_unwrapped_cache_is_refused():
  tokens_to_logits = decoding.force_prefix(
      markov_model(np.zeros((10, 10))), PREFIX_BxP)
  with pytest.raises(TypeError, match="prefix_cache"):
    decoding.greedy_decode(tokens_to_logits, jnp.zeros(()), 3, 6, EOS)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(temperature=0.1), dict(temperature=3.0, top_k=2),
    dict(top_p=0.5)])
def test_samples_start_with_the_prompt(kwargs):
  logits_BxTxV = random_logits(1, (3, 8, 12))
  tokens_to_logits, cache = table_model(logits_BxTxV)
  sample = jax.jit(lambda c, rng: decoding.sample_decode(
      decoding.force_prefix(tokens_to_logits, PREFIX_BxP), c, 3, 8, EOS, rng,
      **kwargs))
  continuations = set()
  for seed in range(4):
    out_BxT = np.asarray(sample(decoding.prefix_cache(cache),
                                jax.random.key(seed)))
    for row, length in enumerate(PROMPT_LENS_B):
      np.testing.assert_array_equal(out_BxT[row, :length],
                                    PREFIX_BxP[row, :length])
    assert (out_BxT > EOS).all()
    continuations.add(out_BxT[:, 3:].tobytes())
  if not kwargs.get("temperature", 1) < 1:
    assert len(continuations) > 1  # Still samples after the prompt.


def teacher_forced_scores(tokens_NxT, logits_NxTxV, prompt_lens_N, alpha,
                          eos_id=EOS):
  """Log-probs of the tokens after the prompt, up to EOS, over the GNMT
  penalty of the whole length (prompt included)."""
  logprobs_NxTxV = np.asarray(jax.nn.log_softmax(jnp.asarray(logits_NxTxV)))
  scores = []
  for tokens_T, logprobs_TxV, prompt_len in zip(tokens_NxT, logprobs_NxTxV,
                                                prompt_lens_N):
    length = (list(tokens_T).index(eos_id) + 1 if eos_id in tokens_T
              else len(tokens_T))
    steps = np.arange(prompt_len, length)
    logprob = logprobs_TxV[steps, tokens_T[steps]].sum()
    scores.append(logprob / decoding.gnmt_length_penalty(length, alpha))
  return np.array(scores)


def test_beam_search_keeps_the_prompt_and_scores_only_the_continuation():
  batch_size, beam_size, max_len = 3, 3, 7
  logits_BxTxV = random_logits(2, (batch_size, max_len, 9), eos_logit=0.0)
  logits_BxTxV[1, 3, EOS] = 4.0  # Some hypotheses end early, others not.
  tokens_to_logits, cache = table_model(logits_BxTxV)
  prefix_NxP = decoding.expand_to_beams(jnp.asarray(PREFIX_BxP), beam_size)
  tokens_BxKxT, scores_BxK = jax.jit(lambda c: decoding.beam_search(
      decoding.force_prefix(tokens_to_logits, prefix_NxP), c, batch_size,
      beam_size, max_len, EOS, length_penalty=0.6))(
          decoding.prefix_cache(decoding.expand_to_beams(cache, beam_size)))
  tokens_BxKxT = np.asarray(tokens_BxKxT)

  for row, length in enumerate(PROMPT_LENS_B):
    # Every hypothesis continues the prompt: no impossible expansion of it
    # (e.g. an early EOS) entered the finished set.
    np.testing.assert_array_equal(
        tokens_BxKxT[row, :, :length],
        np.broadcast_to(PREFIX_BxP[row, :length], (beam_size, length)))
    assert len({tuple(t) for t in tokens_BxKxT[row]}) == beam_size
  assert (tokens_BxKxT == EOS).any(axis=2).any()
  np.testing.assert_allclose(
      scores_BxK.reshape(-1),
      teacher_forced_scores(tokens_BxKxT.reshape(-1, max_len),
                   np.repeat(logits_BxTxV, beam_size, axis=0),
                   np.repeat(PROMPT_LENS_B, beam_size), 0.6),
      rtol=1e-5)


# The decoder-only LM: cached, forced decoding against full forward passes.

MAX_LEN = 8


def tiny_lm():
  config = TransformerConfig(
      vocab_size=20, emb_dim=32, num_heads=2, qkv_dim=32, mlp_dim=64,
      num_encoder_layers=2, max_len=16, causal=True,
      logits_via_embedding=False)  # Random tied models mostly echo the input.
  model = DecoderOnlyLM(config)
  dummy_Bx1 = jnp.zeros((len(PREFIX_BxP), 1), jnp.int32)
  params = model.init(jax.random.key(0), dummy_Bx1,
                      jnp.zeros((len(PREFIX_BxP), MAX_LEN), jnp.int32))
  return model, params["params"], dummy_Bx1


def lm_step_fn(model, params, dummy_Bx1, beam_size=1):
  encoded = model.apply({"params": params}, dummy_Bx1, method="encode")
  cache = init_cache(model, len(dummy_Bx1), MAX_LEN, source_len=1)
  prefix_NxP = decoding.expand_to_beams(jnp.asarray(PREFIX_BxP), beam_size)
  tokens_to_logits = make_tokens_to_logits(
      model, params, decoding.expand_to_beams(encoded, beam_size))
  return (decoding.force_prefix(tokens_to_logits, prefix_NxP),
          decoding.prefix_cache(decoding.expand_to_beams(cache, beam_size)))


def lm_greedy(model, params, dummy_Bx1):
  return jax.jit(lambda: decoding.greedy_decode(
      *lm_step_fn(model, params, dummy_Bx1), len(dummy_Bx1), MAX_LEN,
      eos_id=-1))()


def test_lm_greedy_continuation_matches_full_forward_passes():
  model, params, dummy_Bx1 = tiny_lm()
  out_BxT = lm_greedy(model, params, dummy_Bx1)

  # Reference: re-run the whole model on the growing text at every step.
  forward = jax.jit(lambda tokens_BxT: model.apply(
      {"params": params}, dummy_Bx1, shift_right(tokens_BxT)))
  text_BxT = np.zeros((len(dummy_Bx1), MAX_LEN), np.int32)
  for t in range(MAX_LEN):
    next_B = np.argmax(forward(text_BxT)[:, t], axis=-1)
    forced_B = PREFIX_BxP[:, min(t, PREFIX_BxP.shape[1] - 1)]
    text_BxT[:, t] = np.where((t < PREFIX_BxP.shape[1]) & (forced_B != 0),
                              forced_B, next_B)
  assert len(set(text_BxT[:, 3:].ravel())) > 3  # A non-trivial continuation.
  np.testing.assert_array_equal(out_BxT, text_BxT)


def test_lm_beam_search_with_prompt_matches_teacher_forcing():
  model, params, dummy_Bx1 = tiny_lm()
  batch_size, beam_size = len(dummy_Bx1), 2
  # A token the LM emits after row 1's prompt, so that some beams finish.
  eos_id = int(lm_greedy(model, params, dummy_Bx1)[1, 2])
  assert eos_id not in PREFIX_BxP
  tokens_BxKxT, scores_BxK = jax.jit(lambda: decoding.beam_search(
      *lm_step_fn(model, params, dummy_Bx1, beam_size), batch_size,
      beam_size, MAX_LEN, eos_id, length_penalty=0.6))()
  tokens_NxT = np.asarray(tokens_BxKxT).reshape(-1, MAX_LEN)
  assert (tokens_NxT == eos_id).any()
  prompt_lens_N = np.repeat(PROMPT_LENS_B, beam_size)
  for tokens_T, prompt_len, prefix_P in zip(
      tokens_NxT, prompt_lens_N, np.repeat(PREFIX_BxP, beam_size, axis=0)):
    np.testing.assert_array_equal(tokens_T[:prompt_len],
                                  prefix_P[:prompt_len])

  logits_NxTxV = model.apply(
      {"params": params}, jnp.zeros((len(tokens_NxT), 1), jnp.int32),
      shift_right(jnp.asarray(tokens_NxT)))
  np.testing.assert_allclose(
      scores_BxK.reshape(-1),
      teacher_forced_scores(tokens_NxT, logits_NxTxV, prompt_lens_N, 0.6,
                            eos_id),
      atol=1e-4, rtol=0)
