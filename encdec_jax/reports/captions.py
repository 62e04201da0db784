r"""Show-Attend-Tell figures: where a trained captioner looks for each word.

  python -m encdec_jax.reports.captions \
      --workdirs=runs/captions/attention[,runs/captions/transformer] \
      [--out=docs/figures] [--images=0,1,2,3]

For a few test images each model captions greedily; its own caption is then
fed back teacher-forced with `mutable=["intermediates"]`, which collects the
attention weights the modules `sow` (LSTM: the additive attention;
Transformer: the last decoder layer's cross-attention, mean over heads;
attention.cross_attention reads both). Each word's weights over the H'xW'
regions are drawn over the image, one panel per word (the EOS step last).
Nothing re-implements the model. Writes `captions_<workdir name>.png`.
"""

from absl import app, flags
import numpy as np

from encdec_jax.reports import common
from encdec_jax.reports.attention import attention_to_own_output
from encdec_jax.data import captions
from encdec_jax.models.captioner import Captioner

IMAGES = flags.DEFINE_list("images", ["0", "1", "2", "3"], "Indices of the "
                           "test images drawn.")
flags.adopt_module_key_flags(common)


def caption_attention(workdir: str, indices: list[int]):
  """[(image HxW, reference, [word pieces], TxGhxGw weights)] for test
  images `indices`."""
  config, exp, params = common.restore(workdir)
  if not isinstance(exp.model, Captioner):
    raise ValueError(f"{workdir} holds a {exp.task.name!r} run; this report "
                     "draws a captioner's attention over images.")
  source = exp.sources["test"]
  first = captions.eval_batches(source, exp.tokenizer, config,
                                max(indices) + 1, max(indices) + 1)
  images = next(iter(first))["inputs"][np.asarray(indices)]
  tokens_BxT, weights_BxTxN = attention_to_own_output(exp, config, params,
                                                      images)
  grid_h, grid_w = exp.model.config.grid_shape()
  eos = exp.tokenizer.eos_id
  out = []
  for b, i in enumerate(indices):
    ids = [int(t) for t in tokens_BxT[b]]
    steps = ids.index(eos) + 1 if eos in ids else len(ids)
    words = [exp.tokenizer.piece(t).lstrip("▁") for t in ids[:steps]]
    out.append((images[b, :, :, 0], source[i]["caption"], words,
                weights_BxTxN[b, :steps].reshape(steps, grid_h, grid_w)))
  return out


def plot(maps, title: str, path: str) -> None:
  columns = 1 + max(len(words) for _, _, words, _ in maps)
  image_h, image_w = maps[0][0].shape
  panel_w, panel_h = 1.8, 1.8 * image_h / image_w + 0.35
  fig, axes = common.pyplot().subplots(
      len(maps), columns, squeeze=False,
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
  common.save(fig, path, dpi=130)


def main(argv) -> None:
  common.start(argv)
  out = common.out_dir()
  indices = [int(i) for i in IMAGES.value]
  for workdir in common.WORKDIRS.value:
    name = common.name_of(workdir)
    plot(caption_attention(workdir, indices),
         f"{name}: attention over the image regions for each generated word "
         "(weights scaled to each panel's max)", f"{out}/captions_{name}.png")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
