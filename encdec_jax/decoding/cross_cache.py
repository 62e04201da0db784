"""Cross-attention keys/values computed once, before the decoding loop, and
kept at one row per source (never copied per beam nor gathered).

  cache, batch_axes = precompute_cross_attention(
      model, params, encoded_BxS, cache_BKx, batch_axes)

A Transformer decoder's CrossAttention caches the projected encoder output
(cached_key/cached_value, computed at the first step behind an is_filled
flag). Here one decoder step on `encoded` (unexpanded, B rows) fills them;
every `cross_attention` cache entry of `cache` (B*K rows for beam search,
or B) is replaced by those B-row projections without is_filled, which
CrossAttention reads as "precomputed": no flag and no conditional inside the
loop, and beam search (whose batch_axes mark them None, shared) never
gathers them. Caches with no cross_attention entry (decoder-only LM, RNN)
are returned as they are.
"""
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

_CROSS = "cross_attention"
_ENTRY = {"cached_key", "cached_value", "is_filled"}


def _has_cross(tree) -> bool:
  if not isinstance(tree, Mapping):
    return False
  return any((name == _CROSS and isinstance(sub, Mapping)
              and set(sub) == _ENTRY) or _has_cross(sub)
             for name, sub in tree.items())


def _replace(tree, filled, axes):
  """(new cache, new axes): cross_attention entries from `filled`."""
  out, out_axes = {}, {}
  for name, sub in tree.items():
    sub_axes = axes[name] if axes is not None else None
    if name == _CROSS and isinstance(sub, Mapping) and set(sub) == _ENTRY:
      out[name] = {"cached_key": filled[name]["cached_key"],
                   "cached_value": filled[name]["cached_value"]}
      out_axes[name] = {"cached_key": None, "cached_value": None}
    elif isinstance(sub, Mapping):
      out[name], out_axes[name] = _replace(sub, filled[name], sub_axes)
    else:
      out[name], out_axes[name] = sub, sub_axes
  return out, out_axes


def precompute_cross_attention(model, params, encoded, cache: Any,
                               batch_axes: Any = None):
  """-> (cache, batch_axes) with the cross-attention keys/values projected
  from `encoded` (B rows) once. cache holds B rows (batch_axes None), or
  B*K for beam search with batch_axes as cache_batch_axes gives them; the
  returned batch_axes mark the precomputed entries None (shared by a
  source's rows). Call inside the jitted decode function, before the loop.
  """
  if not _has_cross(cache):
    return cache, batch_axes
  rows = jax.tree.leaves(encoded)[0].shape[0]
  if batch_axes is None:  # the cache has the encoded rows (no beams)
    small = cache
  else:  # B*K rows: a B-row cache (zeros: nothing decoded yet) for the step
    small = jax.tree.map(
        lambda axis, x: x if axis is None else jax.lax.slice_in_dim(
            x, 0, rows, axis=axis),
        batch_axes, cache, is_leaf=lambda a: a is None)
  _, variables = model.apply(
      {"params": params, "cache": small}, jnp.zeros((rows, 1), jnp.int32),
      encoded, decode=True, mutable=["cache"], method="decode")
  new_cache, new_axes = _replace(cache, variables["cache"], batch_axes)
  return new_cache, (None if batch_axes is None else new_axes)
