r"""PyTorch `pytorch_model.bin` state dicts as numpy, without torch and without
running any code from the file.

A torch >= 1.6 checkpoint is a zip archive:

  <root>/data.pkl      the state dict, pickled (protocol 2)
  <root>/data/<key>    one raw storage (little-endian unless <root>/byteorder
                       says "big")
  <root>/version, <root>/byteorder, ...

The pickle of a state dict only ever builds an OrderedDict of tensors: each
tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, hooks)`, its storage a persistent id ('storage',
torch.FloatStorage, key, location, numel). This module does not hand the
pickle to Python's unpickler at all: `_Machine` interprets the opcodes
itself (the ~40 that protocols 2-5 use for data), and a GLOBAL opcode only
matches the name it reads against ALLOWED; the match gives one of this
module's functions, which build LazyTensors (shape, dtype, where the data
is; load() reads one, so a model is never in memory twice while it is
converted: open_torch_bin). Any other name (os.system,
builtins.exec, a model class, ...) is a one-line PretrainedError naming it,
raised when the opcode is read: nothing in the file is ever imported or
called. Opcodes that instantiate classes (NEWOBJ, INST, OBJ, EXT*) are
refused the same way.

A pre-1.6 (non-zip, "legacy") file is refused with how to convert it.
"""

import collections
import math
import os
import struct
import zipfile

import numpy as np

from encdec_jax.pretrained.hf import PretrainedError

CONVERT_HINT = ("convert it to safetensors where you trust it, with torch: "
                "AutoModelForSeq2SeqLM.from_pretrained(DIR).save_pretrained("
                "OUT, safe_serialization=True)")

# A torch >= 1.6 file is a zip archive; a legacy (pre-1.6) one starts with
# a pickle (its magic number), b"\x80" for protocol 2.
ZIP_MAGIC = b"PK\x03\x04"


def _bfloat16():
  import ml_dtypes  # a dependency of jax
  return np.dtype(ml_dtypes.bfloat16)


# Storage class name -> numpy dtype (a callable, so ml_dtypes loads lazily).
STORAGE_DTYPES = {
    "FloatStorage": lambda: np.dtype(np.float32),
    "DoubleStorage": lambda: np.dtype(np.float64),
    "HalfStorage": lambda: np.dtype(np.float16),
    "BFloat16Storage": _bfloat16,
    "LongStorage": lambda: np.dtype(np.int64),
    "IntStorage": lambda: np.dtype(np.int32),
    "ShortStorage": lambda: np.dtype(np.int16),
    "CharStorage": lambda: np.dtype(np.int8),
    "ByteStorage": lambda: np.dtype(np.uint8),
    "BoolStorage": lambda: np.dtype(np.bool_),
    # Untyped storages hold bytes; a tensor on one is read as uint8.
    "UntypedStorage": lambda: np.dtype(np.uint8),
}


class _Refused(Exception):
  """The pickle names something outside the allow-list (message: what)."""


class _Damaged(Exception):
  """The pickle is malformed (message: what)."""


class _StorageType:
  def __init__(self, name: str, dtype_fn):
    self.name, self.dtype_fn = name, dtype_fn


class _Function:
  def __init__(self, name: str, fn):
    self.name, self.fn = name, fn


class _Storage:
  """A persistent-id storage: its zip member, read only when a tensor on it
  is loaded (and not kept: each load reads what it needs)."""

  def __init__(self, reader: "_Archive", key: str, dtype: np.dtype,
               numel: int):
    self.reader, self.key, self.dtype, self.numel = reader, key, dtype, numel

  def array(self) -> np.ndarray:
    return self.reader.storage(self.key, self.dtype, self.numel)


