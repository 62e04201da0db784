"""Number-translation builder, TFDS and text-file sources (no TF, offline)."""
import json

import grain
import ml_collections
from num2words import num2words
import pytest
import tensorflow_datasets as tfds
import tensorflow_datasets.translate  # noqa: F401  Registers wmt14/wmt17.

from encdec_jax.data import number_translation as nt
from encdec_jax.data import sources

SPLITS = ('train', 'validation', 'test')
TINY = nt.NumberTranslationConfig(
    name='tiny_en_de', source_lang='en', target_lang='de', max_number=10**6,
    num_train=300, num_validation=40, num_test=60, seed=3)


def _examples(builder):
  return {s: list(builder.as_data_source(s)) for s in SPLITS}


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  nt.prepare(TINY, data_dir)
  return data_dir


# --- number_translation builder ---------------------------------------------


def test_examples_are_num2words_renderings(tiny_dir):
  examples = _examples(nt.prepare(TINY, tiny_dir))
  for split in SPLITS:
    for ex in examples[split]:
      n = int(ex['number'])
      assert ex['source'].decode() == num2words(n, lang='en')
      assert ex['target'].decode() == num2words(n, lang='de')


def test_splits_have_config_sizes_and_disjoint_numbers(tiny_dir):
  builder = nt.prepare(TINY, tiny_dir)
  numbers = {s: [int(ex['number']) for ex in builder.as_data_source(s)]
             for s in SPLITS}
  assert [len(numbers[s]) for s in SPLITS] == [300, 40, 60]
  assert {s: builder.info.splits[s].num_examples for s in SPLITS} == {
      'train': 300, 'validation': 40, 'test': 60}
  sets = [set(numbers[s]) for s in SPLITS]
  assert sum(map(len, sets)) == 400  # Unique within and across splits.
  assert all(0 <= n < 10**6 for n in set.union(*sets))


def test_sampling_mixes_in_short_numbers():
  numbers = nt.sample_numbers(10**6, 4000, seed=0)
  assert len(set(numbers)) == 4000
  # Uniform sampling alone gives ~0.1% below 1000; the mixture gives ~25%.
  assert sum(n < 1000 for n in numbers) > 400
  assert numbers == nt.sample_numbers(10**6, 4000, seed=0)
  assert numbers != nt.sample_numbers(10**6, 4000, seed=1)
  with pytest.raises(ValueError):
    nt.sample_numbers(100, 101, seed=0)


def test_prepare_is_deterministic_with_and_without_workers(
    tiny_dir, tmp_path, monkeypatch):
  inline = _examples(nt.prepare(TINY, tiny_dir))  # One chunk: no pool.
  # Small chunks make the second prepare render in a spawn worker pool.
  monkeypatch.setattr(nt, '_CHUNK', 64)
  pooled = _examples(nt.prepare(TINY, tmp_path))
  assert pooled == inline


def test_prepare_reuses_prepared_data(tiny_dir):
  files = sorted(tiny_dir.rglob('*array_record*'))
  mtimes = [f.stat().st_mtime_ns for f in files]
  nt.prepare(TINY, tiny_dir)
  assert files and [f.stat().st_mtime_ns for f in files] == mtimes


def test_read_back_with_tfds_data_source_and_grain(tiny_dir):
  name = f'number_translation/{TINY.name}'
  test = tfds.data_source(name, split='test', data_dir=tiny_dir,
                          download=False)
  assert len(test) == 60
  source = sources.tfds_source(name, 'test', tiny_dir)
  assert len(source) == 60
  pairs = list(grain.MapDataset.source(source).shuffle(seed=0))
  assert sorted(p['source'] for p in pairs) == sorted(
      ex['source'].decode() for ex in test)
  for p in pairs:
    assert set(p) == {'source', 'target'}
    assert isinstance(p['source'], str) and isinstance(p['target'], str)


