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
  decoder/final_logits_bias                      (config.final_logits_bias only)
  decoder/copy_head/gate                     (config.copy only; nn/copy_head.py)
  {encoder,decoder}/relative_position_bias/embedding
                                     (config.relative_position_buckets > 0 only)
  .../mlp/intermediate_linear                         (config.mlp_gated only)

Norms are LayerNorm or RMSNorm (config.norm; RMSNorm has a scale only). The
decoder's blocks use config.decoder_config() (num_decoder_heads,
decoder_mlp_dim).

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
from encdec_jax.nn.copy_head import CopyHead, pointer_from_cross_attention
from encdec_jax.nn.dropout import Dropout
from encdec_jax.nn.embedding import Embedder
from encdec_jax.nn.norms import make_norm
from encdec_jax.nn import precision
from encdec_jax.nn.relative_position import RelativePositionTable

# Also the decoder start token (Flax WMT convention); a config may name
# others (TransformerConfig.pad_id, decoder_start_id).
PAD_ID = 0

ACTIVATION_FNS = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # BERT's exact erf.
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,  # swish (Marian)
}

_layer_norm = make_norm  # LayerNorm or RMSNorm, by config.norm


def segment_mask(q_segment_ids_BxT, kv_segment_ids_BxS) -> jax.Array:
  """Bx1xTxS for packed rows (data/packing.py): query t may attend key s iff
  both belong to the same segment (ids > 0; 0 is padding)."""
  return ((q_segment_ids_BxT[:, None, :, None] ==
           kv_segment_ids_BxS[:, None, None, :]) &
          (kv_segment_ids_BxS > 0)[:, None, None, :])


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
  """Position-wise feed-forward: D -> mlp_dim -> activation -> D; gated
  (config.mlp_gated): activation(intermediate(x)) * intermediate_linear(x)."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x_BxLxD) -> jax.Array:
    cfg = self.config
    dense = lambda features, name: nn.Dense(
        features, use_bias=cfg.mlp_bias, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        dot_general=precision.dot_general(cfg.dtype),
        kernel_init=nn.initializers.xavier_uniform(), name=name)
    h_BxLxF = ACTIVATION_FNS[cfg.activation](
        dense(cfg.mlp_dim, "intermediate")(x_BxLxD))
    if cfg.mlp_gated:
      h_BxLxF = h_BxLxF * dense(cfg.mlp_dim, "intermediate_linear")(x_BxLxD)
    return dense(cfg.emb_dim, "output")(h_BxLxF)


class EncoderBlock(nn.Module):
  """Self-attention and MLP sublayers."""
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.attention = SelfAttention(cfg, bidirectional=not cfg.causal)
    self.attention_norm = _layer_norm(cfg)
    self.mlp = Mlp(cfg)
    self.mlp_norm = _layer_norm(cfg)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def __call__(self, x_BxSxD, mask_Bx1xSxS, relative_table_NxH=None,
               decode: bool = False, deterministic: bool = True):
    sublayer = lambda f, x, norm: residual(
        x, f, norm, self.dropout, pre_layernorm=self.config.pre_layernorm,
        deterministic=deterministic)
    attend = lambda x: self.attention(
        x, mask_Bx1xSxS, decode=decode, deterministic=deterministic,
        relative_table_NxH=relative_table_NxH)
    x_BxSxD = sublayer(attend, x_BxSxD, self.attention_norm)
    return sublayer(self.mlp, x_BxSxD, self.mlp_norm)


class DecoderBlock(nn.Module):
  """Causal self-attention, cross-attention over the encoder output, MLP."""
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.self_attention = SelfAttention(cfg, bidirectional=False)
    self.self_attention_norm = _layer_norm(cfg)
    self.cross_attention = CrossAttention(cfg)
    self.cross_attention_norm = _layer_norm(cfg)
    self.mlp = Mlp(cfg)
    self.mlp_norm = _layer_norm(cfg)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def __call__(self, y_BxTxD, memory_BxSxD, self_mask_Bx1xTxT,
               cross_mask_Bx1xTxS, relative_table_NxH=None,
               decode: bool = False, deterministic: bool = True) -> jax.Array:
    sublayer = lambda f, y, norm: residual(
        y, f, norm, self.dropout, pre_layernorm=self.config.pre_layernorm,
        deterministic=deterministic)
    self_attend = lambda y: self.self_attention(
        y, self_mask_Bx1xTxT, decode=decode, deterministic=deterministic,
        relative_table_NxH=relative_table_NxH)
    copy, cross_weights = self.config.copy, []

    def cross_attend(y):  # with config.copy, keeps the weights for the pointer
      out = self.cross_attention(
          y, memory_BxSxD, cross_mask_Bx1xTxS, decode=decode,
          deterministic=deterministic, return_weights=copy)
      if copy:
        out, weights_BxHxTxS = out
        cross_weights.append(weights_BxHxTxS)
      return out

    y_BxTxD = sublayer(self_attend, y_BxTxD, self.self_attention_norm)
    y_BxTxD = sublayer(cross_attend, y_BxTxD, self.cross_attention_norm)
    y_BxTxD = sublayer(self.mlp, y_BxTxD, self.mlp_norm)
    # config.copy: (output, cross-attention weights BxHxTxS); run_stack
    # stacks the weights of all layers.
    return (y_BxTxD, cross_weights[0]) if copy else y_BxTxD


REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,
}


def _carry_form(block):
  """`block` returning (output, None), as nn.scan's body must; a block
  that returns (output, extra) already keeps it (extras stack per layer)."""

  class Scanned(block):
    def __call__(self, x, *args):
      out = super().__call__(x, *args)
      return out if isinstance(out, tuple) else (out, None)

  Scanned.__name__ = block.__name__
  return Scanned


def make_stack(block, cfg: TransformerConfig, num_layers: int):
  """`num_layers` blocks (setup attribute `layers`): a list of modules
  (`layers_{i}`), or with cfg.scan_layers one nn.scan over stacked params.

  Blocks are called positionally, (x, *arrays, decode, deterministic), so
  that nn.remat can keep the two flags static. The arrays end with the
  stack's relative position table (or None).
  """
  cls = _carry_form(block) if cfg.scan_layers else block
  if cfg.remat != "none":
    num_args = {EncoderBlock: 5, DecoderBlock: 7}[block]  # with self
    cls = nn.remat(cls, policy=REMAT_POLICIES[cfg.remat],
                   static_argnums=(num_args - 1, num_args))
  if not cfg.scan_layers:
    return [cls(cfg) for _ in range(num_layers)]
  num_broadcast = {EncoderBlock: 4, DecoderBlock: 6}[block]
  return nn.scan(cls, variable_axes={"params": 0, "cache": 0,
                                     "intermediates": 0},
                 split_rngs={"params": True, "dropout": True},
                 in_axes=(nn.broadcast,) * num_broadcast,
                 length=num_layers)(cfg)


def run_stack(layers, x, *args):
  """x through the stack of make_stack; args end with decode, deterministic.
  Blocks that return (x, extra) (a copy decoder's cross-attention weights)
  give (x, their extras stacked along a leading layer axis)."""
  if isinstance(layers, (list, tuple)):
    extras = []
    for layer in layers:
      x = layer(x, *args)
      if isinstance(x, tuple):
        x, extra = x
        extras.append(extra)
    return (x, jnp.stack(extras)) if extras else x
  x, extras = layers(x, *args)
  return x if extras is None else (x, extras)


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
    if cfg.relative_position_buckets:
      self.relative_position_bias = RelativePositionTable(
          cfg, num_heads=cfg.num_heads)
    if cfg.pre_layernorm:  # Pre-LN leaves the residual stream unnormalised.
      self.encoder_norm = _layer_norm(cfg)

  def __call__(self, inputs_BxS, token_types_BxS=None, *,
               decode: bool = False, mask_padding: bool = True,
               deterministic: bool = True, segment_ids_BxS=None,
               positions_BxS=None) -> jax.Array:
    """segment_ids_BxS / positions_BxS: packed rows (several examples per
    row, data/packing.py); attention stays inside a segment and positions
    restart at each."""
    cfg = self.config
    if decode and not cfg.causal:
      raise ValueError("decode=True needs config.causal: a bidirectional "
                       "encoder cannot run one step at a time.")
    mask_Bx1xSxS = None
    if mask_padding and not decode:
      valid_BxS = inputs_BxS != cfg.pad_id
      mask_Bx1xSxS = padding_mask(valid_BxS, valid_BxS)
    if cfg.causal and not decode:  # With decode the KV cache is causal.
      mask_Bx1xSxS = combine_masks(mask_Bx1xSxS,
                                   causal_mask(inputs_BxS.shape[1]))
    if segment_ids_BxS is not None:
      mask_Bx1xSxS = combine_masks(
          mask_Bx1xSxS, segment_mask(segment_ids_BxS, segment_ids_BxS))
    x_BxSxD = self.embedder(inputs_BxS, token_types_BxS, decode=decode,
                            deterministic=deterministic,
                            positions_BxL=positions_BxS)
    table_NxH = (self.relative_position_bias()
                 if cfg.relative_position_buckets else None)
    x_BxSxD = run_stack(self.layers, x_BxSxD, mask_Bx1xSxS, table_NxH, decode,
                        deterministic)
    if cfg.pre_layernorm:
      x_BxSxD = self.encoder_norm(x_BxSxD)
    return x_BxSxD


class TransformerDecoder(nn.Module):
  """Shifted target ids + encoder output -> float32 logits BxTxV.

  Targets must be right-padded: the causal mask alone then keeps real positions
  from seeing padding (padding keys are not masked because the start token
  is the pad id). With decode=True, targets is Bx1 and `cache` must be mutable.
  The blocks use config.decoder_config() (their own head count / MLP width).
  """
  config: TransformerConfig
  shared_token_embed: nn.Embed | None = None

  def setup(self):
    cfg = self.config
    self.embedder = Embedder(cfg, vocab_size=cfg.decoder_vocab_size,
                             shared_token_embed=self.shared_token_embed)
    block_cfg = cfg.decoder_config()
    self.layers = make_stack(DecoderBlock, block_cfg, cfg.num_decoder_layers)
    if cfg.relative_position_buckets:
      self.relative_position_bias = RelativePositionTable(
          cfg, num_heads=block_cfg.num_heads)
    if cfg.pre_layernorm:
      self.decoder_norm = _layer_norm(cfg)
    if not cfg.logits_via_embedding:
      self.logits_dense = nn.Dense(
          cfg.decoder_vocab_size, use_bias=cfg.logits_dense_bias,
          dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          dot_general=precision.dot_general(cfg.dtype),
          kernel_init=nn.initializers.xavier_uniform())
    if cfg.final_logits_bias:
      self.logits_bias = self.param(
          "final_logits_bias", nn.initializers.zeros,
          (cfg.decoder_vocab_size,), cfg.param_dtype)
    if cfg.copy:
      self.copy_head = CopyHead(dtype=cfg.dtype, param_dtype=cfg.param_dtype)

  def __call__(self, targets_BxT, memory_BxSxD, memory_valid_BxS, *,
               decode: bool = False, deterministic: bool = True,
               source_ids_BxS=None, segment_ids_BxT=None, positions_BxT=None,
               memory_segment_ids_BxS=None) -> jax.Array:
    """Logits BxTxV; with config.copy the log-probabilities of the copy
    mixture (nn/copy_head.py) over source_ids_BxS, the encoder's input ids.
    Packed rows (data/packing.py): segment_ids_BxT, positions_BxT and
    memory_segment_ids_BxS; a target token attends only to its own segment's
    earlier targets and to its own source."""
    cfg = self.config
    if cfg.copy and source_ids_BxS is None:
      raise ValueError("config.copy needs source_ids_BxS (Encoded.ids_BxS).")
    # In decode mode the KV cache supplies the causal structure.
    self_mask_1x1xTxT = None if decode else causal_mask(targets_BxT.shape[1])
    cross_mask_Bx1x1xS = memory_valid_BxS[:, None, None, :]
    if segment_ids_BxT is not None:  # Bx1xTxT and Bx1xTxS
      self_mask_1x1xTxT = combine_masks(
          self_mask_1x1xTxT, segment_mask(segment_ids_BxT, segment_ids_BxT))
      cross_mask_Bx1x1xS = combine_masks(
          cross_mask_Bx1x1xS,
          segment_mask(segment_ids_BxT, memory_segment_ids_BxS))
    y_BxTxD = self.embedder(targets_BxT, decode=decode,
                            deterministic=deterministic,
                            positions_BxL=positions_BxT)
    table_NxH = (self.relative_position_bias()
                 if cfg.relative_position_buckets else None)
    inputs_BxTxD = y_BxTxD  # the copy head's p_gen reads them
    y_BxTxD = run_stack(self.layers, y_BxTxD, memory_BxSxD,
                        self_mask_1x1xTxT, cross_mask_Bx1x1xS, table_NxH,
                        decode, deterministic)
    if cfg.copy:
      y_BxTxD, cross_NxBxHxTxS = y_BxTxD
    if cfg.pre_layernorm:
      y_BxTxD = self.decoder_norm(y_BxTxD)
    if cfg.scale_decoder_outputs:  # T5 with tied embeddings
      y_BxTxD = y_BxTxD * cfg.emb_dim ** -0.5
    if cfg.logits_via_embedding:
      logits_BxTxV = self.embedder.attend(y_BxTxD)
    else:
      logits_BxTxV = self.logits_dense(y_BxTxD)
    if cfg.final_logits_bias:
      logits_BxTxV = logits_BxTxV + self.logits_bias.astype(
          logits_BxTxV.dtype)
    if cfg.copy:
      pointer_BxTxS = pointer_from_cross_attention(
          cross_NxBxHxTxS, cfg.copy_layer, cfg.copy_heads)
      return self.copy_head(logits_BxTxV, y_BxTxD, inputs_BxTxD,
                            memory_BxSxD, pointer_BxTxS, source_ids_BxS)
    # float32 so the softmax / cross-entropy downstream is full precision.
    return logits_BxTxV.astype(jnp.float32)
