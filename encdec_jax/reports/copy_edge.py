r"""Copy beyond the edge: exact match in range, out of range and on values
whose beginning no training value had, per remedy, mean ± s.d. over seeds
(launch/copy_study.sh; docs/copy.md).

  python -m encdec_jax.reports.copy_edge --runs=runs/copy [--out=docs/figures]

For every finished run on `command_calls` (results.json: validation is in
range, test out of range) the test_novel_prefix split is decoded whole from
the run's latest checkpoint, greedy, once: its metrics are kept in
<run>/novel_prefix.json. Runs named ARM and ARM_seed1 are the seeds of ARM.
Prints the table as Markdown and writes copy_edge.png (bars: the three
splits per arm, s.d. as error bars).
"""

import json
import os

from absl import app
import numpy as np

from encdec_jax.data import sources
from encdec_jax.reports import common

GENERALISATION = "command_calls"
NOVEL_SPLIT = "test_novel_prefix"
NOVEL_FILE = "novel_prefix.json"
SEED_SUFFIX = "_seed1"
SPLITS = (("validation", "in range"), ("test", "out of range"),
          (NOVEL_SPLIT, "novel prefix"))


def novel_prefix_metrics(workdir: str) -> dict:
  """The run's metrics on test_novel_prefix (all of it, greedy), computed
  from its checkpoint once and then read from <workdir>/novel_prefix.json."""
  path = os.path.join(workdir, NOVEL_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  config, exp, params = common.restore(workdir)
  exp.sources[NOVEL_SPLIT] = sources.tfds_source(
      config.dataset, NOVEL_SPLIT, config.get("data_dir"))
  result = exp.task.make_evaluator(exp)(params, NOVEL_SPLIT, num_loss=None,
                                        num_decode=None)
  metrics = {k: float(v) for k, v in result.metrics.items()}
  print(f"{os.path.basename(workdir)} {NOVEL_SPLIT}: {result.summary}")
  for sample in result.samples:
    print(sample)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(metrics, f, indent=1)
  return metrics


def collect(runs_dir: str) -> dict:
  """{arm: [{split: exact match %, "minutes": wall time}] one per seed} of
  the finished command_calls runs."""
  arms = {}
  for match, results in common.finished_runs(runs_dir):
    name = match.group(0)
    workdir = os.path.join(runs_dir, name)
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
      if not json.load(f)["dataset"].startswith(GENERALISATION):
        continue
    row = {"validation": results["validation"]["exact_match"],
           "test": results["test"]["exact_match"],
           NOVEL_SPLIT: novel_prefix_metrics(workdir)["exact_match"],
           "minutes": results["wall_time_s"] / 60}
    arms.setdefault(name.removesuffix(SEED_SUFFIX), []).append(row)
  return arms


def mean_sd(values) -> str:
  """"m ± s" (s: sample s.d., ddof 1), or "m" for a single seed."""
  if len(values) == 1:
    return f"{values[0]:.2f}"
  return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def table(arms: dict) -> str:
  rows = []
  for arm, seeds in arms.items():
    rows.append([f"`{arm}`", str(len(seeds))] +
                [mean_sd([s[split] for s in seeds]) for split, _ in SPLITS] +
                [f"{np.mean([s['minutes'] for s in seeds]):.1f}"])
  return common.markdown_table(
      ["arm", "seeds"] + [f"{label} %" for _, label in SPLITS] + ["min"],
      rows)


def plot(arms: dict, path: str) -> None:
  names = list(arms)
  x = np.arange(len(names))
  fig, ax = common.pyplot().subplots(figsize=(1.3 * len(names) + 2.5, 4))
  for k, (split, label) in enumerate(SPLITS):
    values = [[s[split] for s in arms[n]] for n in names]
    means = [np.mean(v) for v in values]
    sds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
    bars = ax.bar(x + (k - 1) * 0.27, means, 0.27, yerr=sds, capsize=2,
                  label=label)
    ax.bar_label(bars, [f"{m:.0f}" for m in means], fontsize=7)
  ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
  ax.set(ylabel="exact match (%)", ylim=(0, 110),
         title="commands → calls with copy: values past the edge")
  ax.legend(loc="lower left", fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  common.save(fig, path)


def main(argv) -> None:
  common.start(argv)
  if not common.RUNS.value:
    raise app.UsageError("name the study's directory with --runs=DIR.")
  arms = collect(common.RUNS.value)
  if not arms:
    raise app.UsageError(f"no finished command_calls runs (results.json) "
                         f"under {common.RUNS.value}.")
  print(table(arms))
  plot(arms, os.path.join(common.out_dir(), "copy_edge.png"))


if __name__ == "__main__":
  app.run(main)
