"""A training step's checkpoint: save (async, atomic), read back, set aside.

Saves are async and atomic: a killed save leaves a `*.orbax-checkpoint-tmp`
directory that the manager ignores, so the last committed step stays good;
the next start removes it (`remove_unfinished`). A save that fails (a full
disk) is a CheckpointWriteError naming the step that is still good.
Nothing here unpickles: arrays are tensorstore files, the rest is JSON.
"""

import os
import re
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from encdec_jax import parallel
from encdec_jax.checkpoint import layout


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (full disk, lost permissions)."""


def _write_error(manager, step: int | None, error: Exception
                 ) -> CheckpointWriteError:
  # tensorstore reports OS errors as a long status string with the errno.
  code = re.search(r"os_error_code='?(\d+)", str(error))
  reason = os.strerror(int(code.group(1))) if code else (
      str(error).strip().splitlines() or [type(error).__name__])[0][:200]
  # An async save fails in the background and surfaces at the next save (or
  # the final wait): name the step it left unfinished.
  failed = [int(m.group(1)) for p in layout.unfinished(manager)
            if (m := re.match(r"(\d+)\.", os.path.basename(p)))]
  step = min(failed) if failed else step
  committed = [s for s in manager.all_steps() if s != step]
  last = (f"step {max(committed)} is the last committed one and is intact"
          if committed else "no checkpoint was committed before it")
  what = f"step {step}" if step is not None else "a checkpoint"
  return CheckpointWriteError(
      f"could not write {what} in {manager.directory} ({reason}); {last}. "
      "Free disk space (or fix the directory) and rerun the same command to "
      "resume from there.")


def save(manager: ocp.CheckpointManager, state, data_state: dict,
         meta: dict) -> None:
  """Starts an async save of `state` (an earlier save's failure shows here)."""
  step = int(jax.device_get(state.step))
  try:
    items = dict(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(dict(meta, step=step)))
    if "encoder" in state.params:  # (an adapter-only LoRA state has none)
      items["encoder"] = ocp.args.StandardSave(state.params["encoder"])
    manager.save(step, args=ocp.args.Composite(**items))
  except Exception as e:
    raise _write_error(manager, step, e) from e


def wait_until_committed(manager: ocp.CheckpointManager) -> None:
  """Blocks until the async save in flight (if any) has committed."""
  try:
    manager.wait_until_finished()
  except Exception as e:
    raise _write_error(manager, None, e) from e


def remove_unfinished(manager: ocp.CheckpointManager) -> list[str]:
  """Deletes the partial steps a killed save left (`<step>.orbax-checkpoint-
  tmp*`; the manager never lists them), with a log line; their paths."""
  partial = layout.unfinished(manager) if jax.process_index() == 0 else []
  for path in partial:
    shutil.rmtree(path, ignore_errors=True)
    print(f"removed {path}: an unfinished checkpoint (the run was killed "
          "while saving it)", flush=True)
  parallel.sync("remove_unfinished")  # no process reads before 0 is done
  return partial


def _step_or_latest(manager: ocp.CheckpointManager, step: int | None) -> int:
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}; train "
                            "first (--mode=train) or check --workdir.")
  return step


def read_meta(manager: ocp.CheckpointManager, step: int | None = None) -> dict:
  """The small JSON item of a step (reads nothing else)."""
  step = _step_or_latest(manager, step)
  return manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))["meta"]


def check_compatible(meta: dict, expected: dict, where: str,
                     unchecked: tuple = ()) -> None:
  """Refuses to resume a checkpoint written for a different model/dataset
  (every entry but the flattened names in `unchecked`)."""
  saved = _flatten(meta)
  diffs = [f"{k}: checkpoint {saved[k]!r} vs config {v!r}"
           for k, v in _flatten(expected).items()
           if k in saved and k not in unchecked and saved[k] != v]
  if diffs:
    raise ValueError(f"the checkpoint in {where} was written for a different "
                     f"experiment ({'; '.join(diffs)}); use a new --workdir or "
                     "the original config.")


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  return out


def restore(manager: ocp.CheckpointManager, target_state,
            step: int | None = None) -> tuple[Any, dict, dict]:
  """(state, data_state, meta) of `step` (default: the latest committed).

  `target_state` gives structure, shapes, dtypes and shardings: an abstract
  state (ShapeDtypeStructs with shardings, from jax.eval_shape) restores
  without ever holding a second, initialised copy; concrete arrays do too.
  """
  step = _step_or_latest(manager, step)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(parallel.abstract(target_state)),
      data=ocp.args.JsonRestore(),
      meta=ocp.args.JsonRestore()))
  return restored["state"], restored["data"], restored["meta"]


def restore_params(manager: ocp.CheckpointManager, target_params,
                   step: int | None = None):
  """Only the params (for eval/decode): reads no optimizer state."""
  step = _step_or_latest(manager, step)
  abstract = {"params": parallel.abstract(target_params)}
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(
          item=abstract,
          restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True)))
  return restored["state"]["params"], step


def set_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves an unreadable step out of the checkpoints directory (kept, not
  deleted, for a look) so the manager no longer sees it; its new path."""
  source = layout.step_dir(manager, step)
  target = os.path.join(layout.workdir_of(manager), layout.UNREADABLE_DIR,
                        str(step))
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
      shutil.rmtree(target)
    shutil.move(source, target)
  parallel.sync(f"set_aside_{step}")
  manager.reload()
  return target
