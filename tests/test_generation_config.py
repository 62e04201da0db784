"""A model's own generation settings (generation_config.json, config.json's
task_specific_params) decode as Hugging Face generate() applies them.

The tiny models of tests/data/hf_tiny/ with shipped-style configs
(generation/CASE.json: BART like bart-large-cnn, Marian like opus-mt, T5's
summarization entry, a repetition penalty, early_stopping="never") and
generate()'s tokens, recorded by make_fixtures.py (torch is not needed
here); warpers.json holds HF's sampling processors on fixed logits.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

pytest.importorskip("safetensors", reason="pip install -e '.[pretrained]'")

from encdec_jax.decoding import (beam_search, expand_to_beams,  # noqa: E402
                                 filter_logits, greedy_decode)
from encdec_jax.decoding import config as decode_config  # noqa: E402
from encdec_jax.decoding.rules import GenerationRules  # noqa: E402
from encdec_jax.models.contract import (init_cache,  # noqa: E402
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.pretrained import generation, import_hf  # noqa: E402
from encdec_jax.pretrained.hf import PretrainedError  # noqa: E402
from encdec_jax.starts import hf_import  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
CASES = ("bart_cnn", "marian_opus", "t5_summarization", "t5_repetition",
         "t5_never")


def _case(name: str) -> dict:
  with open(os.path.join(DATA, "generation", f"{name}.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict:
  """model name -> its import_hf directory (one import per model)."""
  out = {}
  for name in sorted({_case(c)["model"] for c in CASES}):
    target = str(tmp_path_factory.mktemp("generation") / name)
    assert import_hf.main(["import_hf", os.path.join(DATA, name), target]) == 0
    out[name] = target
  return out


def _with_files(import_dir: str, case: dict, tmp_path) -> str:
  """A copy of import_dir whose hf/ holds the case's generation files."""
  target = str(tmp_path / "model")
  os.makedirs(os.path.join(target, "hf"))
  for name in ("pretrained.json", "params.safetensors"):
    os.symlink(os.path.join(import_dir, name), os.path.join(target, name))
  hf_dir = os.path.join(import_dir, "hf")
  for name in os.listdir(hf_dir):
    if not name.endswith(".json"):
      shutil.copy(os.path.join(hf_dir, name), os.path.join(target, "hf"))
      continue
    with open(os.path.join(hf_dir, name)) as f:
      content = json.load(f)
    if name == "config.json":
      content.update(case.get("config_overrides", {}))
    if name == "generation_config.json":
      if case["generation_config"] is None:
        continue  # a legacy checkpoint: config.json only
      content.update(case["generation_config"])
    with open(os.path.join(target, "hf", name), "w") as f:
      json.dump(content, f)
  return target


def _run_config(init_from: str, task: str = "") -> ml_collections.ConfigDict:
  """A run config as experiments write it: decode defaults spelled out."""
  return ml_collections.ConfigDict(dict(
      init_from=init_from, max_decode_length=30,
      decode=dict(algorithm="greedy", beam_size=4, length_penalty=0.6,
                  temperature=1.0, top_k=0, top_p=1.0, seed=0, task=task)))


def _until_eos(tokens_BxT, eos: int) -> list[list[int]]:
  rows = []
  for row in np.asarray(tokens_BxT).tolist():
    rows.append(row[:row.index(eos) + 1] if eos in row else row)
  return rows


def _decode(init_from: str, case: dict, settings: dict):
  """Our tokens for the case's inputs with `settings` (decode_settings')."""
  model_config, params, meta = import_hf.load(init_from)
  model = EncoderDecoder(model_config)
  eos, start = meta["eos_id"], model_config.start_id
  inputs_BxS = jnp.asarray(case["input_ids"])
  batch, source_len = inputs_BxS.shape
  steps = settings["max_new_tokens"]
  rules = decode_config.generation_rules(settings, eos, start)
  encoded = model.apply({"params": params}, inputs_BxS, method="encode")
  if settings["algorithm"] == "beam":
    beams = settings["beam_size"]
    tokens_BxKxT, _ = beam_search(
        make_tokens_to_logits(model, params, expand_to_beams(encoded, beams)),
        init_cache(model, batch * beams, steps, source_len), batch, beams,
        steps, eos, length_penalty=settings["length_penalty"],
        start_id=start, scoring=settings["beam_scoring"],
        early_stopping=settings["early_stopping"], rules=rules)
    return _until_eos(tokens_BxKxT[:, 0], eos)
  assert settings["algorithm"] == "greedy"
  return _until_eos(greedy_decode(
      make_tokens_to_logits(model, params, encoded),
      init_cache(model, batch, steps, source_len), batch, steps, eos,
      start_id=start, rules=rules), eos)


