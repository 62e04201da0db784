r"""Served (jax.export artifacts, encdec_jax/serving.py) against in-process
decoding (make_decode_fn on the restored run): load time, first-call
compile time and tokens/s, on the same padded batches of the run's test
sources.

  python -m encdec_jax.bench.serving --workdir=runs/en_de \
      [--config=experiments/number_translation.py] [--algorithm=greedy] \
      [--batch_size=32] [--num_lines=512] [--repeats=5] [--out=FILE]

--config defaults to the workdir's config.json. The run is exported to a
temporary directory first (its time is printed too). Both sides decode the
same batches (bucket-padded, as --mode=decode pads them) and must agree
token for token before anything is timed. tokens/s counts the generated
tokens up to and including each row's EOS; each figure is the median (and
the best) of --repeats passes over all batches, the two sides alternating. One JSON line
(bench/timing.emit) ends the output.
"""

import os
import platform
import statistics
import sys
import tempfile
import time

from absl import app, flags
import jax
import numpy as np
from ml_collections import config_flags

from encdec_jax import checkpoint, console, serving, serving_export
from encdec_jax.bench import timing
from encdec_jax.data import pipeline, sources
from encdec_jax.decoding.config import decode_settings, make_decode_fn
from encdec_jax.train import inference

config_flags.DEFINE_config_file("config", None, "The run's config file "
                                 "(default: the workdir's config.json).")
flags.DEFINE_string("workdir", None, "A trained run.")
flags.DEFINE_enum("algorithm", "greedy", list(serving.ALGORITHMS),
                  "The decoder timed (beam: config.decode.beam_size).")
flags.DEFINE_integer("batch_size", 32, "Lines a batch.")
flags.DEFINE_integer("num_lines", 512, "Test sources decoded a pass.")
flags.DEFINE_integer("repeats", 5, "Timed passes a side (median).")
flags.DEFINE_string("out", "", "Also append the JSON line to this file.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _batches(config, tokenizer, num_lines: int,
             batch_size: int) -> tuple[list, list]:
  """(bucket-padded int32 batches of the first test sources, the number of
  real rows in each: the last batch's padding rows are not counted)."""
  test = sources.make_source(config, "test")
  first = [test[i] for i in range(min(num_lines, len(test)))]
  batches = [np.asarray(b["inputs"]) for b in pipeline.eval_batches(
      first, tokenizer, config, batch_size)]
  rows = [min(batch_size, len(first) - i * batch_size)
          for i in range(len(batches))]
  return batches, rows


def _timed(fn) -> tuple[float, object]:
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - start, out


def _pass(decode, batches) -> tuple[float, list]:
  """(seconds, outputs) of one pass over all batches."""
  start = time.perf_counter()
  outputs = [np.asarray(jax.block_until_ready(decode(i, b)))
             for i, b in enumerate(batches)]
  return time.perf_counter() - start, outputs


def _generated(outputs, rows: list, eos: int) -> int:
  """Tokens up to and including each real row's EOS (or all of a row)."""
  total = 0
  for tokens_BxT, n in zip(outputs, rows):
    tokens_BxT = tokens_BxT[:n]
    ended = np.cumsum(tokens_BxT == eos, axis=1) - (tokens_BxT == eos)
    total += int(((ended == 0) & (tokens_BxT != serving.PAD_ID)).sum())
  return total


def measure(config, workdir: str, algorithm: str, batch_size: int,
            num_lines: int, repeats: int) -> dict:
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.decode = dict(decode_settings(config), algorithm=algorithm)
  load_in, (exp, params, _) = _timed(
      lambda: inference.restore_latest(config, workdir))
  key = jax.random.key(decode_settings(config)["seed"])
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id,
                             prompted=exp.task.prompted)
  batches, rows = _batches(config, exp.tokenizer, num_lines, batch_size)
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "served")
    export_s, _ = _timed(lambda: serving_export.export_serving(
        config, workdir, out))
    load_served, served = _timed(lambda: serving.load(out))

    def in_process(i, inputs_BxS):
      return decode_fn(params, inputs_BxS, jax.random.fold_in(key, i))

    def served_decode(i, inputs_BxS):
      return served.decode_ids(inputs_BxS, algorithm,
                               decode_settings(config)["seed"], i)

    # First call: compiles (one shape each when every batch has one bucket).
    compile_in, _ = _timed(lambda: in_process(0, batches[0]))
    compile_served, _ = _timed(lambda: served_decode(0, batches[0]))
    _, expected = _pass(in_process, batches)  # warm every bucket
    _, got = _pass(served_decode, batches)
    if not all(np.array_equal(a, b) for a, b in zip(expected, got)):
      raise AssertionError("served tokens differ from in-process decoding")
    times_in, times_served = [], []
    for _ in range(repeats):  # alternating: both see the same machine load
      times_in.append(_pass(in_process, batches)[0])
      times_served.append(_pass(served_decode, batches)[0])
  tokens = _generated(expected, rows, exp.tokenizer.eos_id)
  in_tps = tokens / statistics.median(times_in)
  served_tps = tokens / statistics.median(times_served)
  # The best pass: what the code can do when the machine lets it (a shared
  # machine's load spreads the medians).
  best_in, best_served = tokens / min(times_in), tokens / min(times_served)
  return {
      "bench": "serving", "workdir": workdir, "algorithm": algorithm,
      "batch_size": batch_size, "lines": sum(rows),
      "generated_tokens": tokens, "export_s": round(export_s, 2),
      "load_s": {"in_process": round(load_in, 2),
                 "served": round(load_served, 2)},
      "first_call_s": {"in_process": round(compile_in, 2),
                       "served": round(compile_served, 2)},
      "tokens_per_s": {"in_process": round(in_tps, 1),
                       "served": round(served_tps, 1)},
      "served_vs_in_process": round(served_tps / in_tps, 3),
      "best_tokens_per_s": {"in_process": round(best_in, 1),
                            "served": round(best_served, 1)},
      "best_served_vs_in_process": round(best_served / best_in, 3),
      "repeats": repeats, "cpu": _cpu_name(), "cores": os.cpu_count(),
      "backend": jax.default_backend(), "jax": jax.__version__}


def main(argv):
  del argv
  config = FLAGS.config or checkpoint.load_config(FLAGS.workdir)
  record = measure(config, FLAGS.workdir, FLAGS.algorithm, FLAGS.batch_size,
                   FLAGS.num_lines, FLAGS.repeats)
  print(f"{record['lines']} lines, {record['generated_tokens']} tokens, "
        f"{record['algorithm']}, batch {record['batch_size']}, "
        f"{record['cpu']}:")
  for side, name in (("in_process", "in-process"), ("served", "served")):
    print(f"  {name:>10}: load {record['load_s'][side]:6.2f} s  first call "
          f"{record['first_call_s'][side]:6.2f} s  "
          f"{record['tokens_per_s'][side]:9.1f} tokens/s")
  print(f"  served / in-process: {record['served_vs_in_process']:.3f} "
        f"median, {record['best_served_vs_in_process']:.3f} best pass "
        f"(export {record['export_s']:.1f} s)")
  timing.emit(record, FLAGS.out)


if __name__ == "__main__":
  sys.path[:0] = console.config_import_paths(sys.argv)
  app.run(main, flags_parser=console.parse_flags)
