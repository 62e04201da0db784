r"""Show-Attend-Tell figures: where a trained captioner looks for each word.

  python -m encdec_jax.report_captions runs/captions/attention \
      [runs/captions/transformer ...] [--out=docs/figures] [--images=0,1,2,3]

For a few test images each model captions greedily; its own caption is then
fed back teacher-forced with `mutable=["intermediates"]`, which collects the
attention weights the modules `sow` (LSTM: the additive attention;
Transformer: the last decoder layer's cross-attention, mean over heads;
report_attention.cross_attention reads both). Each word's weights over the
H'xW' regions are drawn over the image, one panel per word (the EOS step
last). Nothing re-implements the model. Writes `captions_<workdir name>.png`.
"""

import os
import sys

import jax
import numpy as np

from encdec_jax.models.contract import shift_right
from encdec_jax.report_attention import cross_attention


def caption_attention(workdir: str, indices: list[int]):
  """[(image HxW, reference, [word pieces], TxGhxGw weights)] for test
  images `indices`."""
  from encdec_jax.data import captions
  from encdec_jax.train import evaluate, experiment, inference
  config = experiment.load_config(workdir)
  if config.get("task") != "captioning":
    raise ValueError(f"{workdir} holds a {config.get('task')!r} run; this "
                     "report draws a captioner's attention over images.")
  config.decode.algorithm = "greedy"
  exp, params, _ = inference.restore_latest(config, workdir)
  source = exp.sources["test"]
  examples = [source[i] for i in indices]
  first = captions.eval_batches(source, exp.tokenizer, config,
                                max(indices) + 1, max(indices) + 1)
  images = next(iter(first))["inputs"][np.asarray(indices)]
  tokens_BxT = np.asarray(evaluate.make_decode_fn(
      exp.model, config, exp.tokenizer.eos_id)(params, images,
                                               jax.random.key(0)))
  _, state = exp.model.apply({"params": params}, images,
                             shift_right(tokens_BxT),
                             mutable=["intermediates"])
  weights_BxTxN = cross_attention(state["intermediates"])
  grid_h, grid_w = exp.model.config.grid_shape()
  out = []
  for b, example in enumerate(examples):
    ids = [int(i) for i in tokens_BxT[b]]
    steps = ids.index(exp.tokenizer.eos_id) + 1 if (
        exp.tokenizer.eos_id in ids) else len(ids)
    words = [exp.tokenizer.piece(i).lstrip("▁") for i in ids[:steps]]
    out.append((images[b, :, :, 0], example["caption"], words,
                weights_BxTxN[b, :steps].reshape(steps, grid_h, grid_w)))
  return out


def plot(maps, title: str, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  columns = 1 + max(len(words) for _, _, words, _ in maps)
  image_h, image_w = maps[0][0].shape
  panel_w, panel_h = 1.8, 1.8 * image_h / image_w + 0.35
  fig, axes = plt.subplots(len(maps), columns, squeeze=False,
                           figsize=(panel_w * columns, panel_h * len(maps)))
  for row, (image, reference, words, weights) in zip(axes, maps):
    row[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    row[0].set_title(f"ref: {reference}", fontsize=7)
    for ax, word, w in zip(row[1:], words, weights):
      ax.imshow(image, cmap="gray", vmin=0, vmax=1)
      # Each region's weight spread over the pixels it covers (nearest).
      ax.imshow(w / max(w.max(), 1e-9), cmap="inferno", alpha=0.55,
                extent=(-0.5, image_w - 0.5, image_h - 0.5, -0.5),
                interpolation="nearest", vmin=0, vmax=1)
      ax.set_title(word, fontsize=8)
    for ax in row:
      ax.axis("off")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)


def main(argv) -> None:
  workdirs = [a for a in argv[1:] if not a.startswith("--")]
  opts = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--"))
  if not workdirs:
    sys.exit("usage: python -m encdec_jax.report_captions WORKDIR... "
             "[--out=DIR] [--images=0,1,2,3]")
  out = opts.get("out", ".")
  os.makedirs(out, exist_ok=True)
  indices = [int(i) for i in opts.get("images", "0,1,2,3").split(",")]
  for workdir in workdirs:
    name = os.path.basename(os.path.normpath(workdir))
    path = os.path.join(out, f"captions_{name}.png")
    plot(caption_attention(workdir, indices),
         f"{name}: attention over the image regions for each generated word "
         "(weights scaled to each panel's max)", path)
    print(f"wrote {path}")


if __name__ == "__main__":
  main(sys.argv)
