r"""Decoding latency (batch 1) and speculative decoding, on `base-small`.

  python -m encdec_jax.bench.decode_latency                 # every unit
  python -m encdec_jax.bench.decode_latency --units=latency_greedy,\
      decode_speculative --k=4 --draft=self:1 --out=runs/bench/encdec_jax.jsonl

One JSON line per unit, in the format of ../shared/bench (peer =
encdec_jax, tokens_per_s, step_ms_median/min/max, compile_or_warmup_s,
peak_rss_mb, threads) plus:

  latency_{greedy,beam4,sample,speculative}   batch 1, 64 new tokens (EOS
      never ends a sequence): ttft_ms (encode + the first token: the same
      decode function compiled for 1 token), per_token_ms ((t_64 - t_1) / 63)
      and tokens_per_s = 64 / t_64.
  decode_speculative   batch 32 x 64 tokens, the work of decode_greedy.
  Speculative units also carry acceptance (share of draft tokens kept),
  tokens_per_round, and greedy_tokens_per_s / speedup_vs_greedy: our greedy
  on the same batch timed in the same process right before.

Random weights by default, as the peers: a self-speculative draft of a
random model agrees with it by chance only, so acceptance (and speedup) on
random weights says little; --params=PATH.msgpack (flax serialization of a
base-small param tree, e.g. a trained model's) measures a real one.
--workdir=runs/en_de measures a trained run instead of base-small: its
model and latest params, the first 32 sources of its test split, its
max_decode_length and its real EOS (a batch stops when every row has
ended, for greedy as for speculative), tokens counted up to each row's
EOS; only the speculative units:

  python -m encdec_jax.bench.decode_latency --workdir=runs/en_de \
      --units=latency_speculative,decode_speculative --draft=self:1

The speculative output is checked against greedy's (token for token)
before timing.
"""
import dataclasses
import os
import resource
import statistics
import time
from typing import Any

from absl import app, flags
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax import checkpoint
from encdec_jax.bench import base_small, timing
from encdec_jax.data import pipeline, sources
from encdec_jax.decoding.loop import PAD_ID
from encdec_jax.decoding import speculative as spec
from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.models import registry
from encdec_jax.models.contract import init_cache
from encdec_jax.train import experiment, inference

UNITS = ("latency_greedy", "latency_beam4", "latency_sample",
         "latency_speculative", "decode_speculative")
flags.DEFINE_list("units", list(UNITS), "Units to measure.")
flags.DEFINE_integer("k", 4, "Draft tokens per speculative round.")
flags.DEFINE_string("draft", "self:1", "config.decode.draft: self:N = the "
                    "first N decoder layers (base-small has 3).")
flags.DEFINE_integer("lat_steps", 10, "Timed runs per latency figure.")
flags.DEFINE_integer("batch_steps", 5, "Timed runs at batch 32.")
flags.DEFINE_integer("warmup", 2, "Untimed runs after compiling.")
flags.DEFINE_string("params", "", "Optional msgpack of trained params.")
flags.DEFINE_string("workdir", "", "A trained run to measure instead of "
                    "base-small (speculative units only).")
flags.DEFINE_string("out", "", "Also append the JSON lines to this file.")
FLAGS = flags.FLAGS
NEVER = -1  # an EOS id no token equals: every run decodes the full length


@dataclasses.dataclass(frozen=True)
class Setup:
  config: Any
  model: Any
  params: Any
  inputs_BxS: jax.Array  # base_small.BATCH rows (a small test split: fewer)
  max_len: int  # new tokens per row at most
  eos: int  # NEVER: every row decodes max_len tokens
  name: str  # the "config" field of the JSON lines


def _setup(params_path: str = "") -> Setup:
  config = base_small.config(dropout_rate=0.0, attention_dropout_rate=0.0)
  model = registry.build_model(config.model, base_small.VOCAB)
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  if params_path:
    with open(params_path, "rb") as f:
      params = flax.serialization.from_bytes(params, f.read())
  return Setup(config, model, params,
               jnp.asarray(base_small.batches()[0]["inputs"]),
               base_small.TGT_LEN, NEVER, "base-small")


def _workdir_setup(workdir: str) -> Setup:
  """A trained run: its model, params, test sources and EOS."""
  config = checkpoint.load_config(workdir)
  exp, params, _ = inference.restore_latest(config, workdir)
  test = sources.make_source(config, "test")
  first = [test[i] for i in range(min(base_small.BATCH, len(test)))]
  batch = next(iter(pipeline.eval_batches(first, exp.tokenizer, config,
                                          len(first))))
  return Setup(config, exp.model, params, jnp.asarray(batch["inputs"]),
               config.max_decode_length, exp.tokenizer.eos_id,
               os.path.basename(os.path.normpath(workdir)))


def _decode_fn(model, config, decode: dict, max_len: int, eos: int = NEVER):
  c = config.copy_and_resolve_references()
  c.decode = decode
  c.max_decode_length = max_len
  return make_decode_fn(model, c, eos)


