"""Which examples each training step consumed: `<workdir>/example_ids.tsv`.

With `config.record_example_ids=True` the trainer appends one line per step,
`step<TAB>id id ...` (ids index the training split, in batch order). On a
resume the log is cut back to the resumed step first, so after any number of
kills and restarts it lists exactly the batches that produced the final
parameters: equal logs mean the restarted run saw every example exactly as
often, and in the same order, as an uninterrupted one. Useful beyond the
resume tests too: it tells which examples a bad step (say, a NaN) trained on.

Each process logs its own share (`example_ids.tsv` on process 0,
`example_ids.<k>.tsv` on process k).
"""

import os

import jax
import numpy as np

from encdec_jax import io_utils


def path(workdir: str, process_index: int | None = None) -> str:
  k = jax.process_index() if process_index is None else process_index
  return os.path.join(workdir, "example_ids.tsv" if k == 0 else
                      f"example_ids.{k}.tsv")


def read(log_path: str) -> list[tuple[int, list[int]]]:
  """[(step, ids)] in file order; a torn last line (a kill mid-write) and
  anything after it are ignored."""
  if not os.path.exists(log_path):
    return []
  entries = []
  with open(log_path, encoding="utf-8") as f:
    for line in f:
      if not line.endswith("\n"):
        break
      step, _, ids = line.rstrip("\n").partition("\t")
      entries.append((int(step), [int(i) for i in ids.split()]))
  return entries


class ExampleLog:
  """Appends the ids of each step; `flush` before a checkpoint is saved."""

  def __init__(self, workdir: str, resume_step: int):
    self._path = path(workdir)
    kept = [(s, ids) for s, ids in read(self._path) if s <= resume_step]
    # Atomic: a kill here keeps the old log.
    io_utils.write_atomically(self._path,
                              "".join(_line(s, ids) for s, ids in kept))
    self._file = open(self._path, "a", encoding="utf-8")

  def record(self, step: int, example_ids) -> None:
    self._file.write(_line(step, np.asarray(example_ids).tolist()))

  def flush(self) -> None:
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self) -> None:
    self._file.close()


def _line(step: int, ids: list[int]) -> str:
  return f"{step}\t{' '.join(map(str, ids))}\n"
