"""Adapters on disk: save_adapter, read_spec, load_adapter (strict).

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
`python -m encdec_jax.pretrained.export_hf` takes the merged workdir. The
workflows that restore a run and write these live in encdec_jax/exports.py.
"""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from encdec_jax import io_utils
from encdec_jax.checkpoint import output_dir
from encdec_jax.lora import adapters

SPEC_FILE, PARAMS_DIR = "adapter.json", "params"


def make_spec(config, lora_meta: dict, step: int, tree) -> dict:
  """adapter.json of the adapters `tree` of a LoRA run's checkpoint at
  `step` (lora_meta: the checkpoint's meta["lora"])."""
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
  """Writes `tree` (the adapters) and `spec` to the new directory `path`,
  whole or not at all (checkpoint/output_dir.py: a non-empty or busy `path`
  is refused, a killed export's leftovers are cleared by the rerun)."""
  with output_dir.new_directory(path, "the adapter") as partial:
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(os.path.join(partial, PARAMS_DIR), jax.device_get(tree))
    io_utils.write_atomically(os.path.join(partial, SPEC_FILE),
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


def configure(lora_config, path: str) -> None:
  """lora_config.targets/rank/alpha/init_std from the adapter at `path`
  (its own settings win: they are what it was trained with)."""
  spec = read_spec(path)
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
