r"""Full fine-tuning vs LoRA: step time, optimizer state, checkpoint, memory.

  python -m encdec_jax.bench.lora [--steps=10] [--warmup=3] \
      [--models=base_small,main] [--rank=8] [--batch=0]

Two models, each trained both ways in one process, side by side:

  base_small   the `base-small` work of ../shared/bench (bench/base_small.py:
               3+3 layers, d_model 256, FFN 1024, vocab 8000, batch 32,
               lengths 64, float32);
  main         the main job's model (experiments/number_translation.py:
               its model config, vocabulary, batch size and lengths).

  full   every parameter trains (AdamW state for all of them);
  lora   rank-8 LoRA (alpha 16) on the attention query and value
         projections of both stacks (encoder self-attention, decoder self-
         and cross-attention); the base frozen: not differentiated, no
         optimizer state (encdec_jax/lora).

Per arm: median step ms, trainable parameters, optimizer-state MB (exact
bytes of the arrays), checkpoint MB (an orbax save of what the trainer
saves: the whole state, or the adapters and their state), and the XLA
estimate of the step's peak memory (arguments + temporaries + outputs -
donated). --batch overrides both models' batch size (a quick check).

Result (2026-11-29, 2-core Intel Xeon (AVX-512), nothing else running):
base-small full 865 ms a step, 57.8 MB optimizer state, 96.5 MB checkpoint,
638 MB peak; LoRA 539 ms, 0.56 MB, 1.29 MB, 455 MB (73,728 trainable).
Main job's model: full 465 ms, 7.3 MB, 12.3 MB, 473 MB; LoRA 297 ms,
0.19 MB, 0.62 MB, 344 MB.
"""

import json
import os
import statistics
import tempfile
import time

from absl import app, flags, logging
import jax
import ml_collections
import numpy as np
from ml_collections import config_flags

from encdec_jax import checkpoint, lora, starts
from encdec_jax.bench import base_small, timing
from encdec_jax.models import registry
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups
from encdec_jax.train import step as step_lib

flags.DEFINE_integer("steps", 10, "Timed steps per arm (median reported).")
flags.DEFINE_integer("warmup", 3, "Untimed steps per arm after compiling.")
flags.DEFINE_list("models", ["base_small", "main"], "Models to measure.")
flags.DEFINE_integer("rank", 8, "LoRA rank.")
flags.DEFINE_integer("batch", 0, "Batch size for both models (0: theirs).")
# The main job's config, read from its file as main.py reads --config.
config_flags.DEFINE_config_file(
    "main_config", "experiments/number_translation.py",
    "The config of the model called 'main' (run from the repo root).")
FLAGS = flags.FLAGS

TARGETS = (r"(encoder|decoder)/.*attention/(query|value)",)


def _model(name: str):
  """(config, vocab, batch, source length, target length)."""
  if name == "base_small":
    return (base_small.config(), base_small.VOCAB, base_small.BATCH,
            base_small.SRC_LEN, base_small.TGT_LEN)
  c = FLAGS.main_config.copy_and_resolve_references()
  c.update(warmup_steps=0, schedule="constant", grad_clip_norm=0.0)
  vocab = c.get("vocab_size") or 512
  return (c, vocab, c.batch_size, c.max_source_length, c.max_target_length)


def _batch(vocab, batch, src, tgt, seed=0):
  rng = np.random.default_rng(seed)
  return {"inputs": rng.integers(4, vocab, (batch, src), dtype=np.int32),
          "targets": rng.integers(4, vocab, (batch, tgt), dtype=np.int32),
          "example_weight": np.ones((batch,), np.float32),
          "overlong": np.zeros((batch,), np.int32)}


def _checkpoint_bytes(config, state) -> int:
  with tempfile.TemporaryDirectory() as d:
    manager = checkpoint.make_manager(d, async_save=False)
    checkpoint.save(manager, starts.get(config).saved(config, state), {}, {})
    checkpoint.wait_until_committed(manager)
    return sum(os.path.getsize(os.path.join(r, f))
               for r, _, fs in os.walk(d) for f in fs)


def measure(name: str, arm: str, steps: int, warmup: int) -> dict:
  config, vocab, batch_size, src, tgt = _model(name)
  batch_size = FLAGS.batch or batch_size
  model = registry.build_model(config.model, vocab)
  if arm == "lora":
    config.lora = ml_collections.ConfigDict(dict(
        targets=TARGETS, rank=FLAGS.rank, alpha=2.0 * FLAGS.rank))
    model = lora.LoraModel(model, config.lora)
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  plan = param_groups.make_plan(config, params)
  tx = param_groups.make_optimizer(plan, config, 0, params)
  step_fn = jax.jit(step_lib.bind_train_step(
      losses.seq2seq_loss(model, config.get("label_smoothing", 0.0)), tx,
      plan, config, 0), donate_argnums=0)
  state = step_lib.init_state(params, tx)
  batch, key = _batch(vocab, batch_size, src, tgt), jax.random.key(1)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  peak = sum(getattr(memory, f, 0) for f in (
      "argument_size_in_bytes", "temp_size_in_bytes",
      "output_size_in_bytes")) - getattr(memory, "alias_size_in_bytes", 0)
  state, times = timing.time_steps(step_fn, state, batch, key, steps, warmup)
  trainable = sum(n for g, n in param_groups.count_by_group(
      plan, state.params).items() if g in plan.training(0))
  median = statistics.median(times)
  return {"model": name, "arm": arm, "step_ms_median": 1e3 * median,
          "tokens_per_s": batch_size * tgt / median,
          "compile_s": compile_s, "trainable_params": trainable,
          "total_params": experiment.count_params(state.params),
          "opt_state_mb": param_groups.opt_state_bytes(state.opt_state) / 2**20,
          "checkpoint_mb": _checkpoint_bytes(config, state) / 2**20,
          "peak_mb": peak / 2**20, "batch": batch_size,
          "device": jax.devices()[0].device_kind}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax's INFO lines per save
  rows = []
  for name in FLAGS.models:
    for arm in ("full", "lora"):
      rows.append(measure(name, arm, FLAGS.steps, FLAGS.warmup))
      print(json.dumps(rows[-1]), flush=True)
  print(f"\n{'model':11} {'arm':5} {'step ms':>8} {'trainable':>11} "
        f"{'opt MB':>8} {'ckpt MB':>8} {'peak MB':>8}")
  for r in rows:
    print(f"{r['model']:11} {r['arm']:5} {r['step_ms_median']:8.1f} "
          f"{r['trainable_params']:11,} {r['opt_state_mb']:8.2f} "
          f"{r['checkpoint_mb']:8.2f} {r['peak_mb']:8.1f}")


if __name__ == "__main__":
  app.run(main)
