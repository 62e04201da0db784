r"""Cross-attention heatmaps of trained translation models.

  python -m encdec_jax.reports.attention \
      --workdirs=runs/length/transformer,runs/length/attention \
      [--out=docs/figures] [--words=4,10,16]

For test examples of about `words` source words each, each model
translates greedily; its own output is then fed back teacher-forced with
`mutable=["intermediates"]`, which collects the attention weights the modules
`sow` (Transformer: the last decoder layer's cross-attention, mean over heads;
RNN: the additive attention). Nothing re-implements the model. Writes
`attention_<workdir name>.png`: rows are output tokens, columns source tokens.
"""

from absl import app, flags
import jax
import numpy as np

from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.models.contract import shift_right
from encdec_jax.reports import common
from encdec_jax.data import pipeline

WORDS = flags.DEFINE_list("words", ["4", "10", "16"], "Source lengths (in "
                          "words) of the test examples drawn.")
flags.adopt_module_key_flags(common)


def cross_attention(intermediates: dict) -> np.ndarray:
  """BxTxS weights from a model's sown intermediates."""
  decoder = intermediates["decoder"]
  if "attention_weights" in decoder:  # RNN: one additive attention
    return np.asarray(decoder["attention_weights"][0])
  last = max((k for k in decoder if k.startswith("layers_")),
             key=lambda k: int(k.split("_")[1]))
  weights_BxHxTxS = decoder[last]["cross_attention"]["attention_weights"][0]
  return np.asarray(weights_BxHxTxS).mean(axis=1)


def attention_to_own_output(exp, config, params, inputs):
  """(tokens_BxT, weights_BxTxS): the model's greedy output for `inputs`
  (token ids, or images), and its cross-attention while reading it back."""
  decode = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)
  tokens_BxT = np.asarray(decode(params, inputs, jax.random.key(0)))
  _, state = exp.model.apply({"params": params}, inputs,
                             shift_right(tokens_BxT),
                             mutable=["intermediates"])
  return tokens_BxT, cross_attention(state["intermediates"])


def pick_examples(source, words: list[int]) -> list[int]:
  """Indices of the first test examples with about these many source words."""
  lengths = np.array([len(source[i]["source"].split())
                      for i in range(min(len(source), 500))])
  return [int(np.argmin(np.abs(lengths - w))) for w in words]


def attention_maps(workdir: str, words: list[int]):
  """[(source pieces, output pieces, TxS weights)] for test examples of
  about `words` source words each."""
  config, exp, params = common.restore(workdir)
  test = exp.sources["test"]
  examples = [test[i] for i in pick_examples(test, words)]
  batch = next(iter(pipeline.eval_batches(examples, exp.tokenizer, config,
                                          len(examples))))
  tokens_BxT, weights_BxTxS = attention_to_own_output(exp, config, params,
                                                      batch["inputs"])
  maps = []
  for b in range(len(examples)):
    src = [int(i) for i in batch["inputs"][b] if i != 0]
    out = [int(i) for i in tokens_BxT[b] if i != 0]
    maps.append(([exp.tokenizer.piece(i) for i in src],
                 [exp.tokenizer.piece(i) for i in out],
                 weights_BxTxS[b, :len(out), :len(src)]))
  return maps


def plot(maps, title: str, path: str) -> None:
  heights = [len(out) for _, out, _ in maps]
  width = max(len(src) for src, _, _ in maps)
  fig, axes = common.pyplot().subplots(
      len(maps), 1, figsize=(0.16 * width + 1.5, 0.2 * sum(heights) + 2),
      gridspec_kw={"height_ratios": heights})
  for ax, (src, out, weights) in zip(np.atleast_1d(axes), maps):
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(src)), src, rotation=90, fontsize=6)
    ax.set_yticks(range(len(out)), out, fontsize=7)
  fig.suptitle(title, fontsize=9)
  common.save(fig, path, dpi=130)


def main(argv) -> None:
  common.start(argv)
  out = common.out_dir()
  for workdir in common.WORKDIRS.value:
    name = common.name_of(workdir)
    plot(attention_maps(workdir, [int(w) for w in WORDS.value]),
         f"{name}: cross-attention (rows: output, columns: source)",
         f"{out}/attention_{name}.png")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
