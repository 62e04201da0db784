r"""Exact match by source length, per model (launch/length_study.sh).

  python -m encdec_jax.report_length runs/length [--out=docs/figures]

Decodes the test split with the latest checkpoint of every workdir under the
directory (greedy, each with its own config.json), buckets examples by the
number of source words, prints a Markdown table and writes
`attention_vs_length.png` and `length_report.json`: the picture of Bahdanau
et al. (2015), Fig. 2.
"""

import json
import os
import sys

import numpy as np

BUCKETS = ((1, 4), (5, 8), (9, 12), (13, 16), (17, 20), (21, 24), (25, 99))
ORDER = ("bottleneck", "attention", "transformer")


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


def decode_test(workdir: str):
  """(sources, references, hypotheses) of the test split, greedy, and the
  number of parameters."""
  from encdec_jax.train import evaluate, experiment, inference
  config = experiment.load_config(workdir)
  config.decode.algorithm = "greedy"
  exp, params, _ = inference.restore_latest(config, workdir)
  decode_fn = evaluate.make_decode_fn(exp.model, config)
  return evaluate.decode_split(decode_fn, params, exp.sources["test"],
                               exp.tokenizer, config, exp.mesh) + (
                                   experiment.count_params(params),)


def markdown(report: dict) -> str:
  labels = list(next(iter(report.values()))["buckets"])
  rows = ["| model | params | " + " | ".join(f"{b} words" for b in labels) +
          " | all |", "|---|---:|" + "---:|" * (len(labels) + 1)]
  for name, r in report.items():
    cells = [f"{r['buckets'][b][0]:.1f}" for b in labels]
    rows.append(f"| {name} | {r['params']:,} | " + " | ".join(cells) +
                f" | {r['exact_match']:.1f} |")
  counts = [str(v[1]) for v in next(iter(report.values()))["buckets"].values()]
  rows.append("| (test examples) | | " + " | ".join(counts) + " | |")
  return "\n".join(rows)


def plot(report: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, r in report.items():
    labels = list(r["buckets"])
    ax.plot(range(len(labels)), [r["buckets"][b][0] for b in labels],
            marker="o", label=f"{name} ({r['params'] / 1e6:.2f}M params)")
  ax.set_xticks(range(len(labels)), labels)
  ax.set_xlabel("source length (words)")
  ax.set_ylabel("test exact match (%)")
  ax.set_title("English number words → digits, numbers < 10^15")
  ax.set_ylim(0, 101)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv) -> None:
  if len(argv) < 2:
    sys.exit("usage: python -m encdec_jax.report_length RUNS_DIR [--out=DIR]")
  root = argv[1]
  out = next((a.split("=", 1)[1] for a in argv[2:] if a.startswith("--out=")),
             root)
  names = sorted(
      (n for n in os.listdir(root)
       if os.path.exists(os.path.join(root, n, "config.json"))),
      key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
  report = {}
  for name in names:
    workdir = os.path.join(root, name)
    sources, references, hypotheses, num_params = decode_test(workdir)
    report[name] = {
        "params": num_params,
        "exact_match": 100.0 * float(np.mean(
            [h.strip() == r.strip() for h, r in zip(hypotheses, references)])),
        "buckets": by_length(sources, references, hypotheses)}
    print(f"{name}: {report[name]['exact_match']:.2f}% exact match",
          file=sys.stderr)
  if not report:
    sys.exit(f"no finished runs (config.json) under {root}")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "length_report.json"), "w") as f:
    json.dump(report, f, indent=2)
  plot(report, os.path.join(out, "attention_vs_length.png"))
  print(markdown(report))


if __name__ == "__main__":
  main(sys.argv)
