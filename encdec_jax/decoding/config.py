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
from encdec_jax.decoding.loop import greedy_decode
from encdec_jax.decoding.prefix import force_prefix, prefix_cache
from encdec_jax.decoding.sampling import check_sampling_args, sample_decode
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                       make_tokens_to_logits)

EOS_ID = 1  # encdec_jax.data.tokenizer.EOS_ID (SentencePiece, bytes, digits)

ALGORITHMS = ("greedy", "beam", "sample")
DEFAULT_DECODE = dict(algorithm="greedy", beam_size=4, length_penalty=0.6,
                      temperature=1.0, top_k=0, top_p=1.0, seed=0)


def decode_settings(config) -> dict:
  """config.decode (algorithm and its parameters) over the defaults."""
  settings = dict(DEFAULT_DECODE, **dict(config.get("decode", {})))
  if settings["algorithm"] not in ALGORITHMS:
    raise ValueError(f"config.decode.algorithm={settings['algorithm']!r} is "
                     f"not known; use one of {ALGORITHMS}.")
  if settings["algorithm"] == "beam" and settings["beam_size"] < 1:
    raise ValueError("config.decode.beam_size must be >= 1, got "
                     f"{settings['beam_size']}.")
  if settings["algorithm"] == "sample":
    check_sampling_args(settings["temperature"], settings["top_k"],
                                 settings["top_p"])
  return settings


def make_decode_fn(model, config, eos_id: int = EOS_ID, *,
                   prompted: bool = False):
  """jit(params, inputs_BxS, rng) -> tokens_BxT with the cache, by
  config.decode: greedy, beam search (its best hypothesis) or sampling,
  each stopping at `eos_id` (the tokenizer's: [SEP] for WordPiece).

  Any model with the encode/decode contract (Transformer, RNN). With
  `prompted` (a decoder-only LM) the inputs are prompts: their tokens (EOS
  dropped) are forced first, and the output starts with them.
  """
  settings = decode_settings(config)
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
      cache = with_prompt_cache(
          init_cache(model, batch_size * beams, max_len, source_len,
                     source_dtype))
      tokens_to_logits = with_prompt(make_tokens_to_logits(
          model, params, expand_to_beams(encoded, beams)),
                                     inputs_BxS, beams)
      # Rows along the axis the model's cache keeps them (scan_layers: 1).
      batch_axes = cache_batch_axes(model, max_len, source_len, source_dtype)
      if prompted:  # prefix_cache's step is shared by all rows
        batch_axes = {"model": batch_axes, "step": None}
      tokens_BxKxT, _ = beam_search(
          tokens_to_logits, cache, batch_size, beams, max_len, eos_id,
          length_penalty=settings["length_penalty"], batch_axes=batch_axes)
      return tokens_BxKxT[:, 0]
    cache = with_prompt_cache(
        init_cache(model, batch_size, max_len, source_len, source_dtype))
    tokens_to_logits = with_prompt(
        make_tokens_to_logits(model, params, encoded), inputs_BxS)
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
  return "greedy"
