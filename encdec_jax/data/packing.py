"""Packing for encoder–decoder training: several short pairs per row, in grain.

config.pack_examples=True (off by default) makes the training stream pack
tokenized pairs into rows of max_source_length x max_target_length with
grain's first-fit (config.pack_algorithm="first_fit", default) or best-fit
("best_fit") packer over config.pack_bins open rows (default 4 x the batch
size), then batch the rows. Both streams of a row carry

  inputs_segment_ids, targets_segment_ids  int32 BxS / BxT, k = 1, 2, ... for
                                           the row's k-th pair, 0 at padding
                                           (the k-th source and the k-th
                                           target are the same pair);
  inputs_positions, targets_positions      int32, each segment counting from 0;

so the model masks encoder self-attention, decoder causal self-attention and
cross-attention by segment (a target token attends only to its own source and
its own earlier tokens), embeds per-segment positions, and the decoder input
is shifted right per segment (each pair's starts with the start token):
a packed batch gives every pair the loss and gradient it gets unpacked
(tests/test_packing.py). Losses and metrics are per real target token.
Rows are padded with 0 whatever the tokenizer's pad id (grain's packers
fill with zeros): the segment ids, not the pad id, say what is real.

The other keys are the trainer's: example_weight_B (1 for a row holding
pairs, 0 for an empty row), overlong_B / empty_B (per row: how many of its
pairs were cut / were empty and kept), and example_id (host-side only: the
ids of the batch's pairs, row by row). Pairs that would get weight 0
(config.overlong="drop", config.empty_pairs="skip") are left out of the rows
(and so not counted in overlong/empty).

The stream is a grain IterDataset: its iterator state (the shuffled index
stream's and the packer's) checkpoints and restores like the unpacked
stream's, and a resumed stream yields the same batches (tested).
"""

from typing import Iterable

import grain
import grain.experimental as grain_exp
import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.data import pipeline
from encdec_jax.data.tokenizer import Tokenizer
from encdec_jax.models.contract import PAD_ID, shift_right

PACKING_KEYS = ("inputs_segment_ids", "inputs_positions",
                "targets_segment_ids", "targets_positions")
ALGORITHMS = {"first_fit": grain_exp.FirstFitPackIterDataset,
              "best_fit": grain_exp.BestFitPackIterDataset}
_META = ("example_id", "overlong", "empty")  # one value per pair


def is_packed(batch) -> bool:
  return "targets_segment_ids" in batch


def model_packing(batch) -> dict:
  """The packed-row arrays the model reads (EncoderDecoder(packing=...))."""
  return {k: batch[k] for k in PACKING_KEYS}


def shift_right_packed(targets_BxT, segment_ids_BxT,
                       start_id: int = PAD_ID) -> jax.Array:
  """Decoder inputs of packed rows: shift_right inside each segment, so every
  segment starts with the start token `start_id` (the model's decoder
  start: contract.special_ids)."""
  shifted_BxT = shift_right(targets_BxT, start_id)
  same_segment_BxT = segment_ids_BxT == shift_right(segment_ids_BxT)
  return jnp.where(same_segment_BxT, shifted_BxT, shifted_BxT[:, :1])


def pair_record(source_ids, target_ids, example_id: int, overlong: bool,
                empty: bool) -> dict:
  """One pair as `pack` reads it (a packed stream's element)."""
  one = lambda v: np.asarray([v], np.int64)
  return {"inputs": np.asarray(source_ids, np.int32),
          "targets": np.asarray(target_ids, np.int32),
          "example_id": one(example_id), "overlong": one(overlong),
          "empty": one(empty)}


def _finish(batch: dict) -> dict:
  """Packed rows (stacked) -> the trainer's batch keys."""
  out = {k: batch[k] for k in ("inputs", "targets") + PACKING_KEYS}
  out["example_weight"] = (batch["targets_segment_ids"].max(axis=1) > 0
                           ).astype(np.float32)
  for key in ("overlong", "empty"):
    out[key] = np.sum(batch[key] * (batch[f"{key}_segment_ids"] > 0),
                      axis=1).astype(np.int32)
  ids = batch["example_id"][batch["example_id_segment_ids"] > 0]
  out["example_id"] = ids.astype(np.int64)
  return out


