r"""Beam 4 on base-small: the full per-step cache gather against reordering
only the positions written so far (beam_search's length_axes), in one
process, the arms interleaved; checks that they give the same tokens and
scores first.

  python -m encdec_jax.bench.beam_reorder [--rounds=8] [--dtype=float32]

Arms: full (length_axes=None), eighths (the default with length_axes:
positions rounded up to eighths of max_len), quarters (beam_search.BUCKETS
= 4). Prints each arm's median ms, tokens/s and speed-up over full.
"""

import importlib
import statistics
import time

from absl import app, flags
import jax

from encdec_jax import decoding
from encdec_jax.bench import base_small
from encdec_jax.decoding.beam_search import cache_length_axes
from encdec_jax.decoding.cross_cache import precompute_cross_attention
from encdec_jax.models import registry
from encdec_jax.models.contract import (cache_batch_axes, init_cache,
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.train import experiment

flags.DEFINE_integer("rounds", 8, "Timed calls per arm (median reported).")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                  "config.model.dtype.")
FLAGS = flags.FLAGS
ARMS = {"full": None, "eighths": 8, "quarters": 4}
# The module, not the function encdec_jax.decoding exports under its name.
BEAM_MODULE = importlib.import_module("encdec_jax.decoding.beam_search")


def make_generate(model, buckets: int | None):
  """jit(params, inputs) -> (tokens, scores) of beam 4, 64 new tokens."""
  beams, max_len = base_small.BEAMS, base_small.TGT_LEN

  @jax.jit
  def generate(params, inputs_BxS):
    batch, source_len = inputs_BxS.shape
    encoded = model.apply({"params": params}, inputs_BxS,
                          method=EncoderDecoder.encode)
    cache, axes = precompute_cross_attention(
        model, params, encoded,
        init_cache(model, batch * beams, max_len, source_len),
        cache_batch_axes(model, max_len, source_len))
    length_axes = None
    if buckets:  # read when traced: each arm compiles its own
      BEAM_MODULE.BUCKETS = buckets
      length_axes = cache_length_axes(
          lambda n: init_cache(model, batch * beams, n, source_len), max_len)
    return decoding.beam_search(
        make_tokens_to_logits(model, params,
                              decoding.expand_to_beams(encoded, beams)),
        cache, batch, beams, max_len, -1, batch_axes=axes,
        length_axes=length_axes)

  return generate


def main(argv):
  del argv
  config = base_small.config(dropout_rate=0.0, attention_dropout_rate=0.0,
                             dtype=FLAGS.dtype)
  model = registry.build_model(config.model, base_small.VOCAB)
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  inputs = [b["inputs"] for b in base_small.batches()]
  compiled = {}
  for name, buckets in ARMS.items():
    compiled[name] = make_generate(model, buckets).lower(
        params, inputs[0]).compile()
  BEAM_MODULE.BUCKETS = 8  # the default again
  want = compiled["full"](params, inputs[0])
  for name, fn in compiled.items():
    got = fn(params, inputs[0])
    if not all(bool((g == w).all()) for g, w in zip(got, want)):
      raise SystemExit(f"{name}: tokens or scores differ from the full "
                       "gather")
  times = {name: [] for name in compiled}
  for r in range(FLAGS.rounds):
    for name, fn in compiled.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(params, inputs[r % len(inputs)]))
      times[name].append(time.perf_counter() - start)
  full = statistics.median(times["full"])
  tokens = base_small.BATCH * base_small.TGT_LEN
  for name, ts in times.items():
    median = statistics.median(ts)
    print(f"{FLAGS.dtype} {name}: {1e3 * median:.0f} ms, "
          f"{tokens / median:,.0f} tokens/s, x{full / median:.2f}")


if __name__ == "__main__":
  app.run(main)
