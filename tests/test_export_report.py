"""TFDS → TSV export round trip, and the learning-curve report."""

import json

import ml_collections

from encdec_jax import report
from encdec_jax.data import export, sources


def test_export_tsv_round_trips_through_the_text_file_source(tmp_path):
  paths = export.export_tsv("number_translation/digits_en_small",
                            str(tmp_path / "tsv"), data_dir=str(tmp_path))
  config = ml_collections.ConfigDict(dict(
      dataset="number_translation/digits_en_small", data_dir=str(tmp_path),
      source_lang="source", target_lang="target"))
  for split, path in paths.items():
    original = sources.make_source(config, split)
    exported = sources.text_file_source(path)
    assert len(exported) == len(original) > 0
    for i in (0, len(original) // 2, len(original) - 1):
      assert exported[i] == original[i]


def test_report_prints_eval_rows_only(tmp_path):
  rows = [dict(step=50, split="train", loss=1.0, time=0.0),
          dict(step=100, split="validation", exact_match=97.5, bleu=90.0,
               chrf=99.0, wall_time_s=90.0, time=1.0)]
  (tmp_path / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in rows))
  table = report.curve_table(report.read_metrics(str(tmp_path)))
  assert table.splitlines()[2] == "| validation | 100 | 1.5 | 97.50 | 90.00 | 99.00 |"
  assert len(table.splitlines()) == 3
