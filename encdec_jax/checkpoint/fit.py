"""Whether a readable checkpoint fits the run, decided before it is restored.

A checkpoint whose parameter tree is not the one the config builds (a LoRA
run resumed without its --config.lora.* flags, another LoRA rank, other
parameter groups) is a good checkpoint of another configuration: it is
refused in one line naming the difference and the flags that fix it, and it
stays where it is. Only a checkpoint that cannot be read is "corrupt"
(resume.py). The saved tree comes from the state item's orbax metadata
(paths and shapes; no array is read).
"""

import json
import os

import jax
import orbax.checkpoint as ocp
from etils import epath

from encdec_jax.checkpoint import layout

# config fields whose value changes the saved tree (the model, the
# adapters, the optimizer's groups), named when config.json differs.
_TREE_FIELDS = ("model.", "lora.", "param_groups", "frozen_groups",
                "group_optim", "layer_groups", "unfreeze_every", "init_from",
                "init_encoder", "grad_accum_steps", "task")


class CheckpointMismatch(ValueError):
  """A readable checkpoint written by another configuration."""


def _key_name(key) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _shapes(tree) -> dict:
  """{"params/encoder/.../kernel": shape} of a tree's array leaves."""
  return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
          if leaf is not None and hasattr(leaf, "shape")}


def saved_shapes(manager: ocp.CheckpointManager, step: int) -> dict | None:
  """The leaf paths and shapes of a step's state item, or None when its
  metadata cannot be read (the restore then reports it as unreadable)."""
  where = epath.Path(layout.step_dir(manager, step), "state")
  try:
    metadata = ocp.StandardCheckpointHandler().metadata(where)
  except Exception:  # orbax raises plain Exceptions for bad files
    return None
  return _shapes(getattr(metadata, "item_metadata", metadata))


def tree_differences(saved: dict, target) -> list[str]:
  """What differs between the saved leaves and `target`'s, compared under
  the target's top-level keys only (a reader's {"params": ...} ignores the
  optimizer state)."""
  wanted = _shapes(target)
  tops = {path.split("/")[0] for path in wanted}
  saved = {p: s for p, s in saved.items() if p.split("/")[0] in tops}
  diffs = [f"{p} is in the checkpoint, not in the run"
           for p in sorted(set(saved) - set(wanted))]
  diffs += [f"{p} is in the run, not in the checkpoint"
            for p in sorted(set(wanted) - set(saved))]
  diffs += [f"{p} has shape {saved[p]} in the checkpoint, {wanted[p]} in the "
            "run" for p in sorted(set(saved) & set(wanted))
            if saved[p] != wanted[p]]
  return diffs


def _flat(tree, prefix: str = "") -> dict:
  out = {}
  for k, v in (tree or {}).items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_differences(workdir: str, config) -> list[str]:
  """The tree-shaping fields where `config` differs from the workdir's
  config.json, as flags that restore them ('--config.lora.rank=8')."""
  path = os.path.join(workdir, layout.CONFIG_FILE)
  if config is None or not os.path.isfile(path):
    return []
  try:
    with open(path, encoding="utf-8") as f:
      saved = _flat(json.load(f))
  except (OSError, ValueError):
    return []
  now = _flat(json.loads(config.to_json_best_effort()))
  return [f"--config.{k}={_flag_value(saved[k])}" for k in sorted(saved)
          if k.startswith(_TREE_FIELDS) and saved[k] != now.get(k)]


def _flag_value(value) -> str:
  """A config.json value as a command line writes it."""
  if isinstance(value, list):
    return repr(tuple(tuple(v) if isinstance(v, list) else v for v in value))
  return value if isinstance(value, str) else repr(value)


def _lora_line(where: str, saved_meta: dict, expected_meta: dict,
               config) -> str | None:
  """The LoRA case in the user's terms, if it is one."""
  saved, expected = saved_meta.get("lora"), expected_meta.get("lora")
  if saved and not expected:
    return (f"the checkpoint in {where} holds LoRA adapters (meta "
            f"lora.targets {saved.get('targets')}, base {saved.get('base')}) "
            "but config.lora.targets is empty; rerun with the run's "
            "--config.lora.* flags (--config.lora.targets="
            f"\"{tuple(saved.get('targets') or ())}\" "
            f"--config.lora.base={saved.get('base')})")
  if expected and not saved:
    targets = tuple(config.lora.targets) if config is not None else (
        expected.get("targets"))
    return (f"the checkpoint in {where} holds a whole model, no LoRA "
            f"adapters, but config.lora.targets={targets}; drop the "
            "--config.lora.* flags to resume it, or train adapters on it in "
            f"a new --workdir with --config.lora.base={os.path.dirname(where)}")
  return None


def check_fits(manager: ocp.CheckpointManager, step: int, target,
               saved_meta: dict, expected_meta: dict, config=None) -> None:
  """Raises CheckpointMismatch (one line) if step's saved tree is not
  `target`'s; does nothing if its metadata cannot be read."""
  saved = saved_shapes(manager, step)
  if saved is None:
    return
  diffs = tree_differences(saved, target)
  if not diffs:
    return
  where = str(manager.directory)
  line = _lora_line(where, saved_meta, expected_meta, config)
  if line:
    raise CheckpointMismatch(line)
  flags = config_differences(layout.workdir_of(manager), config)
  fix = (f"rerun with the run's own flags ({' '.join(flags[:4])}, from its "
         "config.json)" if flags else
         "rerun with the flags the run was trained with (its config.json)")
  raise CheckpointMismatch(
      f"the checkpoint {layout.step_dir(manager, step)} was written by "
      f"another configuration: {'; '.join(diffs[:3])}"
      + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")
      + f"; {fix}, or use a new --workdir.")
