"""Decoder-only LM: shapes, KV cache, causality, training, ULMFiT transfer."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from encdec_jax import decoding
from encdec_jax import checkpoint
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models.classifier import EncoderClassifier
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.contract import init_cache, make_tokens_to_logits, shift_right
from encdec_jax.models.language_model import DecoderOnlyLM
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.tasks.losses import seq2seq_loss

# Right-padded texts (pad id 0), vocab 20; an LM reads shift_right of them.
TOKENS_BxT = jnp.array([[6, 2, 11, 19, 1, 0],
                        [7, 7, 3, 1, 0, 0]], jnp.int32)
DUMMY_Bx1 = jnp.zeros((2, 1), jnp.int32)  # The LM has no source.
BYTES = tokenizer_lib.ByteTokenizer()


def tiny_config(**changes) -> TransformerConfig:
  return TransformerConfig(
      vocab_size=20, emb_dim=32, num_heads=2, qkv_dim=32, mlp_dim=64,
      num_encoder_layers=2, max_len=16, causal=True).replace(**changes)


def init_lm(config: TransformerConfig, seed: int = 0):
  model = DecoderOnlyLM(config)
  params = model.init(jax.random.key(seed), DUMMY_Bx1,
                      shift_right(TOKENS_BxT))["params"]
  return model, params


def test_shapes_and_param_layout():
  model, params = init_lm(tiny_config())
  assert set(params) == {"encoder"}  # Tied logits: the body is everything.
  logits_BxTxV = model.apply({"params": params}, DUMMY_Bx1,
                             shift_right(TOKENS_BxT))
  assert logits_BxTxV.shape == (2, 6, 20) and logits_BxTxV.dtype == jnp.float32

  encoded = model.apply({"params": params}, DUMMY_Bx1, method="encode")
  assert encoded.hidden_BxSxD.shape == (2, 0, 32)
  assert encoded.mask_BxS.shape == (2, 0)
  beams = decoding.expand_to_beams(encoded, 3)
  assert beams.hidden_BxSxD.shape == (6, 0, 32)
  assert beams.mask_BxS.shape == (6, 0)

  _, untied = init_lm(tiny_config(logits_via_embedding=False))
  assert set(untied) == {"encoder", "lm_head"}
  assert untied["lm_head"]["kernel"].shape == (32, 20)


def test_needs_a_causal_config():
  with pytest.raises(ValueError, match="causal"):
    init_lm(tiny_config(causal=False))
  with pytest.raises(ValueError, match="output_vocab_size"):
    init_lm(tiny_config(output_vocab_size=30, share_embeddings=False))


@pytest.mark.parametrize("pre_layernorm,position_embedding,tied", [
    (True, "sinusoidal", True), (False, "learned", False)])
def test_cached_decoding_matches_full_forward(pre_layernorm,
                                              position_embedding, tied):
  config = tiny_config(pre_layernorm=pre_layernorm,
                       position_embedding=position_embedding,
                       logits_via_embedding=tied,
                       embedding_layernorm=not pre_layernorm)
  model, params = init_lm(config)
  targets_in_BxT = shift_right(TOKENS_BxT)
  full_BxTxV = model.apply({"params": params}, DUMMY_Bx1, targets_in_BxT)

  batch_size, length = targets_in_BxT.shape
  encoded = model.apply({"params": params}, DUMMY_Bx1, method="encode")
  # A cache longer than the texts: unused slots must stay invisible.
  cache = init_cache(model, batch_size, length + 3, source_len=1)
  assert "cached_key" in cache["encoder"]["layers_0"]["attention"]
  step_fn = jax.jit(make_tokens_to_logits(model, params, encoded))
  stepped = []
  for t in range(length):
    logits_BxV, cache = step_fn(targets_in_BxT[:, t:t + 1], cache)
    stepped.append(logits_BxV)
  np.testing.assert_allclose(jnp.stack(stepped, axis=1), full_BxTxV,
                             atol=1e-5, rtol=0)


def test_is_causal_and_reads_the_start_token():
  model, params = init_lm(tiny_config())
  forward = lambda tokens_BxT: model.apply({"params": params}, DUMMY_Bx1,
                                           shift_right(tokens_BxT))
  logits = forward(TOKENS_BxT)
  changed_at = 2  # Input position 3 (the start token is position 0).
  changed_BxT = TOKENS_BxT.at[:, changed_at:].set(13)
  logits_2 = forward(changed_BxT)
  np.testing.assert_array_equal(logits[:, :changed_at + 1],
                                logits_2[:, :changed_at + 1])
  assert not np.allclose(logits[:, changed_at + 1], logits_2[:, changed_at + 1])

  # The start token (pad id) is a key, not masked: position 0 attends to it
  # alone, so its logits are the same for every text.
  np.testing.assert_allclose(logits[0, 0], logits[1, 0], atol=1e-6)
  # More right-padding changes nothing at real positions.
  longer = forward(jnp.pad(TOKENS_BxT, ((0, 0), (0, 4))))
  np.testing.assert_allclose(longer[:, :6], logits, atol=1e-5)


def counting_batch(key, batch_size, length, vocab_size):
  """Texts counting up mod (vocab_size - 2) over ids 2.. from random starts."""
  starts_Bx1 = jax.random.randint(key, (batch_size, 1), 0, vocab_size - 2)
  return 2 + (starts_Bx1 + jnp.arange(length)) % (vocab_size - 2)


def test_fits_counting_up():
  vocab_size, length, batch_size = 12, 8, 32
  config = tiny_config(vocab_size=vocab_size, dropout_rate=0.0,
                       attention_dropout_rate=0.0)
  model = DecoderOnlyLM(config)
  dummy_Bx1 = jnp.zeros((batch_size, 1), jnp.int32)
  params = model.init(jax.random.key(0), dummy_Bx1,
                      jnp.zeros((batch_size, length), jnp.int32))["params"]
  loss_fn = seq2seq_loss(model, label_smoothing=0.0)
  tx = optax.adam(1e-2)

  @jax.jit
  def train(params):
    def step(carry, key):
      params, opt_state = carry
      batch = {"inputs": dummy_Bx1,
               "targets": counting_batch(key, batch_size, length, vocab_size),
               "example_weight": jnp.ones(batch_size)}
      grads, _ = jax.grad(loss_fn, has_aux=True)(params, batch, None)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    keys = jax.random.split(jax.random.key(1), 200)
    return jax.lax.scan(step, (params, tx.init(params)), keys)[0][0]

  params = train(params)
  texts_BxT = counting_batch(jax.random.key(2), batch_size, length, vocab_size)
  encoded = model.apply({"params": params}, dummy_Bx1, method="encode")
  cache = decoding.prefix_cache(init_cache(model, batch_size, length, 1))
  tokens_to_logits = decoding.force_prefix(
      make_tokens_to_logits(model, params, encoded), texts_BxT[:, :2])
  out_BxT = np.asarray(jax.jit(lambda c: decoding.greedy_decode(
      tokens_to_logits, c, batch_size, length, eos_id=1))(cache))
  np.testing.assert_array_equal(out_BxT[:, :2], texts_BxT[:, :2])
  assert (out_BxT[:, 2:] == np.asarray(texts_BxT[:, 2:])).mean() >= 0.9


# Moving the LM's body into a classifier (ULMFiT).


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


@functools.cache
def _byte_lm():
  config = tiny_config(vocab_size=BYTES.vocab_size, num_encoder_layers=1)
  return config, init_lm(config)[1]


def _classifier_params(config):
  ids_1x8 = jnp.ones((1, 8), jnp.int32)
  return EncoderClassifier(config, num_classes=3).init(
      jax.random.key(7), ids_1x8)["params"]


def _save(path, encoder_params, config, drop=()):
  spec = checkpoint.encoder_spec(config, BYTES)
  spec["config"] = {k: v for k, v in spec["config"].items() if k not in drop}
  checkpoint.save_encoder(str(path), encoder_params, spec, BYTES)
  return str(path)


def test_lm_body_loads_into_causal_classifier(tmp_path):
  config, params = _byte_lm()
  path = _save(tmp_path / "lm", params["encoder"], config)
  into = _classifier_params(config)
  loaded, report = checkpoint.load_encoder(
      path, into, expected_spec=checkpoint.encoder_spec(config, BYTES))
  assert report.differences == () and report.left_at_init == ()
  flat, saved = _flat(loaded["encoder"]), _flat(params["encoder"])
  assert flat.keys() == saved.keys()
  for k in saved:
    assert flat[k].dtype == saved[k].dtype
    np.testing.assert_array_equal(flat[k], saved[k], k)
  np.testing.assert_array_equal(loaded["head"]["kernel"],
                                into["head"]["kernel"])

  # The classifier's encoder is the LM's body at real (right-padded) tokens.
  inputs_BxS = jnp.array([[40, 50, 60, 0], [70, 80, 90, 100]], jnp.int32)
  hidden = EncoderClassifier(config, num_classes=3).apply(
      {"params": loaded}, inputs_BxS, method="encode").hidden_BxSxD
  body = DecoderOnlyLM(config).apply(
      {"params": params}, inputs_BxS,
      method=lambda lm, x: lm.encoder(x, mask_padding=False))
  real_BxS = np.asarray(inputs_BxS != 0)
  np.testing.assert_allclose(hidden[real_BxS], body[real_BxS], atol=1e-6)


def test_lm_body_is_refused_by_a_bidirectional_classifier(tmp_path):
  config, params = _byte_lm()
  path = _save(tmp_path / "lm", params["encoder"], config)
  bidirectional = config.replace(causal=False)
  with pytest.raises(ValueError) as error:
    checkpoint.load_encoder(
        path, _classifier_params(bidirectional),
        expected_spec=checkpoint.encoder_spec(bidirectional, BYTES))
  assert "config (1): causal checkpoint True vs model False" in str(error.value)


def test_spec_saved_before_causal_existed_loads_as_bidirectional(tmp_path):
  config = tiny_config(vocab_size=BYTES.vocab_size, num_encoder_layers=1,
                       causal=False)
  ids_1x8 = jnp.ones((1, 8), jnp.int32)
  seq2seq = EncoderDecoder(config).init(jax.random.key(3), ids_1x8,
                                        ids_1x8)["params"]
  path = _save(tmp_path / "old", seq2seq["encoder"], config, drop=("causal",))
  loaded, report = checkpoint.load_encoder(
      path, _classifier_params(config),
      expected_spec=checkpoint.encoder_spec(config, BYTES))
  assert report.differences == ()
  np.testing.assert_array_equal(
      loaded["encoder"]["layers_0"]["mlp"]["output"]["kernel"],
      seq2seq["encoder"]["layers_0"]["mlp"]["output"]["kernel"])

  causal = config.replace(causal=True)
  with pytest.raises(ValueError, match="causal checkpoint False vs model True"):
    checkpoint.load_encoder(
        path, _classifier_params(causal),
        expected_spec=checkpoint.encoder_spec(causal, BYTES))
