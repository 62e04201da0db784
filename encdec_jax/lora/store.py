"""Adapters on disk: export_adapter, load_adapter (strict), merge_adapter.

  <dir>/adapter.json   targets, rank/alpha defaults, base path and content
                       hash, the step, the model config, parameter counts
  <dir>/params/        the adapters (orbax arrays; nothing is unpickled)

An exported adapter is applied to a base by `--config.lora.adapter=<dir>`
with `--workdir=<the base run>` (decode/eval): the base's checkpoint is read
as it is, the adapter put beside it, and the model runs unmerged; another
command picks another adapter for the same base. merge_adapter folds the
adapters into the base and writes a plain workdir (checkpoint, config.json,
tokenizer) that decodes at full speed and exports like any trained model;
a model imported from Hugging Face keeps its origin (pretrained/), so that
`python -m encdec_jax.pretrained.export_hf` takes the merged workdir.
"""

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from encdec_jax import checkpoint, io_utils
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.lora import adapters
from encdec_jax.pretrained import finetune

SPEC_FILE, PARAMS_DIR = "adapter.json", "params"


def _spec(config, lora_meta: dict, step: int, tree) -> dict:
  lora_config = config.lora
  return {"format": "encdec_jax.lora/1", "step": int(step),
          "base": lora_meta.get("base"), "base_hash": lora_meta["base_hash"],
          "targets": [t if isinstance(t, str) else [t[0], dict(t[1])]
                      for t in lora_config.targets],
          **{k: lora_config.get(k, adapters.DEFAULTS[k])
             for k in adapters.SETTINGS},
          "model": config.model.to_dict(),
          "num_params": adapters.count(tree)}


def save_adapter(path: str, tree, spec: dict) -> None:
  """Writes `tree` (the adapters) and `spec` to the new directory `path`."""
  path = os.path.abspath(path)
  if os.path.exists(path) and os.listdir(path):
    raise ValueError(f"{path} exists and is not empty; give a new directory "
                     "for the adapter.")
  os.makedirs(path, exist_ok=True)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(path, PARAMS_DIR), jax.device_get(tree))
  io_utils.write_atomically(os.path.join(path, SPEC_FILE),
                            json.dumps(spec, indent=2))


def read_spec(path: str) -> dict:
  spec_path = os.path.join(os.path.abspath(path), SPEC_FILE)
  if not os.path.exists(spec_path):
    raise FileNotFoundError(f"{spec_path} does not exist: {path} is not an "
                            "adapter exported by --mode=export_adapter.")
  with open(spec_path, encoding="utf-8") as f:
    return json.load(f)


def _read_tree(path: str) -> dict:
  with ocp.StandardCheckpointer() as ckpt:
    where = os.path.join(os.path.abspath(path), PARAMS_DIR)
    meta = ckpt.metadata(where)
    tree = getattr(meta, "item_metadata", meta)
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    return ckpt.restore(where, target)


def configure(config) -> None:
  """config.lora.targets/rank/alpha/init_std from the adapter named by
  config.lora.adapter (its own settings win: they are what it was trained
  with)."""
  lora_config = config.get("lora")
  if not lora_config or not lora_config.get("adapter"):
    return
  spec = read_spec(lora_config.adapter)
  lora_config.targets = tuple(t if isinstance(t, str) else (t[0], t[1])
                              for t in spec["targets"])
  for k in ("rank", "alpha", "init_std"):
    lora_config[k] = spec[k]


