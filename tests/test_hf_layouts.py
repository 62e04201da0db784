"""The acceptance matrix of Hub checkpoints as users download them: each tiny
family (T5 v1.1, T5 v1.0, BART, Marian) in each weight layout imports with
PyTorch's logits (1e-4 relative) and greedy tokens.

Layouts are written here (tmp_path) from the committed model.safetensors,
without torch (tests/weight_layouts.py). float16 / bfloat16 checkpoints are
compared with PyTorch run on those same rounded weights, loaded in float32
(NAME/rounded.npz, from make_fixtures.py's rounded_fixtures; its digest
proves the rounding here is the one torch made). One compiled forward +
greedy decode per family serves all its layouts.
"""

import hashlib
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

for _module in ("safetensors", "tokenizers"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: "
                      "pip install -e '.[pretrained]'")

from weight_layouts import hf_dir_like, write_layout  # noqa: E402
from encdec_jax.decoding import greedy_decode  # noqa: E402
from encdec_jax.models.contract import (init_cache,  # noqa: E402
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.pretrained import hf as hf_lib  # noqa: E402
from encdec_jax.pretrained import export_hf, import_hf  # noqa: E402
from encdec_jax.pretrained import weight_files  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
FAMILIES = ("t5_v11", "t5_v10", "bart", "marian")
BF16 = np.dtype(ml_dtypes.bfloat16)
# id -> (layout, stored dtype). float16 in a pytorch_model.bin as
# facebook/bart-large ships it; bfloat16 in sharded safetensors.
LAYOUTS = {
    "bin": (weight_files.TORCH_BIN, np.dtype(np.float32)),
    "sharded_bin": (weight_files.TORCH_BIN_INDEX, np.dtype(np.float32)),
    "sharded_safetensors": (weight_files.SAFETENSORS_INDEX,
                            np.dtype(np.float32)),
    "fp16": (weight_files.TORCH_BIN, np.dtype(np.float16)),
    "bf16": (weight_files.SAFETENSORS_INDEX, BF16),
}


def rounding_digest(tensors: dict) -> str:
  """make_fixtures.rounding_digest, in numpy."""
  digest = hashlib.sha256()
  for name in sorted(tensors):
    digest.update(name.encode())
    digest.update(np.ascontiguousarray(tensors[name]).tobytes())
  return digest.hexdigest()


_COMPILED = {}  # family -> jitted (params, inputs, targets) -> outputs


def _forward_and_greedy(name: str, config, eos_id: int, steps: int):
  """encoder states, teacher-forced logits and greedy tokens, compiled once
  per family (params are an argument: every layout reuses it)."""
  if name not in _COMPILED:
    model = EncoderDecoder(config)

    @jax.jit
    def run(params, inputs_BxS, targets_in_BxT):
      encoded = model.apply({"params": params}, inputs_BxS, method="encode")
      logits_BxTxV = model.apply({"params": params}, targets_in_BxT, encoded,
                                 method="decode")
      batch, source_len = inputs_BxS.shape
      greedy_BxT = greedy_decode(
          make_tokens_to_logits(model, params, encoded),
          init_cache(model, batch, steps, source_len), batch, steps, eos_id,
          start_id=config.start_id)
      return encoded.hidden_BxSxD, logits_BxTxV, greedy_BxT

    _COMPILED[name] = run
  return _COMPILED[name]


def _until_eos(tokens_BxT, eos: int) -> list[list[int]]:
  rows = []
  for row in np.asarray(tokens_BxT).tolist():
    rows.append(row[:row.index(eos) + 1] if eos in row else row)
  return rows


def _check_layout(tmp_path, name: str, layout_id: str) -> list[str]:
  """What differs from PyTorch when `name` is imported from `layout_id`."""
  layout, dtype = LAYOUTS[layout_id]
  source = os.path.join(DATA, name)
  tensors = hf_lib.read_tensors(os.path.join(source, "model.safetensors"))
  with np.load(os.path.join(source, "reference.npz")) as npz:
    ref = dict(npz)
  if dtype != np.float32:
    tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    with np.load(os.path.join(source, "rounded.npz")) as npz:
      assert rounding_digest(tensors) == str(npz[f"{dtype.name}_sha256"])
      for key in ("encoder_hidden", "logits", "greedy"):
        ref[key] = npz[f"{dtype.name}_{key}"]
  model_dir = str(tmp_path / layout_id)
  hf_dir_like(source, model_dir)
  write_layout(model_dir, tensors, layout, n_shards=2)
  assert weight_files.find_weights(model_dir).layout == layout

  _, config, params, eos_id = import_hf.convert(model_dir)
  assert {v.dtype for v in jax.tree.leaves(params)} == {np.dtype(np.float32)}
  run = _forward_and_greedy(name, config, eos_id, int(ref["max_new_tokens"]))
  hidden_BxSxD, logits_BxTxV, greedy_BxT = run(
      params, jnp.asarray(ref["input_ids"]),
      jnp.asarray(ref["decoder_input_ids"]))
  real_BxS = ref["attention_mask"] == 1
  hidden_error = (np.abs(np.asarray(hidden_BxSxD) - ref["encoder_hidden"])
                  [real_BxS].max() / np.abs(ref["encoder_hidden"]).max())
  # Relative to the largest logit of the same position.
  logits_error = (np.abs(np.asarray(logits_BxTxV) - ref["logits"]).max(-1)
                  / np.abs(ref["logits"]).max(-1)).max()
  problems = []
  if hidden_error > 1e-4:
    problems.append(f"{layout_id}: encoder states {hidden_error:.1e}")
  if logits_error > 1e-4:
    problems.append(f"{layout_id}: logits {logits_error:.1e} relative")
  if _until_eos(greedy_BxT, eos_id) != _until_eos(ref["greedy"], eos_id):
    problems.append(f"{layout_id}: greedy tokens differ")
  return problems


@pytest.mark.parametrize("name", FAMILIES)
def test_each_layout_gives_pytorchs_logits_and_greedy_tokens(tmp_path, name):
  """All layouts of one family in one test: one compile per family, also
  when pytest-xdist spreads the tests over workers."""
  problems = []
  for layout_id in LAYOUTS:
    problems += _check_layout(tmp_path, name, layout_id)
  assert not problems, f"{name}: {'; '.join(problems)}"


# -- the dtype a model is imported in, and exported back in


def _main_ok(main, argv) -> None:
  assert main(argv) == 0, argv


@pytest.mark.parametrize("dtype_name, option", [
    ("float16", "--dtype=float16"), ("bfloat16", "--dtype=auto")])
def test_import_keeps_the_dtype_and_export_writes_it_back(
    tmp_path, dtype_name, option):
  dtype = import_hf.WEIGHTS_DTYPES[dtype_name]
  source = os.path.join(DATA, "t5_v11")
  tensors = {k: v.astype(dtype) for k, v in hf_lib.read_tensors(
      os.path.join(source, "model.safetensors")).items()}
  model_dir = str(tmp_path / "hub")
  hf_dir_like(source, model_dir)
  write_layout(model_dir, tensors, weight_files.SAFETENSORS)

  kept, exported = str(tmp_path / "kept"), str(tmp_path / "exported")
  _main_ok(import_hf.main, ["import_hf", model_dir, kept, option])
  assert import_hf.read_meta(kept)["weights_dtype"] == dtype_name
  stored = hf_lib.read_tensors(os.path.join(kept, "params.safetensors"))
  assert {v.dtype for v in stored.values()} == {dtype}
  _main_ok(export_hf.main, ["export_hf", kept, exported])
  written = hf_lib.read_tensors(os.path.join(exported, "model.safetensors"))
  assert sorted(written) == sorted(tensors)
  for k, v in tensors.items():  # the same dtype and bits
    assert written[k].dtype == dtype, k
    np.testing.assert_array_equal(written[k].view(np.uint16),
                                  v.view(np.uint16), err_msg=k)

  # By default float32 (exactly the rounded values), exported as float32
  # unless --dtype says otherwise.
  wide, wide_out, narrow_out = (str(tmp_path / n) for n in
                                ("wide", "wide_out", "narrow_out"))
  _main_ok(import_hf.main, ["import_hf", model_dir, wide])
  assert import_hf.read_meta(wide)["weights_dtype"] == "float32"
  _main_ok(export_hf.main, ["export_hf", wide, wide_out])
  written = hf_lib.read_tensors(os.path.join(wide_out, "model.safetensors"))
  assert {v.dtype for v in written.values()} == {np.dtype(np.float32)}
  _main_ok(export_hf.main, ["export_hf", wide, narrow_out,
                            f"--dtype={dtype_name}"])
  written = hf_lib.read_tensors(os.path.join(narrow_out,
                                             "model.safetensors"))
  for k, v in tensors.items():
    np.testing.assert_array_equal(written[k].view(np.uint16),
                                  v.view(np.uint16), err_msg=k)


@pytest.mark.parametrize("main, argv, message", [
    (import_hf.main, ["import_hf", "DIR", "OUT", "--dtype=int8"],
     "--dtype=int8 is not one of float32, float16, bfloat16, auto"),
    (export_hf.main, ["export_hf", "DIR", "OUT", "--dtype=float64"],
     "--dtype=float64 is not one of float32, float16, bfloat16"),
])
def test_an_unknown_dtype_is_one_line(tmp_path, capsys, main, argv, message):
  argv = [a if a not in ("DIR", "OUT") else str(tmp_path / a) for a in argv]
  os.makedirs(argv[1])
  assert main(argv) == 1
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and message in err, err


def test_auto_refuses_a_checkpoint_of_mixed_dtypes(tmp_path, capsys):
  source = os.path.join(DATA, "t5_v11")
  tensors = hf_lib.read_tensors(os.path.join(source, "model.safetensors"))
  tensors["shared.weight"] = tensors["shared.weight"].astype(np.float16)
  model_dir = str(tmp_path / "hub")
  hf_dir_like(source, model_dir)
  write_layout(model_dir, tensors, weight_files.SAFETENSORS)
  assert import_hf.main(["import_hf", model_dir, str(tmp_path / "out"),
                         "--dtype=auto"]) == 1
  err = capsys.readouterr().err.strip()
  assert "holds float16 and float32 floating-point tensors; choose one " \
         "with --dtype=" in err and "\n" not in err
