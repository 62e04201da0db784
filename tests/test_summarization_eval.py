"""Summarization as T5 evaluates it: ROUGE-1/2/Lsum F-measures through
rouge-score (config.eval_metrics), on examples counted by hand, and the
model's task prefix (config.decode.source_prefix, from config.decode.task)
put in front of the sources of training, evaluation and decoding batches.
"""

import ml_collections
import numpy as np
import pytest

from encdec_jax.data import packing, pipeline
from encdec_jax.data.tokenizer import ByteTokenizer
from encdec_jax.tasks import evaluation, translation


def test_rouge_equals_the_counts_by_hand():
  # 6 reference words, 5 hypothesis words, all in order: unigram overlap 5
  # (P 1, R 5/6, F 10/11), bigrams 3 of 4 / 5 (F 2/3), LCS 5 (F 10/11).
  one = evaluation.rouge_scores(["The cat on the mat."],
                                ["the cat sat on the mat"])
  assert one == pytest.approx({"rouge1": 1000 / 11, "rouge2": 200 / 3,
                               "rougeLsum": 1000 / 11})
  # Two sentences swapped: every word and 4 of 5 bigrams; as one sequence
  # the LCS is 3 of 6 (ROUGE-L 50), but Lsum takes the union LCS sentence
  # by sentence (split at " . ", as T5 does): 6 of 6.
  swapped = evaluation.rouge_scores(["d e f . a b c ."], ["a b c . d e f ."])
  assert swapped == pytest.approx({"rouge1": 100.0, "rouge2": 80.0,
                                   "rougeLsum": 100.0})
  both = evaluation.rouge_scores(
      ["The cat on the mat.", "d e f . a b c ."],
      ["the cat sat on the mat", "a b c . d e f ."])
  assert both == pytest.approx({k: (one[k] + swapped[k]) / 2 for k in one})


def test_eval_metrics_choose_what_is_computed_and_shown():
  hyps, refs = ["a b c", "x y"], ["a b c", "x z"]
  default = evaluation.text_metrics(hyps, refs)
  assert sorted(default) == ["bleu", "chrf", "exact_match"]
  config = ml_collections.ConfigDict({"eval_metrics": ("exact_match",
                                                       "rouge")})
  chosen = evaluation.text_metrics(hyps, refs, "13a",
                                   evaluation.chosen_metrics(config))
  assert sorted(chosen) == ["exact_match", "rouge1", "rouge2", "rougeLsum"]
  assert chosen["exact_match"] == 50.0
  assert chosen["rouge2"] == pytest.approx(50.0)  # "x y" has no "x z"
  assert evaluation.text_metrics_line(chosen) == (
      "exact match 50.00%  ROUGE-1 75.00  ROUGE-2 50.00  ROUGE-Lsum 75.00")
  assert evaluation.text_metrics_line(default).startswith(
      "exact match 50.00%  BLEU ")
  config.eval_metrics = ("bleu", "rouge_l")
  with pytest.raises(ValueError, match=r"^config.eval_metrics=\('bleu', "
                     r"'rouge_l'\): 'rouge_l' is not known; choose from"):
    translation.TASK.check_config(config)


def _config(prefix: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      max_source_length=32, max_target_length=8, bucket_boundaries=(8, 32),
      overlong="truncate", batch_size=2, seed=0,
      decode=ml_collections.ConfigDict({"source_prefix": prefix})))


def test_the_task_prefix_is_read_in_front_of_every_source():
  tokenizer = ByteTokenizer()
  pairs = [{"source": "a long text", "target": "text"},
           {"source": "summarize: already", "target": "x"}]
  expected = [tokenizer.encode("summarize: a long text"),
              tokenizer.encode("summarize: already")]  # not twice

  def sources(inputs_BxS):
    return [row[row != 0][:-1].tolist() for row in np.asarray(inputs_BxS)]

  config = _config("summarize: ")
  batch = next(iter(pipeline.eval_batches(pairs, tokenizer, config, 2)))
  assert sources(batch["inputs"]) == [e.tolist() for e in expected]
  train = next(iter(pipeline.train_dataset(pairs, tokenizer, config, 0)))
  assert sorted(sources(train["inputs"])) == sorted(
      e.tolist() for e in expected)
  config.pack_examples = True
  packed = next(iter(packing.train_dataset(pairs, tokenizer, config, 0)))
  rows = [row[segments == k][:-1].tolist()
          for row, segment_row in zip(packed["inputs"],
                                      packed["inputs_segment_ids"])
          for k in range(1, 3) for segments in [segment_row]
          if (segment_row == k).any()]
  assert sorted(rows) == sorted(e.tolist() for e in expected)
  # No task, no prefix.
  plain = next(iter(pipeline.eval_batches(pairs, tokenizer, _config(""), 2)))
  assert sources(plain["inputs"])[0] == tokenizer.encode("a long text").tolist()
