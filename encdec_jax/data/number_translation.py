"""Spelled-out number translation: an offline TFDS dataset made with num2words.

The task is to translate a number written in one language into the words of
another, e.g. for the default config `en_de`:

  "one hundred and twenty-three thousand, four hundred and fifty-six"
  -> "einhundertdreiundzwanzigtausendvierhundertsechsundfünfzig"

Small as it is, this is a real translation test rather than a copy task:
source and target lengths are unaligned (German writes the whole number as one
word, English uses spaces, hyphens, "and" and commas), word order changes
locally ("twenty-four" -> "vierundzwanzig": units before tens), and French adds
irregular vigesimal forms ("ninety-nine" -> "quatre-vingt-dix-neuf") and long
scales (`en_fr_1e12`). `digits_en` ("24" -> "twenty-four") is a warm-up whose
source needs no reading of words. Exact match and BLEU are both meaningful, and
the ground truth is unambiguous.

Splits are over disjoint numbers, so test measures generalisation to unseen
numbers, not memorisation. Numbers are drawn with a fixed seed from a mixture
(half uniform over [0, max_number), half with a uniform digit count) so short
numbers are present too, deduplicated, shuffled and split by position: the same
config always yields the same data.

Generation needs no network and no TensorFlow: `prepare` writes array_record
files that `tfds.data_source` reads back.
"""
import concurrent.futures
import copy
import dataclasses
import functools
import multiprocessing
import os

from etils import epath
import num2words
import numpy as np
import tensorflow_datasets as tfds

from encdec_jax.data import prepare_once

DIGITS = 'digits'  # "language" that renders a number as str(n).
_CHUNK = 8192  # Numbers per worker task: large, so pickling overhead is tiny.
# TFDS serialises examples in the main process at ~75 us each, slower than
# rendering a pair (~50 us), so a few workers already keep up with it.
_MAX_WORKERS = 4


@dataclasses.dataclass(eq=False, kw_only=True)
class NumberTranslationConfig(tfds.core.BuilderConfig):
  """Which languages, which numbers, and how many per split."""
  source_lang: str = 'en'
  target_lang: str = 'de'
  max_number: int = 10**6  # Numbers are drawn from [0, max_number).
  num_train: int = 200_000
  num_validation: int = 2_000
  num_test: int = 2_000
  seed: int = 0


def sample_numbers(max_number: int, count: int, seed: int) -> list[int]:
  """`count` distinct numbers from [0, max_number) in a seeded random order."""
  if not 0 < count <= max_number:
    raise ValueError(f'Cannot draw {count} distinct numbers below {max_number}.')
  if max_number > 10**18:
    raise ValueError(f'max_number={max_number} does not fit in int64.')
  rng = np.random.default_rng(seed)
  max_digits = len(str(max_number - 1))
  seen = {}  # A dict dedupes while keeping first-seen order (deterministic).
  while len(seen) < count:
    n = max(count, 1024)
    uniform = rng.integers(0, max_number, n)
    digits = rng.integers(1, max_digits + 1, n)
    lo = np.where(digits == 1, 0, 10 ** (digits - 1))
    by_length = rng.integers(lo, np.minimum(10**digits, max_number))
    drawn = np.where(rng.random(n) < 0.5, uniform, by_length)
    for x in drawn.tolist():
      seen.setdefault(x, None)
      if len(seen) == count:
        break
  # Short numbers are seen first; shuffling spreads them over all splits.
  return rng.permutation(np.fromiter(seen, np.int64, count)).tolist()


@functools.cache
def _renderer(lang: str, max_number: int):
  """Returns n -> words in `lang`, identical to num2words but 4-9x faster.

  num2words' splitnum scans the language's whole card table (up to 10**600)
  from the top at every recursion step and skips cards larger than the value,
  so dropping the cards >= max_number changes no output, only the time.
  """
  if lang == DIGITS:
    return str
  if lang not in num2words.CONVERTER_CLASSES:
    raise ValueError(f'num2words has no language {lang!r}.')
  converter = copy.deepcopy(num2words.CONVERTER_CLASSES[lang])
  converter.cards = type(converter.cards)(
      (k, v) for k, v in converter.cards.items() if k < max_number)
  return converter.to_cardinal


