"""Denoising objectives (data/denoising.py): T5 span corruption and BART text
infilling measured over 10,000 texts against their configs, exact
reconstruction, sentinel order, determinism per (seed, index), T5's length
helper, sentence permutation, and T5's own reference vectors."""

import functools
import math

import numpy as np
import pytest

from encdec_jax.data import denoising as dn

NUM_TEXTS = 10_000
VOCAB = 32_000
SENTINELS = dn.t5_sentinel_ids(VOCAB)
MASK = 4


@functools.lru_cache
def _texts(seed=0, num=NUM_TEXTS, low=50, high=200):
  """Texts of 50-200 distinct ids (distinct: which tokens an output kept
  tells which positions were masked)."""
  rng = np.random.default_rng(seed)
  pool = np.arange(10, 1010)
  return tuple(rng.permutation(pool)[:n]
               for n in rng.integers(low, high + 1, num))


def _runs(mask):
  """(start, end) of each run of True."""
  edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
  return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


# --- T5 span corruption -----------------------------------------------------

def test_t5_reference_vectors():
  # t5/data/preprocessors_test.py: test_noise_span_to_unique_sentinel and
  # test_random_spans_helper; 512 -> (568, 114) is T5's pretraining config.
  tokens = np.array([10, 11, 12, 13, 14, 15])
  noise = np.array([True, True, False, False, True, False])
  sentinels = dn.t5_sentinel_ids(1000)
  np.testing.assert_array_equal(
      dn.noise_span_to_unique_sentinel(tokens, noise, sentinels),
      [999, 12, 13, 998, 15])
  np.testing.assert_array_equal(
      dn.noise_span_to_unique_sentinel(tokens, ~noise, sentinels),
      [10, 11, 999, 14, 998])
  assert dn.random_spans_helper(64, 0.2, 2.0) == (70, 22)
  assert dn.random_spans_helper(64, 0.2, 1.0) == (63, 27)
  assert dn.random_spans_helper(512, 0.15, 3.0) == (568, 114)


@pytest.mark.parametrize("density,mean_span", [(0.15, 3.0), (0.3, 8.0)])
def test_span_corruption_statistics_and_reconstruction(density, mean_span):
  noise_tokens = num_spans = num_tokens = 0
  for index, ids in enumerate(_texts()):
    inputs, targets = dn.span_corruption(
        ids, noise_density=density, mean_noise_span_length=mean_span,
        sentinel_ids=SENTINELS, seed=7, index=index)
    in_inputs = inputs[inputs >= SENTINELS[-1]]  # the vocabulary's last ids
    in_targets = targets[targets >= SENTINELS[-1]]
    k = len(in_targets)
    # Sentinels <extra_id_0>, <extra_id_1>, ... each once, in order, in both;
    # T5's mask ends in noise: inputs end with the last sentinel, targets
    # begin with the first.
    assert np.array_equal(in_inputs, SENTINELS[:k]), (index, inputs)
    assert np.array_equal(in_targets, SENTINELS[:k]), (index, targets)
    assert targets[0] == SENTINELS[0] and inputs[-1] == SENTINELS[k - 1]
    assert np.array_equal(
        dn.reconstruct_span_corruption(inputs, targets, SENTINELS), ids)
    # T5's counts, per text: round(n * density) noise tokens in
    # round(noise / mean) spans.
    expected_noise = round(len(ids) * density)
    assert len(targets) - k == expected_noise
    assert k == max(round(expected_noise / mean_span), 1)
    assert len(inputs) == len(ids) - expected_noise + k
    noise_tokens += len(targets) - k
    num_spans += k
    num_tokens += len(ids)
  measured_density = noise_tokens / num_tokens
  measured_span = noise_tokens / num_spans
  print(f"density {measured_density:.4f} (config {density}), "
        f"mean span {measured_span:.3f} (config {mean_span})")
  assert measured_density == pytest.approx(density, rel=0.02)
  assert measured_span == pytest.approx(mean_span, rel=0.02)


