"""grain pipelines: tokenize, cap lengths, and pad batches to a few bucket sizes.

Batches are dicts of numpy arrays:
  inputs_BxS, targets_BxT  int32 token ids, EOS-terminated, padded with the
                           tokenizer's pad id (0; an imported BART's 1,
                           Marian's <pad>);
  example_weight_B         float32, 0 for padding rows and dropped examples;
  overlong_B               int32, 1 where the example exceeded a max length;
  empty_B                  int32, 1 where a training pair has an empty (or
                           whitespace-only) source or target (training
                           batches only; config.empty_pairs says whether it
                           keeps its weight).
S and T are bucket boundaries, so a training run compiles its step once per
(S, T) bucket pair, not once per batch.

The task-neutral parts (capping, padding, weights, the shuffled/ordered index
streams) are public so other tasks (data/classification.py) batch alike.
"""

import bisect
import functools
from typing import Callable, Sequence

import grain
import jax
import numpy as np

from encdec_jax.data import value_substitution
from encdec_jax.data.tokenizer import (EOS_ID, PAD_ID, Tokenizer,
                                       encode_target, pad_id_of)

OVERLONG_POLICIES = ("truncate", "drop")


def bucket_length(length: int, boundaries: Sequence[int]) -> int:
  """The smallest boundary >= length (boundaries sorted, last = max length)."""
  i = bisect.bisect_left(boundaries, length)
  return boundaries[min(i, len(boundaries) - 1)]


def encode_capped(tokenizer: Tokenizer, text: str, max_len: int,
                  target: bool = False) -> tuple[np.ndarray, bool]:
  """(ids with EOS appended, cut to max_len with EOS kept; whether cut).
  `target`: the target side's ids (tokenizer.encode_target, Marian's)."""
  ids = encode_target(tokenizer, text) if target else tokenizer.encode(text)
  overlong = len(ids) + 1 > max_len
  if overlong:
    ids = ids[:max_len - 1]
  eos_id = getattr(tokenizer, "eos_id", EOS_ID)  # WordPiece: [SEP]
  return np.append(ids, eos_id).astype(np.int32), overlong


def with_prefix(text: str, prefix: str) -> str:
  """`text` read with the model's task prefix (T5's "summarize: "): put in
  front unless the text starts with it already."""
  return text if text.startswith(prefix) else prefix + text


def source_prefix(config) -> str:
  """The task prefix the sources are read with: config.decode.source_prefix,
  set from an imported model's task_specific_params when config.decode.task
  names a task (pretrained/generation.py); "" by default."""
  return (config.get("decode") or {}).get("source_prefix") or ""


def tokenize_pair(example, tokenizer: Tokenizer, max_source_length: int,
                  max_target_length: int, prefix: str = "") -> dict:
  """Ids with EOS appended, cut to the max lengths (EOS kept); the source
  read with `prefix` (with_prefix), the target with the target side's ids."""
  source, source_overlong = encode_capped(
      tokenizer, with_prefix(example["source"], prefix), max_source_length)
  target, target_overlong = encode_capped(tokenizer, example["target"],
                                          max_target_length, target=True)
  return {"source": source, "target": target,
          "overlong": source_overlong or target_overlong}


def pad_to_bucket(seqs: Sequence[np.ndarray], batch_size: int,
                  boundaries: Sequence[int],
                  pad_id: int = PAD_ID) -> np.ndarray:
  """int32 BxL padded with pad_id; L = bucket of the longest; rows past
  len(seqs) all pad_id."""
  out = np.full((batch_size, bucket_length(max(map(len, seqs)), boundaries)),
                pad_id, np.int32)
  for i, seq in enumerate(seqs):
    out[i, :len(seq)] = seq
  return out


