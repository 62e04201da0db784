"""Decoding as a config asks for it: config.decode -> a jitted decode function.

  decode_fn = make_decode_fn(model, config, eos_id)
  tokens_BxT = decode_fn(params, inputs_BxS, rng)

`config.decode.algorithm` is greedy (default), beam (beam_size,
length_penalty) or sample (temperature, top_k, top_p, seed); the algorithms
themselves are in this package, and see a model only through the contract of
encdec_jax.models.contract.

config.decode also takes Hugging Face generate's keys, with HF's meanings
(generation_keys.SUPPORTED): num_beams / do_sample (which, when given, pick
the algorithm as generate does), max_length / max_new_tokens (the steps;
HF's max_length counts the decoder start token; default
config.max_decode_length), min_length / min_new_tokens, early_stopping and
beam_scoring="hf" (HF's length ** length_penalty scores and stopping; "gnmt",
the default, is ours), and the token rules of decoding.rules
(repetition_penalty, no_repeat_ngram_size, bad_words_ids,
forced_bos_token_id, forced_eos_token_id, renormalize_logits). An imported
model's own generation_config.json fills them in (starts/hf_import.py).
"""

import jax
import jax.numpy as jnp

from encdec_jax.decoding import generation_keys
from encdec_jax.decoding.beam_search import (beam_search, cache_length_axes,
                                             check_beam_args,
                                             expand_to_beams)
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.decoding.loop import PAD_ID, greedy_decode
from encdec_jax.decoding.prefix import force_prefix, prefix_cache
from encdec_jax.decoding.rules import GenerationRules
from encdec_jax.decoding.sampling import check_sampling_args, sample_decode
from encdec_jax.decoding import speculative as speculative_lib
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                       make_tokens_to_logits, special_ids)

EOS_ID = 1  # encdec_jax.data.tokenizer.EOS_ID (SentencePiece, bytes, digits)

ALGORITHMS = ("greedy", "beam", "sample", "speculative")
# speculative: k draft tokens a round from `draft` ("self": the first half of
# the decoder's layers, "self:N": the first N; "model": the draft passed to
# make_decode_fn), greedy, or with sample=True sampling (temperature, top_k,
# top_p) by the rejection rule; see decoding/speculative.py.
DEFAULT_DECODE = dict(algorithm="greedy", beam_size=4, length_penalty=0.6,
                      temperature=1.0, top_k=0, top_p=1.0, seed=0,
                      k=4, draft="self", sample=False)
# Hugging Face generate's keys (generation_keys.SUPPORTED) at their no-op
# values, and what decides whether an imported model's own settings apply:
# model_generation (its generation_config.json; False: ignore it) and task
# (an entry of its config.json task_specific_params, e.g. "summarization";
# source_prefix records that entry's text prefix for the inputs).
DEFAULT_GENERATION = dict(
    beam_scoring="gnmt", early_stopping=False, num_beams=None,
    do_sample=None, max_length=None, max_new_tokens=None, min_length=None,
    min_new_tokens=None, repetition_penalty=1.0, no_repeat_ngram_size=0,
    bad_words_ids=(), forced_bos_token_id=None, forced_eos_token_id=None,
    renormalize_logits=False, model_generation=True, task="",
    source_prefix="")
RULE_KEYS = ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
             "forced_bos_token_id", "forced_eos_token_id",
             "renormalize_logits")


def _check_keys(decode: dict) -> None:
  known = set(DEFAULT_DECODE) | set(DEFAULT_GENERATION)
  for key, value in decode.items():
    if key in known:
      continue
    if key in generation_keys.NOT_IMPLEMENTED:
      problem = generation_keys.refusal(key, value, "config.decode")
      if problem is None:
        continue  # HF's no-op value
      raise ValueError(problem)
    raise ValueError(f"config.decode.{key} is not a decode setting; known: "
                     f"{sorted(known)}.")