@pytest.mark.parametrize("name", CASES)
def test_model_settings_give_generates_tokens(imported, name, tmp_path):
  case = _case(name)
  init_from = _with_files(imported[case["model"]], case, tmp_path)
  config = _run_config(init_from, case.get("task", ""))
  _, _, meta = import_hf.load(init_from)
  hf_import.configure_generation(config, meta)
  settings = decode_config.decode_settings(config)
  assert settings["beam_scoring"] == "hf"
  assert _decode(init_from, case, settings) == case["tokens"]
  # The settings matter: generate's plain greedy tokens differ, and so do
  # ours without the model's settings.
  assert case["tokens"] != case["plain_greedy"]
  plain_config = _run_config(init_from)
  plain_config.decode.model_generation = False
  hf_import.configure_generation(plain_config, meta)  # ignores the model's
  plain = decode_config.decode_settings(plain_config)
  plain["max_new_tokens"] = max(len(row) for row in case["tokens"])
  assert _decode(init_from, case, plain) == case["plain_greedy"]


def test_make_decode_fn_applies_the_task_entry(imported, tmp_path):
  """T5 (start 0, as the trainer decodes): config.decode.task picks the
  summarization entry of config.json, through make_decode_fn."""
  case = _case("t5_summarization")
  init_from = _with_files(imported[case["model"]], case, tmp_path)
  config = _run_config(init_from, "summarization")
  _, params, meta = import_hf.load(init_from)
  hf_import.configure_generation(config, meta)
  assert config.decode.source_prefix == "summarize: "
  assert "inputs read with the prefix 'summarize: '" in (
      decode_config.describe_decoding(config))
  model = EncoderDecoder(import_hf.config_from_fields(meta["model"]))
  decode_fn = decode_config.make_decode_fn(model, config, meta["eos_id"])
  tokens_BxT = decode_fn(params, jnp.asarray(case["input_ids"]),
                         jax.random.key(0))
  assert _until_eos(tokens_BxT, meta["eos_id"]) == case["tokens"]


def test_config_decode_wins_over_the_model(imported, tmp_path):
  case = _case("bart_cnn")
  init_from = _with_files(imported["bart"], case, tmp_path)
  config = _run_config(init_from)
  config.decode.update(beam_size=2, no_repeat_ngram_size=2)
  _, _, meta = import_hf.load(init_from)
  hf_import.configure_generation(config, meta)
  settings = decode_config.decode_settings(config)
  # Set by the run: kept; left at the defaults: the model's.
  assert (settings["beam_size"], settings["no_repeat_ngram_size"]) == (2, 2)
  assert (settings["algorithm"], settings["length_penalty"],
          settings["early_stopping"], settings["max_new_tokens"],
          settings["min_new_tokens"], settings["forced_bos_token_id"]) == (
              "beam", 2.0, True, 19, 8, 0)


@pytest.mark.parametrize("keys, message", [
    ({"num_beam_groups": 2, "diversity_penalty": 0.5},
     "num_beam_groups=2 (diverse (group) beam search) is not supported"),
    ({"penalty_alpha": 0.6, "top_k": 4}, "penalty_alpha=0.6 (contrastive"),
    ({"constraints": [[3]]}, "constraints=[[3]] (constrained beam search)"),
    ({"sequence_bias": [[[5], 1.0]]}, "sequence_bias="),
    ({"remove_invalid_values": True}, "remove_invalid_values=True"),
    ({"my_own_key": 1}, "'my_own_key' is not a generation setting we know"),
    ({"eos_token_id": [1, 5]}, "eos_token_id=[1, 5] (several)"),
    ({"eos_token_id": 5}, "eos_token_id=5 but the model's EOS is 1"),
    ({"decoder_start_token_id": 3}, "decoder_start_token_id=3 but the model "
     "starts from 0"),
    ({"do_sample": True, "num_beams": 2}, "beam sampling"),
])
def test_unsupported_generation_keys_are_refused(imported, tmp_path, keys,
                                                 message):
  case = dict(generation_config=keys)
  init_from = _with_files(imported["t5_v10"], case, tmp_path)
  _, _, meta = import_hf.load(init_from)
  with pytest.raises(PretrainedError, match=message.replace("(", r"\(")
                     .replace(")", r"\)").replace("[", r"\[")):
    hf_import.configure_generation(_run_config(init_from), meta)