def test_span_lengths_are_random_segmentations():
  """Every split of the noise into spans is equally likely (T5's
  random_segmentation): 6 noise tokens in 2 spans of a 12-token text ->
  noise-span lengths (1,5) ... (5,1), each 1/5; non-noise likewise."""
  first_noise_span = []
  for index in range(5000):
    mask = dn.random_spans_noise_mask(12, 0.5, 3.0, dn.rng_for(0, index))
    assert mask.sum() == 6 and mask[-1] and not mask[0]
    starts, ends = _runs(mask)
    assert len(starts) == 2
    first_noise_span.append(ends[0] - starts[0])
  counts = np.bincount(first_noise_span, minlength=6)[1:]
  np.testing.assert_allclose(counts / 5000, 0.2, atol=0.03)


def test_reconstruct_tolerates_model_output():
  s0, s1, s2 = SENTINELS[:3]
  inputs = np.array([5, s0, 6, s1, 7, s2])
  # A closing sentinel (as Hugging Face writes them) is ignored; a missing
  # one restores nothing; unknown tokens after the last span stay with it.
  np.testing.assert_array_equal(dn.reconstruct_span_corruption(
      inputs, [s0, 8, 9, s1, 10, s2, 11, SENTINELS[3]], SENTINELS),
      [5, 8, 9, 6, 10, 7, 11])
  np.testing.assert_array_equal(dn.reconstruct_span_corruption(
      inputs, [s0, 8, s2, 11], SENTINELS), [5, 8, 6, 7, 11])
  np.testing.assert_array_equal(dn.reconstruct_span_corruption(
      inputs, [], SENTINELS), [5, 6, 7])


@pytest.mark.parametrize("density,mean_span",
                         [(0.15, 3.0), (0.3, 8.0), (0.15, 1.0), (0.25, 2.0)])
def test_random_spans_helper_lengths_are_exact(density, mean_span):
  """A tokens_length text -> exactly inputs_length inputs and targets_length
  targets, both counting the one EOS each gets appended (T5's helper counts
  it; span_corruption does not append it)."""
  for inputs_length in range(32, 700):
    tokens_length, targets_length = dn.random_spans_helper(
        inputs_length, density, mean_span)
    inputs, targets = dn.span_corruption(
        np.arange(tokens_length) + 10, noise_density=density,
        mean_noise_span_length=mean_span, sentinel_ids=dn.t5_sentinel_ids(
            VOCAB, 400), seed=3, index=inputs_length)
    assert (len(inputs) + 1, len(targets) + 1) == (
        inputs_length, targets_length), (inputs_length, tokens_length)


def test_random_spans_helper_density_half_gives_bounds():
  # T5's "minor hack" at density 0.5 drops a token: lengths are bounds.
  for inputs_length in range(32, 300):
    tokens_length, targets_length = dn.random_spans_helper(
        inputs_length, 0.5, 3.0)
    inputs, targets = dn.span_corruption(
        np.arange(tokens_length) + 10, noise_density=0.5,
        sentinel_ids=SENTINELS, seed=3, index=inputs_length)
    assert len(inputs) + 1 <= inputs_length
    assert len(targets) + 1 <= targets_length <= inputs_length


def test_span_corruption_short_texts():
  for n in range(0, 6):
    ids = np.arange(n) + 10
    inputs, targets = dn.span_corruption(ids, sentinel_ids=SENTINELS, seed=0,
                                         index=n)
    np.testing.assert_array_equal(
        dn.reconstruct_span_corruption(inputs, targets, SENTINELS), ids)
  with pytest.raises(ValueError, match="sentinel"):
    dn.span_corruption(np.arange(200), noise_density=0.5,
                       mean_noise_span_length=1.0, sentinel_ids=SENTINELS[:5],
                       seed=0, index=0)


# --- determinism --------------------------------------------------------------

_OBJECTIVES = {
    "span_corruption": lambda ids, seed, index: dn.span_corruption(
        ids, sentinel_ids=SENTINELS, seed=seed, index=index),
    "text_infilling": lambda ids, seed, index: dn.text_infilling(
        ids, mask_id=MASK, seed=seed, index=index, permute_sentences=True,
        sentence_end_ids=(10, 11, 12)),
    "prefix_lm": lambda ids, seed, index: dn.prefix_lm(ids, seed=seed,
                                                       index=index),
}