def example_weights(overlong: Sequence[bool], batch_size: int,
                    overlong_policy: str) -> tuple[np.ndarray, np.ndarray]:
  """(float32 weight_B, int32 overlong_B); padding rows past len(overlong) 0."""
  overlong_B = np.zeros((batch_size,), np.int32)
  overlong_B[:len(overlong)] = overlong
  weight_B = np.zeros((batch_size,), np.float32)
  weight_B[:len(overlong)] = 1.0
  if overlong_policy == "drop":
    weight_B[overlong_B == 1] = 0.0
  return weight_B, overlong_B


def pad_batch(examples: Sequence[dict], batch_size: int,
              boundaries: Sequence[int], overlong_policy: str,
              pad_id: int = PAD_ID) -> dict:
  """Stacks tokenized examples into a batch padded (with pad_id) to bucket
  boundaries.

  Fewer than `batch_size` examples (the end of an eval split) are padded with
  all-pad rows of weight 0, so eval steps keep a fixed batch shape.
  """
  weight, overlong = example_weights([e["overlong"] for e in examples],
                                     batch_size, overlong_policy)
  return {
      "inputs": pad_to_bucket([e["source"] for e in examples], batch_size,
                              boundaries, pad_id),
      "targets": pad_to_bucket([e["target"] for e in examples], batch_size,
                               boundaries, pad_id),
      "example_weight": weight, "overlong": overlong}


def check_lengths(config, max_lengths: Sequence[int]) -> list[int]:
  """Validates config.overlong and config.bucket_boundaries; sorted bounds."""
  boundaries = sorted(config.bucket_boundaries)
  if config.overlong not in OVERLONG_POLICIES:
    raise ValueError(f"config.overlong={config.overlong!r} is not known; use "
                     f"one of {OVERLONG_POLICIES}.")
  if max(max_lengths) > boundaries[-1]:
    raise ValueError("config.bucket_boundaries must reach the max lengths: "
                     f"last boundary {boundaries[-1]} < max length "
                     f"{max(max_lengths)} (config.max_source_length / "
                     "max_target_length); add a boundary or lower them.")
  return boundaries


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


def process_batch_size(batch_size: int) -> int:
  """This process's share of a global batch."""
  n_proc = jax.process_count()
  if batch_size % n_proc:
    raise ValueError(f"config.batch_size={batch_size} must divide by "
                     f"the number of processes ({n_proc}).")
  return batch_size // n_proc


def shuffled_batches(num_examples: int, batch_size: int, seed: int,
                     make_batch: Callable[[Sequence[int]], dict]
                     ) -> grain.IterDataset:
  """Endless batches of this process's share of range(num_examples).

  Shuffled, reshuffled each epoch; `batch_size` is per process. Every process
  shuffles all indices the same way and takes its contiguous block of each
  global batch (rows k*batch_size .. (k+1)*batch_size-1 on process k), so
  the global batches, and the iterator state, are the same whatever the
  number of processes: a run on 2 hosts trains on exactly the batches a
  1-host run would, and either resumes the other's checkpoint. Batches run
  across epoch ends, so a split smaller than a batch still works (an example
  may then occur twice in one batch). `make_batch` maps a batch of indices to
  a batch, so each batch is read with one batched read. The iterator state is
  a small dict ({'next_index': k}) for an exact resume. Each batch also
  carries `example_id` (int64, the indices it was made of) for the trainer's
  example log; it is host-side only and never sent to the devices.
  """
  n_proc = jax.process_count()
  if num_examples < n_proc:
    raise ValueError(f"{num_examples} training examples cannot be shared by "
                     f"{n_proc} processes; use more examples.")
  first = jax.process_index() * batch_size
  ds = grain.MapDataset.range(num_examples).seed(seed).shuffle().repeat(None)
  ds = ds.batch(batch_size * n_proc, drop_remainder=True).map(
      lambda indices: indices[first:first + batch_size])
  ds = ds.map(lambda indices: dict(make_batch(indices),
                                   example_id=np.asarray(indices, np.int64)))
  return ds.to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=4))


