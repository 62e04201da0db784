"""Classification data: number labels, few-label cuts, text files, batches."""

import json

import ml_collections
from num2words import num2words
import numpy as np
import pytest
import tensorflow_datasets as tfds

from encdec_jax.data import classification as cls
from encdec_jax.data import sources
from encdec_jax.data import tokenizer as tok

DATASET = 'number_translation/digits_en_small'  # 3000/200/200, n < 10**4.


def _config(**overrides):
  c = ml_collections.ConfigDict(dict(
      dataset=DATASET, data_dir=None, source_lang='target', label='magnitude',
      text_files={'train': '', 'validation': '', 'test': ''}, classes=(),
      num_train_examples=-1, max_source_length=64, overlong='truncate',
      bucket_boundaries=(16, 32, 64), batch_size=8))
  c.update(overrides)
  return c


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


# --- number labels ------------------------------------------------------------


def test_label_functions_and_class_names():
  magnitude, mod10 = cls.LABELS['magnitude'], cls.LABELS['mod10']
  assert magnitude.names(10**6) == ['1 digit'] + [f'{d} digits'
                                                  for d in range(2, 7)]
  assert len(magnitude.names(10**4)) == 4 and len(magnitude.names(10**12)) == 12
  assert [magnitude.of(n) for n in (0, 9, 10, 999, 1000, 999_999)] == [
      0, 0, 1, 2, 3, 5]
  assert mod10.names(10**6) == [str(d) for d in range(10)]
  assert [mod10.of(n) for n in (0, 7, 120, 999_993)] == [0, 7, 0, 3]


@pytest.mark.parametrize('label', ['magnitude', 'mod10'])
def test_number_labels_agree_with_the_number(data_dir, label):
  config = _config(data_dir=data_dir, label=label)
  source = cls.make_source(config, 'validation')
  raw = tfds.data_source(DATASET, split='validation', data_dir=data_dir)
  assert len(source) == len(raw) == 200
  assert source.class_names == cls.LABELS[label].names(10**4)
  examples = source.__getitems__(range(len(source)))
  assert examples == [source[i] for i in range(len(source))]
  for ex, want in zip(examples, raw):
    n = int(want['number'])
    assert ex['text'] == num2words(n, lang='en')
    assert ex['label'] == (len(str(n)) - 1 if label == 'magnitude' else n % 10)
  # All but the 10 one-digit numbers' class occur in 200 draws below 10**4.
  assert len({ex['label'] for ex in examples}) >= len(source.class_names) - 1


def test_text_feature_by_name_or_language(data_dir):
  # digits_en_small translates digits ('source') to English ('target').
  digits = cls.make_source(_config(data_dir=data_dir, source_lang='digits',
                                   label='mod10'), 'test')
  for ex in digits:
    assert ex['label'] == int(ex['text'][-1])  # Text is the digits themselves.
  english = cls.make_source(_config(data_dir=data_dir, source_lang='en'),
                            'test')
  assert [e['text'] for e in english] == [
      e['text'] for e in cls.make_source(_config(data_dir=data_dir), 'test')]
  with pytest.raises(sources.DataError, match="source_lang='fr'.*'en'"):
    cls.make_source(_config(data_dir=data_dir, source_lang='fr'), 'test')


def test_bad_number_configs(data_dir):
  with pytest.raises(ValueError, match="label='parity'.*magnitude"):
    cls.make_source(_config(data_dir=data_dir, label='parity'), 'test')
  with pytest.raises(ValueError, match='config.classes is for text_files'):
    cls.make_source(_config(data_dir=data_dir, classes=('a', 'b')), 'test')
  with pytest.raises(sources.DataError, match='no classification labels'):
    cls.make_source(_config(dataset='wmt14_translate/de-en'), 'train')


