r"""The whole model of a training workdir that export_hf can write:
config.init_from=WORKDIR (a run pretrained with config.hf_export, or one
fine-tuned from an import), for a new task:

  python -m encdec_jax.main --config=experiments/pretrain_span_corruption.py \
      --workdir=runs/pretrain
  python -m encdec_jax.main --config=experiments/t5_finetune.py \
      --config.init_from=runs/pretrain --config.text_files.train=... \
      --workdir=runs/finetune

It is the Hugging Face import start (starts/hf_import.py) with the
workdir's origin (<workdir>/pretrained/: pretrained.json and hf/) as the
import and the workdir's latest checkpoint as the params: the architecture
is the origin's (config.model keeps only hf_import.RUN_FIELDS), the
tokenizer its spiece.model, and the new workdir gets the origin too, so it
exports (export_hf) and fine-tunes further the same way. Optimizer groups,
freezing and LoRA (config.lora.*) work as on an import.
"""

import os

import jax
import ml_collections
from flax import traverse_util

from encdec_jax import checkpoint
from encdec_jax.pretrained import export_hf, stacking
from encdec_jax.starts import hf_import
from encdec_jax.starts.base import Start


def is_workdir(path: str) -> bool:
  """A training workdir with an export_hf origin (not an import_hf dir)."""
  return (not os.path.isfile(os.path.join(path, "pretrained.json"))
          and os.path.isfile(os.path.join(path, export_hf.ORIGIN,
                                          "pretrained.json")))


def _as_import(config) -> ml_collections.ConfigDict:
  """config as hf_import reads it: init_from = the workdir's origin; the
  same config.model (ConfigDicts are shared, so its updates land there)."""
  return ml_collections.ConfigDict({
      "init_from": os.path.join(config.init_from, export_hf.ORIGIN),
      "model": config.model, "tokenizer": config.get("tokenizer")})


def configure(config) -> None:
  if not checkpoint.has_checkpoint(config.init_from):
    raise FileNotFoundError(
        f"config.init_from={config.init_from} holds no checkpoint: train it "
        "first (its params are the starting point)")
  # _as_import's new parent is unlocked, so its unlocked() would leave the
  # shared config.model locked (main.py locks the config): unlock here.
  with config.unlocked():
    hf_import.configure(_as_import(config))


def initial_params(config, target_params, encoder_spec=None, log=print):
  """The workdir's latest params, laid out (and sharded) like the fresh
  state's `target_params`."""
  del encoder_spec
  flat = traverse_util.flatten_dict(
      export_hf.latest_params(config.init_from))
  if config.model.get("scan_layers"):
    flat = stacking.stack_layers(flat)
  target = traverse_util.flatten_dict(target_params)
  if set(flat) != set(target):
    missing = sorted("/".join(k) for k in set(target) ^ set(flat))
    raise ValueError(f"config.init_from={config.init_from}: its params do "
                     f"not fit the model ({missing[:3]} differ)")
  placed = {k: jax.device_put(flat[k].astype(v.dtype), v.sharding)
            for k, v in target.items()}
  log(f"params from config.init_from={config.init_from} (its latest "
      "checkpoint)")
  return traverse_util.unflatten_dict(placed)


START = Start(
    "pretrained_workdir",
    configure=configure,
    install=lambda config, workdir, reads_text: hf_import.install(
        _as_import(config), workdir, reads_text),
    vocab_size=lambda config: hf_import.vocab_size(_as_import(config)),
    initial_params=initial_params,
)
