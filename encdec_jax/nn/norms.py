"""Normalisation layers: LayerNorm (Flax's) or RMSNorm (T5), by config.norm."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from encdec_jax.nn.config import TransformerConfig


class RMSNorm(nn.Module):
  """x / sqrt(mean(x^2) + eps) * scale: no mean subtraction, no bias (T5's
  T5LayerNorm). Statistics and the product in float32, the result in
  `dtype`. Param: scale (D,), initialised to ones."""
  epsilon: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    scale_D = self.param("scale", nn.initializers.ones, (x_BxLxD.shape[-1],),
                         self.param_dtype)
    x32 = x_BxLxD.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * lax.rsqrt(mean_square + self.epsilon)
    return (y * scale_D.astype(jnp.float32)).astype(self.dtype)


def make_norm(cfg: TransformerConfig) -> nn.Module:
  """The norm of config.norm with its epsilon and dtypes."""
  if cfg.norm == "rmsnorm":
    return RMSNorm(epsilon=cfg.layernorm_epsilon, dtype=cfg.dtype,
                   param_dtype=cfg.param_dtype)
  return nn.LayerNorm(epsilon=cfg.layernorm_epsilon, dtype=cfg.dtype,
                      param_dtype=cfg.param_dtype)
