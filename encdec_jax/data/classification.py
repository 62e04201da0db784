"""Text classification data: labelled sources and grain batches.

Made for transfer learning: an encoder pretrained on number translation is
fine-tuned to classify a property of a number from its words, with few labels.

A source is a sequence of `{'text': str, 'label': int}` with `class_names`:
  'number_translation/<cfg>': text feature `config.source_lang` of the TFDS
    dataset, labelled by `LABELS[config.label]` of its 'number' feature;
  'text_files': `config.text_files[split]`, a .tsv (text TAB class name) or a
    .jsonl ({"source": text, "target": class name}) file;
  'sentence_topics': English sentences about four topics, generated offline
    (data/topics.py), for pretrained encoders.
`config.num_train_examples` (-1: all) keeps only the first N training examples
(the few-labels setting); `texts` still reads the whole train split, since
unlabelled text is plentiful and only labels are scarce.

Batches are dicts of numpy arrays:
  inputs_BxS        int32 token ids, EOS-terminated, 0-padded to a bucket;
  labels_B          int32 class ids (0 in padding rows);
  example_weight_B  float32, 0 for padding rows and dropped examples;
  overlong_B        int32, 1 where the text exceeded config.max_source_length.
"""

import dataclasses
from typing import Callable, Iterator, Sequence

import grain
import numpy as np

from encdec_jax.data import number_translation
from encdec_jax.data import pipeline
from encdec_jax.data import sources
from encdec_jax.data import topics
from encdec_jax.data.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class Label:
  """A property of a number: its class id, and class names for a range."""
  of: Callable[[int], int]  # number -> class id
  names: Callable[[int], list[str]]  # max_number -> class names


def _num_digits(n: int) -> int:
  return len(str(n))


def _magnitude_names(max_number: int) -> list[str]:
  # Numbers are drawn from [0, max_number), so the largest has the most digits.
  return [f'{d} digit' + ('s' if d > 1 else '')
          for d in range(1, _num_digits(max_number - 1) + 1)]


LABELS = {
    # Digit count - 1: "1 digit" ... "6 digits" for numbers < 10**6.
    'magnitude': Label(lambda n: _num_digits(n) - 1, _magnitude_names),
    # Last digit: "0" ... "9" for every range.
    'mod10': Label(lambda n: n % 10, lambda _: [str(d) for d in range(10)]),
}


class LabelledSource:
  """Text pairs as {'text', 'label'}: 'source' is the text, 'target' is
  turned into the label by `to_label`; only the first `size` pairs are used."""

  def __init__(self, pairs, to_label: Callable[[str], int],
               class_names: Sequence[str], size: int | None = None):
    self._pairs, self._to_label = pairs, to_label
    self.class_names = list(class_names)
    self._size = len(pairs) if size is None else size

  def __len__(self) -> int:
    return self._size

  def _example(self, pair) -> dict:
    return {'text': pair['source'], 'label': self._to_label(pair['target'])}

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -self._size <= index < self._size:  # A cut split ends at its size.
      raise IndexError(f'index {index} out of range for {self._size} examples')
    return self._example(self._pairs[index % self._size])

  def __getitems__(self, indices) -> list[dict]:
    return [self._example(p) for p in pipeline.read_many(self._pairs, indices)]

  def head(self, n: int) -> 'LabelledSource':
    """The first n examples."""
    return LabelledSource(self._pairs, self._to_label, self.class_names, n)

  def __iter__(self) -> Iterator[dict]:
    return pipeline.iter_examples(self)

  def __repr__(self) -> str:
    return (f'LabelledSource({self._pairs!r}, {self._size} examples, '
            f'{len(self.class_names)} classes)')


# --- number_translation -------------------------------------------------------


def _is_number_translation(dataset: str) -> bool:
  return dataset.split('/')[0] == number_translation.NumberTranslation.name


def _text_feature(builder, source_lang: str) -> str:
  """The feature holding the text: 'source'/'target', or the config's language
  code for one of them (for en_de, 'en' is 'source', 'de' is 'target')."""
  c = builder.builder_config
  by_lang = {c.source_lang: 'source', c.target_lang: 'target'}
  if source_lang in ('source', 'target'):
    return source_lang
  if source_lang in by_lang:
    return by_lang[source_lang]
  raise sources.DataError(
      f'number_translation/{c.name}: config.source_lang={source_lang!r} is '
      f"neither a text feature ('source', 'target') nor one of its languages "
      f'{list(by_lang)}; set it to one of them')


def _number_pairs(config, split: str):
  """(pairs of text and str(number), the builder); prepared on first use."""
  builder = number_translation.prepare(config.dataset.partition('/')[2] or None,
                                       config.data_dir)
  # tfds_source renames the features; 'number' arrives as its decimal string.
  pairs = sources.tfds_source(config.dataset, split, config.data_dir,
                              _text_feature(builder, config.source_lang),
                              'number')
  return pairs, builder


def _number_source(config, split: str) -> LabelledSource:
  if config.get('classes'):
    raise ValueError('config.classes is for text_files; number_translation '
                     'labels name their classes, so leave it empty.')
  if config.label not in LABELS:
    raise ValueError(f'config.label={config.label!r} is not known; use one of '
                     f'{sorted(LABELS)}.')
  label = LABELS[config.label]
  pairs, builder = _number_pairs(config, split)
  names = label.names(builder.builder_config.max_number)
  return LabelledSource(pairs, lambda number: label.of(int(number)), names)


