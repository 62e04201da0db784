"""Encoder-decoder Transformer: KV cache, masks, param layout, config knobs."""
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
  assert layer["self_attention"]["cached_key"].shape == (3, 9, 2, 16)
  assert layer["cross_attention"]["cached_value"].shape == (3, 5, 2, 16)
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


def test_layernorm_placement_knob():
  _, pre = init_params(tiny_config(pre_layernorm=True))
  _, post = init_params(tiny_config(pre_layernorm=False))
  assert "encoder_norm" in pre["encoder"] and "decoder_norm" in pre["decoder"]
  assert "encoder_norm" not in post["encoder"]
  assert "decoder_norm" not in post["decoder"]
  # Same block params otherwise, so the outputs differ only by LN placement.
  model_post = EncoderDecoder(tiny_config(pre_layernorm=False))
  params_post_from_pre = {"encoder": {k: v for k, v in pre["encoder"].items()
                                      if k != "encoder_norm"},
                          "decoder": {k: v for k, v in pre["decoder"].items()
                                      if k != "decoder_norm"}}
  model_pre = EncoderDecoder(tiny_config(pre_layernorm=True))
  out_pre = model_pre.apply({"params": pre}, INPUTS_BxS, TARGETS_IN_BxT)
  out_post = model_post.apply({"params": params_post_from_pre}, INPUTS_BxS,
                              TARGETS_IN_BxT)
  assert not np.allclose(out_pre, out_post, atol=1e-3)


@pytest.mark.parametrize("changes", [
    dict(activation="gelu"), dict(activation="gelu_tanh"),
    dict(layernorm_epsilon=0.5), dict(scale_embeddings=True)])
def test_numeric_knobs_change_outputs_not_params(changes):
  _, params = init_params(tiny_config())
  base = EncoderDecoder(tiny_config()).apply(
      {"params": params}, INPUTS_BxS, TARGETS_IN_BxT)
  changed = EncoderDecoder(tiny_config(**changes)).apply(
      {"params": params}, INPUTS_BxS, TARGETS_IN_BxT)
  assert not np.allclose(base, changed, atol=1e-4)


def test_gelu_is_exact_and_gelu_tanh_approximate():
  _, params = init_params(tiny_config(activation="gelu"))
  outs = {act: EncoderDecoder(tiny_config(activation=act)).apply(
      {"params": params}, INPUTS_BxS, TARGETS_IN_BxT)
          for act in ("gelu", "gelu_tanh")}
  # Close (same function up to ~1e-3) but not identical.
  assert not np.array_equal(outs["gelu"], outs["gelu_tanh"])
  np.testing.assert_allclose(outs["gelu"], outs["gelu_tanh"], atol=0.05)


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
