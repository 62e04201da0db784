"""Inverted dropout whose mask costs half the random bits of nn.Dropout.

flax.linen.Dropout draws one float32 uniform (one 32-bit random word) per
element. Here each 32-bit word gives two 16-bit numbers, compared with a
16-bit threshold: the keep probability is quantised to 1/65536 (rate 0.1 drops
with probability 0.100006) and the output is scaled by the exact keep
probability, so the expectation is unchanged. On a 2-core CPU random bits are
a large share of a training step (python -m encdec_jax.bench), so this halves
that share; the interface is nn.Dropout's.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Dropout(nn.Module):
  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    threshold = int(round(self.rate * 65536))
    keep_prob = 1.0 - threshold / 65536
    size = int(np.prod(x.shape))
    words = jax.random.bits(self.make_rng(self.rng_collection),
                            ((size + 1) // 2,), jnp.uint32)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)
    keep = (halves[:size] >= threshold).reshape(x.shape)
    return jnp.where(keep, x / jnp.asarray(keep_prob, x.dtype),
                     jnp.zeros_like(x))