# --- text files ---------------------------------------------------------------


def _text_file_pairs(config, split: str):
  path = config.text_files.get(split)
  if not path:
    raise sources.DataError(
        f'config.text_files has no file for split {split!r}; it names '
        f'{sorted(k for k, v in config.text_files.items() if v)}')
  return sources.text_file_source(path), path


def _check_classes(pairs, path: str, index: dict[str, int]) -> None:
  for pair in pipeline.iter_examples(pairs):
    name = pair['target'].strip()
    if name not in index:
      known = list(index)
      shown = known if len(known) <= 10 else known[:10] + ['...']
      raise sources.DataError(
          f'{path}: class {name!r} is not one of the {len(known)} classes '
          f'{shown}; fix the file or list every class in config.classes')


def _text_file_class_names(config) -> list[str]:
  """config.classes, else the train file's sorted labels: all splits agree."""
  names = [str(c).strip() for c in config.get('classes') or ()]
  if names:
    if len(set(names)) != len(names):
      raise ValueError(f'config.classes={names} names a class twice; list '
                       'each class once.')
    return names
  pairs, path = _text_file_pairs(config, 'train')
  names = sorted({p['target'].strip() for p in pipeline.iter_examples(pairs)})
  if len(names) < 2:
    raise sources.DataError(f'{path}: all examples have class {names[0]!r}; a '
                            'classifier needs at least 2 classes')
  return names


def _text_file_source(config, split: str) -> LabelledSource:
  names = _text_file_class_names(config)
  pairs, path = _text_file_pairs(config, split)
  index = {name: i for i, name in enumerate(names)}
  _check_classes(pairs, path, index)  # Fails now, not mid-training.
  return LabelledSource(pairs, lambda name: index[name.strip()], names)


# --- public -------------------------------------------------------------------


def _topic_source(split: str) -> LabelledSource:
  index = {name: i for i, name in enumerate(topics.CLASSES)}
  return LabelledSource(topics.pairs(split), index.__getitem__, topics.CLASSES)


def _unsupported(dataset: str) -> sources.DataError:
  return sources.DataError(
      f'config.dataset={dataset!r} has no classification labels; use '
      "'number_translation/<config>', 'text_files' or 'sentence_topics'")


def make_source(config, split: str) -> LabelledSource:
  """The labelled source for `split` ('train', 'validation', 'test').

  Reads config.dataset, data_dir, source_lang (number_translation: the text
  feature 'source'/'target' or its language code), label (number_translation:
  a key of LABELS), text_files and classes (text_files), and
  num_train_examples (-1: all; else the train split's first N examples).
  """
  if config.dataset == 'text_files':
    source = _text_file_source(config, split)
  elif config.dataset == 'sentence_topics':
    source = _topic_source(split)
  elif _is_number_translation(config.dataset):
    source = _number_source(config, split)
  else:
    raise _unsupported(config.dataset)
  n = sources.train_cut(config, split, len(source))
  return source if n is None else source.head(n)


def texts(config, max_texts: int = 50_000) -> Iterator[str]:
  """Texts of the whole train split (ignoring num_train_examples), for training
  a tokenizer: unlabelled text is plentiful, only labels are scarce."""
  if config.dataset == 'text_files':
    pairs, _ = _text_file_pairs(config, 'train')
  elif config.dataset == 'sentence_topics':
    pairs = topics.pairs('train')
  elif _is_number_translation(config.dataset):
    pairs, _ = _number_pairs(config, 'train')
  else:
    raise _unsupported(config.dataset)
  for pair in pipeline.iter_examples(pairs, max_texts):
    yield pair['source']


def _batch_fn(source, tokenizer: Tokenizer, config, batch_size: int):
  """indices -> a padded batch: one read, then tokenize and pad."""
  boundaries = pipeline.check_lengths(config, (config.max_source_length,))

  def make_batch(indices):
    examples = pipeline.read_many(source, indices)
    encoded = [pipeline.encode_capped(tokenizer, e['text'],
                                      config.max_source_length)
               for e in examples]
    weight_B, overlong_B = pipeline.example_weights(
        [overlong for _, overlong in encoded], batch_size, config.overlong)
    labels_B = np.zeros((batch_size,), np.int32)
    labels_B[:len(examples)] = [e['label'] for e in examples]
    return {'inputs': pipeline.pad_to_bucket([ids for ids, _ in encoded],
                                             batch_size, boundaries),
            'labels': labels_B, 'example_weight': weight_B,
            'overlong': overlong_B}

  return make_batch


def train_dataset(source, tokenizer: Tokenizer, config,
                  seed: int) -> grain.IterDataset:
  """Endless, shuffled (reshuffled each epoch), this process's share only.

  A train split smaller than config.batch_size (e.g. 20 labels, batch 32) is
  fine: batches run across epoch ends, so an example may occur twice in one
  batch. get_state()/set_state() of its iterator resume exactly.
  """
  per_process = pipeline.process_batch_size(config.batch_size)
  return pipeline.shuffled_batches(
      len(source), per_process, seed,
      _batch_fn(source, tokenizer, config, per_process))


def eval_batches(source, tokenizer: Tokenizer, config, batch_size: int,
                 num_examples: int | None = None) -> grain.MapDataset:
  """One ordered pass over (the first `num_examples` of) a split; the last
  batch is padded to batch_size with rows of weight 0."""
  return pipeline.ordered_batches(
      len(source), batch_size, _batch_fn(source, tokenizer, config, batch_size),
      num_examples)
