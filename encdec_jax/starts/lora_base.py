"""LoRA on a trained base: config.lora.targets with config.lora.base.

A LoRA run trains {"base": ..., "lora": adapters} (lora/adapters.py). The
base is a whole trained model: config.lora.base names its workdir, whose
newest checkpoint is read. The architecture and tokenizer are those of the
start beneath it, scratch or a Hugging Face import (starts/hf_import.py:
LoRA on an imported model), and the base's tokenizer is installed beside
them. The base is frozen (set_to_zero: no optimizer state) and the adapters
train in groups lora_encoder / lora_decoder / lora; under
config.lora.train_base (a comparison arm) the base trains and the adapters
are frozen.

Its checkpoints hold only the adapters and their optimizer state (all of it
under train_base) and name the base by path and content hash in
meta["lora"]; a resume or a decode against a base with another hash is
refused in one line naming both.
"""

import os

import jax

from encdec_jax import checkpoint, parallel
from encdec_jax.lora import adapters
from encdec_jax.starts.base import Start


def is_lora_tree(params) -> bool:
  return isinstance(params, dict) and set(params) == {"base", "lora"}


_HOST_CACHE = {}  # (path, step, shapes) -> (host params, hash)


def load_base(config, abstract_base):
  """(base params, content hash) of config.lora.base (a trained workdir's
  newest checkpoint), in `abstract_base`'s shapes and shardings. The host
  copy is cached per path and step; each call puts fresh device arrays (the
  train step donates its state's)."""
  path = config.lora.get("base")
  if not path:
    raise ValueError("config.lora.base is not set: name the workdir of the "
                     "trained model to adapt (--config.lora.base=...).")
  path = _base_workdir(os.path.abspath(path))
  manager = checkpoint.make_manager(path, async_save=False)
  key = (path, manager.latest_step(),
         repr(jax.tree.map(lambda x: (x.shape, str(x.dtype)), abstract_base)))
  if key not in _HOST_CACHE:
    _check_base_fits(manager, abstract_base)
    params, _ = checkpoint.restore_params(manager, abstract_base)
    host = jax.device_get(params)
    _HOST_CACHE.clear()
    _HOST_CACHE[key] = (host, adapters.content_hash(host))
  host, digest = _HOST_CACHE[key]
  shardings = [getattr(x, "sharding", None)
               for x in jax.tree.leaves(abstract_base)]
  if any(s is None for s in shardings):
    return jax.device_put(host), digest
  return jax.device_put(host, jax.tree.unflatten(
      jax.tree.structure(abstract_base), shardings)), digest


def _base_workdir(path: str) -> str:
  """`path` if it is a trained workdir, else a one-line error saying what
  it is (missing, a step or checkpoints/ directory, an untrained one)."""
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) == checkpoint.CHECKPOINTS_DIR:
    raise ValueError(f"config.lora.base={path} is one step of a run; name the "
                     f"run's workdir (--config.lora.base={os.path.dirname(parent)}"
                     "): its newest step is the base.")
  if name == checkpoint.CHECKPOINTS_DIR and checkpoint.has_checkpoint(parent):
    raise ValueError(f"config.lora.base={path} is a checkpoints directory; "
                     f"name the run's workdir (--config.lora.base={parent}).")
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f"config.lora.base={path} does not exist; name the workdir of the "
        "trained model to adapt (if it was moved, its new place; if it was "
        "never trained, train it there first).")
  if not checkpoint.has_checkpoint(path):
    raise FileNotFoundError(
        f"config.lora.base={path} holds no checkpoint: it is not a trained "
        "run's workdir; name one, or train the base model there first "
        f"(--mode=train --workdir={path}).")
  return path


def _refuse_a_lora_run(manager) -> None:
  """The base's newest checkpoint must be a whole model, not itself a LoRA
  run's adapters."""
  where = os.path.dirname(str(manager.directory))
  try:
    lora = checkpoint.read_meta(manager).get("lora")
  except Exception:  # unreadable: the restore reports it
    return
  if lora:
    raise ValueError(
        f"config.lora.base={where} is a LoRA run (its checkpoints hold "
        "adapters only); merge it into a whole model first (--mode="
        "merge_adapter --output=DIR) and give DIR as config.lora.base.")


def _check_base_fits(manager, abstract_base) -> None:
  """The base's newest checkpoint must be a whole model of config.model's
  architecture (not itself a LoRA run's adapters)."""
  where = os.path.dirname(str(manager.directory))
  _refuse_a_lora_run(manager)
  saved = checkpoint.saved_shapes(manager, manager.latest_step())
  diffs = saved is not None and checkpoint.tree_differences(
      saved, {"params": abstract_base})
  if diffs:
    raise ValueError(
        f"config.lora.base={where} is not a model of this config's "
        f"architecture ({'; '.join(diffs[:2])}); give the base run's own "
        f"--config.model.* flags (see {where}/config.json).")