def test_digits_source_and_fast_rendering_match_num2words(tmp_path):
  digits = nt.NumberTranslationConfig(
      name='tiny_digits', source_lang=nt.DIGITS, target_lang='en',
      num_train=20, num_validation=5, num_test=5)
  for ex in nt.prepare(digits, tmp_path).as_data_source('train'):
    assert ex['source'].decode() == str(ex['number'])
    assert ex['target'].decode() == num2words(int(ex['number']), lang='en')
  # The card-table shortcut, at the edges of every built-in config's range.
  edges = [0, 1, 17, 21, 71, 80, 99, 100, 101, 1000, 1001, 10**6 - 1]
  for config in nt.NumberTranslation.BUILDER_CONFIGS:
    big = [n for n in edges + [10**6, 10**9 + 1, 10**12 - 1]
           if n < config.max_number]
    numbers = big + nt.sample_numbers(config.max_number, 300, seed=0)
    pairs = nt._render_chunk(config.source_lang, config.target_lang,
                             config.max_number, numbers)
    render = lambda n, lang: str(n) if lang == nt.DIGITS else num2words(
        n, lang=lang)
    for n, (src, tgt) in zip(numbers, pairs):
      assert (src, tgt) == (render(n, config.source_lang),
                            render(n, config.target_lang))


def test_builtin_configs():
  configs = {c.name: c for c in nt.NumberTranslation.BUILDER_CONFIGS}
  assert {'en_de', 'en_fr_1e12', 'digits_en'} <= set(configs)
  assert (configs['en_de'].source_lang, configs['en_de'].target_lang,
          configs['en_de'].max_number) == ('en', 'de', 10**6)
  assert configs['en_fr_1e12'].max_number == 10**12
  assert configs['digits_en'].source_lang == nt.DIGITS
  assert str(nt.NumberTranslation.VERSION) == '1.0.0'


# --- text files ---------------------------------------------------------------

PAIRS = [('straße', 'street'), ('naïve café', 'naiv Café'), ('🙂 ok', '🙂 gut')]


def test_tsv_round_trip_with_bom_crlf_and_blank_lines(tmp_path):
  path = tmp_path / 'train.tsv'
  lines = [f'{s}\t{t}' for s, t in PAIRS]
  path.write_bytes(b'\xef\xbb\xbf' + '\r\n\r\n'.join(lines).encode() + b'\n\n')
  source = sources.text_file_source(path)
  assert [(ex['source'], ex['target']) for ex in source] == PAIRS
  assert len(grain.MapDataset.source(source)) == 3


def test_jsonl_round_trip_ignores_extra_fields(tmp_path):
  path = tmp_path / 'train.jsonl'
  rows = [json.dumps({'source': s, 'target': t, 'id': i}, ensure_ascii=i == 0)
          for i, (s, t) in enumerate(PAIRS)]
  path.write_text('\r\n'.join(rows) + '\r\n  \r\n', encoding='utf-8')
  assert [(ex['source'], ex['target'])
          for ex in sources.text_file_source(str(path))] == PAIRS


@pytest.mark.parametrize('name, content, line, words', [
    ('a.tsv', b'a\tb\nx\ty\tz\n', 2, 'expected 2 tab-separated fields'),
    ('a.tsv', b'a\tb\n\nno tab here\n', 3, 'found 1'),
    ('a.tsv', b'a\tb\r\nbad \xff byte\tc\r\n', 2, 'invalid UTF-8'),
    ('a.jsonl', b'{"source": "a", "target": "b"}\n{"source": "a",}\n', 2,
     'invalid JSON'),
    ('a.jsonl', b'["a", "b"]\n', 1, 'found a JSON list'),
    ('a.jsonl', b'\n{"source": "a"}\n', 2, 'missing field "target"'),
    ('a.jsonl', b'{"source": "a", "target": 3}\n', 1, '"target" is a JSON int'),
])
def test_malformed_lines_name_file_and_line(tmp_path, name, content, line,
                                            words):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(sources.DataError) as e:
    sources.text_file_source(path)
  message = str(e.value)
  assert message.startswith(f'{path}:{line}: ') and words in message
  assert '\n' not in message


