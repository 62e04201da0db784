"""Prompts: force the first tokens of every decoding method.

  tokens_to_logits = force_prefix(tokens_to_logits, prefix_BxP)
  tokens_BxT = greedy_decode(tokens_to_logits, prefix_cache(cache), ...)

At step t < P, wherever prefix_BxP[:, t] != PAD_ID, the wrapped model allows
only that token: its logit becomes 0 and all others -inf, so greedy, sampling
(any temperature / top-k / top-p) and beam search all pick it, and its
log_softmax is exactly 0: forcing adds nothing to a beam's log-probability.
-inf, not a large finite value, because beam search treats -inf as "no
hypothesis": a finite one would let impossible expansions of the prompt (e.g.
an early EOS) into the finished set. Rows with a shorter (right-padded) prompt
decode freely from their first pad on. Output buffers hold the prompt followed
by the continuation, and beam search's length penalty counts the prompt.

The step lives in the cache as a 0-d int32 leaf (shared by all rows, so
expand_to_beams and gather_beams leave it alone). For beam search the caller
expands prefix_BxP to B*K rows with expand_to_beams, as everything else the
model closes over per row.
"""
from typing import Any

import jax
import jax.numpy as jnp

from encdec_jax.decoding.loop import PAD_ID, TokensToLogits


def prefix_cache(cache: Any) -> dict:
  """The cache force_prefix's tokens_to_logits expects: the model's + a step."""
  return {"model": cache, "step": jnp.zeros((), jnp.int32)}


def force_prefix(tokens_to_logits: TokensToLogits,
                 prefix_BxP: jax.Array) -> TokensToLogits:
  """tokens_to_logits that emits prefix_BxP's non-pad tokens first.

  Its cache is prefix_cache(model cache); rows must match prefix_BxP's.
  """
  prefix_BxP = jnp.asarray(prefix_BxP, jnp.int32)
  prompt_len = prefix_BxP.shape[1]

  def forced_tokens_to_logits(tokens_Bx1, cache):
    if not (isinstance(cache, dict) and set(cache) == {"model", "step"}):
      raise TypeError("force_prefix's tokens_to_logits needs the cache "
                      "wrapped with a step: pass prefix_cache(cache) to the "
                      "decoding function.")
    logits_BxV, model_cache = tokens_to_logits(tokens_Bx1, cache["model"])
    step = cache["step"]
    logits_BxV = logits_BxV.astype(jnp.float32)
    if prompt_len:
      forced_B = jnp.take(prefix_BxP, jnp.minimum(step, prompt_len - 1),
                          axis=1)
      is_forced_Bx1 = ((step < prompt_len) & (forced_B != PAD_ID))[:, None]
      only_forced_BxV = jnp.where(
          jnp.arange(logits_BxV.shape[-1]) == forced_B[:, None], 0.0,
          -jnp.inf)
      logits_BxV = jnp.where(is_forced_Bx1, only_forced_BxV, logits_BxV)
    return logits_BxV, {"model": model_cache, "step": step + 1}

  return forced_tokens_to_logits
