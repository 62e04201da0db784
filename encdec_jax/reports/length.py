r"""Exact match by source length, per model (launch/length_study.sh).

  python -m encdec_jax.reports.length --runs=runs/length [--out=docs/figures]

Decodes the test split with the latest checkpoint of every finished workdir
under --runs (greedy, each with its own config.json), buckets examples by
the number of source words, prints a Markdown table and writes
`attention_vs_length.png` and `length_report.json`: the picture of Bahdanau
et al. (2015), Fig. 2.
"""

import json
import os
import sys

from absl import app, flags
import numpy as np

from encdec_jax.reports import common
from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.tasks import evaluation
from encdec_jax.train import experiment

BUCKETS = ((1, 4), (5, 8), (9, 12), (13, 16), (17, 20), (21, 24), (25, 99))
ORDER = ("bottleneck", "attention", "transformer")
flags.adopt_module_key_flags(common)


def bucket_of(num_words: int) -> int:
  for i, (lo, hi) in enumerate(BUCKETS):
    if lo <= num_words <= hi:
      return i
  raise ValueError(f"no bucket for {num_words} words")


def by_length(sources, references, hypotheses) -> dict:
  """{bucket label: (exact match %, count)} over non-empty buckets."""
  hits, counts = np.zeros(len(BUCKETS)), np.zeros(len(BUCKETS))
  for s, r, h in zip(sources, references, hypotheses):
    b = bucket_of(len(s.split()))
    counts[b] += 1
    hits[b] += h.strip() == r.strip()
  return {f"{lo}-{hi}": (100.0 * hits[i] / counts[i], int(counts[i]))
          for i, (lo, hi) in enumerate(BUCKETS) if counts[i]}


def length_report(workdir: str) -> dict:
  """Test exact match, overall and by source length, greedy; and the number
  of parameters."""
  config, exp, params = common.restore(workdir)
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)
  sources, references, hypotheses = evaluation.decode_split(
      decode_fn, params, exp.sources["test"], exp.tokenizer, config, exp.mesh)
  return {"params": experiment.count_params(params),
          "exact_match": 100.0 * float(np.mean(
              [h.strip() == r.strip() for h, r in zip(hypotheses,
                                                      references)])),
          "buckets": by_length(sources, references, hypotheses)}


def markdown(report: dict) -> str:
  labels = list(next(iter(report.values()))["buckets"])
  rows = [[name, f"{r['params']:,}",
           *(f"{r['buckets'][b][0]:.1f}" for b in labels),
           f"{r['exact_match']:.1f}"] for name, r in report.items()]
  counts = [v[1] for v in next(iter(report.values()))["buckets"].values()]
  rows.append(["(test examples)", "", *counts, ""])
  return common.markdown_table(
      ["model", "params", *(f"{b} words" for b in labels), "all"], rows)


def plot(report: dict, path: str) -> None:
  labels = list(next(iter(report.values()))["buckets"])
  common.line_plot(
      path, {f"{name} ({r['params'] / 1e6:.2f}M params)":
             (range(len(labels)), [r["buckets"][b][0] for b in labels])
             for name, r in report.items()},
      xlabel="source length (words)", ylabel="test exact match (%)",
      title="English number words → digits, numbers < 10^15",
      xticks=(range(len(labels)), labels), ylim=(0, 101))


def main(argv) -> None:
  common.start(argv)
  names = sorted((m[0] for m, _ in common.finished_runs(common.RUNS.value)),
                 key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
  if not names:
    sys.exit(f"no finished runs (results.json) under {common.RUNS.value}")
  report = {}
  for name in names:
    report[name] = length_report(os.path.join(common.RUNS.value, name))
    print(f"{name}: {report[name]['exact_match']:.2f}% exact match",
          file=sys.stderr)
  out = common.out_dir()
  with open(os.path.join(out, "length_report.json"), "w") as f:
    json.dump(report, f, indent=2)
  plot(report, os.path.join(out, "attention_vs_length.png"))
  print(markdown(report))


if __name__ == "__main__":
  flags.mark_flags_as_required(["runs"])
  app.run(main)
