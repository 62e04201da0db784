"""Decoding as a config asks for it: config.decode -> a jitted decode function.

  decode_fn = make_decode_fn(model, config, eos_id)
  tokens_BxT = decode_fn(params, inputs_BxS, rng)

`config.decode.algorithm` is greedy (default), beam (beam_size,
length_penalty) or sample (temperature, top_k, top_p, seed); the algorithms
themselves are in this package, and see a model only through the contract of
encdec_jax.models.contract.
"""

import jax
import jax.numpy as jnp

from encdec_jax.decoding.beam_search import beam_search, expand_to_beams
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.decoding.loop import greedy_decode
from encdec_jax.decoding.prefix import force_prefix, prefix_cache
from encdec_jax.decoding.sampling import check_sampling_args, sample_decode
from encdec_jax.decoding import speculative as speculative_lib
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                       make_tokens_to_logits)

EOS_ID = 1  # encdec_jax.data.tokenizer.EOS_ID (SentencePiece, bytes, digits)

ALGORITHMS = ("greedy", "beam", "sample", "speculative")
# speculative: k draft tokens a round from `draft` ("self": the first half of
# the decoder's layers, "self:N": the first N; "model": the draft passed to
# make_decode_fn), greedy, or with sample=True sampling (temperature, top_k,
# top_p) by the rejection rule; see decoding/speculative.py.
DEFAULT_DECODE = dict(algorithm="greedy", beam_size=4, length_penalty=0.6,
                      temperature=1.0, top_k=0, top_p=1.0, seed=0,
                      k=4, draft="self", sample=False)


def decode_settings(config) -> dict:
  """config.decode (algorithm and its parameters) over the defaults."""
  settings = dict(DEFAULT_DECODE, **dict(config.get("decode", {})))
  if settings["algorithm"] not in ALGORITHMS:
    raise ValueError(f"config.decode.algorithm={settings['algorithm']!r} is "
                     f"not known; use one of {ALGORITHMS}.")
  if settings["algorithm"] == "beam" and settings["beam_size"] < 1:
    raise ValueError("config.decode.beam_size must be >= 1, got "
                     f"{settings['beam_size']}.")
  if settings["algorithm"] == "sample" or (
      settings["algorithm"] == "speculative" and settings["sample"]):
    check_sampling_args(settings["temperature"], settings["top_k"],
                                 settings["top_p"])
  if settings["algorithm"] == "speculative":
    if settings["k"] < 1:
      raise ValueError(f"config.decode.k must be >= 1, got {settings['k']}.")
    draft = str(settings["draft"])
    if not (draft in ("self", "model") or (
        draft.startswith("self:") and draft[5:].isdigit())):
      raise ValueError(f"config.decode.draft={draft!r}: use 'self', "
                       "'self:N' (the first N decoder layers) or 'model'.")
  return settings


