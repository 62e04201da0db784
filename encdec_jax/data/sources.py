"""Random-access sources of translation pairs, from TFDS or from text files.

Every source is a sequence: `len(source)` and `source[i]` gives
`{'source': str, 'target': str}`, so `grain.MapDataset.source(source)` can
shuffle, shard and batch it. TFDS datasets are read from array_record files
with `tfds.data_source`, which needs no TensorFlow.
"""
import json
import os
import sys

import tensorflow_datasets as tfds

from encdec_jax.data import command_calls, number_translation

_BOM = b'\xef\xbb\xbf'


class DataError(ValueError):
  """Data that cannot be used; the message is one line saying where and why."""


def _text(value) -> str:
  # Array_record sources give UTF-8 bytes; TFDS' mocks already give str.
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _batched_reads_work(data) -> bool:
  """Whether data.__getitems__ runs (tfds.testing.mock_data's sources declare
  it but fail with a TypeError; real array_record sources support it)."""
  if not hasattr(data, '__getitems__') or len(data) == 0:
    return False
  try:
    data.__getitems__([0])
  except TypeError:
    return False
  return True


class _TfdsPairs:
  """Renames a TFDS data source's two text features to 'source'/'target'."""

  def __init__(self, data, source_key: str, target_key: str):
    self._data = data
    self._keys = (source_key, target_key)
    self._batched_reads = _batched_reads_work(data)

  def __len__(self) -> int:
    return len(self._data)

  def _pair(self, example) -> dict[str, str]:
    return {'source': _text(example[self._keys[0]]),
            'target': _text(example[self._keys[1]])}

  def __getitem__(self, index: int) -> dict[str, str]:
    return self._pair(self._data[index])

  def __getitems__(self, indices) -> list[dict[str, str]]:
    # array_record reads a batch of records ~10x faster than one at a time.
    if not self._batched_reads:
      return [self[i] for i in indices]
    return [self._pair(e)
            for e in self._data.__getitems__([int(i) for i in indices])]

  def __repr__(self) -> str:
    return f'_TfdsPairs({self._data!r}, keys={self._keys})'


class _ListPairs:
  """Pairs held in memory (user files are small next to TFDS datasets)."""

  def __init__(self, sources: list[str], targets: list[str], name: str):
    self._sources, self._targets, self._name = sources, targets, name

  def __len__(self) -> int:
    return len(self._sources)

  def __getitem__(self, index: int) -> dict[str, str]:
    return {'source': self._sources[index], 'target': self._targets[index]}

  def __getitems__(self, indices) -> list[dict[str, str]]:
    return [self[int(i)] for i in indices]

  def __repr__(self) -> str:
    return f'_ListPairs({self._name!r}, {len(self)} pairs)'


def tfds_source(name: str, split: str,
                data_dir: str | os.PathLike | None = None,
                source_key: str = 'source', target_key: str = 'target',
                download: bool = False) -> _TfdsPairs:
  """Reads split `split` of TFDS dataset `name` (e.g. 'wmt14_translate/de-en').

  Args:
    name: TFDS name with config, e.g. 'number_translation/en_de'.
    split: split name, e.g. 'train', 'validation', 'test'.
    data_dir: TFDS data dir holding the prepared array_record files; None
      means the TFDS default.
    source_key: feature to translate from ('en' for wmt de-en to German).
    target_key: feature to translate to.
    download: let TFDS download and prepare it if missing (needs network).

  Returns:
    A sequence of {'source': str, 'target': str}.
  """
  try:
    data = tfds.data_source(name, split=split, data_dir=data_dir,
                            download=download)
  except NotImplementedError as e:  # TFDS' way of saying "no array_record".
    where = data_dir or tfds.core.constants.DATA_DIR
    raise DataError(
        f'{name}: no array_record files for split {split!r} in {where}; '
        "prepare it with download_and_prepare(file_format='array_record') on a "
        'machine with network and set data_dir to that directory') from e
  features = list(data.dataset_info.features.keys())
  for key in (source_key, target_key):
    if key not in features:
      raise DataError(f'{name}: has no feature {key!r}; its features are '
                      f'{features} (set source_lang/target_lang to two of them)')
  return _TfdsPairs(data, source_key, target_key)


def _parse_tsv(line: str, where: str) -> tuple[str, str]:
  fields = line.split('\t')
  if len(fields) != 2:
    hint = ('put one TAB between source and target' if len(fields) == 1 else
            'text containing TABs needs .jsonl instead')
    raise DataError(f'{where}: expected 2 tab-separated fields '
                    f'(source<TAB>target), found {len(fields)}; {hint}')
  return fields[0], fields[1]


def _parse_jsonl(line: str, where: str) -> tuple[str, str]:
  schema = 'each line must be a JSON object {"source": str, "target": str}'
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(f'{where}: invalid JSON ({e.msg} at column {e.colno}); '
                    f'{schema}') from None
  if not isinstance(obj, dict):
    raise DataError(f'{where}: found a JSON {type(obj).__name__}; {schema}')
  for key in ('source', 'target'):
    if key not in obj:
      raise DataError(f'{where}: missing field "{key}"; {schema}')
    if not isinstance(obj[key], str):
      raise DataError(f'{where}: field "{key}" is a JSON '
                      f'{type(obj[key]).__name__}, not a string; {schema}')
  return obj['source'], obj['target']


_HEADERS = {('source', 'target'), ('src', 'tgt'), ('input', 'target'),
            ('input', 'output')}


def _is_header(source: str, target: str, column_names=()) -> bool:
  """A first line naming the columns (source<TAB>target and the like)."""
  names = _HEADERS | {tuple(str(n).lower() for n in column_names)}
  return (source.strip().lower(), target.strip().lower()) in names