def test_num_train_examples_cuts_only_train(data_dir):
  full = cls.make_source(_config(data_dir=data_dir), 'train')
  cut = cls.make_source(_config(data_dir=data_dir, num_train_examples=100),
                        'train')
  assert len(full) == 3000 and len(cut) == 100
  assert list(cut) == [full[i] for i in range(100)]  # The first N: fixed.
  assert cut[-1] == full[99]
  with pytest.raises(IndexError):
    cut[100]  # pylint: disable=pointless-statement
  assert cut.class_names == full.class_names
  validation = cls.make_source(
      _config(data_dir=data_dir, num_train_examples=100), 'validation')
  assert len(validation) == 200
  for n in (0, 3001):
    with pytest.raises(ValueError, match='num_train_examples'):
      cls.make_source(_config(data_dir=data_dir, num_train_examples=n), 'train')


def test_texts_read_the_whole_train_split(data_dir):
  config = _config(data_dir=data_dir, num_train_examples=100)
  texts = list(cls.texts(config))
  assert len(texts) == 3000
  assert texts[:100] == [e['text'] for e in cls.make_source(config, 'train')]
  assert len(list(cls.texts(config, max_texts=500))) == 500


# --- text files ---------------------------------------------------------------


def _files(tmp_path, train, validation, ext='tsv'):
  paths = {}
  for split, rows in (('train', train), ('validation', validation)):
    path = tmp_path / f'{split}.{ext}'
    if ext == 'tsv':
      path.write_text(''.join(f'{t}\t{c}\r\n' for t, c in rows),
                      encoding='utf-8')
    else:
      path.write_text(''.join(json.dumps({'source': t, 'target': c}) + '\n'
                              for t, c in rows), encoding='utf-8')
    paths[split] = str(path)
  return _config(dataset='text_files', text_files=paths)


TRAIN = [('great film', 'pos'), ('dull', 'neg'), ('fine\tish', 'neutral'),
         ('loved it', 'pos')]


@pytest.mark.parametrize('ext', ['tsv', 'jsonl'])
def test_text_files_take_class_names_from_train(tmp_path, ext):
  train = TRAIN if ext == 'jsonl' else TRAIN[:2] + TRAIN[3:]  # TSV: no TABs.
  config = _files(tmp_path, train, [('meh', 'neg')], ext)
  source = cls.make_source(config, 'train')
  names = sorted({c for _, c in train})
  assert source.class_names == names
  assert list(source) == [{'text': t, 'label': names.index(c)}
                          for t, c in train]
  validation = cls.make_source(config, 'validation')
  assert validation.class_names == names
  assert list(validation) == [{'text': 'meh', 'label': names.index('neg')}]
  assert list(cls.texts(config)) == [t for t, _ in train]


def test_config_classes_fix_names_and_order(tmp_path):
  config = _files(tmp_path, TRAIN[:2], [('ok', 'neutral')], 'jsonl')
  config.classes = ('neg', 'neutral', 'pos')
  validation = cls.make_source(config, 'validation')
  assert validation.class_names == ['neg', 'neutral', 'pos']
  assert validation[0]['label'] == 1
  config.classes = ('neg', 'neg')
  with pytest.raises(ValueError, match='names a class twice'):
    cls.make_source(config, 'train')


def test_unknown_class_names_file_and_class(tmp_path):
  config = _files(tmp_path, TRAIN[:2], [('ok', 'pos'), ('hm', 'mixed')])
  with pytest.raises(sources.DataError) as e:
    cls.make_source(config, 'validation')
  message = str(e.value)
  assert message.startswith(config.text_files.validation + ': ')
  assert "'mixed'" in message and "['neg', 'pos']" in message
  assert '\n' not in message
  config.classes = ('pos',)  # The train file's 'neg' is now unknown too.
  with pytest.raises(sources.DataError, match=r"train.tsv: class 'neg'"):
    cls.make_source(config, 'train')


def test_single_class_or_missing_file_is_clear(tmp_path):
  config = _files(tmp_path, [('a', 'x'), ('b', 'x')], [('c', 'x')])
  with pytest.raises(sources.DataError, match='at least 2 classes'):
    cls.make_source(config, 'validation')
  config.text_files.test = ''
  config.classes = ('x', 'y')
  with pytest.raises(sources.DataError, match="no file for split 'test'"):
    cls.make_source(config, 'test')


# --- batches ------------------------------------------------------------------


class _Source(list):
  class_names = ['short', 'long']


