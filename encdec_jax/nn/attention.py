"""Multi-head dot-product attention, attention masks and the decoding KV cache.

Masks are boolean, True where attention is allowed, broadcastable to
B x heads x queries x keys (`mask_Bx1xTxS`).
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.dropout import Dropout
from encdec_jax.nn import precision
from encdec_jax.nn.relative_position import relative_position_bias


def padding_mask(q_valid_BxT: jax.Array, kv_valid_BxS: jax.Array) -> jax.Array:
  """Bx1xTxS: query t may attend key s iff both are real tokens."""
  return q_valid_BxT[:, None, :, None] & kv_valid_BxS[:, None, None, :]


def causal_mask(length: int) -> jax.Array:
  """1x1xLxL: query t may attend keys s <= t."""
  return jnp.tril(jnp.ones((length, length), jnp.bool_))[None, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
  """Logical AND of the masks that are not None (None if all are)."""
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  return functools.reduce(jnp.logical_and, masks)


class MultiHeadAttention(nn.Module):
  """Projections and scaled dot-product attention for self/cross attention.

  Params: query/key/value (D -> heads x head_dim), out (heads x head_dim -> D).
  config.scale_attention=False leaves the dot products unscaled (T5).
  """
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    dense = functools.partial(
        nn.DenseGeneral, use_bias=cfg.use_bias, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        dot_general=precision.dot_general(cfg.dtype),
        kernel_init=nn.initializers.xavier_uniform())
    self.query = dense(features=(cfg.num_heads, cfg.head_dim))
    self.key = dense(features=(cfg.num_heads, cfg.head_dim))
    self.value = dense(features=(cfg.num_heads, cfg.head_dim))
    self.out = dense(features=cfg.emb_dim, axis=(-2, -1))
    self.attention_dropout = Dropout(rate=cfg.attention_dropout_rate)

  def attend(self, q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, mask_Bx1xTxS, *,
             deterministic: bool, bias_1xHxTxS=None,
             return_weights: bool = False,
             heads_major: bool = False) -> jax.Array:
    """Attention of projected queries over projected keys/values -> BxTxD.
    bias_1xHxTxS (float32, e.g. relative positions) is added to the logits
    before masking. return_weights: (BxTxD, the weights BxHxTxS before
    dropout), for a copy head's pointer (nn/copy_head.py). heads_major:
    the keys/values are BxHxSxK (the decoding caches' layout)."""
    kv = "bhsk" if heads_major else "bshk"
    if self.config.scale_attention:
      q_BxTxHxK = q_BxTxHxK * q_BxTxHxK.shape[-1] ** -0.5
    # Scores, softmax and the weighted sum in float32 (from bfloat16
    # projections: nn/precision.py): bfloat16 exponentials lose too much
    # precision, and these dots are a small share of the FLOPs (XLA's CPU
    # has no bfloat16 x bfloat16 -> float32 kernel for some of their
    # gradients' layouts).
    logits_BxHxTxS = jnp.einsum(f"bthk,{kv}->bhts",
                                q_BxTxHxK.astype(jnp.float32),
                                k_BxSxHxK.astype(jnp.float32))
    if bias_1xHxTxS is not None:
      logits_BxHxTxS = logits_BxHxTxS + bias_1xHxTxS
    if mask_Bx1xTxS is not None:
      big_negative = jnp.finfo(jnp.float32).min
      logits_BxHxTxS = jnp.where(mask_Bx1xTxS, logits_BxHxTxS, big_negative)
    weights_BxHxTxS = jax.nn.softmax(logits_BxHxTxS).astype(self.config.dtype)
    # For heatmaps: apply(..., mutable=["intermediates"]) collects them; a
    # no-op (and free) otherwise.
    self.sow("intermediates", "attention_weights", weights_BxHxTxS)
    sown_BxHxTxS = weights_BxHxTxS
    weights_BxHxTxS = self.attention_dropout(
        weights_BxHxTxS, deterministic=deterministic)
    out_BxTxHxK = jnp.einsum(f"bhts,{kv}->bthk",
                             weights_BxHxTxS.astype(jnp.float32),
                             v_BxSxHxK.astype(jnp.float32))
    out_BxTxHxK = out_BxTxHxK.astype(self.config.dtype)
    if return_weights:
      return self.out(out_BxTxHxK), sown_BxHxTxS
    return self.out(out_BxTxHxK)


class SelfAttention(MultiHeadAttention):
  """Self-attention; with decode=True, one query step against a KV cache.

  Cache variables (collection `cache`): cached_key/cached_value BxHxLxK and
  cache_index (next position to write). Heads before positions: each step's
  attention reads the cache as a batch of HxLxK matrices, so the loop never
  transposes it (a BxLxHxK cache was transposed, twice per layer, each
  step). The init call with decode=True sees the
  full-length input and so creates a cache of that length.

  relative_table_NxH (the stack's T5 relative position table, or None) adds
  the bias of each query/key distance; `bidirectional` picks its buckets
  (False for a causal stack). With decode=True the query is at cache_index
  and the keys are the cache's positions 0..L-1.
  """
  bidirectional: bool = True

  @nn.compact
  def __call__(self, x_BxTxD, mask_Bx1xTxT=None, *, decode: bool = False,
               deterministic: bool = True,
               relative_table_NxH=None) -> jax.Array:
    q_BxTxHxK = self.query(x_BxTxD)
    k_BxTxHxK = self.key(x_BxTxD)
    v_BxTxHxK = self.value(x_BxTxD)
    length = x_BxTxD.shape[1]
    query_pos_T = key_pos_S = jnp.arange(length)
    # What attention reads: these keys/values, or with a cache the whole
    # cache, heads-major.
    keys, values, heads_major = k_BxTxHxK, v_BxTxHxK, False
    if decode:
      is_initialized = self.has_variable("cache", "cached_key")
      batch, _, heads, head_dim = k_BxTxHxK.shape
      cache_shape = (batch, heads, length, head_dim)
      cached_key = self.variable("cache", "cached_key", jnp.zeros,
                                 cache_shape, k_BxTxHxK.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros,
                                   cache_shape, v_BxTxHxK.dtype)
      cache_index = self.variable("cache", "cache_index",
                                  lambda: jnp.array(0, jnp.int32))
      if is_initialized:  # Not the shape-creating init call: one real step.
        batch, heads, max_len, head_dim = cached_key.value.shape
        if (q_BxTxHxK.shape[0] != batch or q_BxTxHxK.shape[2:] !=
            (heads, head_dim) or not 1 <= length <= max_len):
          raise ValueError(f"decode=True expects Bx1 (or a few steps, Bxk) "
                           f"per call, got query {q_BxTxHxK.shape} for cache "
                           f"{(batch, max_len)}.")
        # One step, or k steps at once (speculative decoding's verify pass):
        # written at cache_index..+k-1. Entries past the index are never
        # attended to, so rolling back is resetting the index.
        index = cache_index.value
        cached_key.value = lax.dynamic_update_slice(
            cached_key.value, k_BxTxHxK.transpose(0, 2, 1, 3),
            (0, 0, index, 0))
        cached_value.value = lax.dynamic_update_slice(
            cached_value.value, v_BxTxHxK.transpose(0, 2, 1, 3),
            (0, 0, index, 0))
        keys, values, heads_major = (cached_key.value, cached_value.value,
                                     True)
        cache_index.value = index + length
        # Query index + t sees the cache up to and including itself.
        query_pos_T, key_pos_S = index + jnp.arange(length), jnp.arange(max_len)
        step_mask_1x1xTxL = (key_pos_S[None] <= query_pos_T[:, None])[None,
                                                                      None]
        mask_Bx1xTxT = combine_masks(mask_Bx1xTxT, step_mask_1x1xTxL)
    bias_1xHxTxS = None
    if relative_table_NxH is not None:
      bias_1xHxTxS = relative_position_bias(
          relative_table_NxH, query_pos_T, key_pos_S,
          bidirectional=self.bidirectional,
          max_distance=self.config.relative_position_max_distance)
    return self.attend(q_BxTxHxK, keys, values, mask_Bx1xTxT,
                       deterministic=deterministic, bias_1xHxTxS=bias_1xHxTxS,
                       heads_major=heads_major)


class CrossAttention(MultiHeadAttention):
  """Attention of decoder queries over encoder outputs (memory).

  With decode=True the projected memory keys/values are computed on the first
  step only and kept in the `cache` collection (cached_key/cached_value BxHxSxK,
  heads first as in SelfAttention, and is_filled), since the memory is the
  same for every step. A cache entry
  without is_filled (decoding/cross_cache.py) holds them computed before the
  decoding loop, one row per source, shared by that source's beams.
  """

  @nn.compact
  def __call__(self, x_BxTxD, memory_BxSxD, mask_Bx1xTxS=None, *,
               decode: bool = False, deterministic: bool = True,
               return_weights: bool = False) -> jax.Array:
    """BxTxD, or with return_weights (BxTxD, weights BxHxTxS)."""
    q_BxTxHxK = self.query(x_BxTxD)
    if (decode and self.has_variable("cache", "cached_key")
        and not self.has_variable("cache", "is_filled")):
      return self._attend_precomputed(q_BxTxHxK, mask_Bx1xTxS,
                                      deterministic=deterministic,
                                      return_weights=return_weights)
    if decode and self.has_variable("cache", "cached_key"):
      k_BxHxSxK, v_BxHxSxK = self._cached_memory_projections(memory_BxSxD)
      return self.attend(q_BxTxHxK, k_BxHxSxK, v_BxHxSxK, mask_Bx1xTxS,
                         deterministic=deterministic,
                         return_weights=return_weights, heads_major=True)
    k_BxSxHxK = self.key(memory_BxSxD)
    v_BxSxHxK = self.value(memory_BxSxD)
    if decode:  # Shape-creating init call: declare the cache.
      batch, source, heads, head_dim = k_BxSxHxK.shape
      shape = (batch, heads, source, head_dim)
      self.variable("cache", "cached_key", jnp.zeros, shape, k_BxSxHxK.dtype)
      self.variable("cache", "cached_value", jnp.zeros, shape,
                    v_BxSxHxK.dtype)
      self.variable("cache", "is_filled", lambda: jnp.array(False))
    return self.attend(q_BxTxHxK, k_BxSxHxK, v_BxSxHxK, mask_Bx1xTxS,
                       deterministic=deterministic,
                       return_weights=return_weights)

  def _attend_precomputed(self, q_BxTxHxK, mask_Bx1xTxS, *,
                          deterministic: bool, return_weights: bool):
    """Decoding with the memory keys/values projected before the loop
    (decoding/cross_cache.py: a cache entry without is_filled), at one row
    per source: the R = B/b query rows of a source (its beams) attend to
    them together, as R*T queries, so they are never copied or gathered."""
    k_bxHxSxK = self.get_variable("cache", "cached_key")
    v_bxHxSxK = self.get_variable("cache", "cached_value")
    batch, length = q_BxTxHxK.shape[:2]
    rows = batch // k_bxHxSxK.shape[0]
    if rows * k_bxHxSxK.shape[0] != batch:
      raise ValueError(f"{batch} query rows for {k_bxHxSxK.shape[0]} rows of "
                       "precomputed memory keys.")
    q_bxRTxHxK = q_BxTxHxK.reshape((batch // rows, rows * length)
                                   + q_BxTxHxK.shape[2:])
    if mask_Bx1xTxS is not None and rows > 1:
      if mask_Bx1xTxS.shape[0] == batch:  # rows of one source are alike
        mask_Bx1xTxS = mask_Bx1xTxS[::rows]
      if mask_Bx1xTxS.shape[2] != 1:
        mask_Bx1xTxS = jnp.tile(mask_Bx1xTxS, (1, 1, rows, 1))
    out = self.attend(q_bxRTxHxK, k_bxHxSxK, v_bxHxSxK, mask_Bx1xTxS,
                      deterministic=deterministic,
                      return_weights=return_weights, heads_major=True)
    unfold = lambda x_bxRTxD: x_bxRTxD.reshape(
        (batch, length) + x_bxRTxD.shape[2:])
    if not return_weights:
      return unfold(out)
    out_bxRTxD, w_bxHxRTxS = out
    b, heads, _, source = w_bxHxRTxS.shape
    w_BxHxTxS = w_bxHxRTxS.reshape(b, heads, rows, length, source).transpose(
        0, 2, 1, 3, 4).reshape(batch, heads, length, source)
    return unfold(out_bxRTxD), w_BxHxTxS

  def _cached_memory_projections(self, memory_BxSxD):
    cached_key = self.variable("cache", "cached_key")
    cached_value = self.variable("cache", "cached_value")
    is_filled = self.variable("cache", "is_filled")
    cached = (cached_key.value, cached_value.value)
    # nn.cond (not lax.cond) so the projections may read this module's params.
    heads_major = lambda x_BxSxHxK: x_BxSxHxK.transpose(0, 2, 1, 3)
    k_BxHxSxK, v_BxHxSxK = nn.cond(
        is_filled.value,
        lambda module, memory: cached,
        lambda module, memory: (heads_major(module.key(memory)),
                                heads_major(module.value(memory))),
        self, memory_BxSxD)
    cached_key.value = k_BxHxSxK
    cached_value.value = v_BxHxSxK
    is_filled.value = jnp.array(True)
    return k_BxHxSxK, v_BxHxSxK
