"""Transformer encoder and decoder stacks (pre-LN or post-LN).

Param layout (what checkpoint converters map to):
  encoder/embedder/{token_embed, position_embed, token_type_embed,
                    embedding_norm}
  encoder/layers_{i}/{attention, attention_norm, mlp, mlp_norm}
  encoder/encoder_norm                                   (pre-LN only)
  decoder/embedder/...              (token_embed absent when embeddings shared)
  decoder/layers_{i}/{self_attention, self_attention_norm, cross_attention,
                      cross_attention_norm, mlp, mlp_norm}
  decoder/decoder_norm                                   (pre-LN only)
  decoder/logits_dense                         (logits_via_embedding=False only)

With config.scan_layers the layers of a stack are one nn.scan: `layers/...`
(no index) with a leading num_layers axis on every leaf, in place of
`layers_{i}/...`. config.remat wraps each block in nn.remat with the policy
named there; the params and values do not change.
"""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.nn.attention import (CrossAttention, SelfAttention, causal_mask,
                                     combine_masks, padding_mask)
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.dropout import Dropout
from encdec_jax.nn.embedding import Embedder

PAD_ID = 0  # Also the decoder start token (Flax WMT convention).

ACTIVATION_FNS = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # BERT's exact erf.
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


def _layer_norm(cfg: TransformerConfig) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=cfg.layernorm_epsilon, dtype=cfg.dtype,
                      param_dtype=cfg.param_dtype)


def residual(x_BxLxD, sublayer: Callable[[jax.Array], jax.Array],
             norm: nn.LayerNorm, dropout: Dropout, *, pre_layernorm: bool,
             deterministic: bool) -> jax.Array:
  """Pre-LN: x + f(LN(x)). Post-LN: LN(x + f(x)). Dropout on the branch."""
  if pre_layernorm:
    return x_BxLxD + dropout(sublayer(norm(x_BxLxD)),
                             deterministic=deterministic)
  return norm(x_BxLxD + dropout(sublayer(x_BxLxD),
                                deterministic=deterministic))


class Mlp(nn.Module):
  """Position-wise feed-forward: D -> mlp_dim -> activation -> D."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxLxD) -> jax.Array:
    cfg = self.config
    dense = lambda features, name: nn.Dense(
        features, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        kernel_init=nn.initializers.xavier_uniform(), name=name)
    h_BxLxF = ACTIVATION_FNS[cfg.activation](
        dense(cfg.mlp_dim, "intermediate")(x_BxLxD))
    return dense(cfg.emb_dim, "output")(h_BxLxF)


class EncoderBlock(nn.Module):
  """Self-attention and MLP sublayers."""
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.attention = SelfAttention(cfg)
    self.attention_norm = _layer_norm(cfg)
    self.mlp = Mlp(cfg)
    self.mlp_norm = _layer_norm(cfg)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def __call__(self, x_BxSxD, mask_Bx1xSxS, decode: bool = False,
               deterministic: bool = True):
    sublayer = lambda f, x, norm: residual(
        x, f, norm, self.dropout, pre_layernorm=self.config.pre_layernorm,
        deterministic=deterministic)
    attend = lambda x: self.attention(x, mask_Bx1xSxS, decode=decode,
                                      deterministic=deterministic)
    x_BxSxD = sublayer(attend, x_BxSxD, self.attention_norm)
    return sublayer(self.mlp, x_BxSxD, self.mlp_norm)


class DecoderBlock(nn.Module):
  """Causal self-attention, cross-attention over the encoder output, MLP."""
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.self_attention = SelfAttention(cfg)
    self.self_attention_norm = _layer_norm(cfg)
    self.cross_attention = CrossAttention(cfg)
    self.cross_attention_norm = _layer_norm(cfg)
    self.mlp = Mlp(cfg)
    self.mlp_norm = _layer_norm(cfg)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def __call__(self, y_BxTxD, memory_BxSxD, self_mask_Bx1xTxT,
               cross_mask_Bx1xTxS, decode: bool = False,
               deterministic: bool = True) -> jax.Array:
    sublayer = lambda f, y, norm: residual(
        y, f, norm, self.dropout, pre_layernorm=self.config.pre_layernorm,
        deterministic=deterministic)
    self_attend = lambda y: self.self_attention(
        y, self_mask_Bx1xTxT, decode=decode, deterministic=deterministic)
    cross_attend = lambda y: self.cross_attention(
        y, memory_BxSxD, cross_mask_Bx1xTxS, decode=decode,
        deterministic=deterministic)
    y_BxTxD = sublayer(self_attend, y_BxTxD, self.self_attention_norm)
    y_BxTxD = sublayer(cross_attend, y_BxTxD, self.cross_attention_norm)
    return sublayer(self.mlp, y_BxTxD, self.mlp_norm)


REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,
}


def _carry_form(block):
  """`block` returning (output, None), as nn.scan's body must."""

  class Scanned(block):
    def __call__(self, x, *args):
      return super().__call__(x, *args), None

  Scanned.__name__ = block.__name__
  return Scanned