def test_no_op_values_and_sampling_defaults(imported, tmp_path):
  """Keys at HF's no-op values pass; do_sample takes generate's top_k 50."""
  case = dict(generation_config=dict(
      num_beam_groups=1, diversity_penalty=0.0, typical_p=1.0,
      do_sample=True, temperature=0.7, output_scores=False))
  init_from = _with_files(imported["t5_v10"], case, tmp_path)
  _, _, meta = import_hf.load(init_from)
  settings = generation.decode_settings_of(os.path.join(init_from, "hf"),
                                           meta)
  assert (settings["algorithm"], settings["temperature"], settings["top_k"],
          settings["top_p"]) == ("sample", 0.7, 50, 1.0)
  with pytest.raises(PretrainedError, match="task_specific_params entry"):
    generation.decode_settings_of(os.path.join(init_from, "hf"), meta,
                                  "summarization")


@pytest.mark.parametrize("decode, message", [
    (dict(penalty_alpha=0.6), "config.decode: penalty_alpha=0.6 "
     r"\(contrastive search\) is not supported"),
    (dict(beam_sizes=2), "config.decode.beam_sizes is not a decode setting"),
    (dict(num_beams=4, do_sample=True), "beam sampling"),
    (dict(algorithm="sample", num_beams=4), "disagrees with num_beams=4"),
    (dict(early_stopping=True), "needs scoring='hf'"),
    (dict(algorithm="speculative", no_repeat_ngram_size=3),
     "speculative does not apply the token rules"),
    (dict(max_length=1), "must allow at least one token"),
    (dict(repetition_penalty=0.0), "repetition_penalty=0.0 must be > 0"),
])
def test_config_decode_refusals(decode, message):
  config = ml_collections.ConfigDict(dict(max_decode_length=8,
                                          decode=decode))
  with pytest.raises(ValueError, match=message):
    decode_config.decode_settings(config)


def test_hf_keys_in_any_config():
  """num_beams / max_length / min_length with HF's meanings, any model."""
  config = ml_collections.ConfigDict(dict(max_decode_length=8, decode=dict(
      num_beams=3, max_length=12, min_length=4, beam_scoring="hf",
      early_stopping="never", bad_words_ids=[[3, 4], [5]])))
  settings = decode_config.decode_settings(config)
  assert (settings["algorithm"], settings["beam_size"],
          settings["max_new_tokens"], settings["min_new_tokens"],
          settings["bad_words_ids"]) == ("beam", 3, 11, 3, ((3, 4), (5,)))
  assert "HF length penalty" in decode_config.describe_decoding(config)


def test_sampling_processors_match_hf():
  """Repetition penalty, temperature, top-k and top-p as HF's processors
  leave the logits (the draws themselves use another RNG than torch's)."""
  with open(os.path.join(DATA, "generation", "warpers.json")) as f:
    ref = json.load(f)
  logits_NxV = jnp.asarray(ref["logits"], jnp.float32)
  history_NxL = jnp.asarray(ref["history"], jnp.int32)
  for case in ref["cases"]:
    rules = GenerationRules(eos_id=1, start_id=0,
                            repetition_penalty=case["repetition_penalty"])
    scores_NxV = rules(logits_NxV, history_NxL[:, 1:],
                       jnp.asarray(history_NxL.shape[1] - 1))
    ours = np.asarray(filter_logits(scores_NxV / case["temperature"],
                                    top_k=case["top_k"], top_p=case["top_p"]))
    expected = np.array([[-np.inf if v is None else v for v in row]
                         for row in case["scores"]], np.float32)
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(expected))
    kept = np.isfinite(expected)
    np.testing.assert_allclose(ours[kept], expected[kept], rtol=1e-6)
