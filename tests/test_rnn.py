"""RNN encoder-decoder: shapes, cached decoding, padding, search, training,
encoder checkpoints, config errors."""
import functools
import json
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from encdec_jax import decoding
from encdec_jax import checkpoint
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models.contract import init_cache, make_tokens_to_logits, shift_right
from encdec_jax.models.rnn_seq2seq import RNNEncoderDecoder
from encdec_jax.nn.recurrent import (RNN_ENCODER_FIELDS, RNNConfig,
                                     encoder_summary)

# Right-padded source and target batches (pad id 0, EOS 1), vocab 11.
INPUTS_BxS = jnp.array([[3, 5, 7, 2, 9, 6, 8],
                        [4, 4, 8, 10, 0, 0, 0]], jnp.int32)
TARGETS_BxT = jnp.array([[6, 2, 10, 9, 1, 0],
                         [7, 7, 3, 1, 0, 0]], jnp.int32)
TARGETS_IN_BxT = shift_right(TARGETS_BxT)
REAL_BxS = np.asarray(INPUTS_BxS != 0)
EOS_ID = 1


def tiny_config(**changes) -> RNNConfig:
  return RNNConfig(vocab_size=11, emb_dim=8, hidden_dim=16,
                   attention_dim=16).replace(**changes)


@functools.cache
def param_shapes(config: RNNConfig):
  model = RNNEncoderDecoder(config)
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), INPUTS_BxS, TARGETS_IN_BxT))["params"]


