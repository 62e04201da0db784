"""beam_search(scoring="hf") against a line-by-line numpy transcription of
transformers 5.x's _beam_search (generation/utils.py: _get_top_k_continuations,
_get_running_beams_for_next_iteration, _update_finished_beams,
_check_early_stop_heuristic, _beam_search_has_unfinished_sequences) on
models whose logits depend on the row and the step only, over every
early_stopping and signs of length_penalty; and the token rules' effects on
hand-made histories. (tests/test_generation_config.py matches real
generate() tokens on the tiny checkpoints.)"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from encdec_jax import decoding
from encdec_jax.decoding.rules import GenerationRules

EOS, V = 1, 9


def hf_beam_search(logprobs_BxTxV, beams, max_len, lp, early_stopping):
  """transformers' beam search on step-indexed log-probabilities (its -1e9
  constants, float64); -> (sequences BxKxT, scores BxK)."""
  batch, _, vocab = logprobs_BxTxV.shape
  cands = 2 * beams
  running = np.zeros((batch, beams, max_len), np.int64)
  running_scores = np.zeros((batch, beams))
  running_scores[:, 1:] = -1e9
  sequences = np.zeros_like(running)
  scores = np.full((batch, beams), -1e9)
  finished = np.zeros((batch, beams), bool)
  unsatisfied = np.ones((batch, 1), bool)
  cur = 0
  while True:
    flat = (logprobs_BxTxV[:, cur][:, None, :]
            + running_scores[..., None]).reshape(batch, -1)
    index = np.argsort(-flat, axis=1, kind="stable")[:, :cands]
    top = np.take_along_axis(flat, index, 1)
    parent, token = index // vocab, index % vocab
    top_seqs = np.take_along_axis(running, parent[..., None], 1).copy()
    top_seqs[:, :, cur] = token
    hits = (token == EOS) | (cur + 1 >= max_len)
    # Running beams for the next step.
    kept = top + hits * -1e9
    pick = np.argsort(-kept, axis=1, kind="stable")[:, :beams]
    running = np.take_along_axis(top_seqs, pick[..., None], 1)
    running_scores = np.take_along_axis(kept, pick, 1)
    # Finished beams.
    just = hits & (np.arange(cands) < beams)[None]
    new = top / float(cur + 1) ** lp
    new = new + (finished.all(1, keepdims=True) & (early_stopping is True)) * -1e9
    new = new + (~unsatisfied) * -1e9 + (~just) * -1e9
    merged_scores = np.concatenate([scores, new], 1)
    order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :beams]
    sequences = np.take_along_axis(
        np.concatenate([sequences, top_seqs], 1), order[..., None], 1)
    scores = np.take_along_axis(merged_scores, order, 1)
    finished = np.take_along_axis(np.concatenate([finished, just], 1),
                                  order, 1)
    cur += 1
    hypothetical = (max_len if early_stopping == "never" and lp > 0
                    else cur)
    best = running_scores[:, :1] / float(hypothetical) ** lp
    worst = np.where(finished, scores.min(1, keepdims=True), -1e9)
    unsatisfied = unsatisfied & (best > worst).any(1, keepdims=True)
    go_on = (unsatisfied.any() and not (finished.all()
                                        and early_stopping is True)
             and not hits.all())
    if not go_on:
      return sequences, scores


def table_model(logits_BxTxV, beams):
  table_NxTxV = jnp.repeat(jnp.asarray(logits_BxTxV, jnp.float32), beams, 0)

  def tokens_to_logits(tokens_Nx1, step):
    return table_NxTxV[:, step], step + 1

  return tokens_to_logits


@pytest.mark.parametrize("lp, early_stopping", list(itertools.product(
    (-0.7, 1.0, 2.5), (True, False, "never"))))
def test_hf_scoring_is_transformers_beam_search(lp, early_stopping):
  batch, beams, max_len = 8, 3, 8
  decode = jax.jit(lambda table: decoding.beam_search(
      table_model(table, beams), jnp.array(0, jnp.int32), batch, beams,
      max_len, EOS, length_penalty=lp, scoring="hf",
      early_stopping=early_stopping))
  gnmt = jax.jit(lambda table: decoding.beam_search(
      table_model(table, beams), jnp.array(0, jnp.int32), batch, beams,
      max_len, EOS, length_penalty=lp)[0])
  differs = 0
  for seed in range(4):
    logits_BxTxV = 2.0 * np.asarray(jax.random.normal(
        jax.random.key(seed), (batch, max_len, V)))
    logits_BxTxV[..., 0] = -1e9  # pad never likely
    logits_BxTxV[..., EOS] += np.linspace(-1.0, 3.0, batch)[:, None]
    logprobs = np.asarray(jax.nn.log_softmax(jnp.asarray(
        logits_BxTxV, jnp.float32)), np.float64)
    expected_tokens, expected_scores = hf_beam_search(
        logprobs, beams, max_len, lp, early_stopping)
    tokens_BxKxT, scores_BxK = decode(logits_BxTxV)
    np.testing.assert_array_equal(tokens_BxKxT, expected_tokens)
    np.testing.assert_allclose(scores_BxK, expected_scores, rtol=1e-5)
    if lp > 0 and early_stopping is True:
      differs += not np.array_equal(gnmt(logits_BxTxV), tokens_BxKxT)
  if lp > 0 and early_stopping is True:  # GNMT's search finds others
    assert differs


def rules_scores(rules, tokens, step, vocab=V):
  scores_1xV = jnp.zeros((1, vocab)) - 1.0
  return np.asarray(rules(scores_1xV, jnp.asarray([tokens]),
                          jnp.asarray(step)))[0]


def test_rules_see_the_start_token_and_only_emitted_tokens():
  tokens = [4, 5, 4, 0, 0]  # 3 emitted, pad after
  # No-repeat bigrams: after "4", "5" (seen as 4 5) is banned; the pad
  # slots after step are not history.
  banned = np.isinf(rules_scores(GenerationRules(
      eos_id=EOS, no_repeat_ngram_size=2), tokens, 3))
  assert np.flatnonzero(banned).tolist() == [5]
  # A unigram rule bans every id of the history, the start token (7) too.
  banned = np.isinf(rules_scores(GenerationRules(
      eos_id=EOS, start_id=7, no_repeat_ngram_size=1), tokens, 3))
  assert np.flatnonzero(banned).tolist() == [4, 5, 7]
  # Repetition penalty: negative scores multiplied, for ids in the history.
  scores = rules_scores(GenerationRules(eos_id=EOS, start_id=7,
                                        repetition_penalty=2.0), tokens, 3)
  assert np.flatnonzero(scores == -2.0).tolist() == [4, 5, 7]
  # Bad words: [4, 6] bans 6 after a 4; [5, 4, 8] bans 8 after 5 4;
  # [3, 2] nothing; [EOS] alone is dropped (HF).
  banned = np.isinf(rules_scores(GenerationRules(
      eos_id=EOS, bad_words_ids=((4, 6), (5, 4, 8), (3, 2), (EOS,), (2,))),
      tokens, 3))
  assert np.flatnonzero(banned).tolist() == [2, 6, 8]
  # Min length, forced BOS at step 0, forced EOS at the last step.
  rules = GenerationRules(eos_id=EOS, max_steps=5, min_new_tokens=2,
                          forced_bos_token_id=3, forced_eos_token_id=EOS)
  assert np.flatnonzero(np.isfinite(rules_scores(rules, tokens, 0))) == [3]
  assert np.isinf(rules_scores(rules, tokens, 1)[EOS])
  assert np.isfinite(rules_scores(rules, tokens, 2)).all()
  assert np.flatnonzero(np.isfinite(rules_scores(rules, tokens, 4))) == [EOS]