def _spec_stats_fn(model, max_len, k, draft_layers, eos: int = NEVER):
  @jax.jit
  def run(params, inputs_BxS):
    batch, source_len = inputs_BxS.shape
    encoded = model.apply({"params": params}, inputs_BxS, method="encode")
    draft, draft_params = spec.self_draft(model, params, draft_layers)
    cache = init_cache(model, batch, max_len, source_len)
    dcache = init_cache(draft, batch, max_len, source_len)
    return spec.speculative_decode(
        spec.make_cached_step(model, params, encoded, cache), cache,
        spec.make_cached_step(draft, draft_params, encoded, dcache), dcache,
        batch, max_len, eos, k)
  return run


def _time(fn, args, steps, warmup):
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(warmup):
    jax.block_until_ready(compiled(*args))
  warm_s = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return times, compile_s + warm_s


def _decode_settings(unit: str, k: int, draft: str) -> dict:
  algo = unit.split("_", 1)[1]
  return {"greedy": dict(algorithm="greedy"),
          "beam4": dict(algorithm="beam", beam_size=base_small.BEAMS,
                        length_penalty=0.6),
          "sample": dict(algorithm="sample", temperature=1.0),
          "speculative": dict(algorithm="speculative", k=k, draft=draft),
          }[algo]


def _line(unit, times, warm_s, tokens, config_name="base-small", **extra):
  median = statistics.median(times)
  return dict({
      "peer": "encdec_jax", "unit": unit,
      "tokens_per_s": round(tokens / median, 2),
      "step_ms_median": round(1e3 * median, 2),
      "step_ms_min": round(1e3 * min(times), 2),
      "step_ms_max": round(1e3 * max(times), 2),
      "compile_or_warmup_s": round(warm_s, 3),
      "peak_rss_mb": round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "threads": os.cpu_count(), "config": config_name,
      "jax": jax.__version__}, **extra)


def measure(unit: str, setup: Setup, k: int = 4, draft: str = "self:1",
            lat_steps: int = 10, batch_steps: int = 5,
            warmup: int = 2) -> dict:
  config, model, params = setup.config, setup.model, setup.params
  new, eos = setup.max_len, setup.eos
  draft_layers = int(draft.split(":")[1]) if ":" in draft else max(
      1, model.config.num_decoder_layers // 2)
  rng = jax.random.key(0)
  if unit == "decode_speculative" or unit == "latency_speculative":
    batch = 1 if unit.startswith("latency") else setup.inputs_BxS.shape[0]
    x = setup.inputs_BxS[:batch]
    steps = lat_steps if batch == 1 else batch_steps
    greedy = _decode_fn(model, config, dict(algorithm="greedy"), new, eos)
    spec_fn = _decode_fn(model, config, _decode_settings(
        "x_speculative", k, draft), new, eos)
    want = np.asarray(greedy(params, x, rng))
    got = np.asarray(spec_fn(params, x, rng))
    if not (want == got).all():
      raise AssertionError("speculative output differs from greedy's")
    # Output tokens: up to and including each row's EOS (pad after it).
    tokens = batch * new if eos == NEVER else int((want != PAD_ID).sum())
    _, st = _spec_stats_fn(model, new, k, draft_layers, eos)(params, x)
    g_times, _ = _time(greedy, (params, x, rng), steps, warmup)
    times, warm_s = _time(spec_fn, (params, x, rng), steps, warmup)
    extra = dict(
        batch=batch, k=k, draft=draft,
        acceptance=round(float(st["acceptance"]), 3),
        tokens_per_round=round(float(st["tokens_per_round"]), 3),
        greedy_tokens_per_s=round(tokens / statistics.median(g_times), 2),
        speedup_vs_greedy=round(statistics.median(g_times) /
                                statistics.median(times), 3))
    if batch == 1 and eos == NEVER:  # (a trained run's rows end early)
      one = _decode_fn(model, config, _decode_settings(
          "x_speculative", k, draft), 1)
      t1, _ = _time(one, (params, x, rng), steps, warmup)
      extra.update(_latency(t1, times, tokens))
    return _line(unit, times, warm_s, tokens, setup.name, **extra)
  if eos != NEVER:
    raise app.UsageError(f"{unit}: --workdir measures the speculative units "
                         "only (latency_speculative, decode_speculative).")
  # latency_{greedy,beam4,sample}: batch 1
  x = setup.inputs_BxS[:1]
  settings = _decode_settings(unit, k, draft)
  full = _decode_fn(model, config, settings, new)
  one = _decode_fn(model, config, settings, 1)
  times, warm_s = _time(full, (params, x, rng), lat_steps, warmup)
  t1, _ = _time(one, (params, x, rng), lat_steps, warmup)
  return _line(unit, times, warm_s, new, batch=1, **_latency(t1, times, new))


def _latency(t1, times, new):
  ttft = statistics.median(t1)
  return dict(ttft_ms=round(1e3 * ttft, 2),
              per_token_ms=round(1e3 * (statistics.median(times) - ttft)
                                 / (new - 1), 3))


def main(argv):
  del argv
  unknown = set(FLAGS.units) - set(UNITS)
  if unknown:
    raise app.UsageError(f"unknown units {sorted(unknown)}; use {UNITS}")
  setup = (_workdir_setup(FLAGS.workdir) if FLAGS.workdir
           else _setup(FLAGS.params))
  for unit in FLAGS.units:
    timing.emit(measure(unit, setup, FLAGS.k, FLAGS.draft, FLAGS.lat_steps,
                        FLAGS.batch_steps, FLAGS.warmup), FLAGS.out)


if __name__ == "__main__":
  app.run(main)
