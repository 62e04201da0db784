"""What the Hugging Face seq2seq importers share (t5.py, bart.py, marian.py).

A family module describes its checkpoint by one table of `Weight`s: our
param path, the Hugging Face tensor name, and how the tensor is laid out
(`kind`). `import_params` and `export_tensors` both read that table, so an
exported model.safetensors holds exactly the tensors that were imported
(the same names, shapes and bits: every conversion is a transpose or a
reshape). Every tensor of the file must be claimed by the table or be a
known alias or a known unused name of the family; anything else is a
one-line error naming it, never a silent skip.

PyTorch Linear weights are (out, in): they are transposed, and the attention
projections are split into (heads, head_dim) as nn.attention's DenseGeneral
keeps them.
"""

import dataclasses
import errno
import json
import os
import re
from typing import Callable

import numpy as np
from flax import traverse_util

from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.nn.config import TransformerConfig


class PretrainedError(ValueError):
  """A model directory that cannot be imported; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Weight:
  """One tensor: our param path ("encoder/layers_0/attention/query/kernel"),
  its Hugging Face name and layout:

    copy        the same array (embeddings, norm scales, biases of width D)
    linear      torch (out, in) -> Flax kernel (in, out)
    to_heads    torch (H*K, D) -> kernel (D, H, K)   (query / key / value)
    from_heads  torch (D, H*K) -> kernel (H, K, D)   (attention output)
    bias_heads  torch (H*K,) -> (H, K)
    row         torch (1, V) -> (V,)                  (final_logits_bias)
  """
  ours: str
  hf: str
  kind: str
  heads: int = 0


def _to_ours(w: Weight, x: np.ndarray) -> np.ndarray:
  if w.kind == "copy":
    return x
  if w.kind == "linear":
    return x.T
  if w.kind == "to_heads":
    return x.T.reshape(x.shape[1], w.heads, x.shape[0] // w.heads)
  if w.kind == "from_heads":
    return x.T.reshape(w.heads, x.shape[1] // w.heads, x.shape[0])
  if w.kind == "bias_heads":
    return x.reshape(w.heads, -1)
  if w.kind == "row":
    return x.reshape(-1)
  raise ValueError(f"unknown weight kind {w.kind!r}")


def _to_hf(w: Weight, x: np.ndarray) -> np.ndarray:
  if w.kind == "copy":
    return x
  if w.kind == "linear":
    return x.T
  if w.kind == "to_heads":
    return x.reshape(x.shape[0], -1).T
  if w.kind == "from_heads":
    return x.reshape(-1, x.shape[-1]).T
  if w.kind == "bias_heads":
    return x.reshape(-1)
  if w.kind == "row":
    return x[None]
  raise ValueError(f"unknown weight kind {w.kind!r}")


def attention_weights(ours: str, hf: str, heads: int, names: dict,
                      bias: bool) -> list[Weight]:
  """q/k/v/out of one attention layer; names maps query/key/value/out to
  the Hugging Face module names (q_proj or q, ...)."""
  out = []
  for proj in ("query", "key", "value"):
    out.append(Weight(f"{ours}/{proj}/kernel", f"{hf}.{names[proj]}.weight",
                      "to_heads", heads))
    if bias:
      out.append(Weight(f"{ours}/{proj}/bias", f"{hf}.{names[proj]}.bias",
                        "bias_heads", heads))
  out.append(Weight(f"{ours}/out/kernel", f"{hf}.{names['out']}.weight",
                    "from_heads", heads))
  if bias:
    out.append(Weight(f"{ours}/out/bias", f"{hf}.{names['out']}.bias",
                      "copy"))
  return out


def dense_weights(ours: str, hf: str, bias: bool) -> list[Weight]:
  out = [Weight(f"{ours}/kernel", f"{hf}.weight", "linear")]
  if bias:
    out.append(Weight(f"{ours}/bias", f"{hf}.bias", "copy"))
  return out


def norm_weights(ours: str, hf: str, bias: bool = True) -> list[Weight]:
  out = [Weight(f"{ours}/scale", f"{hf}.weight", "copy")]
  if bias:
    out.append(Weight(f"{ours}/bias", f"{hf}.bias", "copy"))
  return out


def read_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """One .safetensors file as numpy (no torch), in its stored dtypes. A model
  directory's weights in any layout (shards, pytorch_model.bin) are
  weight_files.read_weights."""
  try:  # optional ('.[pretrained]'): only imports read weight files
    from safetensors.numpy import load_file
  except ImportError:
    raise tokenizer_lib.MissingPackageError(
        "reading model.safetensors needs the 'safetensors' package; install "
        "it with: pip install -e '.[pretrained]' (or pip install safetensors)"
    ) from None
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist")
  return load_file(path)


def write_tensors(path: str, tensors: dict[str, np.ndarray]) -> None:
  """`tensors` as a .safetensors file; a failed write (a full disk) is an
  OSError naming `path` (safetensors raises its own error type)."""
  from safetensors import SafetensorError  # optional, as in read_tensors
  from safetensors.numpy import save_file
  try:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path,
              metadata={"format": "pt"})
  except SafetensorError as e:
    code = re.search(r"\(os error (\d+)\)", str(e))
    number = int(code.group(1)) if code else errno.EIO
    raise OSError(number, os.strerror(number), path) from e


def import_params(tensors: dict[str, np.ndarray], table: list[Weight],
                  shapes: dict[str, tuple], *, family: str,
                  ignored: Callable[[str], bool] = lambda name: False,
                  source: str = "model.safetensors", dtype=np.float32
                  ) -> dict:
  """Our nested params (numpy, `dtype`; None keeps each tensor's) from
  `tensors` by `table`. `source` names the weights in messages.

  `shapes` are our params' shapes (flat "a/b/c" paths, from the model's
  abstract init): each converted tensor must have its shape, and the table
  must cover every one of them. Tensors neither in the table nor `ignored`
  (aliases the family has checked, names Hugging Face itself ignores) are
  an error.
  """
  flat, used = {}, set()
  for w in table:
    if w.hf not in tensors:
      raise PretrainedError(f"{source} lacks {w.hf!r}, which a {family} "
                            "model with this config.json has")
    used.add(w.hf)
    value = np.ascontiguousarray(_to_ours(w, tensors[w.hf]), dtype)
    if w.ours not in shapes:
      raise PretrainedError(f"{w.hf} maps to {w.ours}, which the model built "
                         "from config.json lacks")
    if value.shape != tuple(shapes[w.ours]):
      raise PretrainedError(
          f"{source}: {w.hf} {tuple(tensors[w.hf].shape)} gives "
          f"{value.shape} for {w.ours}, config.json implies "
          f"{tuple(shapes[w.ours])}")
    flat[w.ours] = value
  unknown = sorted(k for k in tensors if k not in used and not ignored(k))
  if unknown:
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise PretrainedError(f"{source} has a weight this {family} importer "
                          f"does not know: {unknown[0]!r}{more}; nothing was "
                          "imported")
  missing = sorted(set(shapes) - set(flat))
  if missing:
    raise PretrainedError(f"no tensor of {source} maps to {missing[0]} "
                          f"({len(missing)} params left)")
  return traverse_util.unflatten_dict({tuple(k.split("/")): v
                                       for k, v in flat.items()})


def export_tensors(params: dict, table: list[Weight], dtype=np.float32
                   ) -> dict[str, np.ndarray]:
  """The inverse of import_params: Hugging Face tensors, as `dtype`."""
  flat = {"/".join(k): np.asarray(v) for k, v in
          traverse_util.flatten_dict(params).items()}
  out = {}
  for w in table:
    out[w.hf] = np.ascontiguousarray(_to_hf(w, flat[w.ours]), dtype)
  left = sorted(set(flat) - {w.ours for w in table})
  if left:
    raise ValueError(f"params {left[0]} (and {len(left) - 1} more) have no "
                     "Hugging Face name in this family's table")
  return out


def same_tensor(tensors: dict, name: str, canonical: str) -> bool:
  """True if `name` is absent, or present with the bits of `canonical`."""
  if name not in tensors:
    return True
  a, b = tensors[name], tensors[canonical]
  return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def check_aliases(tensors: dict, canonical: str, aliases: tuple[str, ...]
                  ) -> None:
  """Tied copies (encoder.embed_tokens = shared, ...) must be equal."""
  for name in aliases:
    if not same_tensor(tensors, name, canonical):
      raise PretrainedError(f"model.safetensors: {name} differs from {canonical}; "
                         "untied input embeddings are not supported")


def flat_shapes(abstract_params) -> dict[str, tuple]:
  return {"/".join(k): tuple(v.shape) for k, v in
          traverse_util.flatten_dict(abstract_params).items()}


def model_fields(config: TransformerConfig) -> dict:
  """A TransformerConfig as JSON (dtypes by name)."""
  out = dataclasses.asdict(config)
  for key in ("dtype", "param_dtype"):
    out[key] = np.dtype(out[key]).name
  return out


def activation(name: str, family: str) -> str:
  """Our activation for a Hugging Face activation name."""
  table = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh",
           "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
           "swish": "silu", "silu": "silu"}
  if name not in table:
    raise PretrainedError(f"config.json: activation {name!r} of this {family} "
                       f"model is not supported (one of {sorted(table)})")
  return table[name]


def need(hf: dict, key: str, family: str):
  if key not in hf:
    raise PretrainedError(f"config.json of this {family} model has no {key!r}")
  return hf[key]
