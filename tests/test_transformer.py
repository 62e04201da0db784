"""Encoder-decoder Transformer: KV cache, masks, param layout, config knobs."""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.contract import init_cache, make_tokens_to_logits, shift_right
from encdec_jax.nn.attention import SelfAttention, padding_mask
from encdec_jax.nn.config import TransformerConfig

# Right-padded source and target batches (pad id 0), vocab 20.
INPUTS_BxS = jnp.array([[3, 5, 7, 2, 9, 0, 0],
                        [4, 4, 8, 1, 0, 0, 0]], jnp.int32)
TARGETS_BxT = jnp.array([[6, 2, 11, 19, 1, 0],
                         [7, 7, 3, 1, 0, 0]], jnp.int32)
TARGETS_IN_BxT = shift_right(TARGETS_BxT)
REAL_BxS = np.asarray(INPUTS_BxS != 0)


def tiny_config(**changes) -> TransformerConfig:
  return TransformerConfig(
      vocab_size=20, emb_dim=32, num_heads=2, qkv_dim=32, mlp_dim=64,
      num_encoder_layers=2, num_decoder_layers=2, max_len=16).replace(**changes)


def init_params(config: TransformerConfig, seed: int = 0):
  model = EncoderDecoder(config)
  params = model.init(jax.random.key(seed), INPUTS_BxS,
                      TARGETS_IN_BxT)["params"]
  return model, params


def encode_and_logits(model, params, inputs_BxS, targets_in_BxT):
  variables = {"params": params}
  encoded = model.apply(variables, inputs_BxS, method=EncoderDecoder.encode)
  logits = model.apply(variables, targets_in_BxT, encoded,
                       method=EncoderDecoder.decode)
  return encoded.hidden_BxSxD, logits


def flat_keys(params) -> set[str]:
  return {"/".join(k) for k in flax.traverse_util.flatten_dict(params)}


@pytest.mark.parametrize("pre_layernorm", [True, False])
@pytest.mark.parametrize("share_embeddings", [True, False])
@pytest.mark.parametrize("position_embedding", ["sinusoidal", "learned"])
def test_cached_decoding_matches_teacher_forcing(pre_layernorm,
                                                 share_embeddings,
                                                 position_embedding):
  learned = position_embedding == "learned"
  config = tiny_config(
      pre_layernorm=pre_layernorm, share_embeddings=share_embeddings,
      position_embedding=position_embedding,
      output_vocab_size=None if share_embeddings else 23,
      logits_via_embedding=not learned, embedding_layernorm=not pre_layernorm,
      scale_embeddings=learned, activation="relu" if pre_layernorm else "gelu")
  model, params = init_params(config)
  targets_in_BxT = jnp.minimum(TARGETS_IN_BxT, config.decoder_vocab_size - 1)
  encoded = model.apply({"params": params}, INPUTS_BxS,
                        method=EncoderDecoder.encode)
  teacher_forced_BxTxV = model.apply({"params": params}, targets_in_BxT,
                                     encoded, method=EncoderDecoder.decode)

  batch_size, target_len = targets_in_BxT.shape
  # A cache longer than the targets: unused slots must stay invisible.
  cache = init_cache(model, batch_size, target_len + 3, INPUTS_BxS.shape[1])
  step_fn = jax.jit(make_tokens_to_logits(model, params, encoded))
  stepped = []
  for t in range(target_len):
    logits_BxV, cache = step_fn(targets_in_BxT[:, t:t + 1], cache)
    stepped.append(logits_BxV)
  stepped_BxTxV = jnp.stack(stepped, axis=1)

  assert stepped_BxTxV.dtype == jnp.float32
  assert teacher_forced_BxTxV.shape == (batch_size, target_len,
                                        config.decoder_vocab_size)
  np.testing.assert_allclose(stepped_BxTxV, teacher_forced_BxTxV, atol=1e-5,
                             rtol=0)


def test_init_cache_is_zero_and_has_full_length():
  model, _ = init_params(tiny_config())
  cache = init_cache(model, batch_size=3, max_decode_len=9, source_len=5)
  layer = cache["decoder"]["layers_0"]
  assert layer["self_attention"]["cached_key"].shape == (3, 2, 9, 16)
  assert layer["cross_attention"]["cached_value"].shape == (3, 2, 5, 16)
  assert cache["decoder"]["embedder"]["position_embed"]["cache_index"] == 0
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(cache))
  assert "encoder" not in cache


