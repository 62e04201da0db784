r"""Table, learning curves and figure of the pretraining study
(launch/pretrain_study.sh, experiments/pretrain_study.py).

  python -m encdec_jax.reports.pretrain --runs=runs/pretrain_study \
      [--out=docs/figures]

Reads every finished `<arm>_<pairs>_seed<seed>` workdir under --runs
(arm: pretrained or scratch; pairs: the training pairs it kept) and prints
as Markdown: exact match, BLEU, chrF and the teacher-forced loss on the
test split (command_calls: every value out of the training range, all
2,000 decoded) and exact match and loss on the validation split (in range,
the first 200), mean ± sample standard deviation over seeds (ddof=1); then
the learning curves, validation exact match and loss at each evaluation
(reports/curves.py reads metrics.jsonl), mean over seeds. Writes
`pretrain_study.png`: test BLEU and chrF against the number of training
pairs (exact match, often 0 in a short run, is in the table), and the
validation loss against the step.

With --copied_tokens=N, also the first N test commands teacher-forced
through each run's latest checkpoint: the token accuracy on the target
tokens that occur in the source (the copied values, mostly) and on the
others (the call's fixed words), mean over seeds: where an arm loses.
"""

import collections
import os

from absl import app, flags
import jax
import numpy as np

from encdec_jax.data import pipeline
from encdec_jax.models.contract import shift_right
from encdec_jax.reports import common, curves

ARMS = ("pretrained", "scratch")
RUN_NAME = r"(?P<arm>pretrained|scratch)_(?P<pairs>\d+)_seed(?P<seed>\d+)"
# (split, column heading, results.json key)
COLUMNS = (("test", "test exact match (%)", "exact_match"),
           ("test", "test BLEU", "bleu"), ("test", "test chrF", "chrf"),
           ("test", "test loss", "loss"),
           ("validation", "validation exact match (%)", "exact_match"),
           ("validation", "validation loss", "loss"))
COPIED_TOKENS = flags.DEFINE_integer(
    "copied_tokens", 0, "Test commands to split token accuracy on (copied "
    "from the source or not); 0: skip.")
flags.adopt_module_key_flags(common)


def collect(root: str) -> dict:
  """{(arm, pairs): [{"results": results.json, "curve": [validation rows
  of metrics.jsonl], "workdir": path} of each seed]} of the finished
  runs."""
  found = collections.defaultdict(list)
  for match, results in common.finished_runs(root, RUN_NAME):
    name = os.path.join(root, match.group(0))
    curve = [r for r in curves.read_metrics(name)
             if r["split"] == "validation" and "exact_match" in r]
    found[(match["arm"], int(match["pairs"]))].append(
        {"results": results, "curve": curve, "workdir": name})
  return dict(found)


def _cell(values: list[float], digits: int) -> str:
  cell = f"{np.mean(values):.{digits}f}"
  if len(values) > 1:
    cell += f" ± {np.std(values, ddof=1):.{digits}f}"
  return cell


def _mean_curve(runs: list[dict], key: str) -> tuple[list, list]:
  """Steps and the mean of `key` over the seeds that reached each step."""
  by_step = collections.defaultdict(list)
  for run in runs:
    for row in run["curve"]:
      by_step[row["step"]].append(row[key])
  steps = sorted(by_step)
  return steps, [float(np.mean(by_step[s])) for s in steps]


def markdown(found: dict) -> str:
  header = ["training pairs", "arm", "seeds", *(c[1] for c in COLUMNS)]
  rows = []
  for pairs in sorted({n for _, n in found}):
    for arm in [a for a in ARMS if (a, pairs) in found]:
      runs = found[(arm, pairs)]
      rows.append([f"{pairs:,}", arm, len(runs), *(
          _cell([r["results"][split][key] for r in runs],
                3 if key == "loss" else 1) for split, _, key in COLUMNS)])
  table = common.markdown_table(header, rows)
  steps = sorted({row["step"] for runs in found.values() for run in runs
                  for row in run["curve"]})
  curve_rows = []
  for (arm, pairs), runs in sorted(found.items(), key=lambda kv: kv[0][::-1]):
    exact = dict(zip(*_mean_curve(runs, "exact_match")))
    loss = dict(zip(*_mean_curve(runs, "loss")))
    curve_rows.append([f"{arm}, {pairs:,} pairs", *(
        f"{exact[s]:.1f} / {loss[s]:.3f}" if s in exact else "–"
        for s in steps)])
  return (table + "\n\nValidation exact match (%) / loss by step, mean over "
          "seeds:\n\n" + common.markdown_table(["run", *map(str, steps)],
                                                 curve_rows))


