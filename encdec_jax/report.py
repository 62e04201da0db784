r"""Prints a run's learning curve and final results as Markdown.

  python -m encdec_jax.report runs/en_de

Reads `metrics.jsonl` (written by the trainer): one row per evaluation, with
the step, the wall time since the run started, and the decoding metrics. The
README's results come from this command.
"""

import json
import os
import sys


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise SystemExit(f"{path} not found: is {workdir} a training workdir?")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def curve_table(rows: list[dict]) -> str:
  lines = ["| split | step | wall time (min) | exact match (%) | BLEU | chrF |",
           "|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    if "exact_match" in r:
      lines.append(f"| {r['split']} | {r['step']} | "
                   f"{r['wall_time_s'] / 60:.1f} | {r['exact_match']:.2f} | "
                   f"{r['bleu']:.2f} | {r['chrf']:.2f} |")
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit("usage: python -m encdec_jax.report WORKDIR")
  print(curve_table(read_metrics(argv[1])))


if __name__ == "__main__":
  main(sys.argv)