def _algorithm(settings: dict) -> None:
  """num_beams / do_sample (HF's), when given, choose the algorithm."""
  if settings["num_beams"] is None and settings["do_sample"] is None:
    return
  beams = 1 if settings["num_beams"] is None else int(settings["num_beams"])
  if beams < 1:
    raise ValueError(f"config.decode.num_beams must be >= 1, got {beams}.")
  if settings["do_sample"] and beams > 1:
    raise ValueError("config.decode.do_sample with num_beams > 1 (beam "
                     "sampling) is not supported; use one of them.")
  algorithm = ("sample" if settings["do_sample"] else
               "beam" if beams > 1 else "greedy")
  if settings["algorithm"] not in (DEFAULT_DECODE["algorithm"], algorithm):
    raise ValueError(
        f"config.decode.algorithm={settings['algorithm']!r} disagrees with "
        f"num_beams={settings['num_beams']} / do_sample="
        f"{settings['do_sample']} ({algorithm}); set one of them.")
  settings["algorithm"] = algorithm
  if algorithm == "beam":
    settings["beam_size"] = beams


def _lengths(settings: dict, max_decode_length) -> None:
  """max_new_tokens / min_new_tokens resolved from HF's keys (max_length and
  min_length count the decoder start token)."""
  if settings["max_new_tokens"] is None:
    settings["max_new_tokens"] = (
        settings["max_length"] - 1 if settings["max_length"] is not None
        else max_decode_length)
  if settings["max_new_tokens"] is None or settings["max_new_tokens"] < 1:
    raise ValueError("config.decode: the decoding length (max_new_tokens="
                     f"{settings['max_new_tokens']}, max_length="
                     f"{settings['max_length']}, config.max_decode_length="
                     f"{max_decode_length}) must allow at least one token.")
  if settings["min_new_tokens"] is None:
    settings["min_new_tokens"] = max(0, (settings["min_length"] or 0) - 1)


def decode_settings(config) -> dict:
  """config.decode (algorithm and its parameters) over the defaults, with
  Hugging Face's keys resolved: max_new_tokens and min_new_tokens are
  numbers of decoded tokens, bad_words_ids a tuple of tuples."""
  decode = dict(config.get("decode", {}))
  _check_keys(decode)
  settings = dict(DEFAULT_DECODE, **DEFAULT_GENERATION)
  settings.update(decode)
  _algorithm(settings)
  _lengths(settings, config.get("max_decode_length"))
  settings["bad_words_ids"] = tuple(
      tuple(int(t) for t in word) for word in settings["bad_words_ids"] or ())
  if settings["algorithm"] not in ALGORITHMS:
    raise ValueError(f"config.decode.algorithm={settings['algorithm']!r} is "
                     f"not known; use one of {ALGORITHMS}.")
  if settings["algorithm"] == "beam" and settings["beam_size"] < 1:
    raise ValueError("config.decode.beam_size must be >= 1, got "
                     f"{settings['beam_size']}.")
  try:
    check_beam_args(settings["beam_scoring"], settings["early_stopping"])
  except ValueError as e:
    raise ValueError(f"config.decode: {e}") from None
  try:
    generation_rules(settings, EOS_ID)
  except ValueError as e:
    raise ValueError(f"config.decode: {e}") from None
  if settings["algorithm"] == "sample" or (
      settings["algorithm"] == "speculative" and settings["sample"]):
    check_sampling_args(settings["temperature"], settings["top_k"],
                                 settings["top_p"])
  if settings["algorithm"] == "speculative":
    if generation_rules(settings, EOS_ID) is not None:
      raise ValueError("config.decode.algorithm=speculative does not apply "
                       f"the token rules ({', '.join(RULE_KEYS)}, min "
                       "length); use greedy, beam or sample.")
    if settings["k"] < 1:
      raise ValueError(f"config.decode.k must be >= 1, got {settings['k']}.")
    draft = str(settings["draft"])
    if not (draft in ("self", "model") or (
        draft.startswith("self:") and draft[5:].isdigit())):
      raise ValueError(f"config.decode.draft={draft!r}: use 'self', "
                       "'self:N' (the first N decoder layers) or 'model'.")
  return settings


