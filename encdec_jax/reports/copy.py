r"""The copy study: exact match in range vs out of range, per model, and
where the pointer looks (launch/copy_study.sh).

  python -m encdec_jax.reports.copy --runs=runs/copy [--out=docs/figures] \
      [--heatmaps=transformer_copy,transformer,rnn_copy] [--examples=3]

Reads results.json of every finished workdir under --runs: on
`command_calls` the validation split is in range and test out of range
(experiments/copy_generalisation.py), so the table's columns are their exact
match and the gap; a run on another dataset (the main job with copy,
`en_de_copy`) is listed below it with its test exact match. Writes
`copy_generalisation.png` (bars: in range vs out of range per run) and, for
each run named in --heatmaps, `copy_pointer_<run>.png`: for the first
--examples test commands, the model's own greedy output read back with
mutable=["intermediates"] (nothing re-implemented): a copy model's pointer
(rows: output tokens, columns: source tokens) with p_gen beside each row, or
a plain model's cross-attention (last layer, mean over heads). Also prints
the table as Markdown and those examples with their outputs.
"""

import json
import os

from absl import app, flags
import jax
import numpy as np

from encdec_jax.reports import common
from encdec_jax.data import pipeline
from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.models.contract import shift_right
from encdec_jax.reports.attention import cross_attention

HEATMAPS = flags.DEFINE_list(
    "heatmaps", ["transformer_copy", "transformer", "rnn_copy"],
    "Runs (workdir names under --runs) whose pointer / attention to draw.")
EXAMPLES = flags.DEFINE_integer("examples", 3, "Test examples per heatmap.")
flags.adopt_module_key_flags(common)

GENERALISATION = "command_calls"


def describe(config: dict) -> str:
  """What a run is, from its config.json."""
  model = config["model"]
  family = model.get("family", "transformer")
  parts = [family, config.get("tokenizer", "sentencepiece")]
  if model.get("copy"):
    parts.append("copy")
  if config.get("copy_supervision"):
    parts.append(f"supervised copy {config['copy_supervision']}")
  if config.get("substitute_values"):
    parts.append(f"value substitution {config['substitute_values']}")
  if model.get("relative_position_buckets"):
    parts.append("relative positions")
  if model.get("dropout_rate", 0) >= 0.2 or config["label_smoothing"] > 0.1:
    parts.append(f"dropout {model['dropout_rate']}, label smoothing "
                 f"{config['label_smoothing']}")
  return ", ".join(parts)


def collect(runs_dir: str):
  """[(name, config, results)] of the finished runs, in name order."""
  out = []
  for match, results in common.finished_runs(runs_dir):
    name = match.group(0)
    with open(os.path.join(runs_dir, name, "config.json"),
              encoding="utf-8") as f:
      out.append((name, json.load(f), results))
  return out


def table(runs) -> str:
  rows, others = [], []
  for name, config, results in runs:
    minutes = f"{results['wall_time_s'] / 60:.1f}"
    if config["dataset"].startswith(GENERALISATION):
      inside = results["validation"]["exact_match"]
      outside = results["test"]["exact_match"]
      rows.append([f"`{name}`", describe(config), f"{inside:.2f}",
                   f"{outside:.2f}", f"{inside - outside:.2f}", minutes])
    else:
      others.append([f"`{name}`", describe(config), config["dataset"],
                     f"{results['test']['exact_match']:.2f}", minutes])
  text = common.markdown_table(
      ["run", "model", "in range (validation) %", "out of range (test) %",
       "gap", "min"], rows)
  if others:
    text += "\n\n" + common.markdown_table(
        ["run", "model", "dataset", "test exact match %", "min"], others)
  return text


