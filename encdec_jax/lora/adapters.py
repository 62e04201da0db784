r"""LoRA on the params tree: low-rank updates of chosen projection kernels.

No nn module changes: the adapters are a separate pytree beside the base
params, and the effective params are computed functionally,

  W_eff = W + (alpha / r) * A @ B      A: in x r (Gaussian), B: r x out (0)

so a fresh adapter gives the base model's outputs exactly (B = 0). A kernel
with several input or output dimensions (attention's (embed, heads, kv)
query/key/value, (heads, kv, embed) out) keeps them: A is (*in, r) and B
(r, *out); a kernel stacked by scan_layers keeps its leading "layers" axis on
both. The adapters of the kernel at "encoder/layers_0/attention/query/kernel"
live at "encoder/layers_0/attention/query/{lora_a,lora_b}" of the adapter
tree; under the trainer the params are {"base": ..., "lora": adapters}.

Targets are regexes over the parameter paths (config.lora.targets), matched
(re.fullmatch) against a kernel's module path ("encoder/layers_0/attention/
query") or its full path; each entry is a regex or a (regex, {rank, alpha,
init_std}) pair overriding config.lora's defaults. Only parameters named
"kernel" (dense projections) are targets. A pattern matching nothing is an
error naming it.
"""

import hashlib
import math
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

A, B = "lora_a", "lora_b"
SETTINGS = ("rank", "alpha", "init_std", "dropout")
DEFAULTS = {"rank": 8, "alpha": 16.0, "init_std": 0.0, "dropout": 0.0}


def _name(path) -> str:
  return "/".join(str(p) for p in path)


def _kernels(base) -> dict:
  """{module path tuple: kernel} of every dense kernel in `base`."""
  return {path[:-1]: x for path, x in traverse_util.flatten_dict(base).items()
          if path[-1] == "kernel" and len(x.shape) >= 2}


TARGET_EXAMPLE = "e.g. (r'encoder/.*/attention/(query|value)',)"


def _entries(lora_config):
  """[(pattern, settings)] of config.lora.targets, defaults filled in."""
  defaults = {k: lora_config.get(k, DEFAULTS[k]) for k in SETTINGS}
  targets = lora_config.get("targets", ())
  if isinstance(targets, str):  # one pattern, not a sequence of characters
    targets = (targets,)
  out = []
  for entry in targets:
    if isinstance(entry, str):
      pattern, override = entry, {}
    elif (isinstance(entry, (tuple, list)) and len(entry) == 2
          and isinstance(entry[0], str) and hasattr(entry[1], "keys")):
      pattern, override = entry[0], dict(entry[1])
    else:
      raise ValueError(f"config.lora.targets: {entry!r} is not a regex or a "
                       "(regex, {settings}) pair; " + TARGET_EXAMPLE + ".")
    unknown = set(override) - set(SETTINGS)
    if unknown:
      raise ValueError(f"config.lora.targets: {pattern!r} sets "
                       f"{sorted(unknown)}; a target may set {SETTINGS}.")
    settings = dict(defaults, **override)
    _check_settings(pattern, settings)
    out.append((pattern, settings))
  if not out:
    raise ValueError("config.lora.targets is empty; name the projections to "
                     f"adapt, {TARGET_EXAMPLE}.")
  return out


def _check_settings(pattern: str, settings: dict) -> None:
  rank = settings["rank"]
  if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or (
      rank < 1):
    raise ValueError(f"config.lora.targets: {pattern!r} has rank {rank!r}; "
                     "use an integer rank >= 1.")
  for key in ("alpha", "init_std", "dropout"):
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, (int, float,
                                                         np.number)):
      raise ValueError(f"config.lora.targets: {pattern!r} has {key} "
                       f"{value!r}; use a number.")
  if settings["dropout"]:
    raise ValueError(
        f"config.lora.targets: {pattern!r} has dropout "
        f"{settings['dropout']}; adapter dropout is not supported (LoRA is "
        "applied to the weights, not the activations): set it to 0.")


