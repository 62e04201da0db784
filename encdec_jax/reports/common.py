"""What the reports share: their flags, a workdir's config and latest
checkpoint, the finished runs of a study, Markdown tables and figures."""

import json
import os
import re
import sys

from absl import app, flags, logging
from encdec_jax import checkpoint
from encdec_jax.train import inference

WORKDIRS = flags.DEFINE_list("workdirs", None, "Training workdirs to report "
                             "on, comma-separated.")
RUNS = flags.DEFINE_string("runs", None, "Directory holding a study's "
                           "workdirs (launch/*_study.sh).")
OUT = flags.DEFINE_string("out", None, "Directory for the figures; default: "
                          "--runs, else the current directory.")


def start(argv: list[str]) -> None:
  """Refuses positional arguments; quiets library INFO logs (orbax) unless
  --verbosity is given."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}: name the runs "
                         "with --workdirs=DIR[,DIR] or --runs=DIR.")


def out_dir() -> str:
  path = OUT.value or RUNS.value or "."
  os.makedirs(path, exist_ok=True)
  return path


def name_of(workdir: str) -> str:
  return os.path.basename(os.path.normpath(workdir))


def restore(workdir: str, greedy: bool = True):
  """(config, experiment, params) of a workdir's latest checkpoint, with the
  config it was trained with; `greedy` overrides its decoding algorithm."""
  config = checkpoint.load_config(workdir)
  if greedy:
    config.decode.algorithm = "greedy"
  exp, params, _ = inference.restore_latest(config, workdir)
  return config, exp, params


def finished_runs(root: str, pattern: str = r".+"):
  """[(name match, results.json)] of the workdirs under `root` whose name
  matches `pattern` and whose run finished (wrote results.json)."""
  found = []
  for name in sorted(os.listdir(root)):
    match = re.fullmatch(pattern, name)
    path = os.path.join(root, name, "results.json")
    if match and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        found.append((match, json.load(f)))
  return found


def report_study(root: str, png: str, collect, markdown, plot,
                 pattern: str) -> None:
  """A study's finished runs under `root` as a Markdown table on stdout and
  a figure at `png`."""
  found = collect(root)
  if not found:
    sys.exit(f"no finished {pattern} runs in {root}")
  print(markdown(found))
  plot(found, png)


def markdown_table(header: list, rows: list[list]) -> str:
  """The first column left-aligned, the others right-aligned."""
  lines = [header, ["---"] + ["---:"] * (len(header) - 1), *rows]
  return "\n".join("| " + " | ".join(str(c) for c in line) + " |"
                   for line in lines)


def pyplot():
  """matplotlib.pyplot, drawing to files only."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save(fig, path: str, dpi: int = 120) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)
  print(f"wrote {path}")


def line_plot(path: str, series: dict, *, xlabel: str, ylabel: str,
              title: str, log_base=None, xticks=None, ylim=None) -> None:
  """One line per {label: (xs, ys)}, with markers, grid and legend; x on a
  log scale with `log_base`."""
  fig, ax = pyplot().subplots(figsize=(6, 4))
  for label, (xs, ys) in series.items():
    ax.plot(xs, ys, marker="o", label=label)
  if log_base:
    ax.set_xscale("log", base=log_base)
  if xticks:
    ax.set_xticks(*xticks)
  if ylim:
    ax.set_ylim(*ylim)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.grid(alpha=0.3)
  ax.legend()
  save(fig, path)