def generation_rules(settings: dict, eos_id: int, start_id: int = PAD_ID
                     ) -> GenerationRules | None:
  """The token rules decode_settings asks for, or None when none is on."""
  rules = GenerationRules(
      eos_id=eos_id, start_id=start_id,
      max_steps=settings["max_new_tokens"],
      min_new_tokens=int(settings["min_new_tokens"]),
      repetition_penalty=float(settings["repetition_penalty"]),
      no_repeat_ngram_size=int(settings["no_repeat_ngram_size"]),
      bad_words_ids=settings["bad_words_ids"],
      forced_bos_token_id=settings["forced_bos_token_id"],
      forced_eos_token_id=settings["forced_eos_token_id"],
      renormalize_logits=bool(settings["renormalize_logits"]))
  return rules if rules.active else None


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
  each stopping at `eos_id` (the tokenizer's: [SEP] for WordPiece) and
  starting from the model's decoder start id (contract.special_ids: 0, or
  an imported BART's / Marian's own). Positions after EOS hold PAD_ID (0),
  which every tokenizer's decode never reaches: it stops at EOS.

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
  max_len = settings["max_new_tokens"]  # config.max_decode_length by default
  start_id = special_ids(model)[1]
  rules = generation_rules(settings, eos_id, start_id)

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
      # Each step reorders only the self-attention positions written so far.
      length_axes = cache_length_axes(
          lambda n: init_cache(model, batch_size * beams, n, source_len,
                               source_dtype), max_len)
      if prompted:  # prefix_cache's step is shared by all rows
        batch_axes = {"model": batch_axes, "step": None}
        length_axes = None
      tokens_BxKxT, _ = beam_search(
          tokens_to_logits, cache, batch_size, beams, max_len, eos_id,
          length_penalty=settings["length_penalty"], start_id=start_id,
          batch_axes=batch_axes, length_axes=length_axes,
          scoring=settings["beam_scoring"],
          early_stopping=settings["early_stopping"], rules=rules)
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
          top_p=settings["top_p"], start_id=start_id)
      return tokens_BxT
    if settings["algorithm"] == "sample":
      return sample_decode(
          tokens_to_logits, cache, batch_size, max_len, eos_id, rng,
          temperature=settings["temperature"], top_k=settings["top_k"],
          top_p=settings["top_p"], start_id=start_id, rules=rules)
    return greedy_decode(tokens_to_logits, cache, batch_size, max_len,
                         eos_id, start_id=start_id, rules=rules)

  return decode


def describe_decoding(config) -> str:
  s = decode_settings(config)
  text = _describe_algorithm(s)
  extras = [f"{key} {s[key]}" for key in RULE_KEYS
            if s[key] != DEFAULT_GENERATION[key]]
  if s["min_new_tokens"]:
    extras.insert(0, f"min {s['min_new_tokens']} tokens")
  if s["max_new_tokens"] != config.get("max_decode_length"):
    extras.insert(0, f"max {s['max_new_tokens']} tokens")
  if s["source_prefix"]:
    extras.append(f"inputs read with the prefix {s['source_prefix']!r}")
  return text + (f"; {', '.join(extras)}" if extras else "")


def _describe_algorithm(s: dict) -> str:
  if s["algorithm"] == "beam":
    if s["beam_scoring"] == "hf":
      return (f"beam {s['beam_size']}, HF length penalty "
              f"{s['length_penalty']}, early_stopping {s['early_stopping']}")
    return f"beam {s['beam_size']}, length penalty {s['length_penalty']}"
  if s["algorithm"] == "sample":
    return (f"sampling (temperature {s['temperature']}, top-k {s['top_k']}, "
            f"top-p {s['top_p']}, seed {s['seed']})")
  if s["algorithm"] == "speculative":
    return (f"speculative (draft {s['draft']}, k {s['k']}"
            + (", sampling" if s["sample"] else ", = greedy") + ")")
  return "greedy"
