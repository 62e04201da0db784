r"""Useful (non-pad) target tokens/s on the peers' variable-length pairs, packed.

  python -m encdec_jax.bench.packed [--out=runs/bench/encdec_jax.jsonl]

The peers' units `train_varlen` (random batches, dynamic padding) and
`train_varlen_grouped` (length grouping) in ../shared/bench train one pass
over the same 1,600 WMT-like pairs (`peers/common.py: varlen_lengths`,
imported from --peers_dir: the same lengths), 32 pairs a batch. Here the
pairs, in the peers' shuffled order (`varlen_order`, unit train_varlen), are
packed (data/packing.py, grain's first-fit packer) into rows of
--pack_length source x target tokens, --pack_rows rows a batch, and trained
once each per pass on the base-small step (bench/base_small.py: same model,
AdamW, label smoothing, dropout). One untimed pass, then one timed pass, as
the peers do; tokens_per_s counts the real target tokens of the timed pass.

Prints one JSON line per peer unit it answers (train_varlen and
train_varlen_grouped: the same measurement, since packing is this
project's answer to both), with the peers' fields plus packing efficiency.
"""

import os
import resource
import statistics
import sys
import time

from absl import app, flags
import jax
import numpy as np

from encdec_jax.bench import base_small, timing
from encdec_jax.data import packing
from encdec_jax.models import registry
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups, trainer
from encdec_jax.train import step as step_lib

flags.DEFINE_string("peers_dir", "../shared/bench/peers",
                    "The peers harness (its common.py draws the pairs).")
flags.DEFINE_integer("pack_length", 64, "Source and target row length.")
flags.DEFINE_integer("pack_rows", 32, "Packed rows per batch.")
flags.DEFINE_integer("pack_bins", 512, "Rows the packer fills at once.")
flags.DEFINE_enum("pack_algorithm", "first_fit", sorted(packing.ALGORITHMS),
                  "grain's packer.")
FLAGS = flags.FLAGS
# Shared with `python -m encdec_jax.bench` (same meaning): defined once, so
# both modules import together.
for _define, _name, _default, _help in (
    (flags.DEFINE_float, "peak_gflops", 0.0, "float32 matmul peak for MFU; "
     "0 measures it (jnp.dot, 2048x2048)."),
    (flags.DEFINE_string, "out", "", "Also append the JSON lines to this "
     "file."),
    (flags.DEFINE_float, "dropout", 0.1, "Dropout rate (base-small: 0.1).")):
  if _name not in FLAGS:
    _define(_name, _default, _help)
PEER_UNITS = ("train_varlen", "train_varlen_grouped")


def peer_pairs(peers_dir: str, seed: int = 0):
  """(source ids, target ids) of the peers' pairs, in their train_varlen
  order (random ids: the values do not change the work)."""
  sys.path.insert(0, os.path.abspath(peers_dir))
  import common  # the peers' pure-numpy data definitions
  cfg = common.CONFIGS["base-small"]
  src_lens, tgt_lens = common.varlen_lengths(cfg, seed)
  order = np.concatenate(common.varlen_order(cfg, "train_varlen", seed))
  rng = np.random.default_rng(seed + 1234)
  ids = lambda n: rng.integers(base_small.FIRST_REAL_ID, base_small.VOCAB, n,
                               dtype=np.int32)
  return [(ids(src_lens[j]), ids(tgt_lens[j])) for j in order]


def packed_step(config, model, example_batch):
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  plan = param_groups.make_plan(config, params)
  tx = param_groups.make_optimizer(plan, config, 0, params)
  step = jax.jit(step_lib.bind_train_step(
      losses.seq2seq_loss(model, config.label_smoothing), tx, plan,
      config, 0), donate_argnums=0)
  key = trainer.dropout_key(config)
  state = step_lib.init_state(params, tx)
  start = time.perf_counter()
  step = step.lower(state, example_batch, key).compile()
  return step, state, key, time.perf_counter() - start


def measure(peers_dir: str, pack_length: int, pack_rows: int, pack_bins: int,
            algorithm: str, peak_gflops: float, dropout: float = 0.1) -> dict:
  pairs = peer_pairs(peers_dir)
  start = time.perf_counter()
  batches = packing.pack_pairs(pairs, pack_rows, pack_length, pack_length,
                               num_bins=pack_bins, algorithm=algorithm)
  pack_s = time.perf_counter() - start
  for b in batches:
    del b["example_id"]  # host-side only, as in the trainer
  useful = sum(len(t) for _, t in pairs)
  assert sum(int((b["targets_segment_ids"] > 0).sum())
             for b in batches) == useful, "a pair was lost in packing"
  config = base_small.config(dropout_rate=dropout,
                             attention_dropout_rate=dropout,
                             max_len=max(pack_length, base_small.SRC_LEN))
  config.max_source_length = config.max_target_length = pack_length
  config.dropout_prng = "rbg"
  model = registry.build_model(config.model, base_small.VOCAB)
  step, state, key, compile_s = packed_step(config, model, batches[0])
  holder = [state]

  def one_pass():
    times, tokens = [], []
    for b in batches:
      t = time.perf_counter()
      holder[0], metrics = step(holder[0], b, key)
      tokens.append(metrics["tokens"])
      jax.block_until_ready(metrics["loss"])
      times.append(time.perf_counter() - t)
    assert int(sum(jax.device_get(tokens))) == useful
    return times

  start = time.perf_counter()
  one_pass()
  warm_s = time.perf_counter() - start
  times = one_pass()
  pass_s = sum(times)
  slots = len(batches) * pack_rows * pack_length
  gflops = base_small.flops_per_token("train") * useful / pass_s / 1e9
  return {
      "peer": "encdec_jax", "tokens_per_s": round(useful / pass_s, 2),
      "step_ms_median": round(1e3 * statistics.median(times), 2),
      "step_ms_min": round(1e3 * min(times), 2),
      "step_ms_max": round(1e3 * max(times), 2),
      "compile_or_warmup_s": round(compile_s + warm_s, 3),
      "compile_s": round(compile_s, 3),
      "peak_rss_mb": round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "threads": os.cpu_count(),
      "achieved_gflops": round(gflops, 1), "peak_gflops": round(peak_gflops, 1),
      "mfu": round(gflops / peak_gflops, 3),
      "config": "base-small", "method": f"packed ({algorithm})",
      "pairs": len(pairs), "batches": len(batches), "rows": pack_rows,
      "pack_length": pack_length, "pack_bins": pack_bins,
      "real_target_tokens": useful, "padded_target_tokens": slots,
      "target_fill": round(useful / slots, 3),
      "source_fill": round(sum(len(s) for s, _ in pairs) / slots, 3),
      "pack_s": round(pack_s, 3), "pass_s": round(pass_s, 3),
      "dropout": dropout, "dropout_prng": config.dropout_prng,
      "loadavg_1m_end": round(os.getloadavg()[0], 2), "jax": jax.__version__}


def main(argv):
  del argv
  peak = FLAGS.peak_gflops or timing.measure_peak_gflops()
  rec = measure(FLAGS.peers_dir, FLAGS.pack_length, FLAGS.pack_rows,
                FLAGS.pack_bins, FLAGS.pack_algorithm, peak, FLAGS.dropout)
  for unit in PEER_UNITS:
    timing.emit(dict(rec, unit=unit), FLAGS.out)


if __name__ == "__main__":
  app.run(main)