@pytest.mark.parametrize("name", sorted(_OBJECTIVES))
def test_deterministic_per_seed_and_index(name):
  objective = _OBJECTIVES[name]
  texts = _texts(num=50)
  first = [objective(ids, 1, i) for i, ids in enumerate(texts)]
  # Again, in reverse order and after touching numpy's global RNG: the same.
  np.random.seed(123)
  np.random.random(10)
  again = [objective(ids, 1, i) for i, ids in reversed(list(enumerate(
      texts)))][::-1]
  for (a_in, a_out), (b_in, b_out) in zip(first, again):
    np.testing.assert_array_equal(a_in, b_in)
    np.testing.assert_array_equal(a_out, b_out)
  # Another index (or seed) of the same 200-token text: other noise (the
  # prefix LM's 199 split points may repeat among 39 draws).
  ids = max(texts, key=len)
  outputs = {tuple(objective(ids, 1, i)[0]) for i in range(20)}
  outputs |= {tuple(objective(ids, s, 0)[0]) for s in range(2, 21)}
  assert len(outputs) >= (30 if name == "prefix_lm" else 39)


# --- BART text infilling ------------------------------------------------------

@pytest.mark.parametrize("poisson_lambda", [3.0, 3.5])
def test_poisson_span_lengths(poisson_lambda):
  """fairseq's lengths: Poisson(lambda) draws up to the one that reaches the
  budget, that last one trimmed so they sum to it exactly."""
  rng = np.random.default_rng(0)
  # The draws: at a budget of 4,000 tokens the stopping rule hardly biases
  # those before the last; 30 budgets: ~3.7e4 draws, standard error of the
  # mean 0.3 % of lambda.
  draws = np.concatenate([dn.poisson_span_lengths(4000, poisson_lambda, rng)
                          [:-1] for _ in range(30)])
  print(f"lambda {poisson_lambda}: draws mean {draws.mean():.4f} var "
        f"{draws.var():.4f} P(0) {np.mean(draws == 0):.4f}")
  assert draws.mean() == pytest.approx(poisson_lambda, rel=0.015)
  assert draws.var() == pytest.approx(poisson_lambda, rel=0.05)
  assert np.mean(draws == 0) == pytest.approx(math.exp(-poisson_lambda),
                                              rel=0.15)
  # At the texts' budgets (ceil(0.3 n), n = 50-200) the lengths, the trimmed
  # last included, have a mean below lambda (2.88 at 3): compare with the
  # same rule run on numpy's Poisson sampler.
  lengths, reference = [], []
  for n in np.random.default_rng(1).integers(50, 201, NUM_TEXTS):
    budget = math.ceil(n * 0.3)
    spans = dn.poisson_span_lengths(budget, poisson_lambda, rng)
    assert spans.sum() == budget and spans[-1] > 0
    lengths.append(spans)
    spans = rng.poisson(poisson_lambda, 4 * budget)
    cut = np.searchsorted(np.cumsum(spans), budget)  # first to reach it
    reference.append(np.append(spans[:cut], budget - spans[:cut].sum()))
  lengths, reference = np.concatenate(lengths), np.concatenate(reference)
  print(f"lambda {poisson_lambda}: mean span {lengths.mean():.4f} "
        f"(reference {reference.mean():.4f}) over {len(lengths)} spans")
  # ~1.2e5 spans: standard error 0.2 %; lambda +-0.1 moves it by 3 %.
  assert lengths.mean() == pytest.approx(reference.mean(), rel=0.01)
  assert np.mean(lengths == 0) == pytest.approx(np.mean(reference == 0),
                                                rel=0.1)


