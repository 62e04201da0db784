r"""Table and plot of the transfer experiment (launch/transfer_study.sh).

  python -m encdec_jax.report_transfer runs/classify

Reads `results.json` of every `<arm>_<labels>_seed<seed>` workdir under the
directory, prints test accuracy (mean ± spread over seeds) per arm and number
of labels as Markdown, and writes `transfer.png` (accuracy vs labels) there.
"""

import collections
import json
import os
import re
import sys

import numpy as np

ARMS = ("scratch", "frozen", "ulmfit")
_RUN = re.compile(r"(?P<arm>[a-z]+)_(?P<labels>\d+)_seed(?P<seed>\d+)")


def collect(root: str) -> dict:
  """{(arm, labels): [test accuracy of each seed]} of finished runs."""
  found = collections.defaultdict(list)
  for name in sorted(os.listdir(root)):
    match = _RUN.fullmatch(name)
    path = os.path.join(root, name, "results.json")
    if match and os.path.exists(path):
      with open(path) as f:
        results = json.load(f)
      found[(match["arm"], int(match["labels"]))].append(
          100.0 * results["test"]["accuracy"])
  return dict(found)


def markdown(found: dict) -> str:
  labels = sorted({n for _, n in found})
  arms = [a for a in ARMS if any(a == arm for arm, _ in found)]
  rows = ["| arm | " + " | ".join(f"{n} labels" for n in labels) + " |",
          "|---|" + "---|" * len(labels)]
  for arm in arms:
    cells = []
    for n in labels:
      accs = found.get((arm, n), [])
      cell = f"{np.mean(accs):.1f}" if accs else "–"
      if len(accs) > 1:
        cell += f" ± {np.std(accs):.1f} (n={len(accs)})"
      cells.append(cell)
    rows.append(f"| {arm} | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def plot(found: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  for arm in ARMS:
    points = sorted((n, np.mean(a)) for (g, n), a in found.items() if g == arm)
    if points:
      ax.plot(*zip(*points), marker="o", label=arm)
  ax.set_xscale("log")
  ax.set_xlabel("labelled training examples")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("Last digit of an English number")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit("usage: python -m encdec_jax.report_transfer RUNS_DIR")
  found = collect(argv[1])
  if not found:
    raise SystemExit(f"no finished <arm>_<labels>_seed<n> runs in {argv[1]}")
  print(markdown(found))
  png = os.path.join(argv[1], "transfer.png")
  plot(found, png)
  print(f"\nplot: {png}")


if __name__ == "__main__":
  main(sys.argv)
