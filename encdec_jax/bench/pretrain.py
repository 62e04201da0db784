r"""Pretraining speed: real tokens/s of the pretraining config's train step,
packed against one pair a row.

  python -m encdec_jax.bench.pretrain \
      [--config=experiments/pretrain_span_corruption.py:span_corruption] \
      [--steps=30] [--workdir=runs/bench_pretrain] [--out=FILE.jsonl]

Sets up the pretraining config (default: the span-corruption arm of
experiments/pretrain_span_corruption.py, read as main.py reads --config,
from the repo root) as a run would (the
tokenizer trained on the offline corpus into --workdir, kept there for the
next call), then times --steps train steps (after 3 untimed ones) on the
task's own stream twice: packed (config.pack_examples=True, the config's
default) and unpacked (each noised chunk alone in a row, padded to the max
lengths). The rows and the step are the same; only what fills the rows
differs. Prints one JSON line per run: real (non-pad) inputs + targets
tokens/s, real target tokens/s, the share of the rows' slots that hold real
tokens (fill), and the packed/unpacked ratio of real tokens/s.
"""

import dataclasses
import json
import os
import statistics
import time

from absl import app, flags
import jax
from ml_collections import config_flags

from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups, trainer
from encdec_jax.train import step as step_lib

config_flags.DEFINE_config_file(
    "config", "experiments/pretrain_span_corruption.py:span_corruption",
    "The pretraining config (file:arm, as main.py's --config).")
flags.DEFINE_integer("steps", 30, "Timed steps per run.")
flags.DEFINE_string("workdir", "runs/bench_pretrain",
                    "Where the tokenizer is trained (and kept).")
flags.DEFINE_string("out", "", "Also append the JSON lines to this file.")
FLAGS = flags.FLAGS
WARMUP_STEPS = 3


def _step(exp, batch):
  """The trainer's jitted step, compiled for `batch`, and a fresh state."""
  config = exp.config
  params = jax.jit(lambda r: experiment.init_params(exp.model, r, config))(
      jax.random.key(config.seed))
  plan = param_groups.make_plan(config, params)
  tx = param_groups.make_optimizer(plan, config, 0, params)
  step = jax.jit(step_lib.bind_train_step(
      losses.seq2seq_loss(exp.model, config.label_smoothing), tx, plan,
      config, 0), donate_argnums=0)
  state = step_lib.init_state(params, tx)
  key = trainer.dropout_key(config)
  return step.lower(state, batch, key).compile(), state, key


def _pairs(batch) -> int:
  """Pairs in a batch: a packed row's highest segment id is its count."""
  if "targets_segment_ids" in batch:
    return int(batch["targets_segment_ids"].max(axis=1).sum())
  return int((batch["example_weight"] > 0).sum())


def measure(exp, packed: bool, steps: int) -> dict:
  """Times `steps` steps of the packed or unpacked stream."""
  config = exp.config.copy_and_resolve_references()
  config.pack_examples = packed
  stream = iter(exp.task.train_dataset(dataclasses.replace(exp,
                                                           config=config)))
  batches = []
  for _ in range(WARMUP_STEPS + steps):
    batch = next(stream)
    del batch["example_id"]  # host-side only, as in the trainer
    batches.append(batch)
  step, state, key = _step(exp, batches[0])
  times = []
  for i, batch in enumerate(batches):
    start = time.perf_counter()
    state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics["loss"])
    if i >= WARMUP_STEPS:
      times.append(time.perf_counter() - start)
  timed = batches[WARMUP_STEPS:]
  real = lambda key: sum(int((b[key] > 0).sum()) for b in timed)
  slots = lambda key: sum(b[key].size for b in timed)
  seconds = sum(times)
  return {
      "bench": "pretrain", "objective": FLAGS.config.pretraining.objective,
      "packed": packed,
      "real_tokens_per_s": round((real("inputs") + real("targets"))
                                 / seconds, 1),
      "real_target_tokens_per_s": round(real("targets") / seconds, 1),
      "inputs_fill": round(real("inputs") / slots("inputs"), 3),
      "targets_fill": round(real("targets") / slots("targets"), 3),
      "pairs_per_row": round(sum(map(_pairs, timed))
                             / sum(len(b["inputs"]) for b in timed), 2),
      "step_ms_median": round(1e3 * statistics.median(times), 1),
      "steps": steps, "rows": config.batch_size,
      "row_shape": [config.max_source_length, config.max_target_length],
      "threads": os.cpu_count(), "jax": jax.__version__}


def main(argv):
  del argv
  config = FLAGS.config.copy_and_resolve_references()
  exp = experiment.setup(config, FLAGS.workdir, train_tokenizer=True)
  records = [measure(exp, packed, FLAGS.steps) for packed in (True, False)]
  records[0]["speedup_vs_unpacked"] = round(
      records[0]["real_tokens_per_s"] / records[1]["real_tokens_per_s"], 2)
  for record in records:
    line = json.dumps(record)
    print(line, flush=True)
    if FLAGS.out:
      with open(FLAGS.out, "a", encoding="utf-8") as f:
        f.write(line + "\n")


if __name__ == "__main__":
  app.run(main)
