"""--mode=eval, --mode=decode and --mode=embed: use a trained workdir's latest
checkpoint (or, to embed, a pretrained encoder as it is)."""

import fcntl
import json
import os
import sys
import time

import jax
import numpy as np

from encdec_jax import checkpoint, io_utils, parallel, starts, tasks
from encdec_jax.data import pipeline, text_lines
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.decoding.config import (decode_settings, describe_decoding,
                                        make_decode_fn)
from encdec_jax.tasks import evaluation, retrieval
from encdec_jax.train import evaluators, experiment, line_output
from encdec_jax.train import metrics_writer as mw

EVAL_RESULTS = "eval_results.json"


def restore_latest(config, workdir):
  """(experiment, params, step) of the workdir's newest readable checkpoint,
  with the checks a training resume makes: a checkpoint of another
  experiment (task, model, dataset, vocabulary) is refused naming the
  fields that differ, a readable one whose tree is not this config's is
  refused naming the difference, and an unreadable one is passed over for the one
  before, or is an error, as config.corrupt_checkpoint says (it is left in
  place: only training moves it aside). Decoding is as deterministic as in
  training (config.deterministic)."""
  experiment.request_determinism(config)  # before the backend starts
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  if not checkpoint.has_checkpoint(workdir):
    raise FileNotFoundError(
        f"no checkpoint in {os.path.join(workdir, checkpoint.CHECKPOINTS_DIR)}"
        "; train first (--mode=train) or check --workdir.")
  manager = checkpoint.make_manager(workdir, async_save=False)
  abstract = experiment.abstract_params(exp)
  # The start says what the checkpoint holds: a LoRA workdir's hold only
  # the adapters, and the base is put back from config.lora.base (refused
  # if its hash differs).
  meta = experiment.resume_meta(exp, abstract)
  exp.start.check_resume(manager, meta)
  target = lambda step: exp.start.read_target(config, manager, abstract)
  params, step = checkpoint.resume(
      manager, lambda step: {"params": target(step)}, meta,
      policy=config.get("corrupt_checkpoint", "fallback"),
      log=lambda line: print(line, file=sys.stderr, flush=True),
      read=lambda step: checkpoint.restore_params(
          manager, target(step), step)[:1],
      set_aside=False, unchecked=experiment.unchecked_meta(exp),
      config=config)
  return exp, exp.start.completed(config, params, lambda: abstract), step


class _NoCurves:
  """A MetricsWriter that writes nothing: --mode=eval's numbers are not a
  point of the training curves (metrics.jsonl, TensorBoard)."""

  def write(self, step, prefix, metrics):
    del step, prefix, metrics

  def text(self, step, tag, text):
    del step, tag, text


def evaluate_checkpoint(config, workdir: str) -> dict:
  """Loss and decoding metrics of the latest checkpoint on val and test.

  Appended as one record to <workdir>/eval_results.json (a list: step,
  decoding, time, then the splits), never to metrics.jsonl or TensorBoard:
  evaluating all of a split, maybe with another decoding, is not the
  training run's own evaluation of the same step.
  """
  start = time.time()
  exp, params, step = restore_latest(config, workdir)
  evaluate_fn = evaluators.make_evaluator(exp)
  results = {split: evaluate_fn(params, _NoCurves(), step,
                                time.time() - start, split=split)
             for split in ("validation", "test")}
  record = {"step": step, "time": time.time()}
  if exp.task.decodes_text:
    record["decoding"] = describe_decoding(config)
  _append_eval_record(os.path.join(workdir, EVAL_RESULTS),
                      dict(record, **results))
  mw.log(f"eval results of step {step} added to "
         f"{os.path.join(workdir, EVAL_RESULTS)}")
  return results


def _append_eval_record(path: str, record: dict) -> None:
  """Appends to the list in `path` (atomically; two evals of one workdir at
  once both keep their record: the workdir's directory is flock'ed around
  the read and the write)."""
  if jax.process_index() != 0:
    return
  directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    try:
      fcntl.flock(directory, fcntl.LOCK_EX)
    except OSError:  # a file system without flock: append unguarded
      pass
    _append_record_unguarded(path, record)
  finally:
    os.close(directory)  # releases the flock


def _append_record_unguarded(path: str, record: dict) -> None:
  records = []
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        records = json.load(f)
    except ValueError:
      records = None
    if not isinstance(records, list):
      raise ValueError(f"{path} is not a list of eval records; move it away "
                       "and rerun.")
  records.append(record)
  io_utils.write_atomically(path, json.dumps(records, indent=2))


