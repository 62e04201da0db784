"""Sequence pooling BxSxD -> BxD: mean, first token, or learned attention.

Shared by the classifier and the sentence embedder. "attention" pooling
(Lin et al. 2017, one head) scores each real token with a learned vector and
takes the softmax-weighted sum, so the model chooses which tokens matter.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.models.contract import Encoded

POOLINGS = ("mean", "first", "attention")


def check_pooling(pooling: str) -> None:
  if pooling not in POOLINGS:
    raise ValueError(f"pooling={pooling!r} is not known; use one of "
                     f"{POOLINGS}.")


def mean_pool(encoded: Encoded) -> jax.Array:
  """The mean of the hidden states over real (non-pad) tokens."""
  mask_BxSx1 = encoded.mask_BxS[..., None].astype(encoded.hidden_BxSxD.dtype)
  total_BxD = jnp.sum(encoded.hidden_BxSxD * mask_BxSx1, axis=1)
  return total_BxD / jnp.maximum(jnp.sum(mask_BxSx1, axis=1), 1.0)


class AttentionPool(nn.Module):
  """softmax_s(w . h_s) weighted sum over real tokens; params: score."""
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, encoded: Encoded) -> jax.Array:
    scores_BxS = nn.Dense(1, dtype=self.dtype, param_dtype=self.param_dtype,
                          name="score")(encoded.hidden_BxSxD)[..., 0]
    scores_BxS = jnp.where(encoded.mask_BxS, scores_BxS.astype(jnp.float32),
                           jnp.finfo(jnp.float32).min)
    weights_BxS = jax.nn.softmax(scores_BxS, axis=-1)
    self.sow("intermediates", "pooling_weights", weights_BxS)
    return jnp.einsum("bs,bsd->bd", weights_BxS.astype(self.dtype),
                      encoded.hidden_BxSxD)


def make_pooler(pooling: str, dtype, param_dtype) -> AttentionPool | None:
  """The pooling module (attention pooling has params), or None."""
  check_pooling(pooling)
  if pooling == "attention":
    return AttentionPool(dtype=dtype, param_dtype=param_dtype)
  return None


def pool(encoded: Encoded, pooling: str,
         pooler: AttentionPool | None = None) -> jax.Array:
  """BxSxD -> BxD with `pooling` (the attention pooler for "attention")."""
  if pooling == "first":
    return encoded.hidden_BxSxD[:, 0]
  if pooling == "attention":
    return pooler(encoded)
  return mean_pool(encoded)


def l2_normalize(x_BxD: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / ||x|| in float32 (as sentence-transformers' Normalize)."""
  x_BxD = x_BxD.astype(jnp.float32)
  norm_Bx1 = jnp.linalg.norm(x_BxD, axis=-1, keepdims=True)
  return x_BxD / jnp.maximum(norm_Bx1, eps)
