r"""At scale: T5 v1.1-large shapes, the work of ../shared/bench/peers/
hf_t5_large.py (HF T5 with PEFT LoRA, full fine-tuning, `generate`).

  python -m encdec_jax.bench.t5_large --unit=lora_step   # or full_step,
      [--dtype=bfloat16] [--steps=3] [--warmup=1] [--out=FILE]  # decode_greedy

The work: 24 + 24 layers, d_model 1024, 16 heads of 64, gated-GELU FFN
2816, vocabulary 32128, untied lm_head, T5's relative positions, no dropout,
float32 parameters (the peer's 750 M); batch 2, source 64, target 16, random
ids in [4, 32128), no padding, random weights.

  lora_step      LoRA r 8, alpha 16 on the query and value of every
                 attention (PEFT's default for T5), base frozen (not
                 differentiated, no optimizer state), AdamW 1e-4; with
                 --dtype=bfloat16 the frozen base is held in bfloat16 (the
                 adapters and their state stay float32).
  full_step      every parameter trains, AdamW 1e-4 (0.9, 0.999, wd 0.01).
  decode_greedy  encode 2 sources of 64, then exactly 16 new tokens (cached
                 cross-attention keys/values, a jitted while_loop).

Run one unit per process (peak_rss_mb is the process's ru_maxrss, as the
peer's): the stacks are one nn.scan each (config.scan_layers, one layer
compiled), training steps donate their state, and --remat picks the
rematerialisation policy. Warm-up 1, median of 3, as the peer.
"""

import os
import resource
import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections

from encdec_jax import decoding, lora
from encdec_jax.bench import timing
from encdec_jax.bench.t5_large_work import (BATCH, LORA_TARGETS, NEVER,
                                            TGT_LEN, UNITS, VOCAB, batch,
                                            config)
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.models import registry
from encdec_jax.models.contract import init_cache, make_tokens_to_logits
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn import precision
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups
from encdec_jax.train import step as step_lib

flags.DEFINE_enum("unit", "lora_step", UNITS, "What to measure.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                  "config.model.dtype (bfloat16: bf16 operands, float32 "
                  "accumulation and master weights; nn/precision.py).")
flags.DEFINE_integer("steps", 3, "Timed steps (median reported).")
flags.DEFINE_integer("warmup", 1, "Untimed steps after compiling.")
flags.DEFINE_enum("remat", "none", ["none", "full", "dots", "dots_all"],
                  "Rematerialisation policy of each layer (training).")
flags.DEFINE_bool("scan_layers", True, "Each stack as one nn.scan.")
flags.DEFINE_string("out", "", "Also append the JSON line to this file.")
FLAGS = flags.FLAGS


def _init(model, c):
  return jax.jit(lambda r: experiment.init_params(model, r, c))(
      jax.random.key(0))


def train_fn(c, model, vocab: int):
  """(run(i) -> array to block on, compile s, parameter counts)."""
  params = _init(model, c)
  plan = param_groups.make_plan(c, params)
  tx = param_groups.make_optimizer(plan, c, 0, params)
  step = jax.jit(step_lib.bind_train_step(
      losses.seq2seq_loss(model, 0.0), tx, plan, c, 0), donate_argnums=0)
  state = step_lib.init_state(params, tx)
  del params  # the state holds them (donated at the first step)
  counts = param_groups.count_by_group(plan, state.params)
  trainable = sum(n for g, n in counts.items() if g in plan.training(0))
  data, key = batch(vocab), jax.random.key(1)
  start = time.perf_counter()
  compiled = step.lower(state, data, key).compile()
  compile_s = time.perf_counter() - start
  holder = [state]

  def run(i):
    del i
    holder[0], metrics = compiled(holder[0], data, key)
    return metrics["loss"]

  return run, compile_s, trainable, sum(counts.values())


def _low_precision(params, dtype: str):
  """bfloat16 decoding reads bfloat16 weights: cast once, not every step."""
  if dtype == "float32":
    return params
  return jax.tree.map(lambda x: x.astype(dtype)
                      if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def decode_fn(c, model, vocab: int):
  params = _low_precision(_init(model, c), c.model.dtype)
  total = experiment.count_params(params)

  @jax.jit
  def generate(params, inputs_BxS):
    batch_size, source_len = inputs_BxS.shape
    encoded = model.apply({"params": params}, inputs_BxS,
                          method=EncoderDecoder.encode)
    cache, _ = precompute_cross_attention(
        model, params, encoded,
        init_cache(model, batch_size, TGT_LEN, source_len))
    return decoding.greedy_decode(
        make_tokens_to_logits(model, params, encoded), cache, batch_size,
        TGT_LEN, NEVER, start_id=model.config.start_id)

  inputs = batch(vocab)["inputs"]
  start = time.perf_counter()
  compiled = generate.lower(params, inputs).compile()
  compile_s = time.perf_counter() - start
  return lambda i: compiled(params, inputs), compile_s, 0, total


def measure(unit: str, dtype: str = "float32", steps: int = 3,
            warmup: int = 1, remat: str = "none", scan_layers: bool = True,
            vocab: int = VOCAB, **sizes) -> dict:
  """The unit's JSON record (the peer's fields, plus compile_s)."""
  c = config(dtype, remat, scan_layers, **sizes)
  model = registry.build_model(c.model, vocab)
  if unit == "lora_step":
    if dtype == "bfloat16":  # the frozen base needs no float32 master copy
      c.model.param_dtype = dtype
      model = registry.build_model(c.model, vocab)
    c.lora = ml_collections.ConfigDict(dict(
        targets=LORA_TARGETS, rank=8, alpha=16.0))
    model = lora.LoraModel(model, c.lora)
  if unit == "decode_greedy":
    run, compile_s, trainable, total = decode_fn(c, model, vocab)
  else:
    run, compile_s, trainable, total = train_fn(c, model, vocab)
  warm_s, times = timing.time_runs(run, warmup, steps)
  median = statistics.median(times)
  return {
      "peer": "encdec_jax", "unit": unit, "config": "t5-large",
      "tokens_per_s": round(BATCH * TGT_LEN / median, 2),
      "step_ms_median": round(1e3 * median, 1),
      "step_ms_all": [round(1e3 * t, 1) for t in times],
      "compile_s": round(compile_s, 2),
      "compile_or_warmup_s": round(compile_s + warm_s, 2),
      "peak_rss_mb": round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "trainable_params": trainable, "total_params": total,
      "threads": os.cpu_count(), "dtype": dtype,
      "param_dtype": c.model.get("param_dtype", "float32"), "remat": remat,
      "scan_layers": scan_layers, "cpu_bf16": precision.cpu_has_bf16(),
      "jax": jax.__version__}


def main(argv):
  del argv
  timing.emit(measure(FLAGS.unit, FLAGS.dtype, FLAGS.steps, FLAGS.warmup,
                      FLAGS.remat, FLAGS.scan_layers), FLAGS.out)


if __name__ == "__main__":
  app.run(main)