def _render_chunk(source_lang: str, target_lang: str, max_number: int,
                  numbers: list[int]) -> list[tuple[str, str]]:
  to_source = _renderer(source_lang, max_number)
  to_target = _renderer(target_lang, max_number)
  pairs = [(to_source(n), to_target(n)) for n in numbers]
  # Guards the card-table shortcut against a num2words upgrade, per chunk.
  for lang, text in zip((source_lang, target_lang), pairs[0]):
    if lang != DIGITS and text != num2words.num2words(numbers[0], lang=lang):
      raise RuntimeError(f'Fast {lang} rendering of {numbers[0]} differs from '
                         'num2words; remove the shortcut in _renderer.')
  return pairs


class NumberTranslation(tfds.core.GeneratorBasedBuilder):
  """Spelled-out number translation generated offline with num2words."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # Numbers come in a seeded random order already; keeping it makes example i
  # of a split its i-th drawn number, which eases debugging.
  disable_shuffling = True
  BUILDER_CONFIGS = [
      NumberTranslationConfig(
          name='en_de', source_lang='en', target_lang='de', max_number=10**6,
          description='English -> German words, numbers < 10**6.'),
      NumberTranslationConfig(
          name='en_fr_1e12', source_lang='en', target_lang='fr',
          max_number=10**12, num_train=400_000,
          description='English -> French words, numbers < 10**12 (harder).'),
      NumberTranslationConfig(
          name='en_digits_1e15', source_lang='en', target_lang=DIGITS,
          max_number=10**15,
          description='English words -> digits, numbers < 10**15: sources '
          'of 1 to 30 words, for accuracy by source length.'),
      NumberTranslationConfig(
          name='digits_en', source_lang=DIGITS, target_lang='en',
          max_number=10**6,
          description='Digits -> English words ("24" -> "twenty-four").'),
      NumberTranslationConfig(
          name='digits_en_small', source_lang=DIGITS, target_lang='en',
          max_number=10**4, num_train=3_000, num_validation=200,
          num_test=200,
          description='A 3k-example digits_en for tests and smoke runs.'),
  ]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS' own lookup needs the `importlib_resources` backport, which is not
    # installed on Python >= 3.9; this is the path it would find.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'source': tfds.features.Text(),
            'target': tfds.features.Text(),
            'number': np.int64,
        }),
        supervised_keys=('source', 'target'),
        homepage='https://github.com/savoirfairelinux/num2words',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    for lang in (c.source_lang, c.target_lang):
      _renderer(lang, c.max_number)  # Unknown languages fail here, not later.
    sizes = (c.num_train, c.num_validation, c.num_test)
    numbers = sample_numbers(c.max_number, sum(sizes), c.seed)
    ends = np.cumsum(sizes).tolist()
    return {
        'train': self._generate_examples(numbers[:ends[0]]),
        'validation': self._generate_examples(numbers[ends[0]:ends[1]]),
        'test': self._generate_examples(numbers[ends[1]:]),
    }

  def _generate_examples(self, numbers):
    c = self.builder_config
    render = functools.partial(
        _render_chunk, c.source_lang, c.target_lang, c.max_number)
    chunks = [numbers[i:i + _CHUNK] for i in range(0, len(numbers), _CHUNK)]
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
            else os.cpu_count() or 1)
    # One core stays with this process, which serialises for TFDS.
    workers = min(_MAX_WORKERS, cpus - 1)
    pool = None
    if workers >= 1 and len(chunks) > 1:
      # 'spawn', as forking a process that already runs JAX's threads can
      # deadlock. Like all spawn pools, this needs callers' scripts to keep
      # top-level code under `if __name__ == '__main__':`.
      pool = concurrent.futures.ProcessPoolExecutor(
          workers, mp_context=multiprocessing.get_context('spawn'))
    try:
      rendered = pool.map(render, chunks) if pool else map(render, chunks)
      for chunk, pairs in zip(chunks, rendered):  # In order: deterministic.
        for n, (source, target) in zip(chunk, pairs):
          yield n, {'source': source, 'target': target, 'number': n}
    finally:
      if pool:
        pool.shutdown(cancel_futures=True)


def prepare(config: str | NumberTranslationConfig | None,
            data_dir: str | os.PathLike | None = None) -> NumberTranslation:
  """Generates the dataset into `data_dir` unless already there; no network.

  Args:
    config: a config name of NumberTranslation (e.g. 'en_de'), a custom
      NumberTranslationConfig, or None for the default ('en_de').
    data_dir: TFDS data dir; None means the TFDS default.

  Returns:
    The prepared builder (use `.as_data_source(split)` to read it).
  """
  return prepare_once.prepare(
      lambda: NumberTranslation(config=config, data_dir=data_dir))
