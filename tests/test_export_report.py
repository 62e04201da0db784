"""TFDS → TSV export round trip, and the learning-curve report."""

import json

import ml_collections

from encdec_jax.reports import curves
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
  table = curves.curve_table(curves.read_metrics(str(tmp_path)))
  assert table.splitlines()[2] == "| validation | 100 | 1.5 | 97.50 | 90.00 | 99.00 |"
  assert len(table.splitlines()) == 3


def test_transfer_report_table_and_plot(tmp_path, capsys):
  from encdec_jax.reports import transfer
  for arm, n, seed, acc in (("scratch", 100, 0, 0.2), ("scratch", 100, 1, 0.4),
                            ("ulmfit", 100, 0, 0.9), ("ulmfit", 300, 0, 0.95)):
    run = tmp_path / f"{arm}_{n}_seed{seed}"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"test": {"accuracy": acc}}))
  (tmp_path / "frozen_100_seed0").mkdir()  # unfinished: no results.json
  transfer.report(str(tmp_path), str(tmp_path))
  out = capsys.readouterr().out
  assert "| scratch | 30.0 ± 14.1 (n=2) | – |" in out  # sample s.d.
  assert "| ulmfit | 90.0 | 95.0 |" in out
  assert "frozen" not in out.split("wrote")[0]
  assert (tmp_path / "transfer.png").stat().st_size > 1000


def test_bench_flop_model_matches_the_peers_and_compare_prints_ratios(
    tmp_path, capsys):
  from encdec_jax.bench import base_small, compare
  # ../shared/bench/README.md: 47.09, 15.60 and 47.65 MFLOP per token.
  assert round(base_small.flops_per_token("train") / 1e6, 2) == 47.09
  assert round(base_small.flops_per_token("decode_greedy") / 1e6, 2) == 15.60
  assert round(base_small.flops_per_token("decode_beam4") / 1e6, 2) == 47.65
  (tmp_path / "peers.jsonl").write_text(
      json.dumps({"peer": "hf_bart", "unit": "train", "tokens_per_s": 1000})
      + "\n" + json.dumps({"peer": "torch_nn_transformer", "unit": "train",
                           "tokens_per_s": 2000}) + "\n")
  (tmp_path / "encdec_jax.jsonl").write_text(json.dumps(
      {"peer": "encdec_jax", "unit": "train", "tokens_per_s": 3000,
       "mfu": 0.5, "compile_s": 4.0}) + "\n")
  compare.main(["compare", str(tmp_path)])
  out = capsys.readouterr().out
  assert "| train | 1,000 | 2,000 | **3,000** | 1.50 | 50 % | 4.0 |" in out