def test_attention_ignores_padded_keys():
  config = tiny_config()
  valid_BxS = jnp.asarray(REAL_BxS)
  mask_Bx1xSxS = padding_mask(valid_BxS, valid_BxS)
  x_BxSxD = jax.random.normal(jax.random.key(1), (*REAL_BxS.shape, 32))
  noise_BxSxD = jax.random.normal(jax.random.key(2), x_BxSxD.shape)
  x_changed_BxSxD = jnp.where(valid_BxS[..., None], x_BxSxD, noise_BxSxD)
  attention = SelfAttention(config)
  variables = attention.init(jax.random.key(0), x_BxSxD, mask_Bx1xSxS)
  out = attention.apply(variables, x_BxSxD, mask_Bx1xSxS)
  out_changed = attention.apply(variables, x_changed_BxSxD, mask_Bx1xSxS)
  np.testing.assert_allclose(out[REAL_BxS], out_changed[REAL_BxS], atol=1e-6)
  assert not np.allclose(out[~REAL_BxS], out_changed[~REAL_BxS])


def test_source_padding_does_not_leak():
  config = tiny_config(share_embeddings=False, position_embedding="learned")
  model, params = init_params(config)
  hidden, logits = encode_and_logits(model, params, INPUTS_BxS, TARGETS_IN_BxT)

  # Whatever sits at padded source positions (here: the pad embedding row)...
  perturbed = flax.traverse_util.flatten_dict(params)
  key = ("encoder", "embedder", "token_embed", "embedding")
  perturbed[key] = perturbed[key].at[0].add(5.0)
  perturbed = flax.traverse_util.unflatten_dict(perturbed)
  hidden_2, logits_2 = encode_and_logits(model, perturbed, INPUTS_BxS,
                                         TARGETS_IN_BxT)
  np.testing.assert_allclose(hidden[REAL_BxS], hidden_2[REAL_BxS], atol=1e-5)
  np.testing.assert_allclose(logits, logits_2, atol=1e-5)
  assert not np.allclose(hidden[~REAL_BxS], hidden_2[~REAL_BxS])

  # ...and how much padding there is, never change real positions' outputs.
  longer_BxS = jnp.pad(INPUTS_BxS, ((0, 0), (0, 4)))
  hidden_3, logits_3 = encode_and_logits(model, params, longer_BxS,
                                         TARGETS_IN_BxT)
  np.testing.assert_allclose(hidden[REAL_BxS],
                             hidden_3[:, :INPUTS_BxS.shape[1]][REAL_BxS],
                             atol=1e-5)
  np.testing.assert_allclose(logits, logits_3, atol=1e-5)


def test_decoder_is_causal():
  model, params = init_params(tiny_config())
  _, logits = encode_and_logits(model, params, INPUTS_BxS, TARGETS_IN_BxT)
  changed_at = 3
  changed_BxT = TARGETS_IN_BxT.at[:, changed_at].set(13)
  _, logits_2 = encode_and_logits(model, params, INPUTS_BxS, changed_BxT)
  np.testing.assert_allclose(logits[:, :changed_at], logits_2[:, :changed_at],
                             atol=1e-6)
  assert not np.allclose(logits[:, changed_at], logits_2[:, changed_at])


def test_params_split_into_encoder_and_decoder():
  model, params = init_params(tiny_config(share_embeddings=True))
  assert set(params) == {"encoder", "decoder"}
  assert "embedder/token_embed/embedding" in flat_keys(params["encoder"])
  assert not any("token_embed" in k for k in flat_keys(params["decoder"]))

  encoded_full = model.apply({"params": params}, INPUTS_BxS,
                             method=EncoderDecoder.encode)
  encoded_alone = model.apply({"params": {"encoder": params["encoder"]}},
                              INPUTS_BxS, method=EncoderDecoder.encode)
  np.testing.assert_array_equal(encoded_full.hidden_BxSxD,
                                encoded_alone.hidden_BxSxD)
  np.testing.assert_array_equal(encoded_alone.mask_BxS, REAL_BxS)

  _, unshared = init_params(tiny_config(share_embeddings=False))
  assert "embedder/token_embed/embedding" in flat_keys(unshared["decoder"])


