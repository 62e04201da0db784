"""Tokenizers and the grain pipeline: ids, bucketing, over-long policy, state."""

import ml_collections
import numpy as np
import pytest

from encdec_jax.data import pipeline, tokenizer as tok


def _config(**overrides):
  c = ml_collections.ConfigDict(dict(
      max_source_length=16, max_target_length=16, overlong="truncate",
      bucket_boundaries=(4, 8, 16), batch_size=4, tokenizer="bytes",
      vocab_size=64))
  c.update(overrides)
  return c


PAIRS = [{"source": f"{i} x", "target": "y" * (i % 7 + 1)} for i in range(37)]


def test_byte_tokenizer_round_trip_utf8():
  t = tok.ByteTokenizer()
  text = "Straße naïve 🙂"
  ids = t.encode(text)
  assert ids.min() >= 3
  assert t.decode(list(ids) + [tok.EOS_ID, 50, 60]) == text
  assert t.decode([tok.PAD_ID] + list(ids)) == text


def test_sentencepiece_trains_and_round_trips(tmp_path):
  texts = lambda: (f"{a} hundred and {b}" for a in "one two three four".split()
                   for b in "five six seven eight nine".split() for _ in range(20))
  config = _config(tokenizer="sentencepiece", vocab_size=40)
  t = tok.load_or_train_tokenizer(config, str(tmp_path), texts)
  assert (tmp_path / "tokenizer.model").exists()
  ids = t.encode("three hundred and seven")
  assert t.decode(list(ids) + [tok.EOS_ID]) == "three hundred and seven"
  # A second call reads the stored model instead of training.
  again = tok.load_or_train_tokenizer(config, str(tmp_path), lambda: iter(()))
  np.testing.assert_array_equal(again.encode("four hundred and nine"),
                                t.encode("four hundred and nine"))


@pytest.mark.parametrize("length,expected", [(1, 4), (4, 4), (5, 8), (16, 16)])
def test_bucket_length(length, expected):
  assert pipeline.bucket_length(length, (4, 8, 16)) == expected


def test_tokenize_pair_truncates_keeping_eos():
  ex = pipeline.tokenize_pair({"source": "abcdefgh", "target": "ab"},
                              tok.ByteTokenizer(), 5, 5)
  assert ex["overlong"]
  assert list(ex["source"][-1:]) == [tok.EOS_ID] and len(ex["source"]) == 5
  assert len(ex["target"]) == 3


def test_pad_batch_fixed_shape_and_drop_policy():
  t = tok.ByteTokenizer()
  exs = [pipeline.tokenize_pair(p, t, 4, 16) for p in
         [{"source": "ab", "target": "c"}, {"source": "abcdef", "target": "c"}]]
  for policy, weight in (("truncate", 1.0), ("drop", 0.0)):
    b = pipeline.pad_batch(exs, 4, (4, 8, 16), policy)
    assert b["inputs"].shape == (4, 4) and b["targets"].shape == (4, 4)
    np.testing.assert_array_equal(b["example_weight"], [1, weight, 0, 0])
    np.testing.assert_array_equal(b["overlong"], [0, 1, 0, 0])


def test_train_batches_use_only_bucket_shapes_and_resume_exactly():
  config = _config()
  ds = pipeline.train_dataset(PAIRS, tok.ByteTokenizer(), config, seed=3)
  it = iter(ds)
  shapes = {next(it)["targets"].shape[1] for _ in range(20)}
  assert shapes <= {4, 8, 16}
  state = it.get_state()
  expected = [next(it)["inputs"] for _ in range(5)]
  resumed = iter(pipeline.train_dataset(PAIRS, tok.ByteTokenizer(), config,
                                        seed=3))
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)["inputs"], want)


def test_train_stream_sees_every_example_once_per_epoch():
  config = _config(batch_size=1)
  t = tok.ByteTokenizer()
  it = iter(pipeline.train_dataset(PAIRS, t, config, seed=0))
  seen = sorted(t.decode(next(it)["inputs"][0]) for _ in range(len(PAIRS)))
  assert seen == sorted(p["source"] for p in PAIRS)


def test_eval_batches_cover_split_in_order():
  config = _config()
  t = tok.ByteTokenizer()
  batches = list(pipeline.eval_batches(PAIRS, t, config, batch_size=8))
  rows = [r for b in batches for r, w in zip(b["inputs"], b["example_weight"])
          if w > 0]
  assert [t.decode(r) for r in rows] == [p["source"] for p in PAIRS]
  assert all(b["inputs"].shape[0] == 8 for b in batches)


def test_bad_config_values_are_clear():
  with pytest.raises(ValueError, match="overlong"):
    pipeline.train_dataset(PAIRS, tok.ByteTokenizer(),
                           _config(overlong="skip"), seed=0)
  with pytest.raises(ValueError, match="bucket_boundaries"):
    pipeline.eval_batches(PAIRS, tok.ByteTokenizer(),
                          _config(max_source_length=32), 4)
