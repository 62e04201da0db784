"""T5's bucketed relative position bias (Raffel et al. 2020; Mesh TF).

The attention logit of query position t and key position s gets
table[bucket(s - t), head]: one learned (buckets x heads) table per stack
(encoder, decoder), shared by all its layers, used in self-attention only.
Small distances have a bucket each, larger ones share logarithmically wider
buckets up to max_distance, beyond which all share the last bucket. A
bidirectional stack (the encoder) spends half of the buckets on keys after
the query; a causal one (the decoder) sees only keys at or before it.

The table is a param of the stack (`relative_position_bias/embedding`);
each attention layer computes its bias from it for the positions it sees,
so a cached decoding step (one query at the cache index, keys 0..L-1) gets
exactly the row teacher forcing gets at that position.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.nn.config import TransformerConfig


def relative_position_bucket(relative_position: jax.Array, *,
                             bidirectional: bool, num_buckets: int,
                             max_distance: int) -> jax.Array:
  """Bucket ids (int32, same shape) of key minus query positions, as
  Hugging Face's T5Attention._relative_position_bucket computes them."""
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # float32 log as in PyTorch; distance 0 is small (log(0) is not used).
  safe = jnp.maximum(distance, 1).astype(jnp.float32)
  if_large = max_exact + (
      jnp.log(safe / max_exact) / math.log(max_distance / max_exact)
      * (num_buckets - max_exact)).astype(jnp.int32)
  if_large = jnp.minimum(if_large, num_buckets - 1)
  return buckets + jnp.where(is_small, distance, if_large)


class RelativePositionTable(nn.Module):
  """The stack's learned (buckets x heads) table (param `embedding`)."""
  config: TransformerConfig
  num_heads: int

  @nn.compact
  def __call__(self) -> jax.Array:
    cfg = self.config
    return self.param("embedding", nn.initializers.normal(stddev=1.0),
                      (cfg.relative_position_buckets, self.num_heads),
                      cfg.param_dtype)


def relative_position_bias(table_NxH: jax.Array, query_pos_T: jax.Array,
                           key_pos_S: jax.Array, *, bidirectional: bool,
                           max_distance: int) -> jax.Array:
  """1xHxTxS float32 bias for the given query and key positions."""
  buckets_TxS = relative_position_bucket(
      key_pos_S[None, :] - query_pos_T[:, None], bidirectional=bidirectional,
      num_buckets=table_NxH.shape[0], max_distance=max_distance)
  bias_TxSxH = jnp.take(table_NxH.astype(jnp.float32), buckets_TxS, axis=0)
  return jnp.transpose(bias_TxSxH, (2, 0, 1))[None]
