"""The weights of a Hugging Face model directory, in whichever layout the Hub
gave it, as numpy arrays (no torch):

  model.safetensors                 one file
  model.safetensors.index.json      shards named by its weight_map
  pytorch_model.bin                 a torch >= 1.6 zip checkpoint, read by
                                    torch_pickle (never unpickled)
  pytorch_model.bin.index.json      .bin shards named by its weight_map

The first of these that the directory holds is read (so safetensors wins
where a repository has both). Floating-point tensors (float16, bfloat16,
float64) become float32 unless the caller asks to keep the stored dtypes
(`dtype=None`). Every problem (no weights, an index naming a missing shard,
a truncated file, a shard without a tensor its index puts there) is a
one-line PretrainedError naming the file.
"""

import dataclasses
import os

import numpy as np

from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained import torch_pickle
from encdec_jax.pretrained.hf import PretrainedError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
# In the order they are preferred.
LAYOUTS = (SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN, TORCH_BIN_INDEX)
INDEX_FILES = (SAFETENSORS_INDEX, TORCH_BIN_INDEX)
# Weights of other frameworks, named when they are all a directory has.
OTHER_WEIGHTS = ("tf_model.h5", "flax_model.msgpack", "model.ckpt.index")


@dataclasses.dataclass(frozen=True)
class WeightFiles:
  """Where a directory's weights are: `layout` (one of LAYOUTS) and the
  files to read (one, or the shards in order); `weight_map` (tensor name ->
  shard file name) for a sharded layout."""
  model_dir: str
  layout: str
  files: tuple[str, ...]
  weight_map: dict | None = None

  @property
  def label(self) -> str:
    """How messages name the weights: the file, or the index and shards."""
    if self.weight_map is None:
      return self.layout
    return f"{self.layout} ({len(self.files)} shards)"

  def read(self, dtype=np.float32) -> dict[str, np.ndarray]:
    """Every tensor. Floating-point ones are cast to `dtype` (float32 by
    default: float16 and bfloat16 checkpoints import as float32, exactly);
    dtype=None keeps the stored dtypes (bfloat16 as ml_dtypes.bfloat16).
    Shards are read and cast one at a time, and must agree with the index:
    each tensor in the shard the index names, none left out, none twice."""
    out = {}
    where = {}  # tensor name -> the shard it was read from
    for path in self.files:
      shard = os.path.basename(path)
      tensors = cast_floats(read_file(path), dtype)
      if self.weight_map is not None:
        for name in tensors:
          if name in where:
            raise PretrainedError(f"{name!r} is in both {where[name]} and "
                                  f"{shard}")
          listed = self.weight_map.get(name)
          if listed != shard:
            raise PretrainedError(
                f"{shard} has {name!r}, which {self.layout} "
                + (f"puts in {listed}" if listed else "does not list")
                + " (shards of another checkpoint?)")
          where[name] = shard
      out.update(tensors)
    if self.weight_map is not None:
      missing = sorted(set(self.weight_map) - set(out))
      if missing:
        raise PretrainedError(
            f"{self.weight_map[missing[0]]} lacks {missing[0]!r}, which "
            f"{self.layout} puts there"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return out


def find_weights(model_dir: str) -> WeightFiles:
  """The layout `model_dir` holds (see the module docstring)."""
  has = lambda name: os.path.isfile(os.path.join(model_dir, name))
  for layout in LAYOUTS:
    if not has(layout):
      continue
    if layout not in INDEX_FILES:
      return WeightFiles(model_dir, layout,
                         (os.path.join(model_dir, layout),))
    weight_map = _read_index(model_dir, layout)
    shards = sorted(set(weight_map.values()))
    for shard in shards:
      if not has(shard):
        raise PretrainedError(
            f"{layout} names the shard {shard}, which {model_dir} lacks (an "
            "incomplete download?)")
    return WeightFiles(model_dir, layout,
                       tuple(os.path.join(model_dir, s) for s in shards),
                       weight_map)
  others = [n for n in OTHER_WEIGHTS if has(n)]
  also = (f" (it has {', '.join(others)}, which is not read: save the model "
          "with save_pretrained(OUT, safe_serialization=True))"
          if others else "")
  raise PretrainedError(f"{model_dir} has no weights: none of "
                        f"{', '.join(LAYOUTS)}{also}")


def _read_index(model_dir: str, layout: str) -> dict[str, str]:
  path = os.path.join(model_dir, layout)
  try:
    index = hf_lib.read_json(path)
  except (ValueError, UnicodeDecodeError) as e:
    raise PretrainedError(f"{layout}: not JSON ({' '.join(str(e).split())})"
                          ) from None
  weight_map = index.get("weight_map") if isinstance(index, dict) else None
  if not isinstance(weight_map, dict) or not weight_map:
    raise PretrainedError(f"{layout} has no weight_map (tensor name -> "
                          "shard file)")
  suffix = ".safetensors" if layout == SAFETENSORS_INDEX else ".bin"
  for name, shard in weight_map.items():
    if (not isinstance(shard, str) or os.path.basename(shard) != shard
        or shard in ("", ".", "..") or "\\" in shard):
      raise PretrainedError(f"{layout}: {name!r} maps to {shard!r}, which "
                            "is not a file name in the model directory")
    if not shard.endswith(suffix):
      raise PretrainedError(f"{layout}: {name!r} maps to {shard!r}, not a "
                            f"{suffix} file")
  return weight_map


def read_file(path: str) -> dict[str, np.ndarray]:
  """One weight file (.safetensors, or a .bin state dict) in its stored
  dtypes; errors name the file."""
  name = os.path.basename(path)
  if name.endswith(".safetensors"):
    if not os.path.isfile(path):
      raise PretrainedError(f"{name}: no such file ({path})")
    try:
      from safetensors import SafetensorError
    except ImportError:
      return hf_lib.read_tensors(path)  # its message says what to install
    try:
      return hf_lib.read_tensors(path)
    except SafetensorError as e:
      raise PretrainedError(f"{name}: not a complete safetensors file "
                            f"(truncated download?): "
                            f"{' '.join(str(e).split())}") from None
  return torch_pickle.read_torch_bin(path, name)


FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def cast_floats(tensors: dict[str, np.ndarray], dtype) -> dict:
  """Floating-point tensors as `dtype` (integer and bool ones as they are);
  dtype=None keeps every tensor as stored."""
  if dtype is None:
    return tensors
  dtype = np.dtype(dtype)
  return {k: (v.astype(dtype) if v.dtype.name in FLOAT_DTYPES
              and v.dtype != dtype else v) for k, v in tensors.items()}


def read_weights(model_dir: str, dtype=np.float32) -> dict[str, np.ndarray]:
  """Every tensor of the directory's weights (find_weights(...).read)."""
  return find_weights(model_dir).read(dtype)