def plot(found: dict, path: str) -> None:
  fig, axes = common.pyplot().subplots(1, 3, figsize=(15, 4))
  colors = {"pretrained": "tab:blue", "scratch": "tab:orange"}
  styles = dict(zip(sorted({n for _, n in found}), (":", "--", "-")))
  for arm in ARMS:
    pairs = sorted(n for a, n in found if a == arm)
    for ax, key in zip(axes, ("bleu", "chrf")):
      values = [[r["results"]["test"][key] for r in found[(arm, n)]]
                for n in pairs]
      ax.errorbar(pairs, [np.mean(v) for v in values],
                  yerr=[np.std(v, ddof=1) if len(v) > 1 else 0
                        for v in values], marker="o", capsize=3,
                  color=colors[arm], label=arm)
    for n in pairs:
      axes[2].plot(*_mean_curve(found[(arm, n)], "loss"), marker=".",
                   color=colors[arm], linestyle=styles.get(n, "-"),
                   label=f"{arm}, {n:,} pairs")
  for ax, what in zip(axes, ("BLEU", "chrF")):
    ax.set_xscale("log", base=10)
    ax.set(xlabel="training pairs (command_calls)",
           ylabel=f"test {what}, out of range",
           title=f"Fine-tuned: test {what}")
  axes[2].set(xlabel="fine-tuning step", ylabel="validation loss (in range)",
              title="Learning curves (mean over seeds)")
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  common.save(fig, path)


def copied_hits(inputs_BxS, targets_BxT, right_BxT, real_BxT):
  """[hits, counts] of the real target tokens found in their row's source,
  then of the others."""
  hits, counts = np.zeros(2), np.zeros(2)
  for inputs_S, targets_T, right_T, real_T in zip(inputs_BxS, targets_BxT,
                                                  right_BxT, real_BxT):
    copied_T = np.isin(targets_T, inputs_S)
    for k, group_T in enumerate((copied_T & real_T, ~copied_T & real_T)):
      hits[k] += right_T[group_T].sum()
      counts[k] += group_T.sum()
  return np.stack([hits, counts])


def copied_token_accuracy(workdir: str, num_examples: int):
  """(accuracy on target tokens found in the source, on the other target
  tokens), teacher-forced, over the first test examples."""
  config, exp, params = common.restore(workdir)
  apply = jax.jit(lambda p, inputs, targets_in: exp.model.apply(
      {"params": p}, inputs, targets_in, deterministic=True))
  totals = np.zeros((2, 2))
  for batch in pipeline.eval_batches(exp.sources["test"], exp.tokenizer,
                                     config, config.eval_batch_size,
                                     num_examples):
    targets_BxT = np.asarray(batch["targets"])
    logits_BxTxV = apply(params, batch["inputs"], shift_right(targets_BxT))
    totals += copied_hits(
        np.asarray(batch["inputs"]), targets_BxT,
        np.asarray(logits_BxTxV.argmax(-1)) == targets_BxT,
        (targets_BxT > 0) & (batch["example_weight"][:, None] > 0))
  hits, counts = totals
  return tuple(100.0 * hits / np.maximum(counts, 1))


def copied_token_table(found: dict, num_examples: int) -> str:
  rows = []
  for (arm, pairs), runs in sorted(found.items(), key=lambda kv: kv[0][::-1]):
    accuracies = np.mean([copied_token_accuracy(run["workdir"], num_examples)
                          for run in runs], axis=0)
    rows.append([f"{pairs:,}", arm, len(runs),
                 *(f"{a:.1f}" for a in accuracies)])
  return (f"Token accuracy (%) on the first {num_examples} test commands, "
          "teacher-forced, mean over seeds:\n\n" + common.markdown_table(
              ["training pairs", "arm", "seeds", "tokens found in the source",
               "other tokens"], rows))


def report(root: str, out: str) -> None:
  common.report_study(root, os.path.join(out, "pretrain_study.png"), collect,
                      markdown, plot, "<arm>_<pairs>_seed<n>")


def main(argv) -> None:
  common.start(argv)
  report(common.RUNS.value, common.out_dir())
  if COPIED_TOKENS.value:
    print("\n" + copied_token_table(collect(common.RUNS.value),
                                     COPIED_TOKENS.value))


if __name__ == "__main__":
  flags.mark_flags_as_required(["runs"])
  app.run(main)
