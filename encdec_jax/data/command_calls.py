"""Commands with arguments -> a canonical call: an offline TFDS dataset whose
test values never occur in any training target.

  "remind me on friday at 07:45 to call dovika"
      -> "remind | who dovika | time 07:45 | day friday"
  "send 3120 dollars to mepa"   -> "pay | to mepa | amount 3120"
  "wake me up at 10:05 on monday" -> "alarm | time 10:05 | day monday"

Eight command templates (reminders, payments, alarms, timers, messages)
carry three kinds of value: a name, a number and a clock time (hh:mm). The
target is fixed vocabulary in a fixed order, the fields reordered from the
source's; the values must be carried over from the source as they are.
(An earlier version zero-padded "7:45" in the target. With training hours
0-11 the only two-digit hours were 10 and 11, so "do not pad" was learnable
as "the hour starts with 1[01]" as well as "the hour has two digits": that
tested a guess, not copying, and is gone.)

The splits differ in their values, which is the point:

  train, validation (in range): names from the training pool, numbers in
      [0, 5000), hours 0-11;
  test (out of range): names from a disjoint pool, numbers in [5000, 10000),
      hours 12-23 (every value in the example is out of range);
  test_novel_prefix (past the edge): values whose beginning and length no
      training value has: names of 4 syllables (training: 2-3) whose first
      syllable is a test-only one, numbers in [50000, 100000) (training:
      at most 4 digits, none starting 5-9 with 4 digits), hours 20-23 (no
      training time starts with "2"). `NOVEL_PREFIX_LENGTH` says how many
      leading characters no training value of the kind starts with.

So no test name, number or hour occurs in any training target (or source),
and the gap between validation and test exact match measures how far a model
copies values rather than recalling the ones it was trained on. Names are
made of syllables: training names from the 55 of the 70 consonant-vowel
syllables (`TRAIN_SYLLABLES`), test names have at least one of the other 15,
so they are new strings of known letters (every tokenizer trained on the
training split can read them) that a subword vocabulary never saw whole.
Values and targets are separated by spaces, so a SentencePiece tokenizer
splits a value the same way in the source and in the target (a copy of its
source pieces is its target pieces; digits are single pieces).

Validation sources never repeat a training source. Generation is seeded,
needs no network and no TensorFlow: `prepare` writes array_record files that
`tfds.data_source` reads back.
"""
import dataclasses
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

CONSONANTS = 'bdfgklmnprstvz'
VOWELS = 'aeiou'
SYLLABLES = tuple(c + v for c in CONSONANTS for v in VOWELS)  # 70
# The syllables only test names have: every letter also occurs in the
# others, which training names are made of, and none occurs in a template
# word (as "mo" in "amount", "se" in "send"), so a test name never shares a
# subword piece with the fixed words around it.
TEST_SYLLABLES = ('bi', 'de', 'du', 'fu', 'go', 'ka', 'ku', 'li', 'po', 'pu',
                  'ra', 'vi', 'vo', 'ze', 'zu')
TRAIN_SYLLABLES = tuple(s for s in SYLLABLES if s not in TEST_SYLLABLES)
DAYS = ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday',
        'sunday')
IN_RANGE, OUT_OF_RANGE, NOVEL_PREFIX = 'in_range', 'out_of_range', 'novel'
# value ranges per split kind: numbers [low, high), hours [low, high)
NUMBERS = {IN_RANGE: (0, 5000), OUT_OF_RANGE: (5000, 10000),
           NOVEL_PREFIX: (50_000, 100_000)}
HOURS = {IN_RANGE: (0, 12), OUT_OF_RANGE: (12, 24), NOVEL_PREFIX: (20, 24)}
# test_novel_prefix: no training value of the kind starts with a value's
# first this many characters (tests/test_copy_novel_prefix.py checks it).
NOVEL_PREFIX_LENGTH = {'name': 2, 'number': 4, 'time': 1}
NOVEL_NAME_SYLLABLES = 4

# (source template, target template).
TEMPLATES = (
    ('remind me to call {name} at {time} on {day}',
     'remind | who {name} | time {time} | day {day}'),
    ('remind me on {day} at {time} to call {name}',
     'remind | who {name} | time {time} | day {day}'),
    ('send {number} dollars to {name}', 'pay | to {name} | amount {number}'),
    ('pay {name} {number} dollars', 'pay | to {name} | amount {number}'),
    ('set an alarm for {time}', 'alarm | time {time}'),
    ('wake me up at {time} on {day}', 'alarm | time {time} | day {day}'),
    ('set a timer for {number} minutes', 'timer | minutes {number}'),
    ('tell {name} that i will be {number} minutes late',
     'message | to {name} | late {number}'),
)


@dataclasses.dataclass(eq=False, kw_only=True)
class CommandCallsConfig(tfds.core.BuilderConfig):
  """How many examples per split, how many names per pool, which seed."""
  num_train: int = 50_000
  num_validation: int = 2_000
  num_test: int = 2_000
  num_train_names: int = 400
  num_test_names: int = 200
  num_novel_prefix: int = 2_000
  seed: int = 0


