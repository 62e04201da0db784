"""Lines and pairs as a new user's files hold them: line breaks
other than '\\n' inside a line, header rows, empty sources or targets,
exports cut short, a tokenizer trained again."""

import os

import ml_collections
import numpy as np
import pytest

from encdec_jax.data import lm, pipeline, sources
from encdec_jax.data import tokenizer as tokenizer_lib


def test_only_newline_ends_a_line():
  from encdec_jax.data import text_lines
  data = ("\ufeffa\fb\r\nc\vd\n\ne\u2028f\x85g\n").encode("utf-8")
  assert text_lines.split_lines(data, "x") == ["a\fb", "c\vd", "",
                                               "e\u2028f\x85g"]
  assert text_lines.split_lines(b"a\nb", "x") == ["a", "b"]  # no final \n
  assert text_lines.split_lines(b"", "x") == []
  assert text_lines.split_lines(b"\n", "x") == [""]
  with pytest.raises(ValueError, match=r"in.txt:2: invalid UTF-8 at byte 2"):
    text_lines.split_lines(b"ok\na\xffb\n", "in.txt")


def test_lm_text_lines_split_on_newline_only(tmp_path):
  path = tmp_path / "train.txt"
  path.write_bytes("one\rtwo\nthree\u2028four\n\n".encode("utf-8"))
  assert lm._read_lines(str(path)) == ["one\rtwo", "three\u2028four"]


def test_a_header_row_is_skipped_with_a_note(tmp_path, capsys):
  path = tmp_path / "train.tsv"
  path.write_text("Source\tTarget\n1\tone\nsource\ttarget\n", encoding="utf-8")
  pairs = sources.text_file_source(str(path))
  # Only a first line is a header; a later one is data.
  assert [pairs[i] for i in range(len(pairs))] == [
      {"source": "1", "target": "one"},
      {"source": "source", "target": "target"}]
  assert (f"note: {path}:1 names the columns (Source<TAB>Target): a header, "
          "not a pair; skipped") in capsys.readouterr().err
  path.write_text("en\tde\n1\teins\n", encoding="utf-8")
  config = ml_collections.ConfigDict(dict(
      dataset="text_files", source_lang="en", target_lang="de",
      text_files={"train": str(path)}))
  assert len(sources.make_source(config, "train")) == 1


def _config(**overrides):
  return ml_collections.ConfigDict(dict(dict(
      batch_size=4, max_source_length=16, max_target_length=16,
      bucket_boundaries=(16,), overlong="truncate"), **overrides))


_PAIRS = [("1", "one"), ("2", ""), ("", "three"), ("  ", "four"),
          ("5", "\t")]


@pytest.mark.parametrize("policy, weights", [
    ("skip", [1, 0, 0, 0, 0]), ("keep", [1, 1, 1, 1, 1])])
def test_empty_pairs_are_flagged_and_skipped_or_kept(policy, weights):
  source = sources._ListPairs([s for s, _ in _PAIRS], [t for _, t in _PAIRS],
                              "pairs")
  config = _config(empty_pairs=policy, batch_size=len(_PAIRS))
  batch = next(iter(pipeline.train_dataset(
      source, tokenizer_lib.ByteTokenizer(), config, seed=0)))
  by_id = dict(zip(batch["example_id"], zip(batch["empty"],
                                            batch["example_weight"])))
  for i, expected in enumerate(weights):
    assert by_id[i] == (int(i > 0), expected)


def test_an_lm_source_is_empty_by_design():
  texts = lm.LMTexts(["one", " ", "two", "three"], None, "texts")
  batch = next(iter(pipeline.train_dataset(
      texts, tokenizer_lib.ByteTokenizer(), _config(), seed=0,
      needs_source=False)))
  flags = dict(zip(batch["example_id"], batch["empty"]))
  assert flags == {0: 0, 1: 1, 2: 0, 3: 0}


def test_empty_pairs_are_counted_and_reported_once(capsys):
  from encdec_jax.train import tally
  config = ml_collections.ConfigDict(dict(empty_pairs="skip"))
  counts = tally.Tally(config, 0, 0.0)
  step = {"loss": np.float32(2.0), "nll": np.float32(2.0),
          "tokens": np.float32(4.0), "overlong": np.int32(0),
          "nonfinite": np.int32(0)}
  for empty in (0, 2, 1):
    counts.add(dict(step, empty=np.int32(empty)))
  assert counts.summary(3, 1.0)["empty_examples"] == 3
  counts.add(dict(step, empty=np.int32(1)))
  assert counts.summary(4, 2.0)["empty_examples"] == 4
  out = capsys.readouterr().out
  assert out.count("warning: training pairs with an empty source or target "
                   "(by step 3: 3) are given weight 0 (config.empty_pairs="
                   "'skip'); counted as empty_examples") == 1


def test_an_export_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
  from encdec_jax.data import export
  pairs = {"train": (["1", "2"], ["one", "two"]),
           "validation": (["3"], ["three"]),
           "test": (["4", "5"], ["four", "five\r"])}
  monkeypatch.setattr(sources, "make_source", lambda config, split:
                      sources._ListPairs(*pairs[split], split))
  with pytest.raises(ValueError, match="a pair contains a TAB or line break"):
    export.export_tsv("any", str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["train.tsv", "validation.tsv"]
  pairs["test"] = (["4"], ["four"])
  export.export_tsv("any", str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["test.tsv", "train.tsv",
                                          "validation.tsv"]


def test_a_tokenizer_trained_again_is_the_same_vocabulary():
  texts = [f"{n} {n * 7} {n * 13}" for n in range(400)]
  first = tokenizer_lib.train_sentencepiece(texts, 40)
  again = tokenizer_lib.train_sentencepiece(texts, 40)
  assert first.model_proto == again.model_proto
  assert (tokenizer_lib.vocab_record(first) ==
          tokenizer_lib.vocab_record(again))
  assert b"/tmp" not in first.model_proto


def test_a_metrics_row_cut_short_by_a_kill_is_left_out(tmp_path, capsys):
  from encdec_jax.reports import curves
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "split": "train"}\n{"step": 2, "spl',
                  encoding="utf-8")
  assert curves.read_metrics(str(tmp_path)) == [{"step": 1,
                                                 "split": "train"}]
  assert f"note: {path}:2 was cut short" in capsys.readouterr().err
  path.write_text('{"step": 1, "spl\n{"step": 2}\n', encoding="utf-8")
  with pytest.raises(SystemExit, match=r"metrics.jsonl:1: not a JSON row"):
    curves.read_metrics(str(tmp_path))
