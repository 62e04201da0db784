"""The pretraining study's parts: a seq2seq run keeps the first
config.num_train_examples training pairs; both arms build the pretrained
architecture; the report reads finished runs into its table and figure."""

import json
import os

import numpy as np
import pytest

from encdec_jax.data import sources
from encdec_jax.reports import pretrain as report
from experiments import pretrain_span_corruption, pretrain_study


def _config(files, n):
  config = pretrain_study.get_config("scratch")
  config.update(dataset="text_files", num_train_examples=n)
  config.text_files.update(files)
  return config


def test_num_train_examples_keeps_the_first_training_pairs(small_text_files):
  everything = sources.make_source(_config(small_text_files, -1), "train")
  cut = sources.make_source(_config(small_text_files, 20), "train")
  assert len(everything) == 200 and len(cut) == 20
  assert [cut[i] for i in range(20)] == [everything[i] for i in range(20)]
  assert cut.__getitems__([3, 19]) == [everything[3], everything[19]]
  with pytest.raises(IndexError):
    cut[20]  # noqa: B018
  validation = sources.make_source(_config(small_text_files, 20),
                                   "validation")
  assert len(validation) == 32  # only the train split is cut
  for n in (0, 201):
    with pytest.raises(sources.DataError,
                       match=f"num_train_examples={n} must be in"):
      sources.make_source(_config(small_text_files, n), "train")


def test_both_arms_build_the_pretrained_architecture():
  pretrained = pretrain_study.get_config("pretrained")
  scratch = pretrain_study.get_config("scratch")
  assert pretrained.init_from == pretrain_study.PRETRAINED_WORKDIR
  assert not scratch.get("init_from") and scratch.hf_export == "t5"
  model = pretrain_span_corruption.get_config().model
  for key, value in model.items():
    if "dropout" not in key:
      assert scratch.model[key] == value, key
  # Only the starting params differ: every training field is shared.
  for key in ("learning_rate", "batch_size", "num_train_steps", "dataset",
              "warmup_steps", "schedule", "max_source_length"):
    assert pretrained[key] == scratch[key], key
  assert set(pretrained.model) <= set(scratch.model)


def _finished(root, name, test_exact, curve):
  os.makedirs(root / name)
  split = lambda exact: {"exact_match": exact, "bleu": exact / 2,
                         "chrf": exact, "loss": 1 / exact}
  (root / name / "results.json").write_text(json.dumps(
      {"validation": split(test_exact + 10), "test": split(test_exact)}))
  (root / name / "metrics.jsonl").write_text("".join(
      json.dumps({"split": "validation", "step": step, "exact_match": e,
                  "loss": 1 - e / 100})
      + "\n" for step, e in curve))


def test_the_report_tabulates_seeds_and_draws_the_figure(tmp_path):
  _finished(tmp_path, "pretrained_500_seed0", 40.0, [(75, 10.0), (150, 20.0)])
  _finished(tmp_path, "pretrained_500_seed1", 50.0, [(75, 30.0), (150, 40.0)])
  _finished(tmp_path, "scratch_500_seed0", 5.0, [(75, 0.0), (150, 2.0)])
  os.makedirs(tmp_path / "scratch_5000_seed0")  # unfinished: left out
  found = report.collect(str(tmp_path))
  assert sorted(found) == [("pretrained", 500), ("scratch", 500)]
  table = report.markdown(found)
  assert ("| 500 | pretrained | 2 | 45.0 ± 7.1 | 22.5 ± 3.5 | 45.0 ± 7.1 | "
          "0.022 ± 0.004 | 55.0 ± 7.1 | 0.018 ± 0.002 |") in table
  assert "| pretrained, 500 pairs | 20.0 / 0.800 | 30.0 / 0.700 |" in table
  report.plot(found, str(tmp_path / "study.png"))
  assert os.path.getsize(tmp_path / "study.png") > 0


def test_target_tokens_are_scored_by_whether_the_source_has_them():
  inputs_BxS = np.asarray([[5, 6, 7, 0], [8, 9, 0, 0]])
  targets_BxT = np.asarray([[5, 3, 7, 1], [9, 4, 1, 0]])
  right_BxT = np.asarray([[1, 1, 0, 1], [1, 0, 1, 1]], bool)
  real_BxT = targets_BxT > 0
  # found in the source: 5 (right), 7 (wrong), 9 (right); others: 3, 1, 4, 1.
  hits, counts = report.copied_hits(inputs_BxS, targets_BxT, right_BxT,
                                    real_BxT)
  assert hits.tolist() == [2, 3] and counts.tolist() == [3, 4]
