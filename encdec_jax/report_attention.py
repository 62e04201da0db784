r"""Cross-attention heatmaps of trained translation models.

  python -m encdec_jax.report_attention runs/length/transformer \
      runs/length/attention [--out=docs/figures] [--words=4,10,16]

For test examples of about `words` source words each, each model
translates greedily; its own output is then fed back teacher-forced with
`mutable=["intermediates"]`, which collects the attention weights the modules
`sow` (Transformer: the last decoder layer's cross-attention, mean over heads;
RNN: the additive attention). Nothing re-implements the model. Writes
`attention_<workdir name>.png`: rows are output tokens, columns source tokens.
"""

import os
import sys

import jax
import numpy as np

from encdec_jax.models.contract import shift_right


def cross_attention(intermediates: dict) -> np.ndarray:
  """BxTxS weights from a model's sown intermediates."""
  decoder = intermediates["decoder"]
  if "attention_weights" in decoder:  # RNN: one additive attention
    return np.asarray(decoder["attention_weights"][0])
  last = max((k for k in decoder if k.startswith("layers_")),
             key=lambda k: int(k.split("_")[1]))
  weights_BxHxTxS = decoder[last]["cross_attention"]["attention_weights"][0]
  return np.asarray(weights_BxHxTxS).mean(axis=1)


def pick_examples(source, words: list[int]) -> list[int]:
  """Indices of the first test examples with about these many source words."""
  lengths = np.array([len(source[i]["source"].split())
                      for i in range(min(len(source), 500))])
  return [int(np.argmin(np.abs(lengths - w))) for w in words]


def attention_maps(workdir: str, words: list[int]):
  """[(source pieces, output pieces, TxS weights)] for test examples of
  about `words` source words each."""
  from encdec_jax.data import pipeline
  from encdec_jax.train import evaluate, experiment, inference
  config = experiment.load_config(workdir)
  config.decode.algorithm = "greedy"
  exp, params, _ = inference.restore_latest(config, workdir)
  indices = pick_examples(exp.sources["test"], words)
  examples = [exp.sources["test"][i] for i in indices]
  batch = next(iter(pipeline.eval_batches(examples, exp.tokenizer, config,
                                          len(examples))))
  tokens_BxT = evaluate.make_decode_fn(exp.model, config)(
      params, batch["inputs"], jax.random.key(0))
  _, state = exp.model.apply({"params": params}, batch["inputs"],
                             shift_right(tokens_BxT),
                             mutable=["intermediates"])
  weights_BxTxS = cross_attention(state["intermediates"])
  maps = []
  for b in range(len(examples)):
    src = [int(i) for i in batch["inputs"][b] if i != 0]
    out = [int(i) for i in np.asarray(tokens_BxT[b]) if i != 0]
    maps.append(([exp.tokenizer.piece(i) for i in src],
                 [exp.tokenizer.piece(i) for i in out],
                 weights_BxTxS[b, :len(out), :len(src)]))
  return maps


def plot(maps, title: str, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  heights = [len(out) for _, out, _ in maps]
  width = max(len(src) for src, _, _ in maps)
  fig, axes = plt.subplots(
      len(maps), 1, figsize=(0.16 * width + 1.5, 0.2 * sum(heights) + 2),
      gridspec_kw={"height_ratios": heights})
  for ax, (src, out, weights) in zip(np.atleast_1d(axes), maps):
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=90, fontsize=6)
    ax.set_yticks(range(len(out)), out, fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=130)


def main(argv) -> None:
  workdirs = [a for a in argv[1:] if not a.startswith("--")]
  opts = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--"))
  if not workdirs:
    sys.exit("usage: python -m encdec_jax.report_attention WORKDIR... "
             "[--out=DIR] [--words=4,10,16]")
  out = opts.get("out", ".")
  os.makedirs(out, exist_ok=True)
  for workdir in workdirs:
    name = os.path.basename(os.path.normpath(workdir))
    path = os.path.join(out, f"attention_{name}.png")
    words = [int(w) for w in opts.get("words", "4,10,16").split(",")]
    plot(attention_maps(workdir, words),
         f"{name}: cross-attention (rows: output, columns: source)", path)
    print(f"wrote {path}")


if __name__ == "__main__":
  main(sys.argv)
