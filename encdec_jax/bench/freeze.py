r"""What freezing the encoder saves: step time, gradient FLOPs, memory.

  python -m encdec_jax.bench.freeze [--steps=10] [--warmup=3]

On the `base-small` model of ../shared/bench (3+3 layers, d_model 256, 4
heads, FFN 1024, vocab 8000, batch 32, lengths 64, AdamW, label smoothing 0.1,
float32), three ways to train, side by side in one process:

  all          every parameter trains;
  zeroed       the encoder is frozen only by optax.set_to_zero (what
               multi_transform alone gives): its gradients are still computed;
  frozen       set_to_zero and the encoder is not differentiated
               (encdec_jax's train_step): no backward pass through it.

Prints one JSON line per arm (median step ms, tokens/s, compiled FLOPs per
step, optimizer-state MB, XLA temp-buffer MB) and a table of ratios.

Result (2026-11-21, 2-core AMD EPYC CPU, --steps=15): frozen = 0.60x the
step time of all, 68 % of its FLOPs, 69 % of its temp memory, 42 % of its
optimizer state; zeroed = 0.98x step time with all the FLOPs. Table:
experiments/README.md.
"""

import json
import statistics
import time

from absl import app, flags
import jax
from encdec_jax.bench import base_small, timing
from encdec_jax.models import registry
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups
from encdec_jax.train import step as step_lib

flags.DEFINE_integer("steps", 10, "Timed steps per arm (median reported).")
flags.DEFINE_integer("warmup", 3, "Untimed steps per arm after compiling.")
FLAGS = flags.FLAGS

def measure(arm: str, steps: int, warmup: int) -> dict:
  config = base_small.config()
  if arm != "all":
    config.frozen_groups = ("encoder",)
  model = registry.build_model(config.model, base_small.VOCAB)
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  plan = param_groups.make_plan(config, params)
  tx = param_groups.make_optimizer(plan, config, 0, params)
  mask = plan.trainable_mask(0)
  if arm == "zeroed":  # differentiate everything; set_to_zero discards it
    mask = dict.fromkeys(mask, True)
  step_fn = jax.jit(step_lib.bind_train_step(
      losses.seq2seq_loss(model, 0.1), tx, plan, config, 0,
      trainable_mask=mask), donate_argnums=0)
  state = step_lib.init_state(params, tx)
  batch, key = base_small.batches()[0], jax.random.key(1)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  memory = compiled.memory_analysis()
  state, times = timing.time_steps(step_fn, state, batch, key, steps, warmup)
  median = statistics.median(times)
  return {"peer": "encdec_jax", "unit": f"train_{arm}",
          "tokens_per_s": base_small.BATCH * base_small.TGT_LEN / median,
          "step_ms_median": 1e3 * median, "step_ms_min": 1e3 * min(times),
          "step_ms_max": 1e3 * max(times), "compile_or_warmup_s": compile_s,
          "gflops_per_step": cost.get("flops", float("nan")) / 1e9,
          "opt_state_mb": param_groups.opt_state_bytes(state.opt_state) / 2**20,
          "temp_mb": getattr(memory, "temp_size_in_bytes", 0) / 2**20}


def main(argv):
  del argv
  results = {}
  for arm in ("all", "zeroed", "frozen"):
    results[arm] = measure(arm, FLAGS.steps, FLAGS.warmup)
    print(json.dumps(results[arm]), flush=True)
  base = results["all"]
  print(f"\n{'arm':8} {'step ms':>8} {'×all':>6} {'GFLOP':>7} {'opt MB':>7} "
        f"{'temp MB':>8}")
  for arm, r in results.items():
    print(f"{arm:8} {r['step_ms_median']:8.1f} "
          f"{r['step_ms_median'] / base['step_ms_median']:6.2f} "
          f"{r['gflops_per_step']:7.1f} {r['opt_state_mb']:7.1f} "
          f"{r['temp_mb']:8.1f}")


if __name__ == "__main__":
  app.run(main)