def _meta(config, abstract_params) -> dict:
  """meta["lora"] of the run's checkpoints: base path and hash, targets."""
  if callable(abstract_params):  # (only a LoRA run pays for the shapes)
    abstract_params = abstract_params()
  _, digest = load_base(config, abstract_params["base"])
  return {"lora": {
      "base": os.path.abspath(config.lora.base), "base_hash": digest,
      "train_base": bool(config.lora.get("train_base")),
      "targets": [str(t) if isinstance(t, str) else repr(tuple(t))
                  for t in config.lora.targets]}}


def check_base(saved_meta: dict, expected_meta: dict, where: str) -> None:
  """Refuses an adapter trained on another base, naming both hashes."""
  saved = (saved_meta or {}).get("lora") or {}
  expected = (expected_meta or {}).get("lora") or {}
  if saved.get("base_hash") and expected.get("base_hash") and (
      saved["base_hash"] != expected["base_hash"]):
    raise ValueError(
        f"the adapter in {where} was trained on base {saved['base_hash']} "
        f"({saved.get('base')}) but config.lora.base={expected.get('base')} "
        f"has content hash {expected['base_hash']}; use the original base "
        "or a new --workdir.")


def _check_resume(manager, expected_meta: dict) -> None:
  """Before a resume: the newest checkpoint's base must be this one."""
  if manager.latest_step() is None:
    return
  try:
    saved = checkpoint.read_meta(manager)
  except Exception:  # an unreadable step: checkpoint.resume's policy decides
    return
  check_base(saved, expected_meta, str(manager.directory))


def _initial_params(config, params, encoder_spec, log):
  """A fresh LoRA state's params: the base loaded from config.lora.base."""
  del encoder_spec, log
  base, _ = load_base(config, parallel.abstract(params["base"]))
  return {"base": base, "lora": params["lora"]}


def _saved(config, state):
  """What a LoRA run saves: the state with params = {"lora": adapters}
  (all of it under config.lora.train_base: the base trains too)."""
  if is_lora_tree(state.params) and not config.lora.get("train_base"):
    return state.replace(params={"lora": state.params["lora"]})
  return state


def with_base(config, restored, abstract_params):
  """The params tree of a restored adapter-only checkpoint (`restored` is a
  state or a params tree) with the base put back; `abstract_params()` gives
  the whole tree's shapes."""
  params = restored.params if hasattr(restored, "params") else restored
  if not (isinstance(params, dict) and set(params) == {"lora"}):
    return restored  # a whole {"base", "lora"} tree (train_base) or plain
  base, _ = load_base(config, parallel.abstract(abstract_params()["base"]))
  full = {"base": base, "lora": params["lora"]}
  return (restored.replace(params=full) if hasattr(restored, "params")
          else full)


def _read_target(config, manager, abstract):
  """What a reader (eval/decode) restores: the adapters of an adapter-only
  checkpoint, a whole tree (train_base), or a plain (merged) model's
  params as they are."""
  del config
  try:
    saved = checkpoint.read_meta(manager)
  except Exception:  # unreadable: checkpoint.resume's policy reports it
    saved = {"lora": True}
  if "lora" not in saved:
    return abstract["base"]  # a plain (merged) model
  return abstract if saved["lora"] is True or saved["lora"].get(
      "train_base") else {"lora": abstract["lora"]}


def group_rules(config) -> tuple:
  """config.lora.param_groups, else the base frozen and the adapters in
  lora_encoder / lora_decoder / lora (adapters.group_rules)."""
  return tuple(config.lora.get("param_groups") or
               adapters.group_rules(config.lora.get("train_base", False)))


def on(beneath: Start) -> Start:
  """LoRA on the architecture and tokenizer of `beneath`."""

  def install(config, workdir, reads_text):
    beneath.install(config, workdir, reads_text)
    if reads_text:  # a LoRA run reads the base's tokens
      checkpoint.install_encoder_tokenizer(config.lora.base, workdir)

  def configure(config):
    beneath.configure(config)
    if config.lora.get("base"):  # (load_base says when it is not set)
      path = _base_workdir(os.path.abspath(config.lora.base))
      # Before install reads its tokenizer: a LoRA run has no encoder item.
      _refuse_a_lora_run(checkpoint.make_manager(path, async_save=False))

  return Start(
      f"lora_base on {beneath.name}",
      configure=configure,
      install=install,
      vocab_size=beneath.vocab_size,
      wrap_model=lambda model, config: adapters.LoraModel(model, config.lora),
      initial_params=_initial_params,
      group_rules=group_rules,
      meta=_meta,
      # The base is found by its path, but identified by its hash: a base
      # moved elsewhere (and named again by config.lora.base) is the same.
      unchecked_meta=("lora.base",),
      check_resume=_check_resume,
      saved=_saved,
      completed=with_base,
      read_target=_read_target,
  )