def pack(pairs: grain.IterDataset, batch_size: int, source_length: int,
         target_length: int, *, algorithm: str = "first_fit",
         num_bins: int | None = None, seed: int = 0,
         drop_remainder: bool = True) -> grain.IterDataset:
  """Batches of packed rows from a stream of pairs (dicts of `pair_record`:
  inputs, targets, example_id, overlong, empty). num_bins: open rows the packer
  fills before it emits them (its window; default 4 x batch_size)."""
  if algorithm not in ALGORITHMS:
    raise ValueError(f"config.pack_algorithm={algorithm!r} is not known; "
                     f"use one of {sorted(ALGORITHMS)}.")
  # A pair has >= 1 target token, so a row holds <= target_length pairs.
  lengths = {"inputs": source_length, "targets": target_length,
             **{k: target_length for k in _META}}
  packed = ALGORITHMS[algorithm](
      pairs, length_struct=lengths, num_packing_bins=num_bins or 4 * batch_size,
      seed=seed, shuffle_bins=True)
  return packed.batch(batch_size, drop_remainder=drop_remainder).map(_finish)


def pack_pairs(pairs: Iterable[tuple], batch_size: int, source_length: int,
               target_length: int, **kwargs) -> list[dict]:
  """One pass over (source_ids, target_ids) pairs, packed: every pair once
  (the last batch may hold empty rows). The benchmark's entry point."""
  examples = [pair_record(s, t, i, False, False)
              for i, (s, t) in enumerate(pairs)]
  ds = grain.MapDataset.source(examples).to_iter_dataset()
  return [_pad_rows(b, batch_size)
          for b in pack(ds, batch_size, source_length, target_length,
                        drop_remainder=False, **kwargs)]


def _pad_rows(batch: dict, batch_size: int) -> dict:
  """A short last batch (pack_pairs) padded with empty rows."""
  missing = batch_size - batch["inputs"].shape[0]
  if missing <= 0:
    return batch
  pad = lambda x: np.concatenate(
      [x, np.zeros((missing,) + x.shape[1:], x.dtype)])
  return {k: (v if k == "example_id" else pad(v)) for k, v in batch.items()}


def train_dataset(source, tokenizer: Tokenizer, config, seed: int,
                  needs_source: bool = True) -> grain.IterDataset:
  """Endless, shuffled (reshuffled each epoch), packed training batches of
  config.batch_size rows per process (this process takes every
  process_count-th pair of the shared shuffled stream)."""
  per_process = pipeline.process_batch_size(config.batch_size)
  pipeline.check_lengths(config, (config.max_source_length,
                                  config.max_target_length))
  empty_policy = config.get("empty_pairs", "skip")
  prefix = pipeline.source_prefix(config)
  n_proc, index = jax.process_count(), jax.process_index()
  if len(source) < n_proc:
    raise ValueError(f"{len(source)} training examples cannot be shared by "
                     f"{n_proc} processes; use more examples.")

  def tokenize(i):
    raw = pipeline.read_many(source, [int(i)])[0]
    ex = pipeline.tokenize_pair(raw, tokenizer, config.max_source_length,
                                config.max_target_length, prefix)
    empty = (not raw["target"].strip() or
             (needs_source and not raw["source"].strip()))
    keep = not ((empty and empty_policy == "skip") or
                (ex["overlong"] and config.overlong == "drop"))
    return pair_record(ex["source"], ex["target"], int(i), ex["overlong"],
                       empty) if keep else None

  ds = grain.MapDataset.range(len(source)).seed(seed).shuffle().repeat(None)
  if n_proc > 1:
    ds = ds[index::n_proc]
  pairs = ds.map(tokenize).filter(lambda ex: ex is not None).to_iter_dataset(
      grain.ReadOptions(num_threads=1, prefetch_buffer_size=16))
  return pack(pairs, per_process, config.max_source_length,
              config.max_target_length,
              algorithm=config.get("pack_algorithm", "first_fit"),
              num_bins=config.get("pack_bins", 0) or None, seed=seed)
