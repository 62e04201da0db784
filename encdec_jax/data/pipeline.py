"""grain pipelines: tokenize, cap lengths, and pad batches to a few bucket sizes.

Batches are dicts of numpy arrays:
  inputs_BxS, targets_BxT  int32 token ids, EOS-terminated, 0-padded;
  example_weight_B         float32, 0 for padding rows and dropped examples;
  overlong_B               int32, 1 where the example exceeded a max length.
S and T are bucket boundaries, so a training run compiles its step once per
(S, T) bucket pair, not once per batch.
"""

import bisect
from typing import Sequence

import grain
import jax
import numpy as np

from encdec_jax.data.tokenizer import EOS_ID, Tokenizer

OVERLONG_POLICIES = ("truncate", "drop")


def bucket_length(length: int, boundaries: Sequence[int]) -> int:
  """The smallest boundary >= length (boundaries sorted, last = max length)."""
  i = bisect.bisect_left(boundaries, length)
  return boundaries[min(i, len(boundaries) - 1)]


def tokenize_pair(example, tokenizer: Tokenizer, max_source_length: int,
                  max_target_length: int) -> dict:
  """Ids with EOS appended, cut to the max lengths (EOS kept)."""
  out = {}
  overlong = False
  for key, max_len in (("source", max_source_length),
                       ("target", max_target_length)):
    ids = tokenizer.encode(example[key])
    if len(ids) + 1 > max_len:
      overlong = True
      ids = ids[:max_len - 1]
    out[key] = np.append(ids, EOS_ID).astype(np.int32)
  out["overlong"] = overlong
  return out


def pad_batch(examples: Sequence[dict], batch_size: int,
              boundaries: Sequence[int], overlong_policy: str) -> dict:
  """Stacks tokenized examples into a batch padded to bucket boundaries.

  Fewer than `batch_size` examples (the end of an eval split) are padded with
  all-zero rows of weight 0, so eval steps keep a fixed batch shape.
  """
  src_len = bucket_length(max(len(e["source"]) for e in examples), boundaries)
  tgt_len = bucket_length(max(len(e["target"]) for e in examples), boundaries)
  inputs = np.zeros((batch_size, src_len), np.int32)
  targets = np.zeros((batch_size, tgt_len), np.int32)
  weight = np.zeros((batch_size,), np.float32)
  overlong = np.zeros((batch_size,), np.int32)
  for i, e in enumerate(examples):
    inputs[i, :len(e["source"])] = e["source"]
    targets[i, :len(e["target"])] = e["target"]
    overlong[i] = e["overlong"]
    weight[i] = 0.0 if (e["overlong"] and overlong_policy == "drop") else 1.0
  return {"inputs": inputs, "targets": targets,
          "example_weight": weight, "overlong": overlong}


def _check(config, boundaries):
  if config.overlong not in OVERLONG_POLICIES:
    raise ValueError(f"config.overlong={config.overlong!r} is not known; use "
                     f"one of {OVERLONG_POLICIES}.")
  if max(config.max_source_length, config.max_target_length) > boundaries[-1]:
    raise ValueError("config.bucket_boundaries must reach the max lengths: "
                     f"last boundary {boundaries[-1]} < max length "
                     f"{max(config.max_source_length, config.max_target_length)}.")


def read_many(source, indices) -> list:
  """source[i] for each index, in one batched read where the source has one."""
  getitems = getattr(source, "__getitems__", None)
  return getitems(indices) if getitems else [source[int(i)] for i in indices]


def iter_examples(source, num_examples: int | None = None,
                  chunk: int = 4096):
  """The first `num_examples` (default all) examples, read in chunks."""
  n = len(source) if num_examples is None else min(num_examples, len(source))
  for start in range(0, n, chunk):
    yield from read_many(source, range(start, min(start + chunk, n)))


def _batch_fn(source, tokenizer: Tokenizer, config, batch_size: int):
  """indices -> a padded batch: one read, then tokenize and pad."""
  boundaries = sorted(config.bucket_boundaries)
  _check(config, boundaries)

  def make_batch(indices):
    examples = [tokenize_pair(ex, tokenizer, config.max_source_length,
                              config.max_target_length)
                for ex in read_many(source, indices)]
    return pad_batch(examples, batch_size, boundaries, config.overlong)

  return make_batch


def train_dataset(source, tokenizer: Tokenizer, config,
                  seed: int) -> grain.IterDataset:
  """Endless, shuffled (reshuffled each epoch), this process's share only.

  The shuffle and batching act on example indices; each batch is then read
  with one batched read. Each process takes a disjoint slice of the indices
  and makes batches of batch_size / process_count examples. The iterator state
  is a small dict ({'next_index': k}) saved with every checkpoint for an exact
  resume.
  """
  n_proc = jax.process_count()
  if config.batch_size % n_proc:
    raise ValueError(f"config.batch_size={config.batch_size} must divide by "
                     f"the number of processes ({n_proc}).")
  per_process = config.batch_size // n_proc
  make_batch = _batch_fn(source, tokenizer, config, per_process)
  ds = grain.MapDataset.range(len(source))[jax.process_index()::n_proc]
  ds = ds.seed(seed).shuffle().repeat(None)
  ds = ds.batch(per_process, drop_remainder=True).map(make_batch)
  return ds.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))


def eval_batches(source, tokenizer: Tokenizer, config, batch_size: int,
                 num_examples: int | None = None) -> grain.MapDataset:
  """One ordered pass over (the first `num_examples` of) a split."""
  make_batch = _batch_fn(source, tokenizer, config, batch_size)
  n = len(source)
  if num_examples is not None and num_examples >= 0:
    n = min(n, num_examples)
  return grain.MapDataset.range(n).batch(batch_size).map(make_batch)
