"""Model-agnostic autoregressive decoding with a cache, jittable (while_loop).

A model is seen only through
  tokens_to_logits(tokens_Bx1, cache) -> (logits_BxV, new_cache)
(e.g. encdec_jax.models.encoder_decoder.make_tokens_to_logits), so any model
with a per-row cache (leading batch axis; 0-d leaves shared) can use:

  greedy_decode   argmax                                     -> tokens_BxT
  sample_decode   temperature / top-k / top-p sampling       -> tokens_BxT
  beam_search     n-best with a GNMT length penalty          -> tokens_BxKxT,
                                                                scores_BxK
  speculative_decode  (speculative.py) a draft proposes k tokens, the model
                  checks them in one pass: greedy's tokens (or the sampling
                  distribution), fewer sequential full-model steps
  force_prefix    wraps tokens_to_logits so that any of them continues a
                  prompt (cache: prefix_cache(cache)); outputs start with it

Beam search runs the model on batch*beam rows: expand the cache and whatever
the model closes over per row with expand_to_beams, e.g.

  encoded = expand_to_beams(model.apply(..., method=EncoderDecoder.encode), K)
  cache = init_cache(model, batch_size * K, max_len, source_len)
  tokens_BxKxT, scores_BxK = beam_search(
      make_tokens_to_logits(model, params, encoded), cache, batch_size, K,
      max_len, eos_id, batch_axes=cache_batch_axes(model, max_len, source_len))

cache_batch_axes (encdec_jax.models.contract) says along which axis each cache
leaf holds its rows: axis 0 by default, but a scan_layers model's cache is
layers first (NxBx...), and reordering its axis 0 would shuffle layers.
"""
from encdec_jax.decoding.beam_search import (beam_search, expand_to_beams,
                                             gather_beams, gnmt_length_penalty)
from encdec_jax.decoding.loop import (PAD_ID, TokensToLogits, decode_loop,
                                      greedy_decode)
from encdec_jax.decoding.prefix import force_prefix, prefix_cache
from encdec_jax.decoding.sampling import (check_sampling_args, filter_logits,
                                          sample_decode)
from encdec_jax.decoding.speculative import (CachedStep, make_cached_step,
                                             self_draft, speculative_decode)

__all__ = [
    "PAD_ID", "TokensToLogits", "beam_search", "check_sampling_args",
    "decode_loop", "expand_to_beams", "filter_logits", "force_prefix",
    "gather_beams", "gnmt_length_penalty", "greedy_decode", "prefix_cache",
    "sample_decode", "CachedStep", "make_cached_step", "self_draft",
    "speculative_decode",
]
