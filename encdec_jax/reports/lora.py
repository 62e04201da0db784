r"""Table and plot of the LoRA experiment (launch/lora_study.sh).

  python -m encdec_jax.reports.lora --runs=runs/lora_de_en [--out=DIR]

Reads every finished `<arm>_seed<seed>` workdir under --runs: its test exact
match (results.json; validation where the run had no test pass) and its
trainable parameters (counted from the workdir's config.json and the
parameter groups it trained with: frozen groups excluded). Prints arm,
trainable parameters, their share of the model and exact match (mean ±
sample standard deviation over seeds, ddof=1) as Markdown, and writes
lora.png (exact match vs trainable parameters, log scale).
"""

import collections
import os

from absl import app, flags
import numpy as np

from encdec_jax import checkpoint
from encdec_jax.reports import common
from encdec_jax.train import experiment, param_groups

RUN_NAME = r"(?P<arm>[a-z0-9_]+?)_seed(?P<seed>\d+)"
flags.adopt_module_key_flags(common)


def trainable(workdir: str) -> tuple[int, int]:
  """(trainable parameters, the model's parameters without adapters) of
  the run in `workdir`."""
  config = checkpoint.load_config(workdir)
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  params = experiment.abstract_params(exp)
  plan = param_groups.make_plan(config, params)
  counts = param_groups.count_by_group(plan, params)
  last = plan.training(config.num_train_steps - 1)
  model = params["base"] if set(params) == {"base", "lora"} else params
  return (sum(n for g, n in counts.items() if g in last),
          experiment.count_params(model))


def _score(results: dict) -> float:
  split = results.get("test") or results["validation"]
  return split.get("exact_match", float("nan"))


def collect(root: str) -> dict:
  """{arm: (trainable, total, [exact match of each seed])}."""
  found = collections.defaultdict(list)
  sizes = {}
  for match, results in common.finished_runs(root, RUN_NAME):
    arm = match["arm"]
    found[arm].append(_score(results))
    if arm not in sizes:
      sizes[arm] = trainable(os.path.join(root, match.group(0)))
  return {arm: (*sizes[arm], scores) for arm, scores in found.items()}


def markdown(found: dict) -> str:
  rows = []
  for arm, (n, total, scores) in sorted(found.items(), key=lambda x: x[1][0]):
    cell = f"{np.mean(scores):.2f}"
    if len(scores) > 1:
      cell += f" ± {np.std(scores, ddof=1):.2f} (n={len(scores)})"
    rows.append([arm, f"{n:,}", f"{100.0 * n / total:.2f} %", cell])
  return common.markdown_table(
      ["arm", "trainable params", "of the model", "exact match (%)"], rows)


def plot(found: dict, path: str) -> None:
  series = {arm: ([n], [np.mean(scores)])
            for arm, (n, _, scores) in found.items()}
  lora = sorted((n, np.mean(s)) for a, (n, _, s) in found.items()
                if a.startswith("lora"))
  if len(lora) > 1:
    series = {"LoRA (rank 2, 8, 32)": tuple(zip(*lora)),
              **{a: v for a, v in series.items() if not a.startswith("lora")}}
  common.line_plot(path, series, xlabel="trainable parameters",
                   ylabel="exact match (%)",
                   title="en→de model adapted to de→en numbers",
                   log_base=10)


def report(root: str, out: str) -> None:
  common.report_study(root, os.path.join(out, "lora.png"), collect, markdown,
                      plot, "<arm>_seed<n>")


def main(argv) -> None:
  common.start(argv)
  report(common.RUNS.value, common.out_dir())


if __name__ == "__main__":
  flags.mark_flags_as_required(["runs"])
  app.run(main)
