"""The keys of Hugging Face's GenerationConfig, sorted by what we do with them.

config.decode takes the SUPPORTED ones (HF's names and meanings); a model's
generation_config.json is read through the same table
(encdec_jax/pretrained/generation.py). A NOT_IMPLEMENTED key is refused by
name unless it holds HF's no-op value; INFORMATIONAL keys do not change the
tokens generate() returns and are ignored; the token ids are checked against
the model by the reader.
"""

SUPPORTED = (
    "num_beams", "do_sample", "max_length", "max_new_tokens", "min_length",
    "min_new_tokens", "length_penalty", "early_stopping",
    "no_repeat_ngram_size", "forced_bos_token_id", "forced_eos_token_id",
    "bad_words_ids", "repetition_penalty", "renormalize_logits",
    "temperature", "top_k", "top_p")

TOKEN_IDS = ("eos_token_id", "decoder_start_token_id", "pad_token_id",
             "bos_token_id")

INFORMATIONAL = (
    "transformers_version", "_from_model_config", "_commit_hash",
    "use_cache", "cache_implementation", "cache_config", "max_cache_len",
    "compile_config", "disable_compile", "output_attentions",
    "output_hidden_states", "output_scores", "output_logits",
    "return_dict_in_generate", "is_assistant", "num_assistant_tokens",
    "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "assistant_lookbehind", "target_lookbehind", "prefill_chunk_size",
    "continuous_batching_config")

# key -> (HF's no-op value(s), what it is)
NOT_IMPLEMENTED = {
    "num_beam_groups": ((1, None), "diverse (group) beam search"),
    "diversity_penalty": ((0.0, None), "diverse (group) beam search"),
    "penalty_alpha": ((None, 0.0), "contrastive search"),
    "constraints": ((None,), "constrained beam search"),
    "force_words_ids": ((None,), "constrained beam search"),
    "typical_p": ((1.0, None), "typical sampling"),
    "epsilon_cutoff": ((0.0, None), "epsilon sampling"),
    "eta_cutoff": ((0.0, None), "eta sampling"),
    "min_p": ((None,), "min-p sampling"),
    "top_h": ((None,), "top-h sampling"),
    "encoder_repetition_penalty": ((1.0, None),
                                   "a repetition penalty on source tokens"),
    "encoder_no_repeat_ngram_size": ((0, None),
                                     "n-gram blocking of source n-grams"),
    "exponential_decay_length_penalty": ((None,), "an EOS length bonus"),
    "suppress_tokens": ((None,), "suppressed tokens"),
    "begin_suppress_tokens": ((None,), "suppressed first tokens"),
    "forced_decoder_ids": ((None,), "forced decoder ids"),
    "sequence_bias": ((None,), "sequence biases"),
    "guidance_scale": ((None, 1.0), "classifier-free guidance"),
    "low_memory": ((None, False), "sequential beam search"),
    "max_time": ((None,), "a time limit"),
    "stop_strings": ((None,), "stop strings"),
    "remove_invalid_values": ((None, False), "inf/nan removal"),
    "watermarking_config": ((None,), "watermarking"),
    "num_return_sequences": ((None, 1), "several outputs per input"),
    "prompt_lookup_num_tokens": ((None,), "prompt lookup decoding"),
    "max_matching_ngram_size": ((None,), "prompt lookup decoding"),
    "dola_layers": ((None,), "DoLa decoding"),
    "token_healing": ((None, False), "token healing"),
    "assistant_early_exit": ((None,), "self-speculative early exit"),
    "use_mtp": ((None, False), "multi-token prediction"),
}


def refusal(key: str, value, where: str) -> str | None:
  """The one-line error for `key` = `value` (from `where`), or None when it
  is supported, informational, a token id or a no-op value."""
  if key in SUPPORTED or key in INFORMATIONAL or key in TOKEN_IDS:
    return None
  if key in NOT_IMPLEMENTED:
    no_ops, what = NOT_IMPLEMENTED[key]
    if any(value is v if v is None else value == v for v in no_ops):
      return None
    return (f"{where}: {key}={value!r} ({what}) is not supported by our "
            "decoding; remove it to decode with the other settings")
  return (f"{where}: {key!r} is not a generation setting we know; remove it "
          "to decode with the other settings")