class LazyTensor:
  """A tensor of a .bin: its shape and dtype, read from the archive by
  load() (a contiguous, writable copy of its own), one at a time."""

  def __init__(self, storage: _Storage, offset: int, size: tuple,
               stride: tuple):
    self.storage, self.offset = storage, offset
    self.shape, self.stride = size, stride
    self.dtype = storage.dtype

  def load(self) -> np.ndarray:
    storage, size = self.storage, self.shape
    try:
      if math.prod(size) == 0:
        return np.zeros(size, storage.dtype)
      flat = storage.array()
      if (self.offset == 0 and math.prod(size) == storage.numel
          and _is_contiguous(size, self.stride)):
        return flat.reshape(size)  # the common case: no copy
      itemsize = flat.dtype.itemsize
      view = np.lib.stride_tricks.as_strided(
          flat[self.offset:], shape=size,
          strides=tuple(s * itemsize for s in self.stride), writeable=False)
      return np.array(view, order="C")
    except _Damaged as e:
      raise PretrainedError(f"{storage.reader.label}: {_line(e)}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
      raise PretrainedError(f"{storage.reader.label}: a damaged zip archive "
                            f"(truncated download?): {_line(e)}") from None


def _ints(value, what: str) -> tuple:
  if not isinstance(value, tuple) or not all(
      isinstance(v, int) and not isinstance(v, bool) for v in value):
    raise _Damaged(f"a tensor's {what} is {type(value).__name__}, not a "
                   "tuple of ints")
  return value


def _is_contiguous(size: tuple, stride: tuple) -> bool:
  step = 1
  for n, s in reversed(list(zip(size, stride))):
    if n != 1 and s != step:
      return False
    step *= n
  return True


def _rebuild_tensor(storage, storage_offset, size, stride) -> LazyTensor:
  """torch's Tensor.set_(storage, offset, size, stride), checked against the
  storage's size, to be read later (LazyTensor.load)."""
  if not isinstance(storage, _Storage):
    raise _Damaged(f"a tensor's storage is {type(storage).__name__}")
  if not isinstance(storage_offset, int) or storage_offset < 0:
    raise _Damaged(f"a tensor's storage offset is {storage_offset!r}")
  size, stride = _ints(size, "size"), _ints(stride, "stride")
  if len(size) != len(stride) or any(s < 0 for s in size + stride):
    raise _Damaged(f"a tensor has size {size} and stride {stride}")
  count = math.prod(size)  # Python ints: no overflow
  if count == 0:
    return LazyTensor(storage, 0, size, stride)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.numel:
    raise _Damaged(f"a tensor of size {size}, stride {stride} at offset "
                   f"{storage_offset} reaches past its storage "
                   f"{storage.key!r} of {storage.numel} elements")
  if count > storage.numel:
    raise _Damaged(f"a tensor of size {size} repeats the elements of its "
                   f"storage {storage.key!r} (an expanded view), which is "
                   "not read")
  return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, metadata=None) -> LazyTensor:
  del requires_grad, backward_hooks, metadata  # nothing to run or keep
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks) -> LazyTensor:
  del requires_grad, backward_hooks
  if not isinstance(data, LazyTensor):
    raise _Damaged(f"a Parameter holds {type(data).__name__}, not a tensor")
  return data


def _ordered_dict(*args) -> collections.OrderedDict:
  if len(args) > 1:
    raise _Damaged(f"OrderedDict called with {len(args)} arguments")
  return collections.OrderedDict(*args)


