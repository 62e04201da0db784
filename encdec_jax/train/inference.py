"""--mode=eval and --mode=decode: use a trained workdir's latest checkpoint."""

import sys
import time

from encdec_jax import checkpoint
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


def _progress(total: int, start: float):
  """Prints 'decoded N/total lines' to stderr, in place, for a file."""

  def report(done: int):
    rate = done / max(time.time() - start, 1e-9)
    end = "\n" if done >= total else ""
    print(f"\rdecoded {done}/{total} lines ({rate:.0f}/s)", end=end,
          file=sys.stderr, flush=True)

  return report


def decode_lines(config, workdir: str, lines: list[str],
                 show_progress: bool = False) -> list[str]:
  """Translations of `lines` with the latest checkpoint, decoded as
  config.decode says (greedy, beam search or sampling)."""
  exp, params, _ = _restore(config, workdir)
  decode_fn = evaluate.make_decode_fn(exp.model, config)
  source = [{"source": line, "target": ""} for line in lines]
  batches = pipeline.eval_batches(source, exp.tokenizer, config,
                                  config.eval_batch_size)
  progress = _progress(len(lines), time.time()) if show_progress else None
  return evaluate.translate(
      decode_fn, params, batches, exp.tokenizer, exp.mesh, len(source),
      seed=evaluate.decode_settings(config)["seed"], progress=progress)


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
  # stderr: stdout may be the translations themselves (--output=-).
  print(f"decoding {len(lines)} lines ({evaluate.describe_decoding(config)})",
        file=sys.stderr, flush=True)
  outputs = (decode_lines(config, workdir, lines, show_progress=True)
             if lines else [])
  text = "".join(o + "\n" for o in outputs)
  if output_path == "-":
    sys.stdout.write(text)
  else:
    with open(output_path, "w", encoding="utf-8") as f:
      f.write(text)
    mw.log(f"wrote {len(outputs)} translations to {output_path}")