def random_params(config: RNNConfig, seed: int = 0):
  """Random values in the model's layout: a real init compiles for seconds
  (orthogonal recurrent kernels), and these tests need only some function."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype),
      param_shapes(config))


def apply_fn(model, **kwargs):
  return jax.jit(functools.partial(model.apply, **kwargs))


def apply_shapes(model, params, *args, **kwargs):
  return jax.eval_shape(
      lambda p: model.apply({"params": p}, *args, **kwargs), params)


@pytest.mark.parametrize("attention", ["additive", "none"])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_shapes_param_layout_and_cache(cell, bidirectional, attention):
  config = tiny_config(cell=cell, bidirectional=bidirectional,
                       attention=attention)
  model = RNNEncoderDecoder(config)
  params = param_shapes(config)
  encoded = apply_shapes(model, params, INPUTS_BxS, method="encode")
  logits = apply_shapes(model, params, INPUTS_BxS, TARGETS_IN_BxT)

  assert encoded.hidden_BxSxD.shape == (2, 7, 32 if bidirectional else 16)
  assert logits.shape == (2, 6, 11) and logits.dtype == jnp.float32
  assert set(params) == {"encoder", "decoder"}
  # Shared embeddings: the table lives under encoder/ only.
  assert "token_embed" not in params["decoder"]
  assert ("attention" in params["decoder"]) == (attention == "additive")
  assert {"token_embed", "layers_0"} == set(params["encoder"])
  assert {"bridge", "layers_0", "logits_dense"} <= set(params["decoder"])
  cache = init_cache(model, 3, 5, 7)  # Beam search needs rows first.
  assert cache["decoder"]["is_filled"].shape == ()
  for leaf in jax.tree.leaves(cache):
    assert leaf.ndim == 0 or leaf.shape[0] == 3


def test_unshared_embeddings_and_token_types():
  config = tiny_config(share_embeddings=False, output_vocab_size=13)
  model = RNNEncoderDecoder(config)
  params = param_shapes(config)
  assert params["decoder"]["token_embed"]["embedding"].shape == (13, 8)
  logits = apply_shapes(model, params, INPUTS_BxS, TARGETS_IN_BxT)
  assert logits.shape == (2, 6, 13)
  with pytest.raises(ValueError, match="token_types"):
    apply_shapes(model, params, INPUTS_BxS, TARGETS_IN_BxT,
                 token_types_BxS=jnp.zeros_like(INPUTS_BxS))


@pytest.mark.parametrize("attention", ["additive", "none"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cached_decoding_matches_teacher_forcing(cell, attention):
  config = tiny_config(cell=cell, attention=attention, num_encoder_layers=2,
                       num_decoder_layers=2)
  model = RNNEncoderDecoder(config)
  params = random_params(config)
  variables = {"params": params}
  encoded = apply_fn(model, method="encode")(variables, INPUTS_BxS)
  teacher_forced_BxTxV = apply_fn(model, method="decode")(
      variables, TARGETS_IN_BxT, encoded)

  batch_size, target_len = TARGETS_IN_BxT.shape
  cache = init_cache(model, batch_size, target_len + 3, INPUTS_BxS.shape[1])
  step_fn = jax.jit(make_tokens_to_logits(model, params, encoded))
  stepped = []
  for t in range(target_len):
    logits_BxV, cache = step_fn(TARGETS_IN_BxT[:, t:t + 1], cache)
    stepped.append(logits_BxV)
  stepped_BxTxV = jnp.stack(stepped, axis=1)

  assert stepped_BxTxV.dtype == jnp.float32
  np.testing.assert_allclose(stepped_BxTxV, teacher_forced_BxTxV, atol=1e-5)


@pytest.mark.parametrize("cell,bidirectional,attention",
                         [("lstm", True, "additive"), ("gru", True, "none"),
                          ("lstm", False, "none")])
def test_appended_padding_changes_nothing(cell, bidirectional, attention):
  config = tiny_config(cell=cell, bidirectional=bidirectional,
                       attention=attention, num_encoder_layers=2)
  model = RNNEncoderDecoder(config)
  forward = apply_fn(model)
  variables = {"params": random_params(config)}
  padded_BxS = jnp.pad(INPUTS_BxS, ((0, 0), (0, 4)))
  np.testing.assert_allclose(forward(variables, padded_BxS, TARGETS_IN_BxT),
                             forward(variables, INPUTS_BxS, TARGETS_IN_BxT),
                             atol=1e-6)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_summary_is_the_final_states(bidirectional):
  # GRU: the carry is the output, so the summary read from hidden_BxSxH must
  # equal the final carries nn.RNN selects with seq_lengths.
  config = tiny_config(cell="gru", bidirectional=bidirectional)
  model = RNNEncoderDecoder(config)
  variables = {"params": random_params(config)}
  valid_BxS = INPUTS_BxS != 0

  def summary_and_carries(module, inputs_BxS):
    hidden_BxSxH = module.encoder(inputs_BxS)
    carry, _ = module.encoder.layers[0](
        module.encoder.token_embed(inputs_BxS),
        seq_lengths=valid_BxS.sum(-1), return_carry=True)
    final_BxH = jnp.concatenate(carry, -1) if bidirectional else carry
    return encoder_summary(hidden_BxSxH, valid_BxS, bidirectional), final_BxH

  summary_BxH, final_BxH = jax.jit(functools.partial(
      model.apply, method=summary_and_carries))(variables, INPUTS_BxS)
  np.testing.assert_allclose(summary_BxH, final_BxH, atol=1e-6)


def test_attention_weights_are_sown_and_masked():
  config = tiny_config()
  model = RNNEncoderDecoder(config)
  params = random_params(config)
  _, state = apply_fn(model, mutable=["intermediates"])(
      {"params": params}, INPUTS_BxS, TARGETS_IN_BxT)
  weights_BxTxS = np.asarray(
      state["intermediates"]["decoder"]["attention_weights"][0])

  assert weights_BxTxS.shape == (2, 6, 7)
  np.testing.assert_allclose(weights_BxTxS.sum(-1), 1.0, atol=1e-6)
  assert np.all(weights_BxTxS[np.broadcast_to(~REAL_BxS[:, None],
                                              weights_BxTxS.shape)] == 0)

  # A cached step sows its BxS weights: the same as the full pass's.
  encoded = apply_fn(model, method="encode")({"params": params}, INPUTS_BxS)
  step = apply_fn(model, method="decode", decode=True,
                  mutable=["cache", "intermediates"])
  cache = init_cache(model, 2, 6, 7)
  for t in range(2):
    _, state = step({"params": params, "cache": cache},
                    TARGETS_IN_BxT[:, t:t + 1], encoded)
    cache = state["cache"]
    (weights_BxS,) = state["intermediates"]["decoder"]["attention_weights"]
    np.testing.assert_allclose(weights_BxS, weights_BxTxS[:, t], atol=1e-6)


def test_dropout_is_used_only_when_not_deterministic():
  config = tiny_config(dropout_rate=0.3, num_encoder_layers=2,
                       num_decoder_layers=2)
  model = RNNEncoderDecoder(config)
  variables = {"params": random_params(config)}
  forward = jax.jit(lambda seed, deterministic: model.apply(
      variables, INPUTS_BxS, TARGETS_IN_BxT, deterministic=deterministic,
      rngs={"dropout": jax.random.key(seed)}), static_argnums=1)
  clean = forward(0, True)
  np.testing.assert_array_equal(clean, forward(1, True))
  noisy = [forward(seed, False) for seed in (1, 2)]
  assert not np.allclose(noisy[0], clean) and not np.allclose(*noisy)


def test_greedy_and_beam_search_under_jit():
  config = tiny_config()
  model = RNNEncoderDecoder(config)
  params = random_params(config, seed=3)
  (batch_size, source_len), max_len = INPUTS_BxS.shape, 6

  @functools.partial(jax.jit, static_argnums=1)
  def search(params, beam_size):
    encoded = model.apply({"params": params}, INPUTS_BxS, method="encode")
    if beam_size == 0:  # greedy
      cache = init_cache(model, batch_size, max_len, source_len)
      return decoding.greedy_decode(
          make_tokens_to_logits(model, params, encoded), cache, batch_size,
          max_len, EOS_ID)
    encoded = decoding.expand_to_beams(encoded, beam_size)
    cache = init_cache(model, batch_size * beam_size, max_len, source_len)
    return decoding.beam_search(
        make_tokens_to_logits(model, params, encoded), cache, batch_size,
        beam_size, max_len, EOS_ID, length_penalty=0.0)

  greedy_BxT = search(params, 0)
  tokens_Bx1xT, _ = search(params, 1)
  np.testing.assert_array_equal(tokens_Bx1xT[:, 0], greedy_BxT)

  # Beam scores are the hypotheses' log-probabilities under the full model:
  # the carries were reordered with the beams.
  tokens_BxKxT, scores_BxK = search(params, 3)
  assert tokens_BxKxT.shape == (batch_size, 3, max_len)
  tokens_NxT = tokens_BxKxT.reshape(-1, max_len)
  logits_NxTxV = apply_fn(model)({"params": params},
                                 jnp.repeat(INPUTS_BxS, 3, axis=0),
                                 shift_right(tokens_NxT))
  logprobs_NxT = jnp.take_along_axis(jax.nn.log_softmax(logits_NxTxV),
                                     tokens_NxT[..., None], axis=-1)[..., 0]
  is_eos_NxT = tokens_NxT == EOS_ID
  counted_NxT = jnp.cumsum(is_eos_NxT, axis=1) - is_eos_NxT == 0
  expected_BxK = jnp.where(counted_NxT, logprobs_NxT, 0).sum(-1).reshape(
      batch_size, 3)
  np.testing.assert_allclose(scores_BxK, expected_BxK, atol=1e-4)


def test_learns_to_reverse():
  config = tiny_config()
  model = RNNEncoderDecoder(config)
  rng = np.random.default_rng(0)

  def batch(size):  # Reverse 5 tokens from 3..10, then EOS.
    src_BxS = rng.integers(3, 11, (size, 5)).astype(np.int32)
    eos_Bx1 = np.full((size, 1), EOS_ID, np.int32)
    return src_BxS, np.concatenate([src_BxS[:, ::-1], eos_Bx1], axis=1)

  inputs_BxS, targets_BxT = batch(32)
  params = jax.jit(model.init)(jax.random.key(0), inputs_BxS,
                               shift_right(targets_BxT))["params"]
  optimizer = optax.adam(1e-2)

  @jax.jit
  def train_step(params, opt_state, inputs_BxS, targets_BxT):
    def loss_fn(params):
      logits_BxTxV = model.apply({"params": params}, inputs_BxS,
                                 shift_right(targets_BxT))
      return optax.softmax_cross_entropy_with_integer_labels(
          logits_BxTxV, targets_BxT).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for _ in range(200):
    params, opt_state = train_step(params, opt_state, *batch(32))
  inputs_BxS, targets_BxT = batch(256)
  logits_BxTxV = apply_fn(model)({"params": params}, inputs_BxS,
                                 shift_right(targets_BxT))
  accuracy = float(np.mean(np.argmax(logits_BxTxV, -1) == targets_BxT))
  assert accuracy >= 0.95, accuracy


def test_encoder_checkpoint_round_trip(tmp_path):
  tokenizer = tokenizer_lib.ByteTokenizer()
  config = tiny_config(vocab_size=tokenizer.vocab_size)
  saved, fresh = random_params(config, seed=1), random_params(config, seed=2)
  spec = checkpoint.encoder_spec(config, tokenizer)
  assert spec["config"]["family"] == "rnn"
  assert set(spec["config"]) == {"family", *RNN_ENCODER_FIELDS}
  json.dumps(spec)

  path = str(tmp_path / "encoder")
  checkpoint.save_encoder(path, saved["encoder"], spec, tokenizer)
  loaded, report = checkpoint.load_encoder(path, into=fresh, expected_spec=spec)

  assert not report.left_at_init and not report.differences
  flat_loaded = flax.traverse_util.flatten_dict(loaded["encoder"])
  flat_saved = flax.traverse_util.flatten_dict(saved["encoder"])
  assert set(flat_loaded) == set(flat_saved)
  for key, value in flat_saved.items():
    assert flat_loaded[key].dtype == value.dtype
    np.testing.assert_array_equal(flat_loaded[key], value)
  assert loaded["decoder"] is fresh["decoder"]

  wider = checkpoint.encoder_spec(config.replace(hidden_dim=24), tokenizer)
  with pytest.raises(ValueError, match="hidden_dim"):
    checkpoint.load_encoder(path, into=fresh, expected_spec=wider)


@pytest.mark.parametrize("changes,message", [
    pytest.param({"cell": "rnn"}, "cell='rnn' is not one of ('lstm', 'gru').",
                 id="cell"),
    pytest.param({"attention": "dot"},
                 "attention='dot' is not one of ('additive', 'none').",
                 id="attention"),
    pytest.param({"hidden_dim": 0}, "hidden_dim must be >= 1, got 0.",
                 id="hidden_dim"),
    pytest.param({"dropout_rate": 1.0},
                 "dropout_rate must be in [0, 1), got 1.0.", id="dropout_rate"),
    pytest.param({"output_vocab_size": 13},
                 "share_embeddings needs output_vocab_size == vocab_size, got "
                 "13 != 11; set share_embeddings=False.",
                 id="share_embeddings")])
def test_config_error_messages(changes, message):
  """The whole message, as docs/errors.md lists it."""
  with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
    tiny_config(**changes)