def resolve(lora_config, base) -> dict:
  """{module path tuple: settings} of the kernels the targets match.

  A kernel takes the first pattern that matches it; a pattern that matches
  no kernel is a ValueError naming it.
  """
  kernels = _kernels(base)
  entries = _entries(lora_config)
  hits = {pattern: 0 for pattern, _ in entries}
  chosen = {}
  for path in sorted(kernels):
    name = _name(path)
    for pattern, settings in entries:
      try:
        hit = (re.fullmatch(pattern, name) or
               re.fullmatch(pattern, name + "/kernel"))
      except re.error as e:
        raise ValueError(f"config.lora.targets: {pattern!r} is not a valid "
                         f"regex ({e}).") from None
      if hit:
        chosen[path] = settings
        hits[pattern] += 1
        break
  for pattern, n in hits.items():
    if not n:
      example = _name(sorted(kernels)[0]) if kernels else "(no kernels)"
      raise ValueError(f"config.lora.targets: {pattern!r} matches no "
                       f"projection kernel of the model (paths look like "
                       f"{example!r}).")
  return chosen


def split(path: tuple, shape: tuple) -> tuple[int, int]:
  """(leading stacked axes, input axes) of the kernel at module `path`: an
  attention output projection (heads, kv, embed) reads two axes; a kernel
  stacked by scan_layers has one leading "layers" axis."""
  path = tuple(str(p) for p in path)
  stacked = 1 if ("layers" in path and
                  len(shape) == (4 if path[-1] in ("query", "key", "value",
                                                   "out") else 3)) else 0
  n_in = 2 if path[-1] == "out" and len(shape) - stacked == 3 else 1
  return stacked, n_in


def _init_one(key, shape, settings, param_dtype=jnp.float32):
  path_stacked, n_in = settings["_split"]
  lead, rest = shape[:path_stacked], shape[path_stacked:]
  fan_in = int(np.prod(rest[:n_in]))
  rank = int(settings["rank"])
  std = settings["init_std"] or 1.0 / math.sqrt(fan_in)
  a = std * jax.random.normal(key, (*lead, *rest[:n_in], rank), param_dtype)
  b = jnp.zeros((*lead, rank, *rest[n_in:]), param_dtype)
  return {A: a, B: b}


def init(lora_config, base, rng) -> dict:
  """Fresh adapters for `base` (arrays or ShapeDtypeStructs): A Gaussian
  (std init_std, default 1/sqrt(fan-in)), B zero; float32."""
  chosen = resolve(lora_config, base)
  kernels = _kernels(base)
  _warn_full_rank(chosen, kernels)
  flat = {}
  for i, (path, settings) in enumerate(sorted(chosen.items())):
    shape = tuple(kernels[path].shape)
    s = dict(settings, _split=split(path, shape))
    one = _init_one(jax.random.fold_in(rng, i), shape, s)
    flat[path + (A,)] = one[A]
    flat[path + (B,)] = one[B]
  return traverse_util.unflatten_dict(flat)


_WARNED = set()  # warnings already printed (init runs more than once)


def _sides(path: tuple, shape: tuple) -> tuple[int, int]:
  """(inputs, outputs) of the kernel at module `path`, one layer of it."""
  stacked, n_in = split(path, shape)
  rest = shape[stacked:]
  return int(np.prod(rest[:n_in])), int(np.prod(rest[n_in:]))


def _warn_full_rank(chosen: dict, kernels: dict) -> None:
  """One warning line when a rank reaches a kernel's smaller side: the
  update is then full rank, with more parameters than the kernel itself."""
  full = {}
  for path, settings in sorted(chosen.items()):
    n_in, n_out = _sides(path, tuple(kernels[path].shape))
    if int(settings["rank"]) >= min(n_in, n_out):
      full.setdefault(int(settings["rank"]), []).append((path, n_in, n_out))
  for rank, hits in sorted(full.items()):
    path, n_in, n_out = hits[0]
    line = (f"warning: config.lora rank {rank} is >= the smaller side of "
            f"{len(hits)} kernels ({_name(path)}: {n_in} in, {n_out} out): "
            "their adapters are full rank, with more parameters than the "
            f"kernels; use a rank below {min(n_in, n_out)} (or leave those "
            "kernels out of config.lora.targets and train them in full)")
    if line not in _WARNED:
      _WARNED.add(line)
      print(line, file=sys.stderr, flush=True)


