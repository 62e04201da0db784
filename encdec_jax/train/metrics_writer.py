"""Metrics to TensorBoard, to `metrics.jsonl`, and a progress line on stdout.

Only process 0 writes, so a multi-host run logs once. A resumed run first
cuts both back to the step it resumes from (like example_ids.tsv): rows of
steps it is about to redo would otherwise show twice, with other wall times.
"""

import json
import os
import time

import jax
from tensorboardX import SummaryWriter

from encdec_jax import io_utils


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics.jsonl; a torn last line (a kill) is ignored."""
  if not os.path.exists(path):
    return []
  rows = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows


class MetricsWriter:
  """`resume_step`: the step training (re)starts from (0: from scratch).
  Rows of later steps are dropped, and evaluations at that step too, since
  a resumed run evaluates there again (a kill may have cut it short); the
  same on every host, so every process makes the same decisions. None (eval
  and decode modes) keeps everything."""

  def __init__(self, workdir: str, resume_step: int | None = None):
    self._active = jax.process_index() == 0
    if self._active:
      path = os.path.join(workdir, "metrics.jsonl")
      if resume_step is not None and os.path.exists(path):
        rows = [r for r in read_rows(path) if r["step"] < resume_step or (
            r["step"] == resume_step and r["split"] == "train")]
        io_utils.write_atomically(
            path, "".join(json.dumps(r) + "\n" for r in rows))
      # tensorboardX hides the events of steps >= purge_step.
      self._tb = SummaryWriter(
          os.path.join(workdir, "tensorboard"),
          purge_step=None if resume_step is None else resume_step + 1)
      self._jsonl = open(path, "a", encoding="utf-8")

  def write(self, step: int, prefix: str, metrics: dict) -> None:
    if not self._active:
      return
    for name, value in metrics.items():
      self._tb.add_scalar(f"{prefix}/{name}", value, step)
    self._jsonl.write(json.dumps(dict(step=step, split=prefix,
                                      time=time.time(), **metrics)) + "\n")
    self._jsonl.flush()

  def text(self, step: int, tag: str, text: str) -> None:
    if self._active:
      self._tb.add_text(tag, text, step)

  def close(self) -> None:
    if self._active:
      self._tb.close()
      self._jsonl.close()


def progress_line(step: int, total: int, metrics: dict, steps_per_sec: float,
                  elapsed: float) -> str:
  eta = (total - step) / max(steps_per_sec, 1e-9)
  acc = f"acc {metrics['accuracy']:.4f}  " if "accuracy" in metrics else ""
  return (f"step {step}/{total}  loss {metrics['loss']:.4f}  "
          f"{acc}{steps_per_sec:.2f} steps/s  "
          f"elapsed {elapsed / 60:.1f} min  ETA {eta / 60:.1f} min")


def log(message: str) -> None:
  """Progress for humans on stdout, process 0 only."""
  if jax.process_index() == 0:
    print(message, flush=True)