def make_names(count: int, rng: np.random.Generator,
               out_of_range: bool) -> list[str]:
  """`count` distinct names of 2-3 syllables: from TRAIN_SYLLABLES only, or
  (out_of_range) with at least one TEST_SYLLABLES syllable."""
  names = {}
  while len(names) < count:
    syllables = list(rng.choice(TRAIN_SYLLABLES, rng.integers(2, 4)))
    if out_of_range:
      syllables[rng.integers(len(syllables))] = rng.choice(TEST_SYLLABLES)
    names.setdefault(''.join(syllables), None)
  return list(names)


def make_novel_names(count: int, rng: np.random.Generator) -> list[str]:
  """`count` distinct names of NOVEL_NAME_SYLLABLES syllables starting
  with a TEST_SYLLABLES one: no training name has their first two letters
  or their length."""
  names = {}
  while len(names) < count:
    rest = rng.choice(SYLLABLES, NOVEL_NAME_SYLLABLES - 1)
    names.setdefault(str(rng.choice(TEST_SYLLABLES)) + ''.join(rest), None)
  return list(names)


def render(template: int, name: str, number: int, hour: int, minute: int,
           day: str) -> tuple[str, str]:
  source, target = TEMPLATES[template]
  values = dict(name=name, number=number, day=day,
                time=f'{hour:02d}:{minute:02d}')
  return source.format(**values), target.format(**values)


def sample_pairs(count: int, names: list[str], kind: str,
                 rng: np.random.Generator,
                 exclude: frozenset = frozenset()) -> list[tuple[str, str]]:
  """`count` distinct (source, target) pairs with values of `kind`, whose
  sources are not in `exclude`."""
  pairs = {}
  while len(pairs) < count:
    pair = render(
        int(rng.integers(len(TEMPLATES))), str(rng.choice(names)),
        int(rng.integers(*NUMBERS[kind])), int(rng.integers(*HOURS[kind])),
        int(rng.integers(60)), str(rng.choice(DAYS)))
    if pair[0] not in exclude:
      pairs.setdefault(pair[0], pair[1])
  return list(pairs.items())


def generate(config: CommandCallsConfig) -> dict[str, list[tuple[str, str]]]:
  """{'train', 'validation', 'test', 'test_novel_prefix'}: lists of
  (source, target). The novel-prefix split is drawn after the others, so
  they are as before it was added."""
  rng = np.random.default_rng(config.seed)
  train_names = make_names(config.num_train_names, rng, out_of_range=False)
  test_names = make_names(config.num_test_names, rng, out_of_range=True)
  train = sample_pairs(config.num_train, train_names, IN_RANGE, rng)
  validation = sample_pairs(config.num_validation, train_names, IN_RANGE, rng,
                            exclude=frozenset(s for s, _ in train))
  test = sample_pairs(config.num_test, test_names, OUT_OF_RANGE, rng)
  novel_names = make_novel_names(config.num_test_names, rng)
  novel = sample_pairs(config.num_novel_prefix, novel_names, NOVEL_PREFIX, rng)
  return {'train': train, 'validation': validation, 'test': test,
          'test_novel_prefix': novel}


class CommandCalls(tfds.core.GeneratorBasedBuilder):
  """Commands -> canonical calls; test values are outside training's."""

  VERSION = tfds.core.Version('1.3.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'Times hh:mm in the source too (no padding rule).',
                   '1.2.0': 'Test-only syllables in no template word.',
                   '1.3.0': 'A test_novel_prefix split (others unchanged).'}
  disable_shuffling = True  # generated in a seeded random order already
  BUILDER_CONFIGS = [
      CommandCallsConfig(
          name='default', description='50k training commands; validation in '
          'range, test out of range (names, numbers, hours).'),
      CommandCallsConfig(
          name='small', num_train=3_000, num_validation=200, num_test=200,
          num_train_names=100, num_test_names=50, num_novel_prefix=200,
          description='A 3k-example version for tests and smoke runs.'),
  ]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As number_translation: TFDS' own lookup needs importlib_resources.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'source': tfds.features.Text(),
            'target': tfds.features.Text(),
        }),
        supervised_keys=('source', 'target'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(pairs)
            for split, pairs in generate(self.builder_config).items()}

  def _generate_examples(self, pairs):
    for i, (source, target) in enumerate(pairs):
      yield i, {'source': source, 'target': target}


def prepare(config: str | CommandCallsConfig | None,
            data_dir: str | os.PathLike | None = None) -> CommandCalls:
  """Generates the dataset into `data_dir` unless already there; no network.
  `config`: 'default', 'small' or a CommandCallsConfig (None: 'default')."""
  builder = CommandCalls(config=config, data_dir=data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return builder
