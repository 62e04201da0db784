r"""Autoencoder study report (launch/autoencoder_study.sh).

  python -m encdec_jax.reports.autoencoder --runs=runs/ae \
      [--out=docs/figures] [--grid=conv_z16]

Reads results.json of the workdirs under --runs:
  <family>_z<bottleneck>    bottleneck sweep: test MSE per pixel;
  <family>_anomaly<digit>   digit left out of training: test ROC-AUC of the
                            reconstruction error as its anomaly score.
Prints both tables as Markdown and writes `autoencoder_sweep.png` and
`autoencoder_grid.png` (test images of each digit above their
reconstructions, by the --grid model).
"""

import os
import sys

from absl import app, flags
import jax
import numpy as np

from encdec_jax.reports import common
from encdec_jax.data import images

GRID = flags.DEFINE_string("grid", "conv_z16", "Workdir name under --runs "
                           "whose reconstructions are drawn.")
RUN_NAME = r"(?P<family>mlp|conv)_(?:z(?P<z>\d+)|anomaly(?P<digit>\d))"
flags.adopt_module_key_flags(common)


def collect(root: str) -> tuple[dict, dict]:
  """({(family, z): test mse}, {(family, digit): test auc})."""
  sweep, anomaly = {}, {}
  for m, results in common.finished_runs(root, RUN_NAME):
    if m["z"]:
      sweep[(m["family"], int(m["z"]))] = results["test"]["mse"]
    else:
      anomaly[(m["family"], int(m["digit"]))] = results["test"]["anomaly_auc"]
  return sweep, anomaly


def _table(values: dict, header: str, fmt: str, mean: bool = False) -> str:
  """{(family, column): value} as a family x column table."""
  columns = sorted({c for _, c in values})
  rows = []
  for f in sorted({f for f, _ in values}):
    got = [values.get((f, c)) for c in columns]
    rows.append([f, *(format(v, fmt) if v is not None else "–" for v in got)])
    if mean:
      rows[-1].append(format(np.mean([v for v in got if v is not None]), fmt))
  return common.markdown_table(
      ["model", *(header.format(c) for c in columns)] + ["mean"] * mean, rows)


def markdown(sweep: dict, anomaly: dict) -> str:
  tables = []
  if sweep:
    tables.append(_table(sweep, "z={}", ".4f"))
  if anomaly:
    tables.append(_table(anomaly, "{}", ".3f", mean=True))
  return "\n\n".join(tables)


def plot_sweep(sweep: dict, path: str) -> None:
  series = {}
  for family in sorted({f for f, _ in sweep}):
    zs = sorted(z for f, z in sweep if f == family)
    series[family] = (zs, [sweep[(family, z)] for z in zs])
  common.line_plot(path, series, xlabel="bottleneck size",
                   ylabel="test MSE per pixel",
                   title="sklearn digits (8x8): reconstruction vs bottleneck",
                   log_base=2)


def plot_grid(workdir: str, path: str) -> None:
  """One test image per digit (top) and its reconstruction (bottom)."""
  config, exp, params = common.restore(workdir, greedy=False)
  batch = next(iter(images.eval_batches(exp.sources["test"], config, 512)))
  first = [int(np.flatnonzero(batch["label"] == d)[0]) for d in range(10)
           if np.any(batch["label"] == d)]
  originals = batch["image"][first]
  logits = exp.model.apply({"params": params}, originals)
  recons = np.asarray(jax.nn.sigmoid(logits))
  fig, axes = common.pyplot().subplots(2, len(first),
                                       figsize=(len(first), 2.3))
  for i in range(len(first)):
    for row, pics in enumerate((originals, recons)):
      axes[row, i].imshow(pics[i, ..., 0], cmap="gray_r", vmin=0, vmax=1)
      axes[row, i].axis("off")
  axes[0, 0].set_title("test", fontsize=8, loc="left")
  axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
  fig.suptitle(common.name_of(workdir), fontsize=9)
  common.save(fig, path)


def main(argv) -> None:
  common.start(argv)
  root = common.RUNS.value
  sweep, anomaly = collect(root)
  if not sweep and not anomaly:
    sys.exit(f"no finished autoencoder runs under {root}")
  out = common.out_dir()
  if sweep:
    plot_sweep(sweep, os.path.join(out, "autoencoder_sweep.png"))
  grid = os.path.join(root, GRID.value)
  if os.path.exists(os.path.join(grid, "results.json")):
    plot_grid(grid, os.path.join(out, "autoencoder_grid.png"))
  print(markdown(sweep, anomaly))


if __name__ == "__main__":
  flags.mark_flags_as_required(["runs"])
  app.run(main)