def _allowed() -> dict:
  """(module, name) as the pickle writes it -> what it stands for."""
  out = {
      ("collections", "OrderedDict"):
          _Function("collections.OrderedDict", _ordered_dict),
      ("torch._utils", "_rebuild_tensor_v2"):
          _Function("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
      ("torch._utils", "_rebuild_tensor"):
          _Function("torch._utils._rebuild_tensor", _rebuild_tensor),
      ("torch._utils", "_rebuild_parameter"):
          _Function("torch._utils._rebuild_parameter", _rebuild_parameter),
  }
  for name, dtype_fn in STORAGE_DTYPES.items():
    # torch.FloatStorage (torch >= 1.6, also for CUDA tensors in torch 2),
    # torch.cuda.FloatStorage (CUDA tensors saved by torch 1.x),
    # torch.storage.UntypedStorage.
    for module in ("torch", "torch.cuda", "torch.storage"):
      out[(module, name)] = _StorageType(f"{module}.{name}", dtype_fn)
  return out


ALLOWED = _allowed()
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _Machine:
  """Just enough of the pickle virtual machine for data: it builds tuples,
  lists, dicts, strings and numbers, and calls only ALLOWED functions."""

  def __init__(self, data: bytes, persistent_load):
    self.data, self.pos = data, 0
    self.persistent_load = persistent_load
    self.stack, self.metastack, self.memo = [], [], {}

  # -- reading the opcode stream
  def read(self, n: int) -> bytes:
    if n < 0 or self.pos + n > len(self.data):
      raise _Damaged("the pickle ends early (truncated)")
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def unpack(self, fmt: str):
    return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

  def readline(self) -> bytes:
    end = self.data.find(b"\n", self.pos)
    if end < 0:
      raise _Damaged("the pickle ends early (truncated)")
    out = self.data[self.pos:end]
    self.pos = end + 1
    return out

  # -- the stack
  def pop_mark(self) -> list:
    if not self.metastack:
      raise _Damaged("the pickle pops a mark it never set")
    items, self.stack = self.stack, self.metastack.pop()
    return items

  def pop(self):
    if not self.stack:
      raise _Damaged("the pickle pops an empty stack")
    return self.stack.pop()

  def top(self):
    if not self.stack:
      raise _Damaged("the pickle reads an empty stack")
    return self.stack[-1]

  def find_global(self, module: str, name: str):
    found = ALLOWED.get((module, name))
    if found is None:
      # Named as Python 3 would resolve it (protocol 2 writes builtins as
      # __builtin__).
      module = PY2_MODULES.get(module, module)
      raise _Refused(f"calls {module}.{name}"[:200])
    return found

  def call(self, fn, args):
    if isinstance(fn, _StorageType):
      raise _Refused(f"calls {fn.name}")  # storages: persistent ids only
    if not isinstance(fn, _Function):
      raise _Damaged(f"the pickle calls a {type(fn).__name__}")
    if not isinstance(args, tuple):
      raise _Damaged(f"{fn.name} gets {type(args).__name__} arguments")
    try:
      return fn.fn(*args)
    except TypeError as e:  # a wrong number of arguments
      raise _Damaged(f"{fn.name}: {e}") from None

  def setitems(self, target, items: list):
    if not isinstance(target, dict) or len(items) % 2:
      raise _Damaged("SETITEMS on a non-dict or an odd item count")
    for k, v in zip(items[::2], items[1::2]):
      target[k] = v

  # -- the interpreter
  def run(self):
    ops = self.OPS
    while True:
      code = self.read(1)
      op = ops.get(code)
      if op is None:
        raise _Damaged(f"the pickle uses opcode {code!r}, which a state "
                       "dict of tensors never needs")
      if op == "STOP":
        if len(self.stack) != 1 or self.metastack:
          raise _Damaged("the pickle stops with a malformed stack")
        return self.stack[0]
      getattr(self, "op_" + op)()

  OPS = {
      b"\x80": "PROTO", b"\x95": "FRAME", b".": "STOP", b"(": "MARK",
      b"0": "POP", b"1": "POP_MARK", b"2": "DUP",
      b"N": "NONE", b"\x88": "NEWTRUE", b"\x89": "NEWFALSE",
      b"J": "BININT", b"K": "BININT1", b"M": "BININT2", b"\x8a": "LONG1",
      b"\x8b": "LONG4", b"G": "BINFLOAT",
      b"X": "BINUNICODE", b"\x8c": "SHORT_BINUNICODE",
      b"\x8d": "BINUNICODE8", b"T": "BINSTRING", b"U": "SHORT_BINSTRING",
      b"B": "BINBYTES", b"C": "SHORT_BINBYTES", b"\x8e": "BINBYTES8",
      b")": "EMPTY_TUPLE", b"t": "TUPLE", b"\x85": "TUPLE1",
      b"\x86": "TUPLE2", b"\x87": "TUPLE3",
      b"]": "EMPTY_LIST", b"l": "LIST", b"a": "APPEND", b"e": "APPENDS",
      b"}": "EMPTY_DICT", b"d": "DICT", b"s": "SETITEM", b"u": "SETITEMS",
      b"q": "BINPUT", b"r": "LONG_BINPUT", b"\x94": "MEMOIZE",
      b"h": "BINGET", b"j": "LONG_BINGET",
      b"c": "GLOBAL", b"\x93": "STACK_GLOBAL", b"R": "REDUCE",
      b"Q": "BINPERSID", b"b": "BUILD",
  }
  # Opcodes refused by name: they import or instantiate.
  REFUSED_OPS = {b"i": "INST", b"o": "OBJ", b"\x81": "NEWOBJ",
                 b"\x92": "NEWOBJ_EX", b"\x82": "EXT1", b"\x83": "EXT2",
                 b"\x84": "EXT4", b"P": "PERSID"}

  def op_PROTO(self):
    proto = self.read(1)[0]
    if proto > 5:
      raise _Damaged(f"pickle protocol {proto} is unknown")

  def op_FRAME(self):
    self.read(8)  # frames only group opcodes

  def op_MARK(self):
    self.metastack.append(self.stack)
    self.stack = []

  def op_POP(self):
    self.pop()

  def op_POP_MARK(self):
    self.pop_mark()

  def op_DUP(self):
    self.stack.append(self.top())

  def op_NONE(self):
    self.stack.append(None)

  def op_NEWTRUE(self):
    self.stack.append(True)

  def op_NEWFALSE(self):
    self.stack.append(False)

  def op_BININT(self):
    self.stack.append(self.unpack("<i"))

  def op_BININT1(self):
    self.stack.append(self.read(1)[0])

  def op_BININT2(self):
    self.stack.append(self.unpack("<H"))

  def op_LONG1(self):
    n = self.read(1)[0]
    self.stack.append(int.from_bytes(self.read(n), "little", signed=True))

  def op_LONG4(self):
    n = self.unpack("<i")
    if n > 64:  # a state dict's integers are sizes, strides and offsets
      raise _Damaged(f"the pickle has a {n}-byte integer")
    self.stack.append(int.from_bytes(self.read(n), "little", signed=True))

  def op_BINFLOAT(self):
    self.stack.append(self.unpack(">d"))

  def _text(self, n: int):
    try:
      self.stack.append(self.read(n).decode("utf-8"))
    except UnicodeDecodeError:
      raise _Damaged("the pickle has a string that is not UTF-8") from None

  def op_BINUNICODE(self):
    self._text(self.unpack("<I"))

  def op_SHORT_BINUNICODE(self):
    self._text(self.read(1)[0])

  def op_BINUNICODE8(self):
    self._text(self.unpack("<Q"))

  def op_BINSTRING(self):
    self._text(self.unpack("<i"))

  def op_SHORT_BINSTRING(self):
    self._text(self.read(1)[0])

  def op_BINBYTES(self):
    self.stack.append(self.read(self.unpack("<I")))

  def op_SHORT_BINBYTES(self):
    self.stack.append(self.read(self.read(1)[0]))

  def op_BINBYTES8(self):
    self.stack.append(self.read(self.unpack("<Q")))

  def op_EMPTY_TUPLE(self):
    self.stack.append(())

  def op_TUPLE(self):
    items = tuple(self.pop_mark())  # pop_mark rebinds self.stack
    self.stack.append(items)

  def _tuple(self, n: int):
    if len(self.stack) < n:
      raise _Damaged("the pickle pops an empty stack")
    items = tuple(self.stack[len(self.stack) - n:])
    del self.stack[len(self.stack) - n:]
    self.stack.append(items)

  def op_TUPLE1(self):
    self._tuple(1)

  def op_TUPLE2(self):
    self._tuple(2)

  def op_TUPLE3(self):
    self._tuple(3)

  def op_EMPTY_LIST(self):
    self.stack.append([])

  def op_LIST(self):
    items = self.pop_mark()
    self.stack.append(items)

  def op_APPEND(self):
    value = self.pop()
    target = self.top()
    if not isinstance(target, list):
      raise _Damaged(f"APPEND to a {type(target).__name__}")
    target.append(value)

  def op_APPENDS(self):
    items = self.pop_mark()
    target = self.top()
    if not isinstance(target, list):
      raise _Damaged(f"APPENDS to a {type(target).__name__}")
    target.extend(items)

  def op_EMPTY_DICT(self):
    self.stack.append({})

  def op_DICT(self):
    out = {}
    self.setitems(out, self.pop_mark())
    self.stack.append(out)

  def op_SETITEM(self):
    value = self.pop()
    key = self.pop()
    self.setitems(self.top(), [key, value])

  def op_SETITEMS(self):
    items = self.pop_mark()
    self.setitems(self.top(), items)

  def op_BINPUT(self):
    self.memo[self.read(1)[0]] = self.top()

  def op_LONG_BINPUT(self):
    self.memo[self.unpack("<I")] = self.top()

  def op_MEMOIZE(self):
    self.memo[len(self.memo)] = self.top()

  def _get(self, key: int):
    if key not in self.memo:
      raise _Damaged(f"the pickle reads memo {key}, which it never wrote")
    self.stack.append(self.memo[key])

  def op_BINGET(self):
    self._get(self.read(1)[0])

  def op_LONG_BINGET(self):
    self._get(self.unpack("<I"))

  def op_GLOBAL(self):
    try:
      module = self.readline().decode("utf-8")
      name = self.readline().decode("utf-8")
    except UnicodeDecodeError:
      raise _Damaged("the pickle names a global that is not UTF-8") from None
    self.stack.append(self.find_global(module, name))

  def op_STACK_GLOBAL(self):
    name = self.pop()
    module = self.pop()
    if not isinstance(module, str) or not isinstance(name, str):
      raise _Damaged("STACK_GLOBAL of non-strings")
    self.stack.append(self.find_global(module, name))

  def op_REDUCE(self):
    args = self.pop()
    fn = self.pop()
    self.stack.append(self.call(fn, args))

  def op_BINPERSID(self):
    self.stack.append(self.persistent_load(self.pop()))

  def op_BUILD(self):
    state = self.pop()
    target = self.top()
    # torch's state dicts are OrderedDicts with a `_metadata` attribute
    # (module versions): plain data, and not needed here.
    if not isinstance(target, collections.OrderedDict) or not isinstance(
        state, (dict, type(None))):
      raise _Damaged(f"the pickle sets the state of a "
                     f"{type(target).__name__}")


def _refuse_op(name: str):
  def op(self):
    del self
    raise _Refused(f"uses the {name} opcode (it imports or instantiates "
                   "whatever the file names)")
  return op


for _code, _name in _Machine.REFUSED_OPS.items():
  setattr(_Machine, "op_" + _name, _refuse_op(_name))
  _Machine.OPS[_code] = _name
del _code, _name


class _Archive:
  """The zip archive of a torch >= 1.6 checkpoint."""

  def __init__(self, path: str, zf: zipfile.ZipFile, label: str):
    self.path, self.zf, self.label = path, zf, label
    pickles = [n for n in zf.namelist()
               if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
      raise PretrainedError(
          f"{label}: a zip archive with {len(pickles)} <name>/data.pkl "
          "records, not a PyTorch checkpoint")
    self.root = pickles[0][:-len("data.pkl")]
    self.big_endian = False
    if self.root + "byteorder" in zf.namelist():
      order = zf.read(self.root + "byteorder").strip()
      if order not in (b"little", b"big"):
        raise PretrainedError(f"{label}: byteorder {order!r} is unknown")
      self.big_endian = order == b"big"

  def check_storage(self, key: str, dtype: np.dtype, numel: int) -> None:
    """The member is there and long enough (while the pickle is read)."""
    try:
      info = self.zf.getinfo(f"{self.root}data/{key}")
    except KeyError:
      raise _Damaged(f"the pickle names storage {key!r}, which the archive "
                     "lacks") from None
    nbytes = numel * dtype.itemsize
    if info.file_size < nbytes:
      raise _Damaged(f"storage {key!r} has {info.file_size} bytes, its "
                     f"{numel} {dtype.name} elements need {nbytes}")

  def storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
    """One storage, read from the file (opened for this read alone)."""
    nbytes = numel * dtype.itemsize
    raw = np.empty(nbytes, np.uint8)  # writable, unlike bytes
    with zipfile.ZipFile(self.path) as zf:
      with zf.open(f"{self.root}data/{key}") as f:
        if f.readinto(memoryview(raw)) != nbytes:
          raise _Damaged(f"storage {key!r} ends early (truncated)")
    array = raw.view(dtype)
    if self.big_endian and dtype.itemsize > 1:  # (bfloat16 included)
      array = array.view(f"u{dtype.itemsize}").byteswap().view(dtype)
    return array

  def persistent_load(self, pid):
    if (not isinstance(pid, tuple) or len(pid) != 5
        or pid[0] != "storage"):
      raise _Damaged(f"a persistent id {str(pid)[:80]} that is not a storage")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise _Damaged(f"a storage of type {type(storage_type).__name__}")
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
      raise _Damaged(f"a storage id {str(pid)[:80]}")
    dtype = storage_type.dtype_fn()
    self.check_storage(key, dtype, numel)
    return _Storage(self, key, dtype, numel)


def _line(e: Exception) -> str:
  return " ".join(str(e).splitlines())


def open_torch_bin(path: str, label: str | None = None
                   ) -> dict[str, LazyTensor]:
  """The tensors of a torch >= 1.6 state dict file (pytorch_model.bin) as
  LazyTensors: the pickle is interpreted now (refused, or checked against
  the archive), the data read by each tensor's load(). Errors are one-line
  PretrainedErrors starting with `label` (default: the file's name)."""
  label = label or os.path.basename(path)
  if not os.path.isfile(path):
    raise PretrainedError(f"{label}: no such file ({path})")
  with open(path, "rb") as f:
    head = f.read(4)
  if head != ZIP_MAGIC:
    if head[:1] == b"\x80":
      raise PretrainedError(
          f"{label}: a PyTorch file in the legacy (pre-1.6, non-zip) "
          f"format, which is not read; {CONVERT_HINT}")
    raise PretrainedError(f"{label}: not a PyTorch checkpoint (it starts "
                          f"with {head!r}, a zip archive with {ZIP_MAGIC!r})")
  try:
    zf = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise PretrainedError(f"{label}: a damaged zip archive (truncated "
                          f"download?): {_line(e)}") from None
  with zf:
    archive = _Archive(path, zf, label)
    try:
      data = zf.read(archive.root + "data.pkl")
      state = _Machine(data, archive.persistent_load).run()
      if not isinstance(state, dict):
        raise _Damaged(f"the file holds a {type(state).__name__}, not a "
                       "state dict")
      for key, value in state.items():
        if not isinstance(key, str):
          raise _Damaged(f"a state dict key is a {type(key).__name__}")
        if not isinstance(value, LazyTensor):
          raise _Damaged(f"{key!r} is a {type(value).__name__}, not a "
                         "tensor")
    except _Refused as e:
      raise PretrainedError(
          f"{label}: refusing to load: the pickle {_line(e)}, which is not "
          f"a tensor; {CONVERT_HINT}") from None
    except _Damaged as e:
      raise PretrainedError(f"{label}: {_line(e)}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
      raise PretrainedError(f"{label}: a damaged zip archive (truncated "
                            f"download?): {_line(e)}") from None
    except (TypeError, ValueError, RecursionError, MemoryError) as e:
      raise PretrainedError(f"{label}: a malformed pickle "
                            f"({type(e).__name__}: {_line(e)})") from None
  archive.zf = None  # closed: loads open the file again
  return dict(state)


def read_torch_bin(path: str, label: str | None = None
                   ) -> dict[str, np.ndarray]:
  """Every tensor of the file, read (open_torch_bin, then each load()), in
  their stored dtypes (bfloat16 as ml_dtypes.bfloat16)."""
  return {k: v.load() for k, v in open_torch_bin(path, label).items()}