def _warn_overlong(tokenizer, lines: list[str], max_length: int) -> int:
  """One warning line if input lines are longer than the model reads (they
  are cut, as in training); how many."""
  long = [n for n, line in enumerate(lines, 1)
          if line.strip() and len(tokenizer.encode(line)) + 1 > max_length]
  if long:
    shown = ", ".join(map(str, long[:5])) + (", ..." if len(long) > 5 else "")
    print(f"warning: {len(long)} of {len(lines)} input lines are longer than "
          f"config.max_source_length={max_length} tokens and are cut to it "
          f"(line {shown}); raise config.max_source_length (up to "
          "config.model.max_len) to read them whole.", file=sys.stderr,
          flush=True)
  return len(long)


def _check_inputs(exp, lines: list[str]) -> None:
  """What training would count or flag in these lines, said once each."""
  tokenizer_lib.warn_unknown(exp.tokenizer, lines)
  prefix = pipeline.source_prefix(exp.config)  # the batches read it too
  _warn_overlong(exp.tokenizer, [pipeline.with_prefix(line, prefix)
                                 if line.strip() else line for line in lines],
                 exp.config.max_source_length)


def iter_decoded(config, workdir: str, lines: list[str], progress=None):
  """Outputs of `lines` in input order, yielded a chunk (a list) at a time
  as each batch is decoded. A blank (or whitespace-only) line is not
  decoded: its output is ''. `progress(done)` is called per chunk."""
  todo = [i for i, line in enumerate(lines) if line.strip()]
  done = 0  # lines[:done] have been yielded
  if todo:
    exp, params, _ = restore_latest(config, workdir)
    _check_inputs(exp, lines)
    decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id,
                               prompted=exp.task.prompted)
    source = [{"source": lines[i], "target": ""} for i in todo]
    batches = pipeline.eval_batches(source, exp.tokenizer, config,
                                    config.eval_batch_size)
    decoded = 0
    for hypotheses in evaluation.translate_batches(
        decode_fn, params, batches, exp.tokenizer, exp.mesh, len(source),
        seed=decode_settings(config)["seed"]):
      indices = todo[decoded:decoded + len(hypotheses)]
      decoded += len(hypotheses)
      chunk = [""] * (indices[-1] + 1 - done)
      for i, hypothesis in zip(indices, hypotheses):
        chunk[i - done] = hypothesis
      done = indices[-1] + 1
      yield chunk
      if progress:
        progress(done)
  if done < len(lines):
    yield [""] * (len(lines) - done)
    if progress:
      progress(len(lines))


def decode_lines(config, workdir: str, lines: list[str],
                 show_progress: bool = False) -> list[str]:
  """Translations of `lines` with the latest checkpoint, decoded as
  config.decode says (greedy, beam search or sampling); '' for a blank
  line."""
  progress = line_output.Progress(len(lines)) if show_progress else None
  return [output for chunk in iter_decoded(config, workdir, lines, progress)
          for output in chunk]


def read_lines(input_path: str) -> list[str]:
  """The lines of --input (a file, or '-' for stdin), split on '\\n' only
  (data/text_lines.py): line i of the output answers line i of the input."""
  if input_path == "-":
    return text_lines.split_lines(sys.stdin.buffer.read(), "stdin")
  try:
    with open(input_path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f"--input={input_path}: no such file; give a "
                            "text file with one text per line, or '-' for "
                            "stdin.") from None
  except OSError as e:
    raise type(e)(f"--input={input_path} cannot be read ({e.strerror}); "
                  "give a text file with one text per line.") from None
  return text_lines.split_lines(data, f"--input={input_path}")


def pretrained_embedder(config, workdir: str, encoder_dir: str):
  """(experiment, params): the embedding model of `config` with the encoder
  in `encoder_dir` as it is, untrained (e.g. an imported all-MiniLM-L6-v2,
  experiments/minilm_embed.py). Reads no dataset."""
  task = tasks.get(config)
  tokenizer = checkpoint.load_encoder_tokenizer(encoder_dir)
  model = experiment.build_model(task, config, tokenizer.vocab_size, {})
  exp = experiment.Experiment(config, workdir, parallel.make_mesh(config), {},
                              tokenizer, model, task, starts.get(config))
  # Shapes only: the strict load below replaces every leaf, straight into
  # the params' shardings, so nothing is initialised.
  abstract = experiment.abstract_params(exp)
  untrained = sorted(set(abstract) - {"encoder"})
  if untrained:
    raise ValueError(f"pooling={config.get('pooling')!r} has parameters "
                     f"({', '.join(untrained)}) that no checkpoint trained; "
                     "embed with --config.pooling=mean, or train first.")
  params, report = checkpoint.load_encoder(
      encoder_dir, into=abstract,
      expected_spec=experiment.encoder_spec(exp))
  print(report.summary(), file=sys.stderr)  # stdout may be the neighbours
  return exp, params


