r"""Are a number LM's samples numbers? (experiments/number_lm.py)

  python -m encdec_jax.reports.lm --workdirs=runs/lm [--num=1000]

Samples `num` texts from the empty prompt with the workdir's config.decode,
and reports the share that are well-formed English numbers (exactly what
num2words writes for the number they parse to), new (not in the training
split) and distinct.
"""

import re

from absl import app, flags
import num2words

from encdec_jax import checkpoint
from encdec_jax.reports import common
from encdec_jax.data import lm, pipeline
from encdec_jax.decoding.config import describe_decoding
from encdec_jax.train import inference

NUM = flags.DEFINE_integer("num", 1000, "Samples drawn from the empty prompt.")
flags.adopt_module_key_flags(common)

_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9,
           "trillion": 10**12}


def parse_english(text: str) -> int | None:
  """The number English words name, or None if they name none."""
  words = [w for w in re.split(r"[ ,\-]+", text.strip()) if w and w != "and"]
  if not words:
    return None
  total, group = 0, 0
  for w in words:
    if w in _SMALL:
      group += _SMALL[w]
    elif w in _TENS:
      group += _TENS[w]
    elif w == "hundred":
      group *= 100
    elif w in _SCALES:
      total += group * _SCALES[w]
      group = 0
    else:
      return None
  return total + group


def well_formed(text: str) -> bool:
  """True iff `text` is num2words' spelling of the number it parses to."""
  n = parse_english(text)
  return n is not None and num2words.num2words(n) == text.strip()


def sample_report(texts: list[str], training: set[str]) -> dict:
  good = [t for t in texts if well_formed(t)]
  return {"samples": len(texts),
          "well_formed": 100.0 * len(good) / len(texts),
          "new": 100.0 * sum(t.strip() not in training for t in good) /
                 max(len(good), 1),
          "distinct": 100.0 * len(set(texts)) / len(texts)}


def main(argv) -> None:
  common.start(argv)
  for workdir in common.WORKDIRS.value:
    config = checkpoint.load_config(workdir)
    texts = inference.decode_lines(config, workdir, [""] * NUM.value)
    training = {e["target"] for e in pipeline.iter_examples(
        lm.make_source(config, "train"))}
    report = sample_report(texts, training)
    print(f"{workdir}: {report['samples']} samples "
          f"({describe_decoding(config)}): {report['well_formed']:.1f} % "
          f"well-formed numbers, {report['new']:.1f} % of those not in "
          f"training, {report['distinct']:.1f} % distinct")
    for t in texts[:5]:
      print(f"  {t}{'' if well_formed(t) else '   ✗'}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