def test_dropout_uses_dropout_rng():
  model, params = init_params(tiny_config(dropout_rate=0.3))
  apply = lambda seed: model.apply(
      {"params": params}, INPUTS_BxS, TARGETS_IN_BxT, deterministic=False,
      rngs={"dropout": jax.random.key(seed)})
  assert not np.allclose(apply(1), apply(2))
  np.testing.assert_array_equal(apply(1), apply(1))


def _intermediates(config, params):
  """(logits, {module path: its __call__ output}) of one deterministic pass
  over INPUTS_BxS / TARGETS_IN_BxT, in float64 numpy."""
  logits, state = EncoderDecoder(config).apply(
      {"params": params}, INPUTS_BxS, TARGETS_IN_BxT,
      capture_intermediates=True, mutable=["intermediates"])
  flat = flax.traverse_util.flatten_dict(state["intermediates"], sep="/")
  return np.asarray(logits, np.float64), {
      k.removesuffix("/__call__"): np.asarray(v[0], np.float64)
      for k, v in flat.items() if k.endswith("/__call__")}


def _layer_norm(x, p, eps):
  """LayerNorm by hand: (x - mean) / sqrt(var + eps) * scale + bias."""
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


@pytest.mark.parametrize("pre_layernorm", [True, False])
def test_layernorm_placement_by_hand(pre_layernorm):
  """Pre-LN: x + f(LN(x)), a final LN per stack. Post-LN: LN(x + f(x)), no
  final LN. Each sublayer's input and the block's output, checked against
  the captured outputs of its parts."""
  config = tiny_config(pre_layernorm=pre_layernorm)
  _, params = init_params(config)
  assert ("encoder_norm" in params["encoder"]) == pre_layernorm
  assert ("decoder_norm" in params["decoder"]) == pre_layernorm
  _, out = _intermediates(config, params)
  p, eps = params["encoder"]["layers_0"], config.layernorm_epsilon
  layer = lambda name: out[f"encoder/layers_0/{name}"]
  x = out["encoder/embedder"]
  if pre_layernorm:
    want_attention_norm = _layer_norm(x, p["attention_norm"], eps)
    x1 = x + layer("attention")
    want_mlp_norm = _layer_norm(x1, p["mlp_norm"], eps)
    want_block = x1 + layer("mlp")
  else:
    want_attention_norm = x1 = _layer_norm(x + layer("attention"),
                                           p["attention_norm"], eps)
    want_mlp_norm = want_block = _layer_norm(x1 + layer("mlp"),
                                             p["mlp_norm"], eps)
  for got, want in ((layer("attention_norm"), want_attention_norm),
                    (layer("mlp_norm"), want_mlp_norm),
                    (out["encoder/layers_0"], want_block)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _gelu(x):  # exact: x * Phi(x)
  return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _gelu_tanh(x):  # the tanh approximation (Hendrycks & Gimpel)
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) *
                                (x + 0.044715 * x ** 3)))


ACTIVATIONS_BY_HAND = {"relu": lambda x: np.maximum(x, 0), "gelu": _gelu,
                       "gelu_tanh": _gelu_tanh}


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_mlp_activation_by_hand(activation):
  """output(act(intermediate(x))) with act written out here: exact erf GELU
  for "gelu", the tanh formula for "gelu_tanh" (they differ by up to ~1e-3,
  far above the tolerance, so a swap fails)."""
  config = tiny_config(activation=activation)
  _, params = init_params(config)
  _, out = _intermediates(config, params)
  p = params["encoder"]["layers_1"]["mlp"]
  h = out["encoder/layers_1/mlp/intermediate"]  # before the activation
  by_hand = {name: act(h) @ np.asarray(p["output"]["kernel"], np.float64)
             + np.asarray(p["output"]["bias"], np.float64)
             for name, act in ACTIVATIONS_BY_HAND.items()}
  got = out["encoder/layers_1/mlp"]
  np.testing.assert_allclose(got, by_hand[activation], rtol=1e-5, atol=1e-6)
  for other, value in by_hand.items():
    if other != activation:
      assert np.max(np.abs(got - value)) > 1e-4, other


