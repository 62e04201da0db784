"""The trainer's and the readers' LoRA hooks: the base, adapter-only
checkpoints and the check that an adapter meets the base it was trained on.

A LoRA run (config.lora.targets set) trains {"base": ..., "lora": adapters};
the base comes from config.lora.base, a workdir (its newest checkpoint) or a
save_encoder-style params dir is not accepted: a whole trained model is. Its
checkpoints hold only the adapters and their optimizer state (the base is
frozen: set_to_zero, no state) and name the base by path and content hash in
meta["lora"]; a resume or a decode against a base with another hash is
refused in one line naming both.

Every function here is a no-op for a run without LoRA.
"""

import os

import jax

from encdec_jax import checkpoint, parallel
from encdec_jax.lora import adapters


def enabled(config) -> bool:
  lora = config.get("lora")
  return bool(lora and lora.get("targets"))


def _is_lora_tree(params) -> bool:
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
  path = os.path.abspath(path)
  if not checkpoint.has_checkpoint(path):
    raise FileNotFoundError(f"config.lora.base={path} holds no checkpoint; "
                            "train the base model there first.")
  manager = checkpoint.make_manager(path, async_save=False)
  key = (path, manager.latest_step(),
         repr(jax.tree.map(lambda x: (x.shape, str(x.dtype)), abstract_base)))
  if key not in _HOST_CACHE:
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


def base_meta(config, abstract_base) -> dict:
  """meta["lora"] of the run's checkpoints: base path and hash, targets."""
  _, digest = load_base(config, abstract_base)
  return {"base": os.path.abspath(config.lora.base), "base_hash": digest,
          "train_base": bool(config.lora.get("train_base")),
          "targets": [str(t) if isinstance(t, str) else repr(tuple(t))
                      for t in config.lora.targets]}


def adapter_mode(config) -> bool:
  """config.lora.adapter: an exported adapter on the base run in --workdir."""
  lora = config.get("lora")
  return bool(lora and lora.get("adapter"))


# config.lora.train_base of the run being set up: its checkpoints then keep
# the (trained) base. Set by add_meta, which the trainer calls first.
_KEEP_BASE = [False]


def add_meta(config, meta: dict, abstract_params) -> dict:
  """`meta` with meta["lora"] for a LoRA run (unchanged otherwise)."""
  _KEEP_BASE[0] = bool(enabled(config) and config.lora.get("train_base"))
  if not enabled(config) or adapter_mode(config):
    return meta
  if callable(abstract_params):  # (only a LoRA run pays for the shapes)
    abstract_params = abstract_params()
  return dict(meta, lora=base_meta(config, abstract_params["base"]))


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


def check_resume(manager, expected_meta: dict) -> None:
  """Before a resume: the newest checkpoint's base must be this one."""
  if "lora" not in expected_meta or manager.latest_step() is None:
    return
  try:
    saved = checkpoint.read_meta(manager)
  except Exception:  # an unreadable step: checkpoint.resume's policy decides
    return
  check_base(saved, expected_meta, str(manager.directory))


def fresh_params(config, params):
  """A fresh LoRA state's params: the base loaded from config.lora.base."""
  if not _is_lora_tree(params):
    return params
  abstract = parallel.abstract(params["base"])
  base, _ = load_base(config, abstract)
  return {"base": base, "lora": params["lora"]}


def for_checkpoint(state):
  """What a LoRA run saves: the state with params = {"lora": adapters}
  (all of it under config.lora.train_base: the base trains too)."""
  if _is_lora_tree(state.params) and not _KEEP_BASE[0]:
    return state.replace(params={"lora": state.params["lora"]})
  return state


def saved_params(params):
  """The params a checkpoint of this run holds ({"lora": ...} for LoRA)."""
  return {"lora": params["lora"]} if _is_lora_tree(params) else params


def with_base(config, saved, abstract_params):
  """The params tree of a restored adapter-only checkpoint (`saved` is a
  state or a params tree) with the base put back."""
  params = saved.params if hasattr(saved, "params") else saved
  if not (isinstance(params, dict) and set(params) == {"lora"}):
    return saved  # a whole {"base", "lora"} tree (train_base) or plain
  base, _ = load_base(config, parallel.abstract(abstract_params["base"]))
  full = {"base": base, "lora": params["lora"]}
  return saved.replace(params=full) if hasattr(saved, "params") else full


def read_target(config, manager, abstract):
  """What a reader (eval/decode) restores from the workdir's checkpoint:
  the adapters of an adapter-only checkpoint, the base run's params under
  config.lora.adapter, a plain model's params (a merged one) as they are."""
  if not _is_lora_tree(abstract):
    return abstract
  if adapter_mode(config):
    return abstract["base"]
  try:
    saved = checkpoint.read_meta(manager)
  except Exception:  # unreadable: checkpoint.resume's policy reports it
    saved = {"lora": True}
  if "lora" not in saved:
    return abstract["base"]  # a plain (merged) model
  return abstract if saved["lora"] is True or saved["lora"].get(
      "train_base") else {"lora": abstract["lora"]}


def after_read(config, params, abstract):
  """The params a reader runs: base + adapters (unmerged), or plain."""
  if not _is_lora_tree(abstract):
    return params
  if adapter_mode(config):
    from encdec_jax.lora import store  # pylint: disable=g-import-not-at-top
    lora = store.load_adapter(config.lora.adapter, params, config.lora)
    return {"base": params, "lora": lora}
  return with_base(config, params, abstract)
