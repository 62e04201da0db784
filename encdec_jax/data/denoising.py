"""Denoising pretraining objectives: pure numpy transforms of token id arrays.

Every objective maps one text's token ids (no EOS: append it afterwards, as
T5 does) to an (inputs, targets) pair, with all randomness drawn from a numpy
Generator seeded by SeedSequence([seed, index]): the output depends only on
(ids, config, seed, index), never on global state or on what came before, so
a resumed stream re-creates exactly the examples it would have made. (Fold an
epoch into `seed` for new noise each epoch, as fairseq seeds with
(seed, epoch, index).)

span_corruption — T5's objective (Raffel et al. 2020, "Exploring the Limits
  of Transfer Learning with a Unified Text-to-Text Transformer", §3.1.4 and
  §3.3.4), a port of t5.data.preprocessors.span_corruption's denoise step:
  random_spans_noise_mask, noise_span_to_unique_sentinel (inputs) and
  nonnoise_span_to_unique_sentinel (targets) of
  github.com/google-research/text-to-text-transfer-transformer,
  t5/data/preprocessors.py (read at e081111). "The cute dog walks in the
  park" -> inputs "The <0> walks in <1> park", targets "<0> cute dog <1> the".
  T5's mask always ends in a noise span (spans interleave non-noise first and
  there are as many of each), so inputs end with the last sentinel and the
  targets end with the last noise span: no closing sentinel follows it (the
  paper's Figure 2 shows one only because its example ends with non-noise).
  random_spans_helper (ported) gives the raw length that yields fixed-length
  inputs and targets.
text_infilling — BART's objective (Lewis et al. 2020, "BART: Denoising
  Sequence-to-Sequence Pre-training for Natural Language Generation,
  Translation, and Comprehension", §2.2), a port of DenoisingDataset's
  permute_sentences, add_whole_word_mask (mask_length="span-poisson") and
  add_insertion_noise in github.com/facebookresearch/fairseq,
  fairseq/data/denoising_dataset.py (read at 3d262bb): span lengths ~
  Poisson(lambda), each span replaced by one mask token (replace_length=1), a
  length-0 span inserts a mask; the target is the whole original text.
prefix_lm — T5's prefix LM (random_prefix_noise_mask with noise_density 0.5):
  inputs are a prefix of random length in [1, length-1], targets the rest.

The random draws cannot be bit-identical to T5's TF stateless ops or to
fairseq's torch generator; the algorithms and their arithmetic (rounding,
clamping, trimming, clipping) are the originals', but for one float32
rounding of T5's that disagrees with its own length helper (see
random_spans_noise_mask).
"""

import functools
import math
from typing import Optional, Sequence

import numpy as np


def rng_for(seed: int, index: int) -> np.random.Generator:
  """The Generator of record `index`: a pure function of (seed, index)."""
  return np.random.default_rng(np.random.SeedSequence([seed, index]))


# --- T5 span corruption -----------------------------------------------------

def t5_sentinel_ids(vocab_size: int, num_sentinels: int = 100) -> np.ndarray:
  """T5's <extra_id_k> = vocab_size - 1 - k: the vocabulary's last ids, in
  decreasing order (k = 0 first)."""
  return np.arange(vocab_size - 1, vocab_size - 1 - num_sentinels, -1)


def _random_segmentation(num_items: int, num_segments: int,
                         rng: np.random.Generator) -> np.ndarray:
  """T5's _random_segmentation: num_items split into num_segments non-empty
  runs, all splits equally likely. A shuffled vector with num_segments-1 ones
  among num_items-1 slots marks which items (after the first) open a run."""
  first_in_segment = np.zeros(num_items, np.int64)
  first_in_segment[1:] = rng.permutation(
      np.arange(num_items - 1) < num_segments - 1)
  segment_id = np.cumsum(first_in_segment)
  return np.bincount(segment_id, minlength=num_segments)