def plot_bars(runs, path: str) -> None:
  runs = [r for r in runs if r[1]["dataset"].startswith(GENERALISATION)]
  names = [name for name, _, _ in runs]
  inside = [r["validation"]["exact_match"] for _, _, r in runs]
  outside = [r["test"]["exact_match"] for _, _, r in runs]
  x = np.arange(len(names))
  fig, ax = common.pyplot().subplots(figsize=(1.0 * len(names) + 2.5, 4))
  for offset, values, label in ((-0.2, inside, "in range (validation)"),
                                (0.2, outside, "out of range (test)")):
    bars = ax.bar(x + offset, values, 0.4, label=label)
    ax.bar_label(bars, [f"{v:.0f}" for v in values], fontsize=7)
  ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
  ax.set(ylabel="exact match (%)", ylim=(0, 108),
         title="commands → calls: values seen in training vs never seen")
  ax.legend(loc="lower left", fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  common.save(fig, path)


def pointer_maps(workdir: str, num_examples: int):
  """[(source pieces, output pieces, TxS weights, p_gen T or None, reference,
  output text)] for the first test examples."""
  config, exp, params = common.restore(workdir)
  test = exp.sources["test"]
  examples = [test[i] for i in range(num_examples)]
  batch = next(iter(pipeline.eval_batches(examples, exp.tokenizer, config,
                                          len(examples))))
  decode = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)
  tokens_BxT = np.asarray(decode(params, batch["inputs"], jax.random.key(0)))
  _, state = exp.model.apply({"params": params}, batch["inputs"],
                             shift_right(tokens_BxT),
                             mutable=["intermediates"])
  decoder = state["intermediates"]["decoder"]
  p_gen_BxT = None
  if "copy_head" in decoder:
    weights_BxTxS = np.asarray(decoder["copy_head"]["pointer"][0])
    p_gen_BxT = np.asarray(decoder["copy_head"]["p_gen"][0])
    if weights_BxTxS.ndim == 4:  # RNN: sown per step, Bx1xS stacked on axis 1
      weights_BxTxS, p_gen_BxT = weights_BxTxS[:, :, 0], p_gen_BxT[:, :, 0]
  else:
    weights_BxTxS = cross_attention(state["intermediates"])
  maps = []
  for b, example in enumerate(examples):
    src = [int(i) for i in batch["inputs"][b] if i != 0]
    out = [int(i) for i in tokens_BxT[b] if i != 0]
    maps.append(([exp.tokenizer.piece(i) for i in src],
                 [exp.tokenizer.piece(i) for i in out],
                 weights_BxTxS[b, :len(out), :len(src)],
                 None if p_gen_BxT is None else p_gen_BxT[b, :len(out)],
                 example["target"], exp.tokenizer.decode(tokens_BxT[b])))
  return maps


def plot_maps(maps, title: str, path: str) -> None:
  heights = [len(out) for _, out, _, _, _, _ in maps]
  width = max(len(src) for src, _, _, _, _, _ in maps)
  fig, axes = common.pyplot().subplots(
      len(maps), 1, figsize=(0.2 * width + 2.5, 0.19 * sum(heights) + 2),
      gridspec_kw={"height_ratios": heights})
  for ax, (src, out, weights, p_gen, _, _) in zip(np.atleast_1d(axes), maps):
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=90, fontsize=6)
    labels = out if p_gen is None else [
        f"{piece}  {g:.2f}" for piece, g in zip(out, p_gen)]
    ax.set_yticks(range(len(out)), labels, fontsize=6)
  fig.suptitle(title, fontsize=9)
  common.save(fig, path, dpi=130)


def main(argv) -> None:
  common.start(argv)
  if not common.RUNS.value:
    raise app.UsageError("name the study's directory with --runs=DIR.")
  runs = collect(common.RUNS.value)
  if not runs:
    raise app.UsageError(f"no finished runs (results.json) under "
                         f"{common.RUNS.value}.")
  out = common.out_dir()
  print(table(runs))
  plot_bars(runs, os.path.join(out, "copy_generalisation.png"))
  finished = {name for name, _, _ in runs}
  for name in HEATMAPS.value:
    if name not in finished:
      print(f"(no heatmap for {name}: not a finished run)")
      continue
    maps = pointer_maps(os.path.join(common.RUNS.value, name),
                        EXAMPLES.value)
    copies = maps[0][3] is not None
    plot_maps(maps, f"{name}: " + (
        "pointer (rows: output, with p_gen; columns: source)" if copies else
        "cross-attention, last layer (rows: output; columns: source)"),
        os.path.join(out, f"copy_pointer_{name}.png"))
    for _, _, _, _, reference, output in maps:
      mark = "✓" if output.strip() == reference.strip() else "✗"
      print(f"  {name} {mark} {output}\n      ref {reference}")


if __name__ == "__main__":
  app.run(main)
