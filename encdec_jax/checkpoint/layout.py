"""Where checkpoints live on disk, and the one orbax manager that reads them.

  <workdir>/checkpoints/<step>/{state,encoder,data,meta}   a training step
  <workdir>/checkpoints/<step>.orbax-checkpoint-tmp*        a save cut short
  <workdir>/unreadable_checkpoints/<step>                  set aside (resume)
  <dir>/{encoder.json,params/,tokenizer.*}                 a save_encoder dir

Each step holds several items, so that any one restores alone:
  state    the TrainState (params, optimizer state, step);
  encoder  params['encoder'], readable without touching the rest;
  data     the grain iterator state of the training stream;
  meta     JSON: step, the model config (to refuse a mismatch), dataset,
           vocabulary, and meta["encoder"] = encoder_spec(config, tokenizer).
"""

import glob
import json
import os

import ml_collections
import orbax.checkpoint as ocp

CHECKPOINTS_DIR = "checkpoints"
UNREADABLE_DIR = "unreadable_checkpoints"
ITEMS = ("state", "encoder", "data", "meta")
UNFINISHED_PATTERN = "*.orbax-checkpoint-tmp*"
SPEC_FILE, PARAMS_DIR = "encoder.json", "params"  # Of a save_encoder dir.
CONFIG_FILE = "config.json"  # The config a workdir was trained with.


def checkpoints_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS_DIR)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its config.json)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no {path}: {workdir} holds no training run.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir` holds a committed training step (reads no file)."""
  directory = checkpoints_dir(workdir)
  return os.path.isdir(directory) and any(
      name.isdigit() for name in os.listdir(directory))


def make_manager(workdir: str, *, max_to_keep: int = 3,
                 async_save: bool = True) -> ocp.CheckpointManager:
  """The manager of `workdir`'s steps, for saving and for every read (each
  item's handler follows from the args a save or restore passes)."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(checkpoints_dir(workdir), options=options,
                               item_names=ITEMS)


def step_dir(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(manager.directory), str(step))


def workdir_of(manager: ocp.CheckpointManager) -> str:
  return os.path.dirname(str(manager.directory))


def unfinished(manager: ocp.CheckpointManager) -> list[str]:
  """The partial steps a killed or failed save left (the manager skips them)."""
  return sorted(glob.glob(os.path.join(str(manager.directory),
                                       UNFINISHED_PATTERN)))