def random_spans_noise_mask(length: int, noise_density: float,
                            mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """T5's random_spans_noise_mask (random_roll=False): a bool[length] mask of
  num_noise_spans noise spans holding num_noise_tokens tokens, where

    num_noise_tokens = round(length * noise_density), clamped to
                       [1, length - 1]
    num_noise_spans = round(num_noise_tokens / mean_noise_span_length), >= 1

  and spans alternate non-noise, noise, ... (non-noise first, so the mask
  ends with noise). Lengths below 2 are computed as 2 and cut, as T5 does.
  Rounding is Python's (float64, half-to-even), as in T5's
  random_spans_helper; T5's mask rounds float32 products (tf.round), which
  at a decimal tie rounds the other way (190 * 0.15: 28.5000011 -> 29 in
  float32, 28.4999999 -> 28 in float64), so T5's targets there overflow its
  own helper's targets_length by 2. One arithmetic for both keeps
  random_spans_helper exact.
  """
  if noise_density == 0.0:
    return np.zeros(length, bool)
  orig_length, length = length, max(length, 2)  # T5: avoid degeneracy
  num_noise_tokens = int(round(length * noise_density))
  num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
  num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
  num_noise_spans = max(num_noise_spans, 1)
  num_nonnoise_tokens = length - num_noise_tokens
  if num_noise_spans > num_nonnoise_tokens:
    # T5's segmentation would give fewer non-noise spans than noise spans
    # (and fail in tf.stack): density too high for this span length.
    raise ValueError(
        f"{num_noise_spans} noise spans need as many non-noise tokens; "
        f"length {length} has {num_nonnoise_tokens} at noise_density="
        f"{noise_density}, mean_noise_span_length={mean_noise_span_length}")
  noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans,
                                            rng)
  nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens,
                                               num_noise_spans, rng)
  interleaved_span_lengths = np.stack(
      [nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(-1)
  is_noise = np.arange(2 * num_noise_spans) % 2 == 1
  return np.repeat(is_noise, interleaved_span_lengths)[:orig_length]


def noise_span_to_unique_sentinel(ids: np.ndarray, noise_mask: np.ndarray,
                                  sentinel_ids: Sequence[int]) -> np.ndarray:
  """T5's noise_span_to_unique_sentinel: each run of noise tokens becomes
  one sentinel, the k-th run sentinel_ids[k]."""
  ids = np.asarray(ids)
  sentinel_ids = np.asarray(sentinel_ids, ids.dtype)
  prev_is_noise = np.zeros_like(noise_mask)
  prev_is_noise[1:] = noise_mask[:-1]
  first_noise = noise_mask & ~prev_is_noise
  span_index = np.cumsum(first_noise) - 1
  num_spans = int(first_noise.sum())
  if num_spans > len(sentinel_ids):
    raise ValueError(f"{num_spans} spans but only {len(sentinel_ids)} "
                     "sentinel ids")
  out = np.where(first_noise, sentinel_ids[np.maximum(span_index, 0)], ids)
  return out[~(noise_mask & prev_is_noise)]


def span_corruption(ids, *, noise_density: float = 0.15,
                    mean_noise_span_length: float = 3.0,
                    sentinel_ids: Sequence[int], seed: int,
                    index: int) -> tuple[np.ndarray, np.ndarray]:
  """T5's span corruption of one text's ids (no EOS) -> (inputs, targets).

  inputs: the non-noise tokens, each noise span replaced by its sentinel;
  targets: each non-noise span replaced by its sentinel, i.e. sentinel k
  followed by noise span k, k = 0, 1, ... (T5's denoise with
  noise_span_to_unique_sentinel / nonnoise_span_to_unique_sentinel).
  sentinel_ids[k] marks span k (T5: t5_sentinel_ids(vocab_size)); the text
  must not contain them. Append EOS to both afterwards, as T5 does.
  """
  ids = np.asarray(ids)
  noise_mask = random_spans_noise_mask(len(ids), noise_density,
                                       mean_noise_span_length,
                                       rng_for(seed, index))
  return (noise_span_to_unique_sentinel(ids, noise_mask, sentinel_ids),
          noise_span_to_unique_sentinel(ids, ~noise_mask, sentinel_ids))


def reconstruct_span_corruption(inputs, targets,
                                sentinel_ids: Sequence[int]) -> np.ndarray:
  """The text that span_corruption's (inputs, targets) came from: each
  sentinel in the inputs replaced by the tokens after the same sentinel in
  the targets (up to the next sentinel). Tolerates what a model may write:
  a sentinel missing from the targets restores nothing, a closing sentinel
  or unknown ones are ignored. Strip EOS and padding first."""
  inputs, targets = np.asarray(inputs), np.asarray(targets)
  sorted_ids = np.sort(np.asarray(sentinel_ids))
  is_sentinel = lambda x: sorted_ids[np.minimum(
      np.searchsorted(sorted_ids, x), len(sorted_ids) - 1)] == x
  bounds = np.append(np.flatnonzero(is_sentinel(targets)), len(targets))
  spans = {}
  for start, end in zip(bounds[:-1], bounds[1:]):
    spans.setdefault(int(targets[start]), targets[start + 1:end])
  pieces = []
  last = 0
  for pos in np.flatnonzero(is_sentinel(inputs)):
    pieces += [inputs[last:pos], spans.get(int(inputs[pos]), inputs[:0])]
    last = pos + 1
  pieces.append(inputs[last:])
  return np.concatenate(pieces)


def random_spans_helper(inputs_length: int, noise_density: float,
                        mean_noise_span_length: float,
                        extra_tokens_per_span_inputs: int = 1,
                        extra_tokens_per_span_targets: int = 1
                        ) -> tuple[int, int]:
  """T5's random_spans_helper -> (tokens_length, targets_length).

  span_corruption of a tokens_length text gives inputs and targets that,
  each with one EOS appended (counted here, as T5 counts it), are exactly
  inputs_length and targets_length long: pack raw texts into tokens_length
  chunks and no row needs padding. (With one sentinel a span, one more raw
  token adds 0 or 1 input tokens, so every inputs_length is hit.) T5:
  512 -> (568, 114) at 0.15 / 3. Two exceptions, both T5's: at
  noise_density 0.5 T5 takes a token off to keep targets no longer than
  inputs, after which both lengths are only upper bounds; and inputs_length
  so short that round(round(n * density) / mean) is 0 (span_corruption
  still makes one span; the helper counts none).
  """
  def lengths(tokens_length):
    num_noise_tokens = int(round(tokens_length * noise_density))
    num_nonnoise_tokens = tokens_length - num_noise_tokens
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    # inputs: the non-noise tokens, a sentinel a noise span and one EOS.
    return (num_nonnoise_tokens
            + num_noise_spans * extra_tokens_per_span_inputs + 1,
            num_noise_tokens
            + num_noise_spans * extra_tokens_per_span_targets + 1)

  tokens_length = inputs_length - 1
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  inputs_length, targets_length = lengths(tokens_length)
  # T5's "minor hack": at density 0.5 make targets no longer than inputs.
  if noise_density == 0.5 and targets_length > inputs_length:
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


# --- BART text infilling ----------------------------------------------------

@functools.lru_cache(maxsize=16)
def _poisson_cdf(poisson_lambda: float) -> np.ndarray:
  """fairseq's span-length distribution: Poisson(lambda) probabilities for
  k = 0, 1, ... up to the first below 1e-7 (included), then renormalized (by
  torch's Categorical); as a cumulative sum to sample by search."""
  ps = []
  lambda_to_the_k, e_to_the_minus_lambda, k_factorial = 1.0, math.exp(
      -poisson_lambda), 1
  for k in range(128):
    ps.append(e_to_the_minus_lambda * lambda_to_the_k / k_factorial)
    lambda_to_the_k *= poisson_lambda
    k_factorial *= k + 1
    if ps[-1] < 1e-7:
      break
  cdf = np.cumsum(ps)
  return cdf / cdf[-1]


def poisson_span_lengths(num_to_mask: int, poisson_lambda: float,
                         rng: np.random.Generator) -> np.ndarray:
  """fairseq's span lengths for a budget of num_to_mask tokens: draw
  Poisson(lambda) lengths until they sum to >= num_to_mask, keep them up to
  the first that reaches the budget and trim that last one so the lengths
  sum to num_to_mask exactly. Zeros are kept (they become inserted masks)."""
  cdf = _poisson_cdf(poisson_lambda)
  sample = lambda: np.searchsorted(cdf, rng.random(num_to_mask), "right")
  lengths = sample()
  cum_length = np.cumsum(lengths)
  while cum_length[-1] < num_to_mask:  # make sure there is enough to mask
    lengths = np.concatenate([lengths, sample()])
    cum_length = np.cumsum(lengths)
  i = int(np.argmax(cum_length >= num_to_mask))  # trim to the budget
  lengths = lengths[:i + 1].copy()
  lengths[i] = num_to_mask - (cum_length[i - 1] if i > 0 else 0)
  return lengths


def _insertion_noise(source: np.ndarray, n: int, mask_id: int,
                     rng: np.random.Generator) -> np.ndarray:
  """fairseq's add_insertion_noise (random_ratio 0): n masks at random
  positions, never before the first (BOS) or after the last (EOS) token. The
  count is fairseq's ceil(len * (n / len)) without its float round-off."""
  num_tokens = len(source)
  noise_indices = rng.permutation(num_tokens + n - 2)[:n] + 1
  noise_mask = np.zeros(num_tokens + n, bool)
  noise_mask[noise_indices] = True
  result = np.empty(num_tokens + n, source.dtype)
  result[noise_indices] = mask_id
  result[~noise_mask] = source
  return result


def _whole_word_mask(source: np.ndarray, is_word_start: np.ndarray,
                     mask_ratio: float, poisson_lambda: float, mask_id: int,
                     replace_length: int,
                     rng: np.random.Generator) -> np.ndarray:
  """fairseq's add_whole_word_mask (mask_length="span-poisson",
  random_ratio 0) of a source with BOS and EOS at its ends (never masked).
  Spans start at distinct random word starts and run over whole words;
  spans that overlap merge and a span stops at EOS, so fewer than the budget
  of tokens may end up masked, as in fairseq."""
  source = source.copy()
  is_word_start = is_word_start.astype(np.int64)
  is_word_start[0] = is_word_start[-1] = 0
  # torch: float32 sum * p, then ceil.
  num_to_mask = math.ceil(np.float32(is_word_start.sum())
                          * np.float32(mask_ratio))
  if num_to_mask == 0:
    return source
  lengths = poisson_span_lengths(num_to_mask, poisson_lambda, rng)
  num_to_mask = len(lengths)
  lengths = lengths[lengths > 0]  # length-0 spans are inserts, done last
  num_inserts = num_to_mask - len(lengths)
  num_to_mask -= num_inserts
  if num_to_mask == 0:
    return _insertion_noise(source, num_inserts, mask_id, rng)

  word_starts = np.flatnonzero(is_word_start)
  indices = word_starts[rng.permutation(len(word_starts))[:num_to_mask]]
  to_keep = np.ones(len(source), bool)
  is_word_start[-1] = 255  # a long "word": no span runs past EOS
  if replace_length == 0:
    to_keep[indices] = False
  else:  # keep the span's first token, as the mask
    source[indices] = mask_id
  lengths = lengths - 1
  while len(indices):
    lengths = lengths - is_word_start[indices + 1]
    uncompleted = lengths >= 0
    indices = indices[uncompleted] + 1
    lengths = lengths[uncompleted]
    if replace_length != -1:
      to_keep[indices] = False  # the rest of the span is deleted
    else:
      source[indices] = mask_id  # every token of the span becomes a mask
  source = source[to_keep]
  if num_inserts > 0:
    source = _insertion_noise(source, num_inserts, mask_id, rng)
  return source


def _permuted_sentences(source: np.ndarray, is_full_stop: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
  """fairseq's permute_sentences (p=1) of a source with BOS and EOS at its
  ends, as the positions to read: a sentence ends after the first token of
  each run of full stops, and the last token counts as a full stop so the
  tail is a sentence; the sentences are shuffled (what follows the last
  sentence end, e.g. the 2nd of two trailing full stops, stays put)."""
  full_stops = is_full_stop.copy()
  full_stops[-2] = True  # pretend it ends with a full stop
  sentence_ends = np.flatnonzero(full_stops[1:] & ~full_stops[:-1]) + 2
  order = np.arange(len(source))
  index = 1  # BOS stays first
  for i in rng.permutation(len(sentence_ends)):
    start = sentence_ends[i - 1] if i > 0 else 1
    order[index:index + sentence_ends[i] - start] = np.arange(
        start, sentence_ends[i])
    index += sentence_ends[i] - start
  return order


def text_infilling(ids, *, mask_ratio: float = 0.3,
                   poisson_lambda: float = 3.0, mask_id: int, seed: int,
                   index: int, permute_sentences: bool = False,
                   sentence_end_ids: Sequence[int] = (),
                   replace_length: int = 1,
                   word_starts: Optional[np.ndarray] = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """BART's text infilling (+ optional sentence permutation) of one text's
  ids (no BOS/EOS) -> (inputs, targets = the original ids).

  fairseq's DenoisingDataset with mask=mask_ratio, mask_length=span-poisson,
  poisson_lambda, replace_length, permute_sentences=1.0 if permute_sentences
  else 0 (full stops: sentence_end_ids), and mask_random, insert, rotate 0.
  BART masked 30 % with lambda 3 and permuted all sentences (§2.2, §4.1;
  mBART: 35 %, lambda 3.5); fairseq's task defaults differ (mask 0,
  replace_length 0, mask_length subword). The budget is ceil(words *
  mask_ratio) tokens (words: positions with word_starts true, default every
  token) in Poisson spans starting at distinct random word starts; each span
  becomes one mask_id (replace_length 1; 0 deletes it, -1 masks every token)
  and a length-0 span inserts a mask_id. fairseq's BOS/EOS are virtual here:
  a span never runs past the text's end and inserts may land at either end.
  """
  ids = np.asarray(ids)
  if len(ids) == 0:
    return ids.copy(), ids.copy()
  rng = rng_for(seed, index)
  # fairseq's source is BOS + text + EOS; the ends are placeholders here.
  source = np.concatenate([[0], ids, [0]]).astype(ids.dtype)
  is_word_start = np.ones(len(source), bool)
  if word_starts is not None:
    is_word_start[1:-1] = np.asarray(word_starts, bool)
  if permute_sentences:
    is_full_stop = np.zeros(len(source), bool)
    is_full_stop[1:-1] = np.isin(ids, sentence_end_ids)
    order = _permuted_sentences(source, is_full_stop, rng)
    # fairseq reads word starts off the permuted tokens: move them along.
    source, is_word_start = source[order], is_word_start[order]
  if mask_ratio > 0:
    source = _whole_word_mask(source, is_word_start, mask_ratio,
                              poisson_lambda, mask_id, replace_length, rng)
  return source[1:-1], ids.copy()


# --- T5 prefix LM -----------------------------------------------------------

def prefix_lm(ids, *, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
  """T5's prefix_lm split (random_prefix_noise_mask at noise_density 0.5):
  inputs = ids[:k], targets = ids[k:], k uniform in [1, len - 1] (k = 0 for a
  single token)."""
  ids = np.asarray(ids)
  split = (int(rng_for(seed, index).integers(1, len(ids))) if len(ids) > 1
           else 0)
  return ids[:split], ids[split:]