SOURCE = _Source({'text': 'x' * (i % 23), 'label': int(i % 23 > 10)}
                 for i in range(37))


def test_eval_batches_shapes_padding_and_weights():
  t = tok.ByteTokenizer()
  batches = list(cls.eval_batches(SOURCE, t, _config(max_source_length=16,
                                                     bucket_boundaries=(8, 16)),
                                  batch_size=8))
  assert len(batches) == 5
  for b in batches:
    assert set(b) == {'inputs', 'labels', 'example_weight', 'overlong'}
    assert b['inputs'].dtype == np.int32 and b['labels'].dtype == np.int32
    assert b['example_weight'].dtype == np.float32
    assert b['inputs'].shape[0] == 8 and b['inputs'].shape[1] in (8, 16)
  last = batches[-1]  # 37 = 4 * 8 + 5: three padding rows.
  np.testing.assert_array_equal(last['example_weight'], [1] * 5 + [0] * 3)
  assert not last['inputs'][5:].any() and not last['labels'][5:].any()
  rows = [(t.decode(r), l) for b in batches
          for r, l, w in zip(b['inputs'], b['labels'], b['example_weight'])
          if w]
  # Texts longer than 15 bytes are cut to 15 + EOS and flagged.
  assert rows == [(e['text'][:15], e['label']) for e in SOURCE]
  overlong = np.concatenate([b['overlong'] for b in batches])[:37]
  np.testing.assert_array_equal(overlong, [len(e['text']) > 15 for e in SOURCE])
  first = batches[0]
  np.testing.assert_array_equal(first['inputs'][1, :2], [ord('x') + 3, 1])
  assert len(list(cls.eval_batches(SOURCE, t, _config(), 8, 10))) == 2


def test_drop_policy_zeroes_weight_of_overlong():
  config = _config(max_source_length=16, bucket_boundaries=(8, 16),
                   overlong='drop')
  batch = next(iter(cls.eval_batches(SOURCE, tok.ByteTokenizer(), config,
                                     batch_size=37)))
  np.testing.assert_array_equal(batch['example_weight'],
                                [len(e['text']) <= 15 for e in SOURCE])
  np.testing.assert_array_equal(batch['overlong'], 1 - batch['example_weight'])
  with pytest.raises(ValueError, match='bucket_boundaries'):
    cls.eval_batches(SOURCE, tok.ByteTokenizer(),
                     _config(max_source_length=128), 8)


def test_train_iterator_resumes_exactly():
  config = _config()
  t = tok.ByteTokenizer()
  it = iter(cls.train_dataset(SOURCE, t, config, seed=5))
  for _ in range(7):  # Past the first epoch end (37 / 8).
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(6)]
  resumed = iter(cls.train_dataset(SOURCE, t, config, seed=5))
  resumed.set_state(state)
  for w in want:
    got = next(resumed)
    for key in w:
      np.testing.assert_array_equal(got[key], w[key])


def test_train_split_smaller_than_a_batch():
  t = tok.ByteTokenizer()
  small = _Source(SOURCE[:5])
  it = iter(cls.train_dataset(small, t, _config(batch_size=8), seed=0))
  batches = [next(it) for _ in range(5)]  # 40 rows = 8 epochs of 5.
  assert all(b['inputs'].shape[0] == 8 and b['example_weight'].all()
             for b in batches)
  texts = [t.decode(r) for b in batches for r in b['inputs']]
  assert sorted(texts) == sorted([e['text'] for e in small] * 8)


def test_number_translation_end_to_end(data_dir):
  config = _config(data_dir=data_dir, num_train_examples=20, label='mod10')
  source = cls.make_source(config, 'train')
  t = tok.train_sentencepiece(cls.texts(config), vocab_size=64)
  batch = next(iter(cls.train_dataset(source, t, config, seed=0)))
  assert batch['inputs'].shape[0] == 8
  assert batch['inputs'].shape[1] in config.bucket_boundaries
  words = {t.decode(r): l for r, l in zip(batch['inputs'], batch['labels'])}
  by_text = {e['text']: e['label'] for e in source}
  assert words.items() <= by_text.items()
