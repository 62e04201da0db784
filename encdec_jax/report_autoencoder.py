r"""Autoencoder study report (launch/autoencoder_study.sh).

  python -m encdec_jax.report_autoencoder runs/ae [--out=docs/figures]

Reads results.json of the workdirs under the directory:
  <family>_z<bottleneck>    bottleneck sweep: test MSE per pixel;
  <family>_anomaly<digit>   digit left out of training: test ROC-AUC of the
                            reconstruction error as its anomaly score.
Prints both tables as Markdown and writes `autoencoder_sweep.png` and
`autoencoder_grid.png` (test images of each digit above their
reconstructions, by the `--grid=<workdir name>` model, default conv_z16).
"""

import json
import os
import re
import sys

import numpy as np

_SWEEP = re.compile(r"(?P<family>mlp|conv)_z(?P<z>\d+)")
_ANOMALY = re.compile(r"(?P<family>mlp|conv)_anomaly(?P<digit>\d)")


def collect(root: str) -> tuple[dict, dict]:
  """({(family, z): test mse}, {(family, digit): test auc})."""
  sweep, anomaly = {}, {}
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, "results.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      test = json.load(f)["test"]
    if m := _SWEEP.fullmatch(name):
      sweep[(m["family"], int(m["z"]))] = test["mse"]
    elif m := _ANOMALY.fullmatch(name):
      anomaly[(m["family"], int(m["digit"]))] = test["anomaly_auc"]
  return sweep, anomaly


def markdown(sweep: dict, anomaly: dict) -> str:
  out = []
  if sweep:
    zs = sorted({z for _, z in sweep})
    families = sorted({f for f, _ in sweep})
    out += ["| model | " + " | ".join(f"z={z}" for z in zs) + " |",
            "|---|" + "---:|" * len(zs)]
    out += [f"| {f} | " + " | ".join(
        f"{sweep[(f, z)]:.4f}" if (f, z) in sweep else "–" for z in zs) +
            " |" for f in families]
  if anomaly:
    digits = sorted({d for _, d in anomaly})
    families = sorted({f for f, _ in anomaly})
    out += ["", "| model | " + " | ".join(f"{d}" for d in digits) +
            " | mean |", "|---|" + "---:|" * (len(digits) + 1)]
    for f in families:
      aucs = [anomaly.get((f, d)) for d in digits]
      out.append(f"| {f} | " + " | ".join(
          f"{a:.3f}" if a is not None else "–" for a in aucs) +
                 f" | {np.mean([a for a in aucs if a is not None]):.3f} |")
  return "\n".join(out)


def plot_sweep(sweep: dict, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for family in sorted({f for f, _ in sweep}):
    zs = sorted(z for f, z in sweep if f == family)
    ax.plot(zs, [sweep[(family, z)] for z in zs], marker="o", label=family)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("bottleneck size")
  ax.set_ylabel("test MSE per pixel")
  ax.set_title("sklearn digits (8x8): reconstruction vs bottleneck")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def plot_grid(workdir: str, path: str) -> None:
  """One test image per digit (top) and its reconstruction (bottom)."""
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from encdec_jax.data import images
  from encdec_jax.train import experiment, inference
  config = experiment.load_config(workdir)
  exp, params, _ = inference.restore_latest(config, workdir)
  batch = next(iter(images.eval_batches(exp.sources["test"], config, 512)))
  first = [int(np.flatnonzero(batch["label"] == d)[0]) for d in range(10)
           if np.any(batch["label"] == d)]
  originals = batch["image"][first]
  logits = exp.model.apply({"params": params}, originals)
  recons = np.asarray(jax.nn.sigmoid(logits))
  fig, axes = plt.subplots(2, len(first), figsize=(len(first), 2.3))
  for i in range(len(first)):
    for row, pics in enumerate((originals, recons)):
      axes[row, i].imshow(pics[i, ..., 0], cmap="gray_r", vmin=0, vmax=1)
      axes[row, i].axis("off")
  axes[0, 0].set_title("test", fontsize=8, loc="left")
  axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
  fig.suptitle(f"{os.path.basename(workdir)}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv) -> None:
  if len(argv) < 2:
    sys.exit("usage: python -m encdec_jax.report_autoencoder RUNS_DIR "
             "[--out=DIR] [--grid=NAME]")
  root = argv[1]
  opts = dict(a[2:].split("=", 1) for a in argv[2:] if a.startswith("--"))
  out = opts.get("out", root)
  sweep, anomaly = collect(root)
  if not sweep and not anomaly:
    sys.exit(f"no finished autoencoder runs under {root}")
  os.makedirs(out, exist_ok=True)
  if sweep:
    plot_sweep(sweep, os.path.join(out, "autoencoder_sweep.png"))
  grid = os.path.join(root, opts.get("grid", "conv_z16"))
  if os.path.exists(os.path.join(grid, "results.json")):
    plot_grid(grid, os.path.join(out, "autoencoder_grid.png"))
  print(markdown(sweep, anomaly))


if __name__ == "__main__":
  main(sys.argv)
