"""Writes pytorch_model.bin files the way torch.save (>= 1.6) does, without
torch, for tests of encdec_jax.pretrained.torch_pickle:

  <root>/data.pkl     the state dict, pickled with protocol 2; each tensor is
                      torch._utils._rebuild_tensor_v2(storage, offset, size,
                      stride, requires_grad, OrderedDict()), each storage the
                      persistent id ('storage', torch.<Type>Storage, key,
                      'cpu', numel)
  <root>/data/<key>   the storage's raw little-endian bytes
  <root>/version      b"3\\n", <root>/byteorder  b"little"

Torch is not imported: the torch globals are stand-ins (`Global`) that the
pickler writes as GLOBAL opcodes by name. tests/data/hf_tiny/torch_bin/ has
files written by real torch to check this writer and the reader against;
test_weight_files checks that torch reads this writer's files where torch is
installed.
"""

import collections
import dataclasses
import io
import pickle
import zipfile

import ml_dtypes
import numpy as np

STORAGE_TYPES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Global:
  """A global the pickle names (module, name) without importing it."""
  module: str
  name: str

  def __call__(self, *args):  # pickle wants a callable to reduce with
    raise TypeError(f"{self.module}.{self.name} is a stand-in")


@dataclasses.dataclass(eq=False)
class Storage:
  """One storage: a flat array, written to <root>/data/<key>."""
  data: np.ndarray


@dataclasses.dataclass(eq=False)
class View:
  """A tensor on a storage: torch's (offset, size, stride), in elements."""
  storage: Storage
  offset: int
  size: tuple
  stride: tuple
  parameter: bool = False  # wrapped in torch._utils._rebuild_parameter

  def __reduce_ex__(self, protocol):
    tensor = (Global("torch._utils", "_rebuild_tensor_v2"),
              (self.storage, self.offset, tuple(self.size),
               tuple(self.stride), False, collections.OrderedDict()))
    if not self.parameter:
      return tensor
    return (Global("torch._utils", "_rebuild_parameter"),
            (_Reduced(tensor), True, collections.OrderedDict()))


@dataclasses.dataclass(eq=False)
class _Reduced:
  reduced: tuple

  def __reduce_ex__(self, protocol):
    return self.reduced


@dataclasses.dataclass(eq=False)
class Call:
  """Anything else a pickle can do: fn(*args), fn a Global (for malicious
  files: Global("posix", "system"), ("touch x",))."""
  fn: Global
  args: tuple

  def __reduce_ex__(self, protocol):
    return (self.fn, self.args)


def contiguous_view(array: np.ndarray, parameter: bool = False) -> View:
  """A tensor with a storage of its own."""
  array = np.array(array, order="C")  # (ascontiguousarray makes 0-d 1-d)
  strides, step = [], 1
  for n in reversed(array.shape):
    strides.append(step)
    step *= n
  return View(Storage(array.reshape(-1)), 0, array.shape,
              tuple(reversed(strides)), parameter)


class _Pickler(pickle._Pickler):  # the Python one: `save` can be extended
  def __init__(self, file, keys: dict):
    super().__init__(file, protocol=2)
    self.keys = keys  # id(Storage) -> (key, Storage)

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, Global):
      if id(obj) in self.memo:  # as pickle memoizes a global
        self.write(self.get(self.memo[id(obj)][0]))
        return
      self.write(pickle.GLOBAL + obj.module.encode() + b"\n"
                 + obj.name.encode() + b"\n")
      self.memoize(obj)
      return
    super().save(obj, save_persistent_id)

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    if id(obj) not in self.keys:
      self.keys[id(obj)] = (str(len(self.keys)), obj)
    key = self.keys[id(obj)][0]
    return ("storage", Global("torch", STORAGE_TYPES[obj.data.dtype]), key,
            "cpu", obj.data.size)


def pickled(state) -> tuple[bytes, list]:
  """(data.pkl bytes, [(key, Storage)]) of a state dict of Views."""
  buf, keys = io.BytesIO(), {}
  _Pickler(buf, keys).dump(state)
  return buf.getvalue(), list(keys.values())


def write_torch_bin(path: str, tensors: dict, root: str = "archive",
                    metadata: bool = True, byteorder: str = "little") -> None:
  """`tensors`: name -> numpy array (its own storage), View, or anything
  else the pickle should hold (Call, ...). Written as an OrderedDict with
  `_metadata`, as a module's state_dict() is."""
  state = collections.OrderedDict(
      (k, contiguous_view(v) if isinstance(v, np.ndarray) else v)
      for k, v in tensors.items())
  if metadata:
    state._metadata = {"": {"version": 1}}
  data, storages = pickled(state)
  write_archive(path, data, storages, root, byteorder)


def write_archive(path: str, data_pkl: bytes, storages: list,
                  root: str = "archive", byteorder: str = "little") -> None:
  """The zip of torch.save, `storages` as [(key, Storage)] (pickled())."""
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr(f"{root}/data.pkl", data_pkl)
    zf.writestr(f"{root}/byteorder", byteorder.encode())
    for key, storage in storages:
      data = np.ascontiguousarray(storage.data)  # this machine: little
      if byteorder == "big" and data.dtype.itemsize > 1:
        data = data.view(f"u{data.dtype.itemsize}").byteswap()
      zf.writestr(f"{root}/data/{key}", data.tobytes())
    zf.writestr(f"{root}/version", b"3\n")