@pytest.mark.parametrize('name, content, words', [
    ('missing.tsv', None, 'No such file'),
    ('empty.tsv', b'', 'no examples'),
    ('blank.jsonl', b'\n \r\n\n', 'no examples'),
    ('data.csv', b'a,b\n', 'unsupported file type'),
])
def test_unusable_files(tmp_path, name, content, words):
  path = tmp_path / name
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(sources.DataError, match=words) as e:
    sources.text_file_source(path)
  assert str(e.value).startswith(str(path))


def test_make_source_text_files(tmp_path):
  (tmp_path / 'dev.tsv').write_text('eins\tone\n', encoding='utf-8')
  config = ml_collections.ConfigDict({
      'dataset': 'text_files', 'data_dir': None, 'source_lang': 'de',
      'target_lang': 'en', 'text_files': {'validation': str(tmp_path / 'dev.tsv')}})
  assert list(sources.make_source(config, 'validation')) == [
      {'source': 'eins', 'target': 'one'}]
  with pytest.raises(sources.DataError, match="no file for split 'train'"):
    sources.make_source(config, 'train')


# --- TFDS datasets ------------------------------------------------------------


def test_make_source_number_translation_prepares_first(tiny_dir, monkeypatch):
  calls = []
  monkeypatch.setattr(nt, 'prepare', lambda *args: calls.append(args))
  config = ml_collections.ConfigDict({
      'dataset': f'number_translation/{TINY.name}', 'data_dir': str(tiny_dir),
      'source_lang': 'ignored', 'target_lang': 'ignored'})
  source = sources.make_source(config, 'validation')
  assert calls == [(TINY.name, str(tiny_dir))]
  assert len(source) == 40 and isinstance(source[0]['target'], str)


def test_make_source_reads_a_generated_pair_the_other_way_round(
    tiny_dir, monkeypatch):
  # source_lang/target_lang naming the builder config's languages reversed
  # read target as source (de -> en from number_translation/en_de).
  monkeypatch.setattr(nt.NumberTranslation, 'builder_configs',
                      {TINY.name: TINY})
  monkeypatch.setattr(nt, 'prepare', lambda *args: None)

  def first(source_lang, target_lang):
    config = ml_collections.ConfigDict({
        'dataset': f'number_translation/{TINY.name}',
        'data_dir': str(tiny_dir), 'source_lang': source_lang,
        'target_lang': target_lang})
    return sources.make_source(config, 'validation')[0]

  en_de, de_en = first('en', 'de'), first('de', 'en')
  assert ' ' in en_de['source'] and ' ' not in en_de['target']  # German: 1 word
  assert de_en == {'source': en_de['target'], 'target': en_de['source']}


@pytest.mark.parametrize('name', ['wmt14_translate/de-en',
                                  'wmt17_translate/de-en'])
def test_make_source_wmt_with_mock_data(name):
  config = ml_collections.ConfigDict({
      'dataset': name, 'data_dir': None, 'source_lang': 'en',
      'target_lang': 'de'})
  with tfds.testing.mock_data(num_examples=5):
    for split in SPLITS:
      source = sources.make_source(config, split)
      assert len(source) == 5
      pairs = list(grain.MapDataset.source(source))
      assert all(isinstance(p['source'], str) and isinstance(p['target'], str)
                 for p in pairs)
    with pytest.raises(sources.DataError, match="no feature 'fr'"):
      sources.tfds_source(name, 'train', None, 'fr', 'de')


def test_unprepared_tfds_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(sources.DataError, match='no array_record files'):
    sources.tfds_source('wmt14_translate/de-en', 'train', tmp_path, 'en', 'de')