@pytest.mark.parametrize("eps", [1e-6, 0.5])
def test_layernorm_epsilon_by_hand(eps):
  config = tiny_config(layernorm_epsilon=eps)
  _, params = init_params(config)
  _, out = _intermediates(config, params)
  np.testing.assert_allclose(
      out["encoder/encoder_norm"],
      _layer_norm(out["encoder/layers_1"], params["encoder"]["encoder_norm"],
                  eps), rtol=1e-5, atol=1e-5)


def test_scale_embeddings_by_hand():
  """True: token vectors times sqrt(emb_dim) in, tied logits unscaled;
  False: vectors as they are, tied logits divided by sqrt(emb_dim)."""
  _, params = init_params(tiny_config())
  table = np.asarray(params["encoder"]["embedder"]["token_embed"]["embedding"],
                     np.float64)
  root_d = math.sqrt(tiny_config().emb_dim)
  runs = {scale: _intermediates(tiny_config(scale_embeddings=scale), params)
          for scale in (False, True)}
  # The same positions are added either way: the difference is the scaling.
  np.testing.assert_allclose(
      runs[True][1]["encoder/embedder"] - runs[False][1]["encoder/embedder"],
      (root_d - 1) * table[np.asarray(INPUTS_BxS)], rtol=1e-5, atol=1e-5)
  for scale, (logits, out) in runs.items():
    want = out["decoder/decoder_norm"] @ table.T / (1 if scale else root_d)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_param_knobs_add_or_remove_params():
  base = flat_keys(init_params(tiny_config())[1])
  untied = flat_keys(init_params(tiny_config(logits_via_embedding=False))[1])
  assert untied - base == {"decoder/logits_dense/kernel",
                           "decoder/logits_dense/bias"}

  bert_like = flat_keys(init_params(tiny_config(
      position_embedding="learned", num_token_types=2,
      embedding_layernorm=True, use_bias=False))[1])
  embedder = "encoder/embedder/"
  assert {embedder + "position_embed/pos_embedding",
          embedder + "token_type_embed/embedding",
          embedder + "embedding_norm/scale"} <= bert_like
  assert "encoder/layers_0/attention/query/bias" in base
  assert not any("attention/query/bias" in k for k in bert_like)
  assert "decoder/embedder/position_embed/pos_embedding" in bert_like
  assert not any("pos_embedding" in k for k in base)


def test_token_types_change_encoder_output():
  model, params = init_params(tiny_config(num_token_types=2))
  encode = lambda types: model.apply(
      {"params": params}, INPUTS_BxS, token_types_BxS=types,
      method=EncoderDecoder.encode).hidden_BxSxD
  zeros_BxS = jnp.zeros_like(INPUTS_BxS)
  np.testing.assert_array_equal(encode(None), encode(zeros_BxS))
  assert not np.allclose(encode(None), encode(zeros_BxS.at[:, 2:].set(1)))


@pytest.mark.parametrize("changes", [
    dict(num_heads=3), dict(activation="swish"),
    dict(position_embedding="rotary"), dict(output_vocab_size=30),
    dict(dropout_rate=1.0), dict(num_token_types=-1)])
def test_config_rejects_bad_values(changes):
  with pytest.raises(ValueError):
    tiny_config(**changes)


def test_sequence_longer_than_max_len_is_an_error():
  model = EncoderDecoder(tiny_config(max_len=4))
  with pytest.raises(ValueError, match="max_len"):
    model.init(jax.random.key(0), INPUTS_BxS, TARGETS_IN_BxT)


def test_dropout_drops_at_its_rate_and_keeps_the_expectation():
  from encdec_jax.nn.dropout import Dropout
  x = jnp.ones((64, 1001), jnp.float32)  # odd size: the last half-word
  layer = Dropout(rate=0.1)
  assert layer.apply({}, x, deterministic=True) is x
  y = layer.apply({}, x, deterministic=False,
                  rngs={"dropout": jax.random.key(0)})
  dropped = float(jnp.mean(y == 0))
  assert abs(dropped - 0.1) < 0.005
  assert abs(float(jnp.mean(y)) - 1.0) < 0.01
  z = layer.apply({}, x, deterministic=False,
                  rngs={"dropout": jax.random.key(1)})
  assert not bool(jnp.all((y == 0) == (z == 0)))
  rbg = layer.apply({}, x, deterministic=False,
                    rngs={"dropout": jax.random.key(0, impl="rbg")})
  assert abs(float(jnp.mean(rbg == 0)) - 0.1) < 0.005
