"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering."""
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from encdec_jax.decoding.loop import (PAD_ID, TokensToLogits, argmax,
                                     decode_loop)


def check_sampling_args(temperature: float, top_k: int, top_p: float) -> None:
  """Raises ValueError for arguments outside their documented ranges."""
  if not temperature >= 0:
    raise ValueError(f"temperature={temperature} must be >= 0 (0 is greedy).")
  if not (isinstance(top_k, numbers.Integral) and top_k >= 0):
    raise ValueError(f"top_k={top_k} must be an int >= 0 (0 keeps the whole "
                     f"vocabulary).")
  if not 0 < top_p <= 1:
    raise ValueError(f"top_p={top_p} must be in (0, 1] (1 keeps the whole "
                     f"vocabulary).")


def filter_logits(logits_BxV: jax.Array, *, top_k: int = 0,
                  top_p: float = 1.0) -> jax.Array:
  """-inf at tokens outside the top_k and outside the top_p nucleus.

  top_k=0 and top_p=1 disable the filters. The nucleus is the smallest set of
  most probable tokens whose probability (after top-k) reaches top_p, so the
  most probable token is always kept. Tokens tied with the last kept one are
  kept too.
  """
  check_sampling_args(1.0, top_k, top_p)
  logits_BxV = logits_BxV.astype(jnp.float32)
  if top_k:
    k = min(top_k, logits_BxV.shape[-1])
    kth_Bx1 = lax.top_k(logits_BxV, k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV >= kth_Bx1, logits_BxV, -jnp.inf)
  if top_p < 1:
    sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)  # Most probable first.
    probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
    mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
    kept_BxV = mass_before_BxV < top_p
    threshold_Bx1 = jnp.min(jnp.where(kept_BxV, sorted_BxV, jnp.inf), axis=-1,
                            keepdims=True)
    logits_BxV = jnp.where(logits_BxV >= threshold_Bx1, logits_BxV, -jnp.inf)
  return logits_BxV


def sample_decode(tokens_to_logits: TokensToLogits, cache: Any,
                  batch_size: int, max_len: int, eos_id: int, rng: jax.Array,
                  *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, start_id: int = PAD_ID,
                  rules: Any = None) -> jax.Array:
  """Samples tokens_BxT (see decode_loop for the output format).

  Each step samples from softmax(logits / temperature) restricted by
  filter_logits(top_k, top_p). The key of step t is fold_in(rng, t), so a key
  gives the same tokens every run. temperature=0, top_k=1 or a tiny top_p are
  greedy decoding (up to ties). The arguments are Python numbers, static under
  jit. `rules` (decoding.rules) rewrite the logits before the temperature, as
  in transformers (processors, then temperature, top-k, top-p).
  """
  check_sampling_args(temperature, top_k, top_p)

  def choose_next(logits_BxV, step):
    if temperature == 0:
      return argmax(logits_BxV)
    logits_BxV = filter_logits(logits_BxV.astype(jnp.float32) / temperature,
                               top_k=top_k, top_p=top_p)
    return jax.random.categorical(jax.random.fold_in(rng, step), logits_BxV,
                                  axis=-1)

  return decode_loop(tokens_to_logits, cache, batch_size, max_len, eos_id,
                     choose_next, start_id=start_id, rules=rules)
