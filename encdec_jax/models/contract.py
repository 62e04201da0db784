"""The contract every model of encdec_jax honours, and the helpers built on it.

A model (Transformer or RNN encoder–decoder, decoder-only LM, classifier,
embedder, autoencoder, captioner) exposes

  encoded = model.apply({"params": p}, inputs, method="encode")   # Encoded
  logits  = model.apply({"params": p}, targets_in_BxT, encoded,
                        method="decode")                 # teacher-forced
  logits, vars = model.apply({"params": p, "cache": cache}, token_Bx1,
                             encoded, decode=True, mutable=["cache"],
                             method="decode")            # one cached step

and params split at the top into {"encoder": ..., "decoder": ...}. Decoding
(encdec_jax.decoding) sees a model only through `make_tokens_to_logits`.
"""
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.nn.transformer import PAD_ID


@flax.struct.dataclass
class Encoded:
  """Encoder output; a pytree, so it passes through jit and while_loop."""
  hidden_BxSxD: jax.Array
  mask_BxS: jax.Array  # bool, True at real (non-pad) source tokens.
  # The source token ids, for a decoder that copies them (config.copy,
  # nn/copy_head.py); None for every other model.
  ids_BxS: jax.Array | None = None


def shift_right(targets_BxT: jax.Array, start_id: int = PAD_ID) -> jax.Array:
  """Decoder inputs: the decoder start token then targets[:, :-1], as
  Hugging Face's shift_tokens_right (start_id: ours and T5's 0, BART's 2
  (EOS), Marian's pad; special_ids gives a model's)."""
  start_Bx1 = jnp.full_like(targets_BxT[:, :1], start_id)
  return jnp.concatenate([start_Bx1, targets_BxT[:, :-1]], axis=1)


def special_ids(model) -> tuple[int, int]:
  """(pad id, decoder start id) of a model: its config's (TransformerConfig
  .pad_id / .start_id: an imported BART's or Marian's own), else ours (0
  and 0: RNNs and every model without them)."""
  config = getattr(model, "config", None)
  pad_id = getattr(config, "pad_id", PAD_ID)
  return pad_id, getattr(config, "start_id", pad_id)


def _init_decode_variables(model: nn.Module, inputs_BxS, targets_BxT):
  return model.decode(targets_BxT, model.encode(inputs_BxS), decode=True)


def init_cache(model: nn.Module, batch_size: int, max_decode_len: int,
               source_len: int | tuple[int, ...],
               source_dtype: Any = jnp.int32) -> Any:
  """Zero `cache` collection for decoding up to max_decode_len steps.

  Works for any model with the encode/decode contract (Transformer, RNN,
  decoder-only LM, image captioner): shapes come from jax.eval_shape of a
  decode=True init, so nothing is computed and no params are needed; safe to
  call inside jit. `source_len` is the length of token-id inputs, or the
  shape of one input after the batch axis (an image's (H, W, C), with
  source_dtype float32).
  """
  shape = (source_len,) if isinstance(source_len, int) else tuple(source_len)
  inputs_BxS = jnp.ones((batch_size,) + shape, source_dtype)
  targets_BxT = jnp.ones((batch_size, max_decode_len), jnp.int32)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), inputs_BxS, targets_BxT,
                         method=_init_decode_variables))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


def cache_batch_axes(model: nn.Module, max_decode_len: int,
                     source_len: int | tuple[int, ...],
                     source_dtype: Any = jnp.int32) -> Any:
  """The axis of each init_cache leaf that holds the batch rows; None for a
  leaf shared by all rows.

  Unscanned Transformer keys/values are BxLxHxK (axis 0); with scan_layers
  every leaf gains a leading layer axis, so they are NxBxLxHxK (axis 1) and
  the per-layer cache_index/is_filled (N,) are shared. Found by structure,
  not by size: the one axis that differs between the caches of 1 and 2 rows
  (shapes only, nothing computed). Beam search reorders rows along it.
  """
  one, two = (jax.eval_shape(lambda n=n: init_cache(
      model, n, max_decode_len, source_len, source_dtype)) for n in (1, 2))

  def batch_axis(path, a, b):
    differ = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
    if len(differ) > 1:
      raise ValueError(f"Cache leaf {jax.tree_util.keystr(path)} grows along "
                       f"axes {differ} with the batch; a cache must keep its "
                       "rows along one axis.")
    return differ[0] if differ else None

  return jax.tree_util.tree_map_with_path(batch_axis, one, two)


def make_tokens_to_logits(
    model: nn.Module, params: Any, encoded: Any
) -> Callable[[jax.Array, Any], tuple[jax.Array, Any]]:
  """(tokens_Bx1, cache) -> (logits_BxV, new_cache): one cached decoder step
  of any model with the encode/decode contract."""

  def tokens_to_logits(tokens_Bx1, cache):
    logits_Bx1xV, variables = model.apply(
        {"params": params, "cache": cache}, tokens_Bx1, encoded, decode=True,
        mutable=["cache"], method="decode")
    return logits_Bx1xV[:, 0], variables["cache"]

  return tokens_to_logits
