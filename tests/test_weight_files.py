"""Hugging Face weights in every layout users download (model.safetensors,
its shards, pytorch_model.bin, its shards) read as the same numpy tensors,
without torch and without unpickling (encdec_jax.pretrained.weight_files,
torch_pickle).

The .bin files are either written by real torch (tests/data/hf_tiny/
torch_bin/, made by make_fixtures.py's torch_bin_fixtures) or by
tests/torch_bin_writer.py, which writes torch.save's format in pure Python
(torch reads its files back: checked by hand with torch 2.13). A malicious
.bin whose pickle would run os.system / exec is refused by name before
anything runs, which the tests check by the file it would create.
"""

import json
import os
import pickle
import shutil
import zipfile

import ml_dtypes
import numpy as np
import pytest
from flax import traverse_util

pytest.importorskip("safetensors", reason="safetensors is not installed: "
                    "pip install -e '.[pretrained]'")

import torch_bin_writer as writer  # noqa: E402  (tests/ is on sys.path)
from weight_layouts import hf_dir_like, write_layout  # noqa: E402
from encdec_jax.pretrained import hf as hf_lib  # noqa: E402
from encdec_jax.pretrained import import_hf  # noqa: E402
from encdec_jax.pretrained import torch_pickle  # noqa: E402
from encdec_jax.pretrained import weight_files  # noqa: E402
from encdec_jax.pretrained.hf import PretrainedError  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
REAL = os.path.join(DATA, "torch_bin")
T5 = os.path.join(DATA, "t5_v11")
BF16 = np.dtype(ml_dtypes.bfloat16)


def _one_line(e) -> str:
  message = str(e.value if hasattr(e, "value") else e)
  assert "\n" not in message, message
  return message


def _assert_same(got: dict, expected: dict, dtype_too: bool = True):
  assert list(sorted(got)) == list(sorted(expected))
  for k, v in expected.items():
    if dtype_too:
      assert got[k].dtype == v.dtype, (k, got[k].dtype, v.dtype)
    assert got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)


def _t5_tensors() -> dict:
  return hf_lib.read_tensors(os.path.join(T5, "model.safetensors"))


# -- the reader against real torch files


def test_a_real_torch_bin_equals_its_safetensors():
  """real.bin (torch.save: a Parameter, float16 / bfloat16, views that share
  a storage at offsets with transposed strides, int64, bool, 0-d) holds
  bit for bit the tensors of real.safetensors, in their dtypes."""
  got = torch_pickle.read_torch_bin(os.path.join(REAL, "real.bin"))
  expected = hf_lib.read_tensors(os.path.join(REAL, "real.safetensors"))
  _assert_same(got, expected)
  assert got["bf16.transposed"].dtype == BF16
  assert got["half.window"].dtype == np.float16
  for v in got.values():  # copies of their own, as safetensors gives
    assert v.flags.c_contiguous and v.flags.writeable


def test_float16_and_bfloat16_import_as_float32_unless_kept(tmp_path):
  model_dir = str(tmp_path / "m")
  os.makedirs(model_dir)
  shutil.copy(os.path.join(REAL, "real.bin"),
              os.path.join(model_dir, "pytorch_model.bin"))
  stored = hf_lib.read_tensors(os.path.join(REAL, "real.safetensors"))
  widened = {k: v.astype(np.float32) if v.dtype in (np.float16, BF16) else v
             for k, v in stored.items()}
  _assert_same(weight_files.read_weights(model_dir), widened)
  _assert_same(weight_files.read_weights(model_dir, dtype=None), stored)
  assert weight_files.read_weights(model_dir)["ids"].dtype == np.int64
  assert weight_files.read_weights(model_dir)["mask"].dtype == np.bool_


