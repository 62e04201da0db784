"""Value substitution: training pairs whose copied values are swapped for
random ones of the same shape, on both sides (config.substitute_values).

A model with a copy head still learns *which* values it copies from the
training values: shown a value whose first characters or length no training
value had, it copies the first piece and then writes EOS or a frequent
training ending (docs/copy.md). Replacing, in a fraction of the training
pairs, each value by a random string makes the values themselves
unpredictable, so the model can only copy them:

  "send 3120 dollars to mepa" -> "pay | to mepa | amount 3120"
  "send 907315 dollars to tinoveka" -> "pay | to tinoveka | amount 907315"

What a value is (no task-specific rule, so it works on any TSV): a word
(a run of letters and digits, joined by inner ":", ".", ",", "/", "-" or
"'": "14:18", "3,120", "A-113"; punctuation around it is not part of it)
found verbatim in both the source and the target that holds a digit, or
that is rare in the training sources (in at most `max_frequency` of them:
names and codes, not the template's words). Each
run of digits, lower-case or upper-case letters is redrawn with a length
from 1 to 2 more than its own (so longer values than training's are seen)
from the characters of that class in the training text (so every tokenizer
trained on it reads them); other characters (":", "-", ".") stay. The same
word becomes the same string on both sides.

Deterministic per (seed, record index): a resumed run reads exactly the
batches it would have read.
"""

import collections
import dataclasses
import itertools
import re
from typing import Iterable

import numpy as np

# Character classes a value's characters are redrawn within.
CLASSES = (str.isdigit, str.islower, str.isupper)
# A word: letters and digits, with inner joiners ("14:18", "A-113").
WORD = re.compile(r"[^\W_]+(?:[:.,/\-'][^\W_]+)*")


@dataclasses.dataclass(frozen=True)
class CorpusStats:
  """What the substitution needs to know of the training text."""
  word_frequency: dict  # word -> fraction of training sources holding it
  alphabets: tuple  # per CLASSES: the characters of that class seen, sorted


def corpus_stats(examples: Iterable[dict]) -> CorpusStats:
  """Word document frequencies of the sources and the characters per class
  of sources and targets."""
  counts, chars, n = collections.Counter(), set(), 0
  for example in examples:
    n += 1
    counts.update(set(words(example["source"])))
    chars.update(example["source"], example["target"])
  return CorpusStats(
      word_frequency={w: c / max(n, 1) for w, c in counts.items()},
      alphabets=tuple("".join(sorted(c for c in chars if is_class(c)))
                      for is_class in CLASSES))


def words(text: str) -> list[str]:
  return WORD.findall(text)


def is_value(word: str, stats: CorpusStats, max_frequency: float) -> bool:
  return (any(c.isdigit() for c in word) or
          stats.word_frequency.get(word, 0.0) <= max_frequency)


def char_class(c: str) -> int | None:
  """The index in CLASSES of c's class, None for the characters kept."""
  return next((k for k, is_class in enumerate(CLASSES) if is_class(c)), None)


def random_like(word: str, stats: CorpusStats,
                rng: np.random.Generator) -> str:
  """`word` with each run of one class redrawn (length 1 to len + 2)."""
  out = []
  for k, run in itertools.groupby(word, char_class):
    run = "".join(run)
    if k is None or not stats.alphabets[k]:
      out.append(run)  # ":", "-", ".", letters without case: kept
      continue
    length = int(rng.integers(1, len(run) + 3))
    out.append("".join(rng.choice(list(stats.alphabets[k]), length)))
  return "".join(out)


def new_value(word: str, stats: CorpusStats, max_frequency: float,
              rng: np.random.Generator) -> str:
  """A random_like string that is not one of the corpus's common words."""
  for _ in range(10):
    value = random_like(word, stats, rng)
    if is_value(value, stats, max_frequency):
      return value
  return word


def replace_words(text: str, mapping: dict) -> str:
  """`text` with each word (WORD) in `mapping` replaced; the rest kept."""
  return WORD.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def substitute(example: dict, index: int, *, stats: CorpusStats,
               probability: float, max_frequency: float, seed: int) -> dict:
  """`example` with its shared values redrawn, with `probability`;
  determined by (seed, index)."""
  rng = np.random.default_rng([seed, index, 0x5B])
  if rng.random() >= probability:
    return example
  shared = set(words(example["source"])) & set(words(example["target"]))
  values = sorted(w for w in shared if is_value(w, stats, max_frequency))
  if not values:
    return example
  mapping = {w: new_value(w, stats, max_frequency, rng) for w in values}
  return dict(example, source=replace_words(example["source"], mapping),
              target=replace_words(example["target"], mapping))


def check_config(config) -> None:
  p = config.get("substitute_values", 0.0)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"config.substitute_values={p} is the probability a "
                     "training pair's values are redrawn; use 0 (off) to 1.")