def load_adapter(path: str, base, lora_config, *, strict: bool = True):
  """The adapters at `path` for `base` (params), checked strictly: the base's
  content hash must be the one the adapter was trained on, and the adapter
  tree must be exactly what lora_config's targets give for this base (same
  paths, shapes and dtypes). strict=False skips the hash check only."""
  spec = read_spec(path)
  digest = adapters.content_hash(base)
  if strict and spec["base_hash"] != digest:
    raise ValueError(
        f"the adapter in {path} was trained on base {spec['base_hash']} "
        f"({spec.get('base')}) but this base has content hash {digest}; "
        "apply it to its own base.")
  stored = traverse_util.flatten_dict(_read_tree(path))
  expected = traverse_util.flatten_dict(jax.eval_shape(
      lambda: adapters.init(lora_config, base, jax.random.key(0))))
  name = lambda k: "/".join(k)
  problems = [f"missing {name(k)}" for k in expected if k not in stored]
  problems += [f"unexpected {name(k)}" for k in stored if k not in expected]
  problems += [f"{name(k)}: shape {tuple(stored[k].shape)} vs "
               f"{tuple(expected[k].shape)}"
               for k in expected if k in stored and
               (tuple(stored[k].shape) != tuple(expected[k].shape) or
                stored[k].dtype != expected[k].dtype)]
  if problems:
    raise ValueError(f"the adapter in {path} does not fit this model: "
                     + "; ".join(problems[:8]) +
                     (f" (+{len(problems) - 8} more)" if len(problems) > 8
                      else ""))
  return jax.tree.map(np.asarray, traverse_util.unflatten_dict(stored))


def export_adapter(config, workdir: str, output: str) -> dict:
  """Writes the newest checkpoint's adapters of a LoRA workdir; the spec."""
  from encdec_jax.train import inference  # pylint: disable=g-import-not-at-top
  exp, params, step = inference.restore_latest(config, workdir)
  if not (isinstance(params, dict) and "lora" in params):
    raise ValueError(f"{workdir} is not a LoRA run (config.lora.targets is "
                     "empty); nothing to export.")
  meta = checkpoint.read_meta(checkpoint.make_manager(workdir,
                                                      async_save=False))
  spec = _spec(exp.config, meta["lora"], step, params["lora"])
  save_adapter(output, params["lora"], spec)
  return spec


def origin_dir(workdir: str, base: str | None) -> str | None:
  """The Hugging Face origin (pretrained.json + hf/) of a LoRA run: its own
  copy (config.init_from installs one), else its base run's; None when the
  model was not imported."""
  for run in (workdir, base):
    origin = run and os.path.join(run, finetune.ORIGIN)
    if origin and os.path.isfile(os.path.join(origin, "pretrained.json")):
      return origin
  return None


def merge_adapter(config, workdir: str, output: str) -> int:
  """Folds the adapters of `workdir`'s newest checkpoint (or of
  config.lora.adapter on the base run in `workdir`) into the base and writes
  a plain workdir `output`; the step."""
  from encdec_jax.train import experiment, inference  # pylint: disable=g-import-not-at-top
  exp, params, step = inference.restore_latest(config, workdir)
  if not (isinstance(params, dict) and set(params) == {"base", "lora"}):
    raise ValueError(f"{workdir} holds no adapter to merge (a LoRA run's "
                     "workdir, or --config.lora.adapter=DIR on its base).")
  merged = adapters.merge(exp.config.lora, params["base"], params["lora"])
  output = os.path.abspath(output)
  if checkpoint.has_checkpoint(output):
    raise ValueError(f"{output} already holds a checkpoint; give a new "
                     "directory for the merged model.")
  plain = config.copy_and_resolve_references()
  plain.lora.targets, plain.lora.adapter, plain.lora.base = (), "", ""
  os.makedirs(output, exist_ok=True)
  for name in tokenizer_lib.TOKENIZER_FILES.values():  # the same vocabulary
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copy(os.path.join(workdir, name), os.path.join(output, name))
  # export_hf reads the merged params against the imported model's files.
  origin = origin_dir(workdir, exp.config.lora.get("base"))
  if origin:
    shutil.copytree(origin, os.path.join(output, finetune.ORIGIN),
                    dirs_exist_ok=True)
  experiment.save_config(plain, output)
  from encdec_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  state = step_lib.TrainState(step=np.asarray(step, np.int32),
                              params=merged, opt_state={})
  manager = checkpoint.make_manager(output, async_save=False)
  meta = experiment.checkpoint_meta(exp)
  checkpoint.save(manager, state, {}, meta)
  checkpoint.wait_until_committed(manager)
  return step