# -- the reader against this test's writer


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16],
                         ids=["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_crafted_bins_read_as_torch_lays_them_out(tmp_path, dtype, byteorder):
  rng = np.random.default_rng(0)
  flat = rng.standard_normal(40).astype(dtype)
  base = writer.Storage(flat)
  tensors = {
      "plain": rng.standard_normal((3, 5)).astype(dtype),
      # a transposed view at an offset, and a window: one storage
      "transposed": writer.View(base, 2, (4, 6), (1, 6)),
      "window": writer.View(base, 7, (2, 3), (10, 2)),
      "row": writer.View(base, 30, (10,), (1,), parameter=True),
      # tied weights: two whole views of one storage
      "tied.a": writer.View(base, 0, (5, 8), (8, 1)),
      "tied.b": writer.View(base, 0, (5, 8), (8, 1)),
      "scalar": np.array(1.5, dtype),
      "empty": np.zeros((0, 3), dtype),
      "ids": np.array([[1, -2], [3, 2**40]], np.int64),
      "mask": np.array([True, False, True]),
  }
  path = str(tmp_path / "pytorch_model.bin")
  writer.write_torch_bin(path, tensors, byteorder=byteorder)
  got = torch_pickle.read_torch_bin(path)
  i, j = np.arange(4)[:, None], np.arange(6)
  k, l = np.arange(2)[:, None], np.arange(3)
  expected = {  # element [i, j] is flat[offset + i * stride0 + j * stride1]
      "plain": tensors["plain"],
      "transposed": flat[2 + i * 1 + j * 6],
      "window": flat[7 + k * 10 + l * 2],
      "row": flat[30:40],
      "tied.a": flat.reshape(5, 8), "tied.b": flat.reshape(5, 8),
      "scalar": tensors["scalar"], "empty": tensors["empty"],
      "ids": tensors["ids"], "mask": tensors["mask"],
  }
  _assert_same(got, expected)
  # Each tensor its own memory, as safetensors gives them.
  assert not np.shares_memory(got["tied.a"], got["tied.b"])
  assert all(v.flags.writeable for v in got.values())


def test_a_tensor_past_its_storage_is_a_one_line_error(tmp_path):
  base = writer.Storage(np.arange(30, dtype=np.float32))
  path = str(tmp_path / "pytorch_model.bin")
  writer.write_torch_bin(path, {"t": writer.View(base, 3, (4, 5), (1, 6))})
  with pytest.raises(PretrainedError) as e:
    torch_pickle.read_torch_bin(path)
  assert "pytorch_model.bin: a tensor of size (4, 5)" in _one_line(e)
  assert "reaches past its storage" in str(e.value)


# -- layouts


@pytest.mark.parametrize("layout", weight_files.LAYOUTS)
def test_every_layout_reads_the_single_file_tensors(tmp_path, layout):
  tensors = _t5_tensors()
  model_dir = str(tmp_path / "m")
  write_layout(model_dir, tensors, layout)
  found = weight_files.find_weights(model_dir)
  assert found.layout == layout
  assert len(found.files) == (3 if layout in weight_files.INDEX_FILES
                              else 1)
  _assert_same(found.read(), tensors)


@pytest.mark.parametrize("present, read", [
    ((weight_files.SAFETENSORS, weight_files.TORCH_BIN),
     weight_files.SAFETENSORS),
    ((weight_files.SAFETENSORS_INDEX, weight_files.TORCH_BIN),
     weight_files.SAFETENSORS_INDEX),
    ((weight_files.SAFETENSORS_INDEX, weight_files.TORCH_BIN_INDEX),
     weight_files.SAFETENSORS_INDEX),
    ((weight_files.SAFETENSORS, weight_files.SAFETENSORS_INDEX),
     weight_files.SAFETENSORS),
    ((weight_files.TORCH_BIN, weight_files.TORCH_BIN_INDEX),
     weight_files.TORCH_BIN),
])
def test_safetensors_is_preferred_where_a_directory_has_both(
    tmp_path, present, read):
  model_dir = str(tmp_path / "m")
  versions = {}
  for i, layout in enumerate(present):  # different values per layout
    versions[layout] = {"w": np.full((2, 3), i, np.float32),
                        "b": np.arange(3, dtype=np.float32) + 10 * i}
    write_layout(model_dir, versions[layout], layout, n_shards=2)
  assert weight_files.find_weights(model_dir).layout == read
  _assert_same(weight_files.read_weights(model_dir), versions[read])


# -- malicious files


class _Exec:
  """Pickles as builtins.exec(code): what a malicious .bin does."""

  def __init__(self, code):
    self.code = code

  def __reduce__(self):
    return (exec, (self.code,))


class _System:
  """Pickles as os.system(command) (written as posix.system)."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def _malicious_bins(tmp_path, target: str) -> dict:
  """name -> (path of a .bin whose pickle creates `target`, the global its
  refusal must name)."""
  create = f"open({target!r}, 'w').close()"
  out = {}

  def archive(name, data_pkl, storages=()):
    path = str(tmp_path / f"{name}.bin")
    writer.write_archive(path, data_pkl, list(storages))
    return path

  # The classic: a pickle that is nothing but exec(...).
  out["exec"] = (archive("exec", pickle.dumps(_Exec(create), protocol=2)),
                 "builtins.exec")
  # STACK_GLOBAL (protocol 4) instead of GLOBAL.
  out["exec_stack_global"] = (
      archive("exec4", pickle.dumps(_Exec(create), protocol=4)),
      "builtins.exec")
  # os.system hidden among real tensors of a state dict, after them.
  data, storages = writer.pickled({
      "shared.weight": writer.contiguous_view(np.ones((2, 2), np.float32)),
      "zz": _System(f"touch {target}")})
  out["system_in_a_state_dict"] = (archive("system", data, storages),
                                   f"{os.system.__module__}.system")
  # A stand-in global (no such module here), called as a tensor would be.
  data, storages = writer.pickled({"w": writer.Call(
      writer.Global("subprocess", "getoutput"), (f"touch {target}",))})
  out["stand_in"] = (archive("stand_in", data, storages),
                     "subprocess.getoutput")
  # A near miss of an allowed name.
  data, _ = writer.pickled({"w": writer.Call(
      writer.Global("torch._utils", "_rebuild_tensor_v2x"), ())})
  out["near_miss"] = (archive("near_miss", data),
                      "torch._utils._rebuild_tensor_v2x")
  return out


@pytest.mark.parametrize("which", ["exec", "exec_stack_global",
                                   "system_in_a_state_dict", "stand_in",
                                   "near_miss"])
def test_a_malicious_bin_is_refused_before_anything_runs(tmp_path, which):
  target = str(tmp_path / "pwned")
  path, name = _malicious_bins(tmp_path, target)[which]
  if which == "exec":  # the file is live: Python's unpickler runs it
    with zipfile.ZipFile(path) as zf:
      pickle.loads(zf.read("archive/data.pkl"))
    assert os.path.exists(target)
    os.remove(target)
  with pytest.raises(PretrainedError) as e:
    torch_pickle.read_torch_bin(path)
  message = _one_line(e)
  assert message.startswith(f"{os.path.basename(path)}: refusing to load: "
                            f"the pickle calls {name}, which is not a "
                            "tensor; convert it to safetensors"), message
  assert "safe_serialization=True" in message
  assert not os.path.exists(target)
  # Through a model directory (and import_hf) the same.
  model_dir = str(tmp_path / "model")
  hf_dir_like(T5, model_dir)
  shutil.copy(path, os.path.join(model_dir, "pytorch_model.bin"))
  with pytest.raises(PretrainedError, match="pytorch_model.bin: refusing"):
    import_hf.convert(model_dir)
  assert not os.path.exists(target)


def test_opcodes_that_build_objects_are_refused(tmp_path):
  """NEWOBJ with an allowed callable, hand-assembled: the opcode itself is
  refused (it would instantiate whatever the file names)."""
  data = (b"\x80\x02" + b"ccollections\nOrderedDict\n" + b")" + b"\x81"
          + b".")
  path = str(tmp_path / "newobj.bin")
  writer.write_archive(path, data, [])
  with pytest.raises(PretrainedError, match="uses the NEWOBJ opcode"):
    torch_pickle.read_torch_bin(path)


def test_a_damaged_pickle_is_always_a_one_line_error(tmp_path):
  """Every truncation and 300 random byte changes of a state dict's
  data.pkl: a PretrainedError, or (a changed byte that keeps it valid) a
  dict of arrays; never another exception."""
  rng = np.random.default_rng(0)
  base = writer.Storage(np.arange(24, dtype=np.float16))
  data, storages = writer.pickled(
      {"a": writer.View(base, 2, (4, 5), (1, 4)),
       "b": writer.contiguous_view(np.ones((2, 3), np.float32),
                                   parameter=True),
       "c": writer.contiguous_view(np.arange(4))})
  variants = [data[:n] for n in range(len(data))]
  for _ in range(300):
    changed = bytearray(data)
    changed[rng.integers(len(data))] = rng.integers(256)
    variants.append(bytes(changed))
  path = str(tmp_path / "pytorch_model.bin")
  refused = 0
  for variant in variants:
    writer.write_archive(path, variant, storages)
    try:
      out = torch_pickle.read_torch_bin(path)
    except PretrainedError as e:
      _one_line(e)
      refused += 1
    else:
      assert all(isinstance(v, np.ndarray) for v in out.values())
  assert refused >= len(data)


# -- one-line errors naming the file


def test_a_legacy_bin_says_how_to_convert_it(tmp_path):
  with pytest.raises(PretrainedError) as e:
    torch_pickle.read_torch_bin(os.path.join(REAL, "legacy.bin"))
  message = _one_line(e)
  assert message.startswith("legacy.bin: a PyTorch file in the legacy "
                            "(pre-1.6, non-zip) format")
  assert "save_pretrained(OUT, safe_serialization=True)" in message
  model_dir = str(tmp_path / "m")
  os.makedirs(model_dir)
  shutil.copy(os.path.join(REAL, "legacy.bin"),
              os.path.join(model_dir, "pytorch_model.bin"))
  with pytest.raises(PretrainedError, match="^pytorch_model.bin: a PyTorch "
                     "file in the legacy"):
    weight_files.read_weights(model_dir)


@pytest.mark.parametrize("layout", weight_files.INDEX_FILES)
def test_an_index_naming_a_missing_shard_is_a_one_line_error(tmp_path,
                                                             layout):
  model_dir = str(tmp_path / "m")
  write_layout(model_dir, _t5_tensors(), layout)
  found = weight_files.find_weights(model_dir)
  os.remove(found.files[1])
  with pytest.raises(PretrainedError) as e:
    weight_files.read_weights(model_dir)
  shard = os.path.basename(found.files[1])
  assert _one_line(e) == (f"{layout} names the shard {shard}, which "
                          f"{model_dir} lacks (an incomplete download?)")


@pytest.mark.parametrize("layout", weight_files.INDEX_FILES)
def test_shards_that_disagree_with_their_index_are_refused(tmp_path, layout):
  model_dir = str(tmp_path / "m")
  tensors = _t5_tensors()
  write_layout(model_dir, tensors, layout)
  index_path = os.path.join(model_dir, layout)
  with open(index_path) as f:
    index = json.load(f)
  index["weight_map"]["extra.weight"] = index["weight_map"]["shared.weight"]
  with open(index_path, "w") as f:
    json.dump(index, f)
  with pytest.raises(PretrainedError) as e:
    weight_files.read_weights(model_dir)
  assert "lacks 'extra.weight', which " + layout + " puts there" in (
      _one_line(e))
  # A shard named outside the directory is refused before it is opened.
  index["weight_map"]["extra.weight"] = "../" + index["weight_map"][
      "shared.weight"]
  with open(index_path, "w") as f:
    json.dump(index, f)
  with pytest.raises(PretrainedError, match="is not a file name in the "
                     "model directory"):
    weight_files.read_weights(model_dir)


@pytest.mark.parametrize("layout", [weight_files.SAFETENSORS,
                                    weight_files.TORCH_BIN,
                                    weight_files.SAFETENSORS_INDEX,
                                    weight_files.TORCH_BIN_INDEX])
def test_a_truncated_file_is_a_one_line_error_naming_it(tmp_path, layout):
  model_dir = str(tmp_path / "m")
  write_layout(model_dir, _t5_tensors(), layout)
  path = weight_files.find_weights(model_dir).files[-1]
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) * 2 // 3])
  with pytest.raises(PretrainedError) as e:
    weight_files.read_weights(model_dir)
  message = _one_line(e)
  assert message.startswith(os.path.basename(path) + ": "), message
  assert "truncated" in message


def test_a_directory_without_weights_names_the_layouts(tmp_path):
  model_dir = str(tmp_path / "m")
  os.makedirs(model_dir)
  open(os.path.join(model_dir, "tf_model.h5"), "w").close()
  with pytest.raises(PretrainedError) as e:
    weight_files.read_weights(model_dir)
  message = _one_line(e)
  assert "none of model.safetensors, model.safetensors.index.json, " \
         "pytorch_model.bin, pytorch_model.bin.index.json" in message
  assert "it has tf_model.h5" in message


# -- end to end: import_hf on each layout


def _flat(params) -> dict:
  return {"/".join(k): v for k, v in
          traverse_util.flatten_dict(params).items()}


@pytest.fixture(scope="module")
def t5_params():
  _, _, params, _ = import_hf.convert(T5)
  return _flat(params)


@pytest.mark.parametrize("layout, dtype", [
    (weight_files.SAFETENSORS_INDEX, np.float32),
    (weight_files.TORCH_BIN, np.float32),
    (weight_files.TORCH_BIN_INDEX, np.float32),
    (weight_files.SAFETENSORS, np.float16),
    (weight_files.TORCH_BIN, BF16),
], ids=["sharded_safetensors", "bin", "sharded_bin", "fp16_safetensors",
        "bf16_bin"])
def test_import_hf_reads_each_layout(tmp_path, t5_params, layout, dtype):
  tensors = {k: v.astype(dtype) for k, v in _t5_tensors().items()}
  model_dir = str(tmp_path / "m")
  hf_dir_like(T5, model_dir)
  write_layout(model_dir, tensors, layout)
  if dtype == np.float32:
    expected = t5_params
  else:  # the same import of the rounded values, stored as float32
    rounded_dir = str(tmp_path / "rounded")
    hf_dir_like(T5, rounded_dir)
    write_layout(rounded_dir, {k: v.astype(np.float32)
                               for k, v in tensors.items()},
                 weight_files.SAFETENSORS)
    expected = _flat(import_hf.convert(rounded_dir)[2])
    assert not all(np.array_equal(expected[k], t5_params[k])
                   for k in expected)  # the rounding is seen
  _, _, params, _ = import_hf.convert(model_dir)
  _assert_same(_flat(params), expected)  # float32, bit for bit
  if dtype != np.float32:  # dtype=None keeps the checkpoint's dtype
    kept = _flat(import_hf.convert(model_dir, dtype=None)[2])
    assert {v.dtype for v in kept.values()} == {np.dtype(dtype)}
    _assert_same({k: v.astype(np.float32) for k, v in kept.items()},
                 expected)
  # The command line: the index is not copied into hf/ with the configs.
  out = str(tmp_path / "out")
  assert import_hf.main(["import_hf", model_dir, out]) == 0
  _, loaded, _ = import_hf.load(out)
  _assert_same(_flat(loaded), expected)
  assert not any(name.endswith((".bin", ".safetensors", ".index.json"))
                 for name in os.listdir(os.path.join(out, "hf")))


@pytest.mark.parametrize("layout", [weight_files.SAFETENSORS_INDEX,
                                    weight_files.TORCH_BIN])
def test_an_import_reads_tensors_one_at_a_time_when_converted(
    tmp_path, monkeypatch, layout):
  """Opening reads headers only; the import then reads each tensor when it
  converts it (the untied check reads shared and lm_head once more)."""
  model_dir = str(tmp_path / "m")
  hf_dir_like(T5, model_dir)
  write_layout(model_dir, _t5_tensors(), layout, n_shards=2)
  reads = []
  if layout == weight_files.TORCH_BIN:
    storage = torch_pickle._Archive.storage
    monkeypatch.setattr(torch_pickle._Archive, "storage",
                        lambda self, key, *a: (reads.append(key),
                                               storage(self, key, *a))[1])
  else:
    read = weight_files._read_safetensor
    monkeypatch.setattr(weight_files, "_read_safetensor",
                        lambda path, name: (reads.append(name),
                                            read(path, name))[1])
  lazy = weight_files.find_weights(model_dir).open()
  assert len(lazy) == len(_t5_tensors()) and reads == []
  import_hf.convert(model_dir)
  assert len(reads) == len(lazy) + 2
  assert len(set(reads)) == len(lazy)