def text_file_source(path: str | os.PathLike,
                     column_names: tuple[str, str] | tuple = ()
                     ) -> _ListPairs:
  """Reads a parallel-text file: `.tsv` (source TAB target) or `.jsonl`.

  The file is UTF-8 (a leading BOM is fine); blank lines are skipped and line
  endings ('\\n' or '\\r\\n') stripped. A first line that names the columns
  (`source<TAB>target`, or the `column_names` given, e.g. `en<TAB>de`) is a
  header and is skipped, with a note. Every problem raises DataError naming
  `file:line`.
  """
  path = os.fspath(path)
  parse = {'.tsv': _parse_tsv, '.jsonl': _parse_jsonl}.get(
      os.path.splitext(path)[1].lower())
  if parse is None:
    raise DataError(f'{path}: unsupported file type; use .tsv '
                    '(source<TAB>target per line) or .jsonl')
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise DataError(f'{path}: cannot read parallel-text file: '
                    f'{e.strerror}') from None
  data = data.removeprefix(_BOM)
  sources, targets = [], []
  for lineno, raw in enumerate(data.split(b'\n'), start=1):
    where = f'{path}:{lineno}'
    try:
      line = raw.removesuffix(b'\r').decode('utf-8')
    except UnicodeDecodeError as e:
      raise DataError(f'{where}: invalid UTF-8 at byte {e.start + 1} of the '
                      'line; re-save the file as UTF-8') from None
    if not line.strip():
      continue
    source, target = parse(line, where)
    if not sources and _is_header(source, target, column_names):
      # A header row is not a pair: training on it teaches nothing true.
      print(f'note: {where} names the columns ({source}<TAB>{target}): a '
            'header, not a pair; skipped', file=sys.stderr, flush=True)
      continue
    sources.append(source)
    targets.append(target)
  if not sources:
    raise DataError(f'{path}: no examples (the file is empty or blank); '
                    'expected one source/target pair per line')
  return _ListPairs(sources, targets, path)


def _generated_keys(dataset: str, config) -> tuple[str, str]:
  """The features of number_translation/<cfg> to read as source and
  target: ('source', 'target'), or ('target', 'source') when
  config.source_lang/target_lang name its languages the other way round
  (number_translation/en_de with source_lang='de', target_lang='en')."""
  name, _, config_name = dataset.partition('/')
  builder_config = (number_translation.NumberTranslation.builder_configs.get(
      config_name) if name == number_translation.NumberTranslation.name
                    else None)
  if builder_config is not None and (
      config.get('source_lang'), config.get('target_lang')) == (
          builder_config.target_lang, builder_config.source_lang):
    return 'target', 'source'
  return 'source', 'target'


def _split_source(config, split: str) -> _TfdsPairs | _ListPairs:
  """The source for `split` ('train', 'validation', 'test') of `config`.

  Reads `config.dataset`:
    'number_translation/<cfg>': generated into `config.data_dir` on first use;
      read the other way round when source_lang/target_lang name its
      languages reversed (de -> en from number_translation/en_de).
    'command_calls/<cfg>': likewise (test values outside training's; see
      data/command_calls.py).
    '<tfds name>', e.g. 'wmt14_translate/de-en' or 'wmt17_translate/de-en':
      prepared array_record data in `config.data_dir`, translating feature
      `config.source_lang` to `config.target_lang`. Split names pass through:
      both WMT de-en sets have train/validation/test (test is newstest2014
      resp. newstest2017).
    'text_files': `config.text_files[split]` is a .tsv or .jsonl path.
  """
  dataset = config.dataset
  if dataset == 'text_files':
    path = config.text_files.get(split)
    if not path:
      raise DataError(f'config.text_files has no file for split {split!r}; '
                      f'it names {sorted(config.text_files.keys())}')
    return text_file_source(path, (config.get('source_lang') or 'source',
                                   config.get('target_lang') or 'target'))
  generated = {number_translation.NumberTranslation.name: number_translation,
               command_calls.CommandCalls.name: command_calls}
  if dataset.split('/')[0] in generated:
    generated[dataset.split('/')[0]].prepare(dataset.partition('/')[2] or None,
                                             config.data_dir)
    return tfds_source(dataset, split, config.data_dir,
                       *_generated_keys(dataset, config))
  return tfds_source(dataset, split, config.data_dir,
                     config.source_lang, config.target_lang)


class _Head:
  """The first n pairs of a source."""

  def __init__(self, source, n: int):
    self._source, self._n = source, n

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, str]:
    if not -self._n <= index < self._n:
      raise IndexError(index)
    return self._source[index % self._n]

  def __getitems__(self, indices) -> list[dict[str, str]]:
    return [self[int(i)] for i in indices] if any(
        not 0 <= int(i) < self._n for i in indices) else (
            self._source.__getitems__(indices))

  def __repr__(self) -> str:
    return f'_Head({self._source!r}, {self._n})'


def make_source(config, split: str):
  """The source for `split` of `config` (see `_split_source`), the train
  split cut to its first config.num_train_examples pairs (`train_cut`). A
  tokenizer trained by the run reads the cut split too
  (experiments/pretrain_study.py gives its runs the pretrained one)."""
  source = _split_source(config, split)
  n = train_cut(config, split, len(source))
  return source if n is None else _Head(source, n)


def train_cut(config, split: str, size: int) -> int | None:
  """How many of the split's first examples to keep (None: all): the first
  config.num_train_examples of the train split, not a sample, so that every
  run and resume reads the same ones and a smaller cut's are part of a
  larger one's."""
  n = config.get('num_train_examples', -1)
  if split != 'train' or n == -1:
    return None
  if not 0 < n <= size:
    raise DataError(f'config.num_train_examples={n} must be in [1, '
                    f'{size}] (the train split size) or -1 for all.')
  return n