def make_stack(block, cfg: TransformerConfig, num_layers: int):
  """`num_layers` blocks (setup attribute `layers`): a list of modules
  (`layers_{i}`), or with cfg.scan_layers one nn.scan over stacked params.

  Blocks are called positionally, (x, *arrays, decode, deterministic), so
  that nn.remat can keep the two flags static.
  """
  cls = _carry_form(block) if cfg.scan_layers else block
  if cfg.remat != "none":
    num_args = {EncoderBlock: 4, DecoderBlock: 6}[block]  # with self
    cls = nn.remat(cls, policy=REMAT_POLICIES[cfg.remat],
                   static_argnums=(num_args - 1, num_args))
  if not cfg.scan_layers:
    return [cls(cfg) for _ in range(num_layers)]
  num_broadcast = {EncoderBlock: 3, DecoderBlock: 5}[block]
  return nn.scan(cls, variable_axes={"params": 0, "cache": 0,
                                     "intermediates": 0},
                 split_rngs={"params": True, "dropout": True},
                 in_axes=(nn.broadcast,) * num_broadcast,
                 length=num_layers)(cfg)


def run_stack(layers, x, *args):
  """x through the stack of make_stack; args end with decode, deterministic."""
  if isinstance(layers, (list, tuple)):
    for layer in layers:
      x = layer(x, *args)
    return x
  return layers(x, *args)[0]


class TransformerEncoder(nn.Module):
  """Token ids -> hidden states; owns its embeddings (self-contained params).

  config.causal: position s attends only to positions <= s (a decoder-only LM
  and the classifiers fine-tuned from it). Only a causal encoder can decode
  (decode=True: Bx1 inputs per call, `cache` mutable, as TransformerDecoder);
  the cache then holds the past keys, so no padding mask is applied.
  mask_padding=False drops the padding mask, for the LM whose start token is
  the pad id (see language_model.py): with right-padded inputs the causal mask
  alone keeps real positions from seeing padding.
  """
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.embedder = Embedder(cfg, vocab_size=cfg.vocab_size,
                             num_token_types=cfg.num_token_types)
    self.layers = make_stack(EncoderBlock, cfg, cfg.num_encoder_layers)
    if cfg.pre_layernorm:  # Pre-LN leaves the residual stream unnormalised.
      self.encoder_norm = _layer_norm(cfg)

  def __call__(self, inputs_BxS, token_types_BxS=None, *,
               decode: bool = False, mask_padding: bool = True,
               deterministic: bool = True) -> jax.Array:
    cfg = self.config
    if decode and not cfg.causal:
      raise ValueError("decode=True needs config.causal: a bidirectional "
                       "encoder cannot run one step at a time.")
    mask_Bx1xSxS = None
    if mask_padding and not decode:
      valid_BxS = inputs_BxS != PAD_ID
      mask_Bx1xSxS = padding_mask(valid_BxS, valid_BxS)
    if cfg.causal and not decode:  # With decode the KV cache is causal.
      mask_Bx1xSxS = combine_masks(mask_Bx1xSxS,
                                   causal_mask(inputs_BxS.shape[1]))
    x_BxSxD = self.embedder(inputs_BxS, token_types_BxS, decode=decode,
                            deterministic=deterministic)
    x_BxSxD = run_stack(self.layers, x_BxSxD, mask_Bx1xSxS, decode,
                        deterministic)
    if cfg.pre_layernorm:
      x_BxSxD = self.encoder_norm(x_BxSxD)
    return x_BxSxD


class TransformerDecoder(nn.Module):
  """Shifted target ids + encoder output -> float32 logits BxTxV.

  Targets must be right-padded: the causal mask alone then keeps real positions
  from seeing padding (padding keys are not masked because the start token
  is the pad id). With decode=True, targets is Bx1 and `cache` must be mutable.
  """
  config: TransformerConfig
  shared_token_embed: nn.Embed | None = None

  def setup(self):
    cfg = self.config
    self.embedder = Embedder(cfg, vocab_size=cfg.decoder_vocab_size,
                             shared_token_embed=self.shared_token_embed)
    self.layers = make_stack(DecoderBlock, cfg, cfg.num_decoder_layers)
    if cfg.pre_layernorm:
      self.decoder_norm = _layer_norm(cfg)
    if not cfg.logits_via_embedding:
      self.logits_dense = nn.Dense(
          cfg.decoder_vocab_size, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          kernel_init=nn.initializers.xavier_uniform())

  def __call__(self, targets_BxT, memory_BxSxD, memory_valid_BxS, *,
               decode: bool = False, deterministic: bool = True) -> jax.Array:
    cfg = self.config
    # In decode mode the KV cache supplies the causal structure.
    self_mask_1x1xTxT = None if decode else causal_mask(targets_BxT.shape[1])
    cross_mask_Bx1x1xS = memory_valid_BxS[:, None, None, :]
    y_BxTxD = self.embedder(targets_BxT, decode=decode,
                            deterministic=deterministic)
    y_BxTxD = run_stack(self.layers, y_BxTxD, memory_BxSxD,
                        self_mask_1x1xTxT, cross_mask_Bx1x1xS, decode,
                        deterministic)
    if cfg.pre_layernorm:
      y_BxTxD = self.decoder_norm(y_BxTxD)
    if cfg.logits_via_embedding:
      logits_BxTxV = self.embedder.attend(y_BxTxD)
    else:
      logits_BxTxV = self.logits_dense(y_BxTxD)
    # float32 so the softmax / cross-entropy downstream is full precision.
    return logits_BxTxV.astype(jnp.float32)
