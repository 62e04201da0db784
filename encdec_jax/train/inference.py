"""--mode=eval and --mode=decode: use a trained workdir's latest checkpoint."""

import sys
import time

import numpy as np

from encdec_jax import checkpoint, parallel
from encdec_jax.data import pipeline
from encdec_jax.train import evaluate, experiment
from encdec_jax.train import metrics_writer as mw


def _restore(config, workdir):
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  manager = checkpoint.make_manager(workdir, async_save=False)
  params, step = checkpoint.restore_params(manager,
                                           experiment.abstract_params(exp))
  return exp, params, step


def evaluate_checkpoint(config, workdir: str) -> dict:
  """Loss and decoding metrics of the latest checkpoint on val and test."""
  start = time.time()
  exp, params, step = _restore(config, workdir)
  evaluate_fn = evaluate.make_evaluator(exp)
  writer = mw.MetricsWriter(workdir)
  try:
    return {split: evaluate_fn(params, writer, step, time.time() - start,
                               split=split)
            for split in ("validation", "test")}
  finally:
    writer.close()


def decode_lines(config, workdir: str, lines: list[str]) -> list[str]:
  """Greedy translations of `lines` with the latest checkpoint."""
  exp, params, _ = _restore(config, workdir)
  greedy_fn = evaluate.make_greedy_fn(exp.model, config.max_decode_length)
  source = [{"source": line, "target": ""} for line in lines]
  batches = pipeline.eval_batches(source, exp.tokenizer, config,
                                  config.eval_batch_size)
  return evaluate.translate(greedy_fn, params, batches, exp.tokenizer,
                            exp.mesh, len(source))


def decode_file(config, workdir: str, input_path: str,
                output_path: str) -> None:
  """One source a line in (a file, or '-' for stdin), one output a line out."""
  if experiment.is_classification(config):
    raise ValueError("--mode=decode translates; this config is a "
                     "classification task (config.task), so use --mode=eval.")
  if input_path == "-":
    lines = sys.stdin.read().splitlines()
  else:
    try:
      with open(input_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    except FileNotFoundError:
      raise FileNotFoundError(f"--input={input_path}: no such file; give a "
                              "text file with one source per line, or '-' "
                              "for stdin.") from None
  outputs = decode_lines(config, workdir, lines) if lines else []
  text = "".join(o + "\n" for o in outputs)
  if output_path == "-":
    sys.stdout.write(text)
  else:
    with open(output_path, "w", encoding="utf-8") as f:
      f.write(text)
    mw.log(f"wrote {len(outputs)} translations to {output_path}")