def _speculative_draft(model, params, settings, draft):
  """(draft model, draft params) for config.decode.draft."""
  name = str(settings["draft"])
  if name == "model":
    if draft is None:
      raise ValueError("config.decode.draft='model' needs make_decode_fn("
                       "..., draft=(draft_model, draft_params)).")
    return draft
  layers = (int(name[5:]) if name.startswith("self:") else
            max(1, getattr(model.config, "num_decoder_layers", 2) // 2))
  return speculative_lib.self_draft(model, params, layers)


def make_decode_fn(model, config, eos_id: int = EOS_ID, *,
                   prompted: bool = False, draft=None):
  """jit(params, inputs_BxS, rng) -> tokens_BxT with the cache, by
  config.decode: greedy, beam search (its best hypothesis) or sampling,
  each stopping at `eos_id` (the tokenizer's: [SEP] for WordPiece).

  Any model with the encode/decode contract (Transformer, RNN). With
  `prompted` (a decoder-only LM) the inputs are prompts: their tokens (EOS
  dropped) are forced first, and the output starts with them.
  `draft`: (draft model, draft params) for algorithm=speculative with
  draft='model' (a decoder that reads this model's Encoded).
  """
  settings = decode_settings(config)
  if settings["algorithm"] == "speculative" and prompted:
    raise ValueError("config.decode.algorithm=speculative does not take "
                     "prompts yet; use greedy or sample.")
  max_len = config.max_decode_length

  def with_prompt(tokens_to_logits, inputs_BxS, beams=1):
    if not prompted:
      return tokens_to_logits
    prompt_BxP = jnp.where(inputs_BxS == eos_id, 0, inputs_BxS)
    return force_prefix(
        tokens_to_logits, expand_to_beams(prompt_BxP, beams)
        if beams > 1 else prompt_BxP)

  def with_prompt_cache(cache):
    return prefix_cache(cache) if prompted else cache

  @jax.jit
  def decode(params, inputs_BxS, rng):
    # Token ids BxS, or images BxHxWxC for a captioner.
    batch_size, source_len = inputs_BxS.shape[0], inputs_BxS.shape[1:]
    source_dtype = inputs_BxS.dtype
    encoded = model.apply({"params": params}, inputs_BxS, method="encode")
    if settings["algorithm"] == "beam":
      beams = settings["beam_size"]
      # Rows along the axis the model's cache keeps them (scan_layers: 1).
      batch_axes = cache_batch_axes(model, max_len, source_len, source_dtype)
      # Cross-attention keys/values once, one row per source (not per beam).
      cache, batch_axes = precompute_cross_attention(
          model, params, encoded,
          init_cache(model, batch_size * beams, max_len, source_len,
                     source_dtype), batch_axes)
      cache = with_prompt_cache(cache)
      tokens_to_logits = with_prompt(make_tokens_to_logits(
          model, params, expand_to_beams(encoded, beams)),
                                     inputs_BxS, beams)
      if prompted:  # prefix_cache's step is shared by all rows
        batch_axes = {"model": batch_axes, "step": None}
      tokens_BxKxT, _ = beam_search(
          tokens_to_logits, cache, batch_size, beams, max_len, eos_id,
          length_penalty=settings["length_penalty"], batch_axes=batch_axes)
      return tokens_BxKxT[:, 0]
    cache, _ = precompute_cross_attention(
        model, params, encoded,
        init_cache(model, batch_size, max_len, source_len, source_dtype))
    cache = with_prompt_cache(cache)
    tokens_to_logits = with_prompt(
        make_tokens_to_logits(model, params, encoded), inputs_BxS)
    if settings["algorithm"] == "speculative":
      draft_model, draft_params = _speculative_draft(model, params, settings,
                                                     draft)
      draft_cache, _ = precompute_cross_attention(
          draft_model, draft_params, encoded,
          init_cache(draft_model, batch_size, max_len, source_len,
                     source_dtype))
      target = speculative_lib.make_cached_step(model, params, encoded, cache)
      drafter = speculative_lib.make_cached_step(draft_model, draft_params,
                                                 encoded, draft_cache)
      tokens_BxT, _ = speculative_lib.speculative_decode(
          target, cache, drafter, draft_cache, batch_size, max_len, eos_id,
          settings["k"], rng=rng, sample=bool(settings["sample"]),
          temperature=settings["temperature"], top_k=settings["top_k"],
          top_p=settings["top_p"])
      return tokens_BxT
    if settings["algorithm"] == "sample":
      return sample_decode(
          tokens_to_logits, cache, batch_size, max_len, eos_id, rng,
          temperature=settings["temperature"], top_k=settings["top_k"],
          top_p=settings["top_p"])
    return greedy_decode(tokens_to_logits, cache, batch_size,
                                  max_len, eos_id)

  return decode


def describe_decoding(config) -> str:
  s = decode_settings(config)
  if s["algorithm"] == "beam":
    return f"beam {s['beam_size']}, length penalty {s['length_penalty']}"
  if s["algorithm"] == "sample":
    return (f"sampling (temperature {s['temperature']}, top-k {s['top_k']}, "
            f"top-p {s['top_p']}, seed {s['seed']})")
  if s["algorithm"] == "speculative":
    return (f"speculative (draft {s['draft']}, k {s['k']}"
            + (", sampling" if s["sample"] else ", = greedy") + ")")
  return "greedy"
