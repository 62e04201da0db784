"""Text for a decoder-only language model, as (empty source, text) pairs.

An LM is trained by the translation pipeline and loss unchanged: each example
is {'source': '', 'target': text}, so the model is scored on every token of
the text (the empty source costs one EOS token, which the LM ignores).

config.dataset:
  'text_files': config.text_files[split] is a UTF-8 file, one text a line
    (blank lines skipped).
  anything make_source reads (TFDS translation sets, number_translation/...):
    config.lm_field ('source' or 'target') picks the side to model.
"""
import os

from encdec_jax.data import sources, text_lines

LM_FIELDS = ('source', 'target')


class LMTexts:
  """A random-access source of {'source': '', 'target': text}."""

  def __init__(self, data, field: str, name: str):
    self._data, self._field, self._name = data, field, name

  def __len__(self) -> int:
    return len(self._data)

  def _example(self, item) -> dict[str, str]:
    text = item if self._field is None else item[self._field]
    return {'source': '', 'target': text}

  def __getitem__(self, index: int) -> dict[str, str]:
    return self._example(self._data[int(index)])

  def __getitems__(self, indices) -> list[dict[str, str]]:
    getitems = getattr(self._data, '__getitems__', None)
    items = (getitems(indices) if getitems
             else [self._data[int(i)] for i in indices])
    return [self._example(item) for item in items]

  def __repr__(self) -> str:
    return f'LMTexts({self._name}, field={self._field})'


def _read_lines(path: str) -> list[str]:
  try:
    with open(path, 'rb') as f:
      # '\n' ends a line, nothing else (a lone '\r' or a U+2028 in a text
      # does not split it in two): data/text_lines.py.
      lines = text_lines.split_lines(f.read(), path)
  except OSError as e:
    raise sources.DataError(f'{path}: cannot read text file: '
                            f'{e.strerror}') from None
  except ValueError as e:
    raise sources.DataError(str(e)) from None
  texts = [line for line in lines if line.strip()]
  if not texts:
    raise sources.DataError(f'{path}: no text (the file is empty or blank); '
                            'expected one text a line')
  return texts


def make_source(config, split: str) -> LMTexts:
  """The LM texts of `split` ('train', 'validation', 'test')."""
  if config.dataset == 'text_files':
    path = config.text_files.get(split)
    if not path:
      raise sources.DataError(
          f'config.text_files has no file for split {split!r}; it names '
          f'{sorted(config.text_files.keys())}')
    return LMTexts(_read_lines(os.fspath(path)), None, path)
  field = config.get('lm_field', 'source')
  if field not in LM_FIELDS:
    raise ValueError(f'config.lm_field={field!r} is not known; use one of '
                     f'{LM_FIELDS}.')
  pairs = sources.make_source(config, split)
  return LMTexts(pairs, field, f'{config.dataset}:{split}')
