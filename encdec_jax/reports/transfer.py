r"""Table and plot of the transfer experiment (launch/transfer_study.sh).

  python -m encdec_jax.reports.transfer --runs=runs/classify [--out=DIR]

Reads `results.json` of every `<arm>_<labels>_seed<seed>` workdir under
--runs, prints test accuracy (mean ± sample standard deviation over seeds,
ddof=1) per arm and number of labels as Markdown, and writes `transfer.png`
(accuracy vs labels).

What a seed (`config.seed`) varies: the order of the training examples
(every arm), and the initialisation of the parameters that are not loaded,
which for the scratch arm is the whole model; the transferred arms load
the encoder and zero-initialise the head, and the model has no dropout, so
for them the seed varies the data order only.
"""

import collections
import os

from absl import app, flags
import numpy as np

from encdec_jax.reports import common

ARMS = ("scratch", "frozen", "ulmfit")
RUN_NAME = r"(?P<arm>[a-z]+)_(?P<labels>\d+)_seed(?P<seed>\d+)"
flags.adopt_module_key_flags(common)


def collect(root: str) -> dict:
  """{(arm, labels): [test accuracy of each seed]} of finished runs."""
  found = collections.defaultdict(list)
  for match, results in common.finished_runs(root, RUN_NAME):
    found[(match["arm"], int(match["labels"]))].append(
        100.0 * results["test"]["accuracy"])
  return dict(found)


def markdown(found: dict) -> str:
  labels = sorted({n for _, n in found})
  rows = []
  for arm in [a for a in ARMS if any(a == g for g, _ in found)]:
    cells = []
    for n in labels:
      accs = found.get((arm, n), [])
      cell = f"{np.mean(accs):.1f}" if accs else "–"
      if len(accs) > 1:
        cell += f" ± {np.std(accs, ddof=1):.1f} (n={len(accs)})"
      cells.append(cell)
    rows.append([arm, *cells])
  return common.markdown_table(["arm", *(f"{n} labels" for n in labels)],
                               rows)


def plot(found: dict, path: str) -> None:
  series = {}
  for arm in ARMS:
    points = sorted((n, np.mean(a)) for (g, n), a in found.items() if g == arm)
    if points:
      series[arm] = tuple(zip(*points))
  common.line_plot(path, series, xlabel="labelled training examples",
                   ylabel="test accuracy (%)",
                   title="Last digit of an English number", log_base=10)


def report(root: str, out: str) -> None:
  common.report_study(root, os.path.join(out, "transfer.png"), collect,
                      markdown, plot, "<arm>_<labels>_seed<n>")


def main(argv) -> None:
  common.start(argv)
  report(common.RUNS.value, common.out_dir())


if __name__ == "__main__":
  flags.mark_flags_as_required(["runs"])
  app.run(main)
