r"""A run's learning curve and final results as Markdown.

  python -m encdec_jax.reports.curves --workdirs=runs/en_de[,runs/en_fr]

Reads `metrics.jsonl` (written by the trainer): one row per evaluation, with
the step, the wall time since the run started, and the decoding metrics. The
results in docs/tasks.md come from this command.
"""

import json
import os
import sys

from absl import app, flags

from encdec_jax.reports import common

flags.adopt_module_key_flags(common)


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise SystemExit(f"{path} not found: is {workdir} a training workdir?")
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  rows = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except ValueError:
      if any(rest.strip() for rest in lines[number:]):
        raise SystemExit(f"{path}:{number}: not a JSON row; the file is "
                         "damaged (move that line away).") from None
      # The last row of a run killed while writing it: cut short.
      print(f"note: {path}:{number} was cut short (the run was killed "
            "while writing it); left out", file=sys.stderr)
  return rows


def curve_table(rows: list[dict]) -> str:
  return common.markdown_table(
      ["split", "step", "wall time (min)", "exact match (%)", "BLEU", "chrF"],
      [[r["split"], r["step"], f"{r['wall_time_s'] / 60:.1f}",
        f"{r['exact_match']:.2f}", f"{r['bleu']:.2f}", f"{r['chrf']:.2f}"]
       for r in rows if "exact_match" in r])


def main(argv) -> None:
  common.start(argv)
  for workdir in common.WORKDIRS.value:
    if len(common.WORKDIRS.value) > 1:
      print(f"\n{workdir}:")
    print(curve_table(read_metrics(workdir)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
