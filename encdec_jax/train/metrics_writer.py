"""Metrics to TensorBoard, to `metrics.jsonl`, and a progress line on stdout.

Only process 0 writes, so a multi-host run logs once.
"""

import json
import os
import time

import jax
from tensorboardX import SummaryWriter


class MetricsWriter:

  def __init__(self, workdir: str):
    self._active = jax.process_index() == 0
    if self._active:
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a",
                         encoding="utf-8")

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