def _union_of_spans(n, ratio, poisson_lambda, rng):
  """The reference: fairseq's spans as a union of [start, start + length)
  at distinct random starts, cut at the end -> (covered tokens, masks)."""
  lengths = dn.poisson_span_lengths(
      math.ceil(np.float32(n) * np.float32(ratio)), poisson_lambda, rng)
  inserts = int(np.sum(lengths == 0))
  lengths = lengths[lengths > 0]
  starts = rng.choice(n, len(lengths), replace=False)
  cover = np.zeros(n + 1, int)
  np.add.at(cover, starts, 1)
  np.add.at(cover, np.minimum(starts + lengths, n), -1)
  inside = np.zeros(n + 1, int)  # a start inside another span is swallowed
  np.add.at(inside, np.minimum(starts + 1, n), 1)
  np.add.at(inside, np.minimum(starts + lengths, n), -1)
  swallowed = int(np.sum(np.cumsum(inside)[starts] > 0))
  return int(np.sum(np.cumsum(cover)[:n] > 0)), len(lengths) - swallowed + (
      inserts)


@pytest.mark.parametrize("ratio,poisson_lambda", [(0.3, 3.0), (0.3, 3.5)])
def test_text_infilling_statistics(ratio, poisson_lambda):
  texts = _texts(seed=2)
  masked = masks = budget = num_tokens = 0
  for index, ids in enumerate(texts):
    inputs, targets = dn.text_infilling(
        ids, mask_ratio=ratio, poisson_lambda=poisson_lambda, mask_id=MASK,
        seed=5, index=index)
    np.testing.assert_array_equal(targets, ids)  # the decoder rewrites all
    is_mask = inputs == MASK
    kept = np.isin(ids, inputs, kind="table")
    # The kept tokens, in order, with a mask wherever tokens went missing:
    # right after the kept token before each missing run (or first).
    assert np.array_equal(inputs[~is_mask], ids[kept]), index
    kept_before = np.cumsum(np.concatenate([[0], kept]))[_runs(~kept)[0]]
    where_kept = np.concatenate([[-1], np.flatnonzero(~is_mask)])
    assert is_mask[where_kept[kept_before] + 1].all(), index
    this_budget = math.ceil(np.float32(len(ids)) * np.float32(ratio))
    assert (~kept).sum() <= this_budget  # merged spans only lose tokens
    masked += (~kept).sum()
    masks += is_mask.sum()
    budget += this_budget
    num_tokens += len(ids)
  rng = np.random.default_rng(9)
  reference = np.array([_union_of_spans(len(ids), ratio, poisson_lambda, rng)
                        for ids in texts]).sum(0)
  print(f"mask {ratio} lambda {poisson_lambda}: budget "
        f"{budget / num_tokens:.4f}, masked {masked / num_tokens:.4f} "
        f"(reference {reference[0] / num_tokens:.4f}), masks/token "
        f"{masks / num_tokens:.4f} (reference {reference[1] / num_tokens:.4f})")
  # The budget is ceil(n * ratio) (fairseq); overlapping spans merge, so
  # fewer tokens end up masked (0.27 at 0.3), as the reference union says.
  assert budget / num_tokens == pytest.approx(ratio, rel=0.02)
  assert masked / num_tokens == pytest.approx(reference[0] / num_tokens,
                                              abs=0.004)
  assert masks / num_tokens == pytest.approx(reference[1] / num_tokens,
                                             rel=0.02)


def test_text_infilling_whole_words():
  """With word_starts, spans cover whole words: every masked run starts at
  a word start and ends where a word starts (or at the end)."""
  rng = np.random.default_rng(4)
  words = 0
  for index, ids in enumerate(_texts(seed=4, num=500)):
    word_starts = rng.random(len(ids)) < 0.6
    word_starts[0] = True
    inputs, _ = dn.text_infilling(ids, mask_id=MASK, seed=0, index=index,
                                  word_starts=word_starts)
    missing = ~np.isin(ids, inputs)
    bounded = np.append(word_starts, True)
    for start, end in zip(*_runs(missing)):
      assert word_starts[start] and bounded[end], (index, start, end)
    words += word_starts.sum()
  assert words > 0


