"""Which checkpoint a restarted run resumes from, and what an unreadable one
does (config.corrupt_checkpoint).

A resume tries steps from the newest. A step whose meta or state cannot be
read (truncated or tampered files) is an error under "error"; under
"fallback" it is moved to <workdir>/unreadable_checkpoints/ with a warning
and the next older step is tried. With no older step it is an error either
way. A checkpoint of another experiment (its meta), or one whose parameter
tree is not the run's (fit.py: a LoRA run resumed without its flags), is
readable: always an error, and never moved.
"""

from typing import Any, Callable

import orbax.checkpoint as ocp

from encdec_jax.checkpoint import fit, layout, train_state

CORRUPT_POLICIES = ("fallback", "error")


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return (text[0] if text else type(error).__name__)[:300]


def resume(manager: ocp.CheckpointManager, target: Callable[[int], Any],
           expected_meta: dict, *, policy: str = "fallback",
           log: Callable[[str], None] = print,
           read: Callable[[int], tuple] | None = None,
           set_aside: bool = True, unchecked: tuple = (),
           config=None) -> tuple:
  """(state, data_state, step) of the newest readable checkpoint.

  `target(step)` is the (abstract) state a checkpoint of `step` restores
  into; `expected_meta` what its meta must agree on (check_compatible),
  except the `unchecked` entries ("lora.base": a path, recorded to find the
  base again, which its hash identifies). Before a step is read, its saved
  tree must be `target(step)`'s (under the target's top-level keys), else
  fit.CheckpointMismatch names the difference (and, from `config`, the
  flags of the workdir's config.json that restore it).
  A reader (--mode=eval/decode/embed) passes `read(step)`, the tuple to
  read instead (e.g. (params,)) with `target(step)` its tree (e.g.
  {"params": ...}), and set_aside=False: an unreadable step is
  then passed over with the same warning but left where it is (training
  moves it aside), and the result is (*read(step), step).
  """
  if read is None:
    read = lambda step: train_state.restore(manager, target(step), step)[:2]
  steps = sorted(manager.all_steps(), reverse=True)
  for i, step in enumerate(steps):
    where = layout.step_dir(manager, step)
    try:
      saved_meta = train_state.read_meta(manager, step)
    except Exception as e:  # orbax raises plain Exceptions for bad files
      problem = e
    else:
      train_state.check_compatible(saved_meta, expected_meta,
                                   str(manager.directory), unchecked)
      fit.check_fits(manager, step, target(step), saved_meta, expected_meta,
                     config)
      try:
        return (*read(step), step)
      except Exception as e:
        problem = e
    older = steps[i + 1] if i + 1 < len(steps) else None
    if policy == "error" or older is None:
      raise ValueError(
          f"checkpoint {where} cannot be read ({_first_line(problem)}); "
          + ("move it away to resume from the one before, or set "
             "--config.corrupt_checkpoint=fallback" if older is not None else
             "no older checkpoint to fall back to: use a new --workdir"))
    if not set_aside:
      log(f"WARNING: checkpoint {where} cannot be read "
          f"({_first_line(problem)}); using step {older} (the next training "
          "run moves the unreadable one aside)")
      continue
    moved = train_state.set_aside(manager, step)
    log(f"WARNING: checkpoint {where} cannot be read "
        f"({_first_line(problem)}); moved it to {moved} and resuming "
        f"from step {older}")
  raise FileNotFoundError(f"no checkpoint in {manager.directory} to resume "
                          "from.")