def ordered_batches(num_examples: int, batch_size: int,
                    make_batch: Callable[[Sequence[int]], dict],
                    limit: int | None = None) -> grain.MapDataset:
  """One ordered pass over the first `limit` (None or < 0: all) indices."""
  if limit is not None and limit >= 0:
    num_examples = min(num_examples, limit)
  return grain.MapDataset.range(num_examples).batch(batch_size).map(make_batch)


def is_empty(example: dict, needs_source: bool = True) -> bool:
  """Whether a pair has nothing to learn from: a blank target, or a blank
  source where the task reads one (a decoder-only LM's source is always
  empty)."""
  return (not example["target"].strip() or
          (needs_source and not example["source"].strip()))


def flag_empty(batch: dict, examples: Sequence[dict], policy: str,
               needs_source: bool = True) -> dict:
  """Adds empty_B (1 where is_empty) to `batch`; under policy "skip" those
  rows get weight 0, under "keep" they are trained on. Counted either way
  (the trainer logs empty_examples)."""
  empty_B = np.zeros(batch["example_weight"].shape, np.int32)
  empty_B[:len(examples)] = [is_empty(e, needs_source) for e in examples]
  if policy == "skip":
    batch["example_weight"] = np.where(empty_B == 1, np.float32(0),
                                       batch["example_weight"])
  return dict(batch, empty=empty_B)


def _batch_fn(source, tokenizer: Tokenizer, config, batch_size: int,
              empty_policy: str | None = None, needs_source: bool = True,
              augment: Callable[[dict, int], dict] | None = None):
  """indices -> a padded batch: one read, then `augment(example, index)`
  (training), tokenize (sources with the task prefix, `source_prefix`) and
  pad with the tokenizer's pad id (and, for training, flag empty pairs:
  `flag_empty`)."""
  boundaries = check_lengths(
      config, (config.max_source_length, config.max_target_length))
  prefix, pad_id = source_prefix(config), pad_id_of(tokenizer)

  def make_batch(indices):
    raw = read_many(source, indices)
    if augment is not None:
      raw = [augment(ex, int(i)) for i, ex in zip(indices, raw)]
    examples = [tokenize_pair(ex, tokenizer, config.max_source_length,
                              config.max_target_length, prefix)
                for ex in raw]
    batch = pad_batch(examples, batch_size, boundaries, config.overlong,
                      pad_id)
    if empty_policy is not None:
      batch = flag_empty(batch, raw, empty_policy, needs_source)
    return batch

  return make_batch


def value_augmenter(source, config, seed: int):
  """(example, index) -> example with its values redrawn as
  config.substitute_values says (data/value_substitution.py); None if 0."""
  probability = config.get("substitute_values", 0.0)
  if not probability:
    return None
  stats = value_substitution.corpus_stats(iter_examples(source, 50_000))
  return functools.partial(
      value_substitution.substitute, stats=stats, probability=probability,
      max_frequency=config.get("substitute_max_frequency", 0.01), seed=seed)


def train_dataset(source, tokenizer: Tokenizer, config, seed: int,
                  needs_source: bool = True) -> grain.IterDataset:
  """Endless, shuffled (reshuffled each epoch), this process's share only.

  Each process makes its block of batch_size / process_count rows of every
  global batch; see `shuffled_batches`. Pairs with an empty source (if
  `needs_source`) or target are flagged, and kept or given weight 0 as
  config.empty_pairs says (default "skip").
  """
  per_process = process_batch_size(config.batch_size)
  return shuffled_batches(
      len(source), per_process, seed,
      _batch_fn(source, tokenizer, config, per_process,
                empty_policy=config.get("empty_pairs", "skip"),
                needs_source=needs_source,
                augment=value_augmenter(source, config, seed)))


def eval_batches(source, tokenizer: Tokenizer, config, batch_size: int,
                 num_examples: int | None = None) -> grain.MapDataset:
  """One ordered pass over (the first `num_examples` of) a split."""
  return ordered_batches(len(source), batch_size,
                         _batch_fn(source, tokenizer, config, batch_size),
                         num_examples)
