"""Region vectors of an image grid as a decoder's memory.

A conv encoder's annotation vectors (Xu et al. 2015) say *what* is in each
region but not *where* the region is: convolutions are translation
equivariant. A caption that reads the image left to right needs the where,
so each region gets a learned row and a learned column embedding, added after
a projection to the decoder's width:

  memory_BxNxD = Dense(regions_BxNxC) + row_embed[r(n)] + col_embed[c(n)]

with n = r * grid_w + c (row-major, as reshape of BxHxWxC gives). Row and
column tables (grid_h + grid_w vectors, not grid_h * grid_w) share what is
learned about "further right" across heights, which helps with little data.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class RegionEmbedding(nn.Module):
  """BxNxC regions (N = grid_h * grid_w, row-major) -> BxNxD memory."""
  features: int  # D
  grid_shape: tuple[int, int]  # (grid_h, grid_w)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, regions_BxNxC) -> jax.Array:
    grid_h, grid_w = self.grid_shape
    if regions_BxNxC.shape[1] != grid_h * grid_w:
      raise ValueError(f"got {regions_BxNxC.shape[1]} regions, expected a "
                       f"{grid_h}x{grid_w} grid; the image size differs from "
                       "the one the model was built for.")
    init = nn.initializers.normal(stddev=0.02)
    rows_GhxD = self.param("row_embed", init, (grid_h, self.features),
                           self.param_dtype)
    cols_GwxD = self.param("col_embed", init, (grid_w, self.features),
                           self.param_dtype)
    position_NxD = (rows_GhxD[:, None, :] + cols_GwxD[None, :, :]).reshape(
        grid_h * grid_w, self.features)
    x_BxNxD = nn.Dense(self.features, dtype=self.dtype,
                       param_dtype=self.param_dtype, name="project")(
                           regions_BxNxC)
    return x_BxNxD + position_NxD.astype(self.dtype)[None]