def embed_lines(config, workdir: str, lines: list[str]) -> np.ndarray:
  """float32 NxD unit vectors of `lines` from the latest checkpoint's encoder
  (retrieval.make_embed_fn says how each model pools); an embedding config
  whose workdir holds no checkpoint embeds with config.init_encoder as it is
  (pretrained_embedder)."""
  encoder_dir = starts.get(config).untrained_encoder(config)
  if (tasks.get(config).embeds_untrained and encoder_dir and
      not checkpoint.has_checkpoint(workdir)):
    exp, params = pretrained_embedder(config, workdir, encoder_dir)
  else:
    exp, params, _ = restore_latest(config, workdir)
  _check_inputs(exp, lines)
  todo = [i for i, line in enumerate(lines) if line.strip()]
  source = [{"source": lines[i], "target": ""} for i in todo]
  batches = pipeline.eval_batches(source, exp.tokenizer, config,
                                  config.eval_batch_size)
  vectors = retrieval.embed_batches(retrieval.make_embed_fn(exp.model),
                                    params, batches, exp.mesh, len(todo))
  # A blank line has no text to embed: its row is zeros (cosine 0 with
  # every line), so row i is still line i.
  out = np.zeros((len(lines), vectors.shape[1]), np.float32)
  out[todo] = vectors
  if len(todo) < len(lines):
    print(f"warning: {len(lines) - len(todo)} of {len(lines)} input lines "
          "are blank; their rows are zeros.", file=sys.stderr, flush=True)
  return out


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
  lines = read_lines(input_path)
  if not any(line.strip() for line in lines):
    raise ValueError(f"--input={input_path} has no lines to embed.")
  # Before the model is restored.
  line_output.check_output_file(output_path, input_path)
  vectors_NxD = embed_lines(config, workdir, lines)
  # Never half a file at --output; one sibling per command, so two embeds
  # into one output each leave a whole file.
  directory, name = os.path.split(os.path.abspath(output_path))
  tmp = os.path.join(directory, f".{name}.partial-{os.getpid()}")
  try:
    with open(tmp, "wb") as f:
      np.save(f, vectors_NxD)
    os.replace(tmp, output_path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  print(f"wrote {vectors_NxD.shape[0]} x {vectors_NxD.shape[1]} unit "
        f"vectors to {output_path}", file=sys.stderr)
  if neighbours > 0 and len(lines) > 1:
    scores, indices = retrieval.nearest(vectors_NxD, vectors_NxD, neighbours,
                                        exclude_self=True)
    blank = {i for i, line in enumerate(lines) if not line.strip()}
    for i, line in enumerate(lines):
      near = "; ".join(f"{lines[j]} ({c:.3f})"
                       for c, j in zip(scores[i], indices[i])
                       if j not in blank) if i not in blank else ""
      print(text_lines.one_line(f"{line}\t{near}"))
  return vectors_NxD


def decode_file(config, workdir: str, input_path: str,
                output_path: str) -> None:
  """One source a line in (a file, or '-' for stdin), one output a line out."""
  task = tasks.get(config)
  if not task.decodes_text:
    raise ValueError(task.decode_refusal)
  lines = read_lines(input_path)
  # Checked now, not after the last line is decoded.
  out = line_output.LineWriter(output_path, len(lines), input_path)
  # stderr: stdout may be the translations themselves (--output=-).
  print(f"decoding {len(lines)} lines ({describe_decoding(config)})",
        file=sys.stderr, flush=True)
  try:
    # Each batch is written as soon as it is decoded, in input order.
    for chunk in iter_decoded(config, workdir, lines,
                              line_output.Progress(len(lines))):
      out.write(chunk)
    out.close()
  except KeyboardInterrupt:
    raise out.interrupted() from None
  except BaseException:
    out.finish()  # the lines decoded before the error stay at --output
    raise
  if output_path != "-":
    print(f"wrote {out.written} lines to {output_path}", file=sys.stderr,
          flush=True)
