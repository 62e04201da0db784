"""Denoising examples from raw text, in grain: chunks of documents, noised
by an objective of data/denoising.py, packed (or padded) into batches.

A document (one text line) is tokenized and cut into chunks of at most
`chunk_length` tokens (T5 splits its token stream the same way; here a
chunk never spans two documents, and the packer fills rows instead). A
chunk becomes an (inputs, targets) pair by the objective, each with EOS
appended:

  span_corruption  T5: chunk_length = random_spans_helper(max_source_length)
                   raw tokens give inputs of max_source_length and targets of
                   the helper's targets_length exactly (shorter chunks,
                   shorter pairs: the packer puts several in a row);
  text_infilling   BART: spans masked with one mask id (T5's <extra_id_0>),
                   targets the whole chunk; chunk_length = the shorter max
                   length - 1;
  prefix_lm        T5: a random prefix in, the rest out.

The noise of the pair at position k of the training stream (k counts over
epochs) is drawn from (seed, k) alone, so each epoch noises a chunk anew and
a stream restored from its grain state re-creates exactly the pairs it
would have made: the state is that of the shuffled index stream and the
packer (data/packing.py), as for any other task.
"""

import dataclasses
from typing import Sequence

import grain
import jax
import numpy as np

from encdec_jax.data import denoising, packing, pipeline
from encdec_jax.data.tokenizer import EOS_ID

OBJECTIVES = ("span_corruption", "text_infilling", "prefix_lm")
SENTENCE_ENDS = (".", "!", "?")


@dataclasses.dataclass(frozen=True)
class Objective:
  """An objective and its settings, with the ids it writes."""
  name: str
  sentinel_ids: np.ndarray  # <extra_id_k> = sentinel_ids[k]
  noise_density: float = 0.15
  mean_noise_span_length: float = 3.0
  mask_ratio: float = 0.3
  poisson_lambda: float = 3.0
  permute_sentences: bool = True
  word_start_ids: np.ndarray | None = None  # bool per id: '▁' pieces
  sentence_end_ids: tuple[int, ...] = ()

  def __call__(self, ids: np.ndarray, seed: int, index: int):
    """(inputs, targets) of one chunk, no EOS."""
    if self.name == "span_corruption":
      return denoising.span_corruption(
          ids, noise_density=self.noise_density,
          mean_noise_span_length=self.mean_noise_span_length,
          sentinel_ids=self.sentinel_ids, seed=seed, index=index)
    if self.name == "text_infilling":
      starts = (None if self.word_start_ids is None
                else self.word_start_ids[ids])
      return denoising.text_infilling(
          ids, mask_ratio=self.mask_ratio, poisson_lambda=self.poisson_lambda,
          mask_id=int(self.sentinel_ids[0]), seed=seed, index=index,
          permute_sentences=self.permute_sentences,
          sentence_end_ids=self.sentence_end_ids, word_starts=starts)
    return denoising.prefix_lm(ids, seed=seed, index=index)


def make_objective(settings, tokenizer, num_sentinels: int) -> Objective:
  """The Objective of config.pretraining (`settings`) over a SentencePiece
  `tokenizer`: T5's sentinels are the num_sentinels ids after its pieces,
  <extra_id_0> last (t5_sentinel_ids), as Hugging Face's T5 tokenizer
  numbers its extra_ids."""
  if settings.objective not in OBJECTIVES:
    raise ValueError(f"config.pretraining.objective={settings.objective!r} "
                     f"is not known; use one of {OBJECTIVES}.")
  size = tokenizer.vocab_size
  pieces = [tokenizer.piece(i) for i in range(size)]
  word_starts = np.zeros(size + num_sentinels, bool)
  word_starts[:size] = [p.startswith("\u2581") for p in pieces]
  return Objective(
      settings.objective,
      denoising.t5_sentinel_ids(size + num_sentinels, num_sentinels),
      noise_density=settings.noise_density,
      mean_noise_span_length=settings.mean_noise_span_length,
      mask_ratio=settings.mask_ratio, poisson_lambda=settings.poisson_lambda,
      permute_sentences=settings.permute_sentences, word_start_ids=word_starts,
      sentence_end_ids=tuple(i for i, p in enumerate(pieces)
                             if p.lstrip("\u2581") in SENTENCE_ENDS))


def lengths(objective: Objective, max_source_length: int,
            max_target_length: int) -> tuple[int, int, int]:
  """(chunk_length, inputs_length, targets_length): raw tokens a chunk and
  the longest inputs and targets (EOS included) they make."""
  if objective.name == "span_corruption":
    chunk, targets = denoising.random_spans_helper(
        max_source_length, objective.noise_density,
        objective.mean_noise_span_length)
    return chunk, max_source_length, targets
  chunk = min(max_source_length, max_target_length) - 1
  return chunk, chunk + 1, chunk + 1


