r"""Speed of training and decoding on the `base-small` work of ../shared/bench.

  python -m encdec_jax.bench --unit=train          # or decode_greedy,
  python -m encdec_jax.bench --unit=all            # decode_beam4, all

Prints one JSON line per unit with the fields the PyTorch peers print (peer =
encdec_jax), plus achieved GFLOP/s and MFU against this machine's float32
matmul peak (measured here with jnp.dot on 2048x2048, or --peak_gflops).
Warm-up 3 steps, then >= 10 timed steps; the median is reported.
`launch/bench_vs_peers.sh` runs the peers and this one after the other and
prints the ratio table.
"""

import os
import resource
import statistics
import time

from absl import app, flags
import jax

from encdec_jax import decoding
from encdec_jax.bench import base_small, timing
from encdec_jax.models import registry
from encdec_jax.nn import precision
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                       make_tokens_to_logits)
from encdec_jax.decoding.beam_search import cache_length_axes
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups, trainer
from encdec_jax.train import step as step_lib

UNITS = ("train", "decode_greedy", "decode_beam4")
flags.DEFINE_enum("unit", "all", UNITS + ("all",), "What to measure.")
flags.DEFINE_integer("steps", 10, "Timed steps (median reported).")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compiling.")
flags.DEFINE_float("peak_gflops", 0.0, "float32 matmul peak for MFU; 0 "
                   "measures it (jnp.dot, 2048x2048).")
flags.DEFINE_string("out", "", "Also append the JSON lines to this file.")
flags.DEFINE_float("dropout", 0.1, "Dropout rate (base-small: 0.1); 0 shows "
                   "what the dropout masks cost.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                  "config.model.dtype: bfloat16 takes bfloat16 operands and "
                  "accumulates every dot in float32 (nn/precision.py); MFU "
                  "is then against the bfloat16 matmul peak.")
flags.DEFINE_enum("dropout_prng", "rbg", ["threefry2x32", "rbg", "unsafe_rbg"],
                  "Generator of the dropout masks (config.dropout_prng).")
FLAGS = flags.FLAGS
NEVER = -1  # an EOS id no token equals: decoding always runs the full length


def _params(model, config):
  return jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))


def train_fn(config, model):
  """(step_fn(i) -> result to block on, compile seconds)."""
  params = _params(model, config)
  plan = param_groups.make_plan(config, params)
  tx = param_groups.make_optimizer(plan, config, 0, params)
  step = jax.jit(step_lib.bind_train_step(
      losses.seq2seq_loss(model, config.label_smoothing), tx, plan,
      config, 0), donate_argnums=0)
  batches = base_small.batches()
  key = trainer.dropout_key(config)
  state = step_lib.init_state(params, tx)
  start = time.perf_counter()
  step = step.lower(state, batches[0], key).compile()
  compile_s = time.perf_counter() - start
  holder = [state]

  def run(i):
    holder[0], metrics = step(holder[0], batches[i % len(batches)], key)
    return metrics["loss"]

  return run, compile_s


def decode_fn(config, model, beams: int):
  params = _params(model, config)
  max_len = base_small.TGT_LEN

  @jax.jit
  def generate(params, inputs_BxS):
    batch, source_len = inputs_BxS.shape
    encoded = model.apply({"params": params}, inputs_BxS,
                          method=EncoderDecoder.encode)
    if beams == 1:
      cache, _ = precompute_cross_attention(
          model, params, encoded, init_cache(model, batch, max_len,
                                             source_len))
      return decoding.greedy_decode(
          make_tokens_to_logits(model, params, encoded), cache, batch,
          max_len, NEVER)
    # Cross-attention keys/values once, one row per source, never gathered.
    cache, batch_axes = precompute_cross_attention(
        model, params, encoded,
        init_cache(model, batch * beams, max_len, source_len),
        cache_batch_axes(model, max_len, source_len))
    tokens_to_logits = make_tokens_to_logits(
        model, params, decoding.expand_to_beams(encoded, beams))
    # Each step reorders only the self-attention positions written so far.
    length_axes = cache_length_axes(
        lambda n: init_cache(model, batch * beams, n, source_len), max_len)
    tokens_BxKxT, _ = decoding.beam_search(tokens_to_logits, cache, batch,
                                           beams, max_len, NEVER,
                                           batch_axes=batch_axes,
                                           length_axes=length_axes)
    return tokens_BxKxT[:, 0]

  inputs = [b["inputs"] for b in base_small.batches()]
  start = time.perf_counter()
  compiled = generate.lower(params, inputs[0]).compile()
  compile_s = time.perf_counter() - start
  return (lambda i: compiled(params, inputs[i % len(inputs)])), compile_s


def measure(unit: str, steps: int, warmup: int, peak_gflops: float,
            dropout_prng: str = "rbg", dropout: float = 0.1,
            dtype: str = "float32") -> dict:
  config = base_small.config(dropout_rate=dropout,
                             attention_dropout_rate=dropout, dtype=dtype)
  config.dropout_prng = dropout_prng
  model = registry.build_model(config.model, base_small.VOCAB)
  if unit == "train":
    run, compile_s = train_fn(config, model)
  else:
    run, compile_s = decode_fn(config, model,
                               1 if unit == "decode_greedy" else
                               base_small.BEAMS)
  warm_s, times = timing.time_runs(run, warmup, steps)
  median = statistics.median(times)
  tokens = base_small.BATCH * base_small.TGT_LEN
  gflops = base_small.flops_per_token(unit) * tokens / median / 1e9
  return {
      "peer": "encdec_jax", "unit": unit,
      "tokens_per_s": round(tokens / median, 2),
      "step_ms_median": round(1e3 * median, 2),
      "step_ms_min": round(1e3 * min(times), 2),
      "step_ms_max": round(1e3 * max(times), 2),
      "compile_or_warmup_s": round(compile_s + warm_s, 3),
      "compile_s": round(compile_s, 3),
      "peak_rss_mb": round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "threads": os.cpu_count(),
      "achieved_gflops": round(gflops, 1),
      "peak_gflops": round(peak_gflops, 1),
      "mfu": round(gflops / peak_gflops, 3),
      "config": "base-small", "dropout": dropout,
      "dropout_prng": dropout_prng, "dtype": dtype,
      "cpu_bf16": precision.cpu_has_bf16(),
      "jax": jax.__version__}


def main(argv):
  del argv
  peak = FLAGS.peak_gflops or timing.measure_peak_gflops(dtype=FLAGS.dtype)
  if FLAGS.dtype == "bfloat16" and not precision.bf16_is_fast():
    print("note: this CPU has no bfloat16 instructions (AVX512-BF16/AMX): "
          "bfloat16 is emulated and slower than float32 here.", flush=True)
  units = UNITS if FLAGS.unit == "all" else (FLAGS.unit,)
  for unit in units:
    timing.emit(measure(unit, FLAGS.steps, FLAGS.warmup, peak,
                        FLAGS.dropout_prng, FLAGS.dropout, FLAGS.dtype),
                FLAGS.out)


if __name__ == "__main__":
  app.run(main)