def test_text_infilling_replace_lengths():
  """The same (seed, index) masks the same tokens whatever replace_length:
  1 puts one mask a span, 0 none (only the inserted masks remain), -1 one a
  masked token."""
  spans = 0
  for index, ids in enumerate(_texts(seed=6, num=300)):
    outputs = {r: dn.text_infilling(ids, mask_id=MASK, seed=0, index=index,
                                    replace_length=r)[0] for r in (1, 0, -1)}
    kept = {r: np.isin(ids, x) for r, x in outputs.items()}
    masks = {r: int(np.sum(x == MASK)) for r, x in outputs.items()}
    assert np.array_equal(kept[1], kept[0]) and np.array_equal(kept[1],
                                                               kept[-1])
    for r, x in outputs.items():
      assert np.array_equal(x[x != MASK], ids[kept[r]]), (index, r)
    inserts = masks[0]
    assert masks[-1] == (~kept[1]).sum() + inserts
    assert len(outputs[-1]) == len(ids) + inserts
    assert masks[1] > inserts
    spans += masks[1] - inserts
  assert spans > 300 * 5


def _sentences(ids, ends):
  """fairseq's split -> (sentences, where the last ends): a sentence ends
  after the first of each run of full stops, the last token counting as
  one (so ". b" at the end leaves "b" where it is: it follows a stop)."""
  stop = np.isin(ids, ends)
  stop[-1] = True
  cuts = [i + 1 for i in range(len(ids))
          if stop[i] and (i == 0 or not stop[i - 1])]
  return [tuple(ids[a:b]) for a, b in zip([0] + cuts[:-1], cuts)], cuts[-1]


def _is_permutation_of(rest, sentences):
  """Whether rest is the sentences concatenated in some order."""
  if not sentences:
    return not rest
  return any(rest[:len(s)] == s and _is_permutation_of(
      rest[len(s):], sentences[:i] + sentences[i + 1:])
             for i, s in enumerate(sentences))


def test_sentence_permutation():
  """mask_ratio 0: the inputs are the text's sentences in another order."""
  rng = np.random.default_rng(8)
  ends = (10, 11)
  changed = 0
  for index in range(2000):
    num = int(rng.integers(1, 6))
    pieces = [list(rng.integers(20, 100, int(rng.integers(0, 6))))
              + list(rng.choice(ends, int(rng.integers(1, 3))))
              for _ in range(num)]
    ids = np.array(sum(pieces, []) + list(rng.integers(20, 100, int(
        rng.integers(0, 3)))))
    inputs, targets = dn.text_infilling(
        ids, mask_ratio=0.0, mask_id=MASK, seed=1, index=index,
        permute_sentences=True, sentence_end_ids=ends)
    np.testing.assert_array_equal(targets, ids)
    sentences, end = _sentences(ids, ends)
    assert _is_permutation_of(tuple(inputs[:end]), sentences), (ids, inputs)
    np.testing.assert_array_equal(inputs[end:], ids[end:])  # stays put
    changed += not np.array_equal(inputs, ids)
  # Texts of 2+ distinct sentences are shuffled (~half of them here).
  assert changed > 600


def test_text_infilling_short_texts_and_permuted_masking():
  for n in range(0, 4):
    ids = np.arange(n) + 20
    inputs, targets = dn.text_infilling(ids, mask_id=MASK, seed=0, index=n,
                                        permute_sentences=True,
                                        sentence_end_ids=(21,))
    np.testing.assert_array_equal(targets, ids)
    assert set(inputs) <= set(ids) | {MASK}


# --- prefix LM ------------------------------------------------------------------

def test_prefix_lm():
  splits = []
  for index in range(2000):
    ids = np.arange(10) + 20
    inputs, targets = dn.prefix_lm(ids, seed=0, index=index)
    np.testing.assert_array_equal(np.concatenate([inputs, targets]), ids)
    splits.append(len(inputs))
  np.testing.assert_array_equal(np.unique(splits), np.arange(1, 10))
  for n in (0, 1):
    inputs, targets = dn.prefix_lm(np.arange(n), seed=0, index=0)
    assert len(inputs) == 0 and len(targets) == n
