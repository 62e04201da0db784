"""A Hugging Face model's own decoding settings, as generate() applies them,
in config.decode's terms (encdec_jax/decoding/config.py).

  settings = generation.decode_settings_of(import_dir + "/hf", meta)
  # {"algorithm": "beam", "beam_size": 4, "beam_scoring": "hf",
  #  "length_penalty": 2.0, "early_stopping": True, "max_new_tokens": 141,
  #  "min_new_tokens": 55, "no_repeat_ngram_size": 3, ...}

Where they come from, as transformers reads them: generation_config.json
when the directory has one, else the generation keys of config.json (older
checkpoints); with `task`, config.json's task_specific_params[task] over
them (what the pipelines apply, e.g. T5's "summarization"; its text
`prefix` becomes source_prefix, for the inputs). Keys the file leaves out
take generate()'s defaults (length_penalty 1.0, early_stopping False,
top_k 50 when sampling), except the length: without max_length /
max_new_tokens the run's config.max_decode_length stays (generate's own
default, 20 new tokens, is not the model's choice). A key our decoding does
not implement is refused by name (decoding/generation_keys.py), as is an
eos_token_id or decoder_start_token_id other than the model's.
"""

import os

from encdec_jax.decoding import generation_keys
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained.hf import PretrainedError

GENERATION_FILE = "generation_config.json"
# generate()'s defaults for the keys that change how it searches.
HF_DEFAULTS = dict(num_beams=1, do_sample=False, length_penalty=1.0,
                   early_stopping=False, temperature=1.0, top_k=50,
                   top_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0)


def read_generation(hf_dir: str, task: str = "") -> tuple[dict, str, str]:
  """(the generation keys the model sets, the file they came from, the
  task's text prefix or "")."""
  config_path = os.path.join(hf_dir, "config.json")
  model_config = (hf_lib.read_json(config_path)
                  if os.path.isfile(config_path) else {})
  path = os.path.join(hf_dir, GENERATION_FILE)
  if os.path.isfile(path):
    keys, where = dict(hf_lib.read_json(path)), path
  else:  # a legacy checkpoint: generation keys among the model's
    known = (set(generation_keys.SUPPORTED) | set(generation_keys.TOKEN_IDS)
             | set(generation_keys.NOT_IMPLEMENTED))
    keys = {k: v for k, v in model_config.items()
            if k in known and v is not None}
    where = config_path
  prefix = ""
  if task:
    tasks = model_config.get("task_specific_params") or {}
    if task not in tasks:
      raise PretrainedError(
          f"config.decode.task={task!r}: {config_path} has no such "
          f"task_specific_params entry; it has {sorted(tasks) or 'none'}")
    entry = dict(tasks[task])
    prefix = entry.pop("prefix", "") or ""
    keys.update(entry)
    where = f"{config_path} task_specific_params[{task!r}]"
  for key, value in keys.items():
    problem = generation_keys.refusal(key, value, where)
    if problem:
      raise PretrainedError(problem)
  return keys, where, prefix


def _single_id(value, key: str, where: str):
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise PretrainedError(f"{where}: {key}={value} (several) is not "
                            "supported; our decoding stops at one EOS id")
    return value[0]
  return value


def decode_settings_of(hf_dir: str, meta: dict, task: str = "") -> dict:
  """config.decode entries for the model of an import_hf directory (`meta`:
  its pretrained.json) from the files in its hf/ (`hf_dir`)."""
  keys, where, prefix = read_generation(hf_dir, task)
  eos = _single_id(keys.get("eos_token_id", meta["eos_id"]), "eos_token_id",
                   where)
  if eos != meta["eos_id"]:
    raise PretrainedError(f"{where}: eos_token_id={eos} but the model's EOS "
                          f"is {meta['eos_id']}")
  fields = meta["model"]
  start = fields.get("decoder_start_id")
  start = fields["pad_id"] if start is None else start
  if keys.get("decoder_start_token_id", start) != start:
    raise PretrainedError(
        f"{where}: decoder_start_token_id={keys['decoder_start_token_id']} "
        f"but the model starts from {start}")
  forced_eos = keys.get("forced_eos_token_id")
  if forced_eos is not None:
    forced_eos = _single_id(forced_eos, "forced_eos_token_id", where)
  hf = dict(HF_DEFAULTS, **{k: v for k, v in keys.items() if v is not None})
  beams = int(hf["num_beams"])
  if hf["do_sample"] and beams > 1:
    raise PretrainedError(f"{where}: do_sample with num_beams={beams} (beam "
                          "sampling) is not supported")
  settings = dict(
      algorithm=("sample" if hf["do_sample"] else
                 "beam" if beams > 1 else "greedy"),
      beam_scoring="hf", length_penalty=float(hf["length_penalty"]),
      early_stopping=hf["early_stopping"],
      repetition_penalty=float(hf["repetition_penalty"]),
      no_repeat_ngram_size=int(hf["no_repeat_ngram_size"]),
      bad_words_ids=tuple(tuple(int(t) for t in word)
                          for word in hf.get("bad_words_ids") or ()),
      forced_bos_token_id=hf.get("forced_bos_token_id"),
      forced_eos_token_id=forced_eos,
      renormalize_logits=bool(hf.get("renormalize_logits", False)))
  if beams > 1:
    settings["beam_size"] = beams
  if hf["do_sample"]:
    settings.update(temperature=float(hf["temperature"]),
                    top_k=int(hf["top_k"]), top_p=float(hf["top_p"]))
  # Lengths as numbers of decoded tokens (HF's max/min_length count the
  # decoder start token; *_new_tokens win over them, as in generate).
  if hf.get("max_new_tokens") is not None:
    settings["max_new_tokens"] = int(hf["max_new_tokens"])
  elif hf.get("max_length") is not None:
    settings["max_new_tokens"] = int(hf["max_length"]) - 1
  if hf.get("min_new_tokens") is not None:
    settings["min_new_tokens"] = int(hf["min_new_tokens"])
  elif hf.get("min_length"):
    settings["min_new_tokens"] = max(0, int(hf["min_length"]) - 1)
  if prefix:
    settings["source_prefix"] = prefix
  return settings