class Chunks:
  """Documents tokenized once and cut into chunks of <= chunk_length ids:
  random access by chunk index (the index stream's unit)."""

  def __init__(self, texts: Sequence[str], tokenizer, chunk_length: int):
    if chunk_length < 2:
      raise ValueError(f"chunks of {chunk_length} tokens are too short to "
                       "noise; raise config.max_source_length.")
    self.chunk_length = chunk_length
    docs = [tokenizer.encode(t) for t in texts]
    self._ids = np.concatenate(docs + [np.zeros(0, np.int32)]).astype(
        np.int32)
    starts, ends, offset = [], [], 0
    for doc in docs:
      for start in range(0, len(doc), chunk_length):
        starts.append(offset + start)
        ends.append(offset + min(start + chunk_length, len(doc)))
      offset += len(doc)
    self._starts, self._ends = np.asarray(starts), np.asarray(ends)
    if not len(self):
      raise ValueError("no text to pretrain on: every document is empty "
                       "once tokenized.")

  def __len__(self) -> int:
    return len(self._starts)

  def __getitem__(self, index: int) -> np.ndarray:
    return self._ids[self._starts[index]:self._ends[index]]

  @property
  def num_tokens(self) -> int:
    return int((self._ends - self._starts).sum())


def _with_eos(ids: np.ndarray, max_len: int) -> tuple[np.ndarray, bool]:
  """ids + EOS, cut to max_len with EOS kept (BART's inserted masks can
  make inputs a little longer than the chunk); whether cut."""
  overlong = len(ids) + 1 > max_len
  return np.append(ids[:max_len - 1], EOS_ID).astype(np.int32), overlong


def noised_pair(chunks: Chunks, objective: Objective, seed: int,
                position: int, index: int, max_source_length: int,
                max_target_length: int) -> dict:
  """The pair (packing.pair_record) of chunk `index` at stream `position`."""
  inputs, targets = objective(chunks[index], seed, position)
  inputs, cut_inputs = _with_eos(inputs, max_source_length)
  targets, cut_targets = _with_eos(targets, max_target_length)
  return packing.pair_record(inputs, targets, int(index),
                             cut_inputs or cut_targets, False)


def pad_pairs(pairs: Sequence[dict], batch_size: int, source_length: int,
              target_length: int) -> dict:
  """Pairs as one unpacked batch padded to the max lengths (its rows past
  len(pairs) empty, weight 0)."""
  weight_B, overlong_B = pipeline.example_weights(
      [bool(p["overlong"][0]) for p in pairs], batch_size, "truncate")
  pad = lambda key, length: pipeline.pad_to_bucket(
      [p[key] for p in pairs], batch_size, [length])
  return {"inputs": pad("inputs", source_length),
          "targets": pad("targets", target_length),
          "example_weight": weight_B, "overlong": overlong_B,
          "empty": np.zeros((batch_size,), np.int32),
          "example_id": np.asarray([p["example_id"][0] for p in pairs],
                                   np.int64)}


def train_dataset(chunks: Chunks, objective: Objective, config,
                  seed: int) -> grain.IterDataset:
  """Endless, shuffled (reshuffled each epoch) training batches of this
  process's share; packed rows if config.pack_examples (the default of the
  pretraining configs), else one pair a row padded to the max lengths."""
  per_process = pipeline.process_batch_size(config.batch_size)
  n_proc, rank = jax.process_count(), jax.process_index()
  source_length, target_length = (config.max_source_length,
                                  config.max_target_length)
  if len(chunks) < n_proc:
    raise ValueError(f"{len(chunks)} chunks of text cannot be shared by "
                     f"{n_proc} processes; use more text.")
  ds = grain.MapDataset.range(len(chunks)).seed(seed).shuffle().repeat(None)
  # Positions count over the whole (all processes') stream: unique noise.
  ds = ds.map_with_index(lambda position, index: noised_pair(
      chunks, objective, seed, position, int(index), source_length,
      target_length))
  if config.get("pack_examples", True):
    if n_proc > 1:
      ds = ds[rank::n_proc]
    pairs = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=1, prefetch_buffer_size=16))
    return packing.pack(pairs, per_process, source_length, target_length,
                        algorithm=config.get("pack_algorithm", "first_fit"),
                        num_bins=config.get("pack_bins", 0) or None,
                        seed=seed)
  first = rank * per_process
  ds = ds.batch(per_process * n_proc, drop_remainder=True, batch_fn=list)
  ds = ds.map(lambda pairs: pad_pairs(pairs[first:first + per_process],
                                      per_process, source_length,
                                      target_length))
  return ds.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))


def eval_batches(chunks: Chunks, objective: Objective, config,
                 batch_size: int, num_examples: int | None = None,
                 seed: int = 0) -> grain.MapDataset:
  """One ordered pass over (the first num_examples of) the chunks, noised
  by (seed, chunk index): the same pairs at every evaluation."""
  def make_batch(indices):
    pairs = [noised_pair(chunks, objective, seed, int(i), int(i),
                         config.max_source_length, config.max_target_length)
             for i in indices]
    return pad_pairs(pairs, batch_size, config.max_source_length,
                     config.max_target_length)
  return pipeline.ordered_batches(len(chunks), batch_size, make_batch,
                                  num_examples)
