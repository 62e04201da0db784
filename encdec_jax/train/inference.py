"""--mode=eval, --mode=decode and --mode=embed: use a trained workdir's latest
checkpoint (or, to embed, a pretrained encoder as it is)."""

import sys
import time

import numpy as np

from encdec_jax import checkpoint, parallel
from encdec_jax import tasks
from encdec_jax.data import pipeline
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.decoding.config import (decode_settings, describe_decoding,
                                        make_decode_fn)
from encdec_jax.tasks import evaluation, retrieval
from encdec_jax.train import evaluators, experiment
from encdec_jax.lora import training as lora_training
from encdec_jax.train import metrics_writer as mw


def restore_latest(config, workdir):
  """(experiment, params, step) of the workdir's latest checkpoint."""
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  manager = checkpoint.make_manager(workdir, async_save=False)
  abstract = experiment.abstract_params(exp)
  # A LoRA workdir's checkpoints hold only the adapters; the base is put
  # back from config.lora.base (refused if its hash differs).
  lora_training.check_resume(manager, lora_training.add_meta(
      config, experiment.checkpoint_meta(exp), abstract))
  params, step = checkpoint.restore_params(
      manager, lora_training.read_target(config, manager, abstract))
  return exp, lora_training.after_read(config, params, abstract), step


def evaluate_checkpoint(config, workdir: str) -> dict:
  """Loss and decoding metrics of the latest checkpoint on val and test."""
  start = time.time()
  exp, params, step = restore_latest(config, workdir)
  evaluate_fn = evaluators.make_evaluator(exp)
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
  exp, params, _ = restore_latest(config, workdir)
  tokenizer_lib.warn_unknown(exp.tokenizer, lines)
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id,
                             prompted=exp.task.prompted)
  source = [{"source": line, "target": ""} for line in lines]
  batches = pipeline.eval_batches(source, exp.tokenizer, config,
                                  config.eval_batch_size)
  progress = _progress(len(lines), time.time()) if show_progress else None
  return evaluation.translate(
      decode_fn, params, batches, exp.tokenizer, exp.mesh, len(source),
      seed=decode_settings(config)["seed"], progress=progress)


def _read_lines(input_path: str) -> list[str]:
  if input_path == "-":
    return sys.stdin.read().splitlines()
  try:
    with open(input_path, encoding="utf-8") as f:
      return f.read().splitlines()
  except FileNotFoundError:
    raise FileNotFoundError(f"--input={input_path}: no such file; give a "
                            "text file with one text per line, or '-' for "
                            "stdin.") from None


def pretrained_embedder(config, workdir: str):
  """(experiment, params): the embedding model of `config` with the encoder
  of config.init_encoder as it is, untrained (e.g. an imported
  all-MiniLM-L6-v2, experiments/minilm_embed.py). Reads no dataset."""
  task = tasks.get(config)
  tokenizer = checkpoint.load_encoder_tokenizer(config.init_encoder)
  model = experiment.build_model(task, config, tokenizer.vocab_size, {})
  exp = experiment.Experiment(config, workdir, parallel.make_mesh(config), {},
                              tokenizer, model, task)
  # Shapes only: the strict load below replaces every leaf, straight into
  # the params' shardings, so nothing is initialised.
  abstract = experiment.abstract_params(exp)
  untrained = sorted(set(abstract) - {"encoder"})
  if untrained:
    raise ValueError(f"pooling={config.get('pooling')!r} has parameters "
                     f"({', '.join(untrained)}) that no checkpoint trained; "
                     "embed with --config.pooling=mean, or train first.")
  params, report = checkpoint.load_encoder(
      config.init_encoder, into=abstract,
      expected_spec=experiment.encoder_spec(exp))
  print(report.summary(), file=sys.stderr)  # stdout may be the neighbours
  return exp, params


def embed_lines(config, workdir: str, lines: list[str]) -> np.ndarray:
  """float32 NxD unit vectors of `lines` from the latest checkpoint's encoder
  (retrieval.make_embed_fn says how each model pools); an embedding config
  whose workdir holds no checkpoint embeds with config.init_encoder as it is
  (pretrained_embedder)."""
  if (tasks.get(config).embeds_untrained and config.get("init_encoder") and
      not checkpoint.has_checkpoint(workdir)):
    exp, params = pretrained_embedder(config, workdir)
  else:
    exp, params, _ = restore_latest(config, workdir)
  tokenizer_lib.warn_unknown(exp.tokenizer, lines)
  source = [{"source": line, "target": ""} for line in lines]
  batches = pipeline.eval_batches(source, exp.tokenizer, config,
                                  config.eval_batch_size)
  return retrieval.embed_batches(retrieval.make_embed_fn(exp.model), params,
                                 batches, exp.mesh, len(lines))


def embed_file(config, workdir: str, input_path: str, output_path: str,
               neighbours: int = 0) -> np.ndarray:
  """--mode=embed: one text a line in, an NxD .npy of unit vectors out (row i
  is line i); with `neighbours` > 0 also prints each line's most similar
  other lines (cosine) to stdout."""
  task = tasks.get(config)
  if not task.embeds_text:
    raise ValueError(task.embed_refusal)
  if output_path == "-" or not output_path.endswith(".npy"):
    raise ValueError(f"--output={output_path}: --mode=embed writes a .npy "
                     "file; give a path ending in .npy.")
  lines = _read_lines(input_path)
  if not lines:
    raise ValueError(f"--input={input_path} has no lines to embed.")
  vectors_NxD = embed_lines(config, workdir, lines)
  np.save(output_path, vectors_NxD)
  print(f"wrote {vectors_NxD.shape[0]} x {vectors_NxD.shape[1]} unit "
        f"vectors to {output_path}", file=sys.stderr)
  if neighbours > 0 and len(lines) > 1:
    scores, indices = retrieval.nearest(vectors_NxD, vectors_NxD, neighbours,
                                        exclude_self=True)
    for i, line in enumerate(lines):
      near = "; ".join(f"{lines[j]} ({c:.3f})"
                       for c, j in zip(scores[i], indices[i]))
      print(f"{line}\t{near}")
  return vectors_NxD


def decode_file(config, workdir: str, input_path: str,
                output_path: str) -> None:
  """One source a line in (a file, or '-' for stdin), one output a line out."""
  task = tasks.get(config)
  if not task.decodes_text:
    raise ValueError(task.decode_refusal)
  lines = _read_lines(input_path)
  # stderr: stdout may be the translations themselves (--output=-).
  print(f"decoding {len(lines)} lines ({describe_decoding(config)})",
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
