r"""Table, learning curves and figure of the pretraining study
(launch/pretrain_study.sh, experiments/pretrain_study.py).

  python -m encdec_jax.reports.pretrain --runs=runs/pretrain_study \
      [--out=docs/figures]

Reads every finished `<arm>_<pairs>_seed<seed>` workdir under --runs
(arm: pretrained or scratch; pairs: the training pairs it kept) and prints
as Markdown: exact match and BLEU on the test split (command_calls: every
value out of the training range, all 2,000 decoded) and on the validation
split (in range, the first 200), mean ± sample standard deviation over
seeds (ddof=1); then the learning curves, validation exact match at each
evaluation (reports/curves.py reads metrics.jsonl), mean over seeds.
Writes `pretrain_study.png`: test exact match against the number of
training pairs, and the learning curves.
"""

import collections
import os

from absl import app, flags
import numpy as np

from encdec_jax.reports import common, curves

ARMS = ("pretrained", "scratch")
RUN_NAME = r"(?P<arm>pretrained|scratch)_(?P<pairs>\d+)_seed(?P<seed>\d+)"
SPLITS = (("test", "out of range"), ("validation", "in range"))
flags.adopt_module_key_flags(common)


def collect(root: str) -> dict:
  """{(arm, pairs): [{"results": results.json, "curve": [(step, exact
  match)]} of each seed]} of the finished runs."""
  found = collections.defaultdict(list)
  for match, results in common.finished_runs(root, RUN_NAME):
    name = os.path.join(root, match.group(0))
    curve = [(r["step"], r["exact_match"]) for r in curves.read_metrics(name)
             if r["split"] == "validation" and "exact_match" in r]
    found[(match["arm"], int(match["pairs"]))].append(
        {"results": results, "curve": curve})
  return dict(found)


def _cell(values: list[float]) -> str:
  cell = f"{np.mean(values):.1f}"
  if len(values) > 1:
    cell += f" ± {np.std(values, ddof=1):.1f}"
  return cell


def _mean_curve(runs: list[dict]) -> tuple[list, list]:
  """Steps and mean exact match over the seeds that reached each step."""
  by_step = collections.defaultdict(list)
  for run in runs:
    for step, exact in run["curve"]:
      by_step[step].append(exact)
  steps = sorted(by_step)
  return steps, [float(np.mean(by_step[s])) for s in steps]


def markdown(found: dict) -> str:
  header = ["training pairs", "arm", "seeds"]
  for split, where in SPLITS:
    header += [f"{split} ({where}) exact match (%)", f"{split} BLEU"]
  rows = []
  for pairs in sorted({n for _, n in found}):
    for arm in [a for a in ARMS if (a, pairs) in found]:
      runs = found[(arm, pairs)]
      row = [f"{pairs:,}", arm, len(runs)]
      for split, _ in SPLITS:
        row += [_cell([r["results"][split][k] for r in runs])
                for k in ("exact_match", "bleu")]
      rows.append(row)
  table = common.markdown_table(header, rows)
  steps = sorted({s for runs in found.values() for run in runs
                  for s, _ in run["curve"]})
  curve_rows = []
  for (arm, pairs), runs in sorted(found.items(), key=lambda kv: kv[0][::-1]):
    mean = dict(zip(*_mean_curve(runs)))
    curve_rows.append([f"{arm}, {pairs:,} pairs",
                       *(f"{mean[s]:.1f}" if s in mean else "–"
                         for s in steps)])
  return (table + "\n\nValidation exact match (%) by step, mean over seeds:"
          "\n\n" + common.markdown_table(["run", *map(str, steps)],
                                         curve_rows))


def plot(found: dict, path: str) -> None:
  fig, (left, right) = common.pyplot().subplots(1, 2, figsize=(11, 4))
  colors = {"pretrained": "tab:blue", "scratch": "tab:orange"}
  styles = dict(zip(sorted({n for _, n in found}), (":", "--", "-")))
  for arm in ARMS:
    points = sorted((n, [r["results"]["test"]["exact_match"] for r in runs])
                    for (a, n), runs in found.items() if a == arm)
    if not points:
      continue
    xs = [n for n, _ in points]
    left.errorbar(xs, [np.mean(v) for _, v in points],
                  yerr=[np.std(v) for _, v in points], marker="o",
                  capsize=3, color=colors[arm], label=arm)
    for n in xs:
      steps, exact = _mean_curve(found[(arm, n)])
      right.plot(steps, exact, marker=".", color=colors[arm],
                 linestyle=styles.get(n, "-"), label=f"{arm}, {n:,} pairs")
  left.set_xscale("log", base=10)
  left.set(xlabel="training pairs (command_calls)",
           ylabel="test exact match (%), out of range",
           title="Fine-tuned: pretrained vs scratch")
  right.set(xlabel="fine-tuning step",
            ylabel="validation exact match (%), in range",
            title="Learning curves (mean over seeds)")
  for ax in (left, right):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  common.save(fig, path)


def report(root: str, out: str) -> None:
  common.report_study(root, os.path.join(out, "pretrain_study.png"), collect,
                      markdown, plot, "<arm>_<pairs>_seed<n>")


def main(argv) -> None:
  common.start(argv)
  report(common.RUNS.value, common.out_dir())


if __name__ == "__main__":
  flags.mark_flags_as_required(["runs"])
  app.run(main)