def delta(a, b, stacked: int, n_in: int, scale: float, shape: tuple):
  """scale * A @ B in the kernel's shape (float32)."""
  lead = a.shape[:stacked]
  a2 = a.reshape(*lead, -1, a.shape[-1]).astype(jnp.float32)
  b2 = b.reshape(*lead, b.shape[stacked], -1).astype(jnp.float32)
  return (scale * jnp.matmul(a2, b2)).reshape(shape)


def merge(lora_config, base, adapters):
  """The effective params: base kernels + (alpha/r) A @ B, in each kernel's
  dtype; every other parameter is `base`'s own array."""
  flat_base = traverse_util.flatten_dict(base)
  flat_lora = traverse_util.flatten_dict(adapters)
  modules = sorted({p[:-1] for p in flat_lora})
  settings = resolve(lora_config, base) if modules else {}
  out = dict(flat_base)
  for path in modules:
    if path not in settings:
      raise ValueError(f"adapter {_name(path)} is not a target of "
                       "config.lora.targets for this model.")
    kernel = flat_base[path + ("kernel",)]
    a, b = flat_lora[path + (A,)], flat_lora[path + (B,)]
    stacked, n_in = split(path, kernel.shape)
    scale = float(settings[path]["alpha"]) / a.shape[-1]
    d = delta(a, b, stacked, n_in, scale, kernel.shape)
    out[path + ("kernel",)] = (kernel.astype(jnp.float32) + d).astype(
        kernel.dtype)
  return traverse_util.unflatten_dict(out)


def effective(lora_config, params):
  """merge() of a {"base", "lora"} params tree; anything else unchanged."""
  if isinstance(params, dict) and set(params) == {"base", "lora"}:
    return merge(lora_config, params["base"], params["lora"])
  return params


def count(adapters) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(adapters))


def content_hash(params) -> str:
  """sha256 (first 16 hex digits) of every leaf's path, dtype, shape and
  bytes: which base an adapter was trained on."""
  h = hashlib.sha256()
  for path, x in sorted(traverse_util.flatten_dict(params).items()):
    x = np.asarray(jax.device_get(x))
    h.update(f"{_name(path)}|{x.dtype}|{x.shape}|".encode())
    h.update(np.ascontiguousarray(x).tobytes())
  return h.hexdigest()[:16]


class LoraModel:
  """A model whose params are {"base": ..., "lora": adapters}: init makes
  fresh adapters beside the base; apply merges them first (so the losses,
  evaluators and decoders run unchanged, unmerged). Everything else is the
  wrapped model's."""

  def __init__(self, model, lora_config):
    self.__dict__["inner"] = model
    self.__dict__["lora_config"] = lora_config

  def __getattr__(self, name):
    return getattr(self.__dict__["inner"], name)

  def init(self, rngs, *args, **kwargs):
    variables = self.inner.init(rngs, *args, **kwargs)
    key = rngs["params"] if isinstance(rngs, dict) else rngs
    base = variables["params"]
    adapters = init(self.lora_config, base, jax.random.fold_in(key, 0x10FA))
    return {**variables, "params": {"base": base, "lora": adapters}}

  def apply(self, variables, *args, **kwargs):
    params = effective(self.lora_config, variables["params"])
    return self.inner.apply({**variables, "params": params}, *args, **kwargs)


def group_rules(train_base: bool = False) -> tuple:
  """config.param_groups of a LoRA run: the base frozen, the adapters in
  lora_encoder / lora_decoder / lora (any other stack). With train_base
  (a comparison arm: full fine-tuning through the same tree) the base
  trains as groups encoder / decoder / head and the adapters are frozen;
  config.lora.param_groups replaces these rules altogether."""
  if train_base:
    return (("base/encoder/.*", "encoder"), ("base/decoder/.*", "decoder"),
            ("base/.*", "head"), ("lora/.*", "frozen"))
  return (("base/.*", "frozen"), ("lora/encoder/.*", "lora_encoder"),
          ("lora/decoder/.*", "lora_decoder"), ("lora/.*", "lora"))
