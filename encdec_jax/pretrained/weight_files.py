"""The weights of a Hugging Face model directory, in whichever layout the Hub
gave it, as numpy arrays (no torch):

  model.safetensors                 one file
  model.safetensors.index.json      shards named by its weight_map
  pytorch_model.bin                 a torch >= 1.6 zip checkpoint, read by
                                    torch_pickle (never unpickled)
  pytorch_model.bin.index.json      .bin shards named by its weight_map

The first of these that the directory holds is read (so safetensors wins
where a repository has both). Headers are read first; each tensor's data
when it is looked up (WeightFiles.open: LazyTensors), so an import holds one
checkpoint tensor at a time. Floating-point tensors (float16, bfloat16,
float64) become float32 unless the caller asks for another dtype or to keep
the stored ones (`dtype=None`). Every problem (no weights, an index naming
a missing shard, a truncated file, a shard without a tensor its index puts
there) is a one-line PretrainedError naming the file.
"""

import collections.abc
import dataclasses
import os
from typing import Callable

import ml_dtypes
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

  def open(self, dtype=np.float32) -> "LazyTensors":
    """Every tensor, by name, read when looked up (LazyTensors): the files'
    headers are read now, and the shards must agree with the index (each
    tensor in the shard the index names, none left out, none twice).
    Floating-point tensors are cast to `dtype` as they are read (float32 by
    default: float16 and bfloat16 checkpoints import as float32, exactly);
    dtype=None keeps the stored dtypes (bfloat16 as ml_dtypes.bfloat16)."""
    refs = {}
    where = {}  # tensor name -> the shard it is in
    for path in self.files:
      shard = os.path.basename(path)
      tensors = open_file(path)
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
      refs.update(tensors)
    if self.weight_map is not None:
      missing = sorted(set(self.weight_map) - set(refs))
      if missing:
        raise PretrainedError(
            f"{self.weight_map[missing[0]]} lacks {missing[0]!r}, which "
            f"{self.layout} puts there"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return LazyTensors(refs, dtype)

  def read(self, dtype=np.float32) -> dict[str, np.ndarray]:
    """Every tensor, read (open(dtype), all of it in memory)."""
    return dict(self.open(dtype).items())


@dataclasses.dataclass(frozen=True)
class TensorRef:
  """A tensor in a file: its shape and stored dtype, and how to read it."""
  shape: tuple
  dtype: np.dtype
  load: Callable[[], np.ndarray]


class LazyTensors(collections.abc.Mapping):
  """Tensor name -> numpy array, read from its file on each lookup and not
  kept: an import converts one tensor at a time, so the checkpoint is never
  in memory beside its conversion. Floating-point tensors come as `dtype`
  (None: as stored)."""

  def __init__(self, refs: dict[str, TensorRef], dtype=np.float32):
    self.refs, self.dtype = refs, dtype

  def __getitem__(self, name: str) -> np.ndarray:
    return cast_float(self.refs[name].load(), self.dtype)

  def __contains__(self, name) -> bool:  # Mapping's would read the tensor
    return name in self.refs

  def __iter__(self):
    return iter(self.refs)

  def __len__(self) -> int:
    return len(self.refs)

  def renamed(self, rename: Callable[[str], str]) -> "LazyTensors":
    return LazyTensors({rename(k): v for k, v in self.refs.items()},
                       self.dtype)

  def float_dtypes(self) -> set:
    """The stored dtypes of the floating-point tensors."""
    return {r.dtype for r in self.refs.values()
            if r.dtype.name in FLOAT_DTYPES}


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


# safetensors' dtype names (safe_open's get_dtype) as numpy dtypes.
SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _safetensors_error(name: str, e: Exception) -> PretrainedError:
  return PretrainedError(f"{name}: not a complete safetensors file "
                         f"(truncated download?): {' '.join(str(e).split())}")


def _safetensors():
  """(safe_open, SafetensorError); optional ('.[pretrained]'): without it
  hf.read_tensors' message says what to install."""
  try:
    from safetensors import SafetensorError, safe_open
  except ImportError:
    hf_lib.read_tensors("")  # raises MissingPackageError
    raise
  return safe_open, SafetensorError


def _read_safetensor(path: str, name: str) -> np.ndarray:
  """One tensor; the file is opened (mapped) for this read alone, so pages
  of the other tensors never count in the process's memory."""
  safe_open, SafetensorError = _safetensors()
  try:
    with safe_open(path, framework="numpy") as f:
      return f.get_tensor(name)
  except SafetensorError as e:
    raise _safetensors_error(os.path.basename(path), e) from None


def open_file(path: str) -> dict[str, TensorRef]:
  """One weight file's tensors (.safetensors, or a .bin state dict) as
  TensorRefs: headers read and checked now, data when loaded; errors name
  the file."""
  name = os.path.basename(path)
  if not name.endswith(".safetensors"):
    return {k: TensorRef(tuple(t.shape), np.dtype(t.dtype), t.load)
            for k, t in torch_pickle.open_torch_bin(path, name).items()}
  if not os.path.isfile(path):
    raise PretrainedError(f"{name}: no such file ({path})")
  safe_open, SafetensorError = _safetensors()
  refs = {}
  try:
    with safe_open(path, framework="numpy") as f:
      for key in f.keys():
        info = f.get_slice(key)
        stored = info.get_dtype()
        if stored not in SAFETENSORS_DTYPES:
          raise PretrainedError(f"{name}: {key!r} is of dtype {stored}, "
                                "which is not read")
        refs[key] = TensorRef(
            tuple(info.get_shape()), np.dtype(SAFETENSORS_DTYPES[stored]),
            lambda key=key: _read_safetensor(path, key))
  except SafetensorError as e:
    raise _safetensors_error(name, e) from None
  return refs


def read_file(path: str) -> dict[str, np.ndarray]:
  """One weight file (.safetensors, or a .bin state dict) in its stored
  dtypes; errors name the file."""
  return {k: ref.load() for k, ref in open_file(path).items()}


FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def cast_float(tensor: np.ndarray, dtype) -> np.ndarray:
  """A floating-point tensor as `dtype` (integer and bool ones as they are);
  dtype=None keeps it as stored."""
  if (dtype is None or tensor.dtype.name not in FLOAT_DTYPES
      or tensor.dtype == dtype):
    return tensor
  return tensor.astype(dtype)


def cast_floats(tensors: dict[str, np.ndarray], dtype) -> dict:
  """cast_float of each tensor."""
  return {k: cast_float(v, dtype) for k, v in tensors.items()}


def read_weights(model_dir: str, dtype=np.float32) -> dict[str, np.ndarray]:
  """Every tensor of the directory's weights (find_weights(...).read)."""
  return find_weights(model_dir).read(dtype)
