"""Hugging Face T5 v1.1 / v1.0, BART and Marian imported into our
EncoderDecoder (python -m encdec_jax.pretrained.import_hf) reproduce their
PyTorch outputs, decode the same tokens, and export back bit for bit.

The tiny models and their reference outputs are in tests/data/hf_tiny/
(made with torch + transformers 5.23 by its make_fixtures.py; this file
needs neither). Needs the `pretrained` extra (safetensors, tokenizers).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

for _module in ("safetensors", "tokenizers"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: "
                      "pip install -e '.[pretrained]'")

from encdec_jax.decoding import (beam_search, expand_to_beams,  # noqa: E402
                                 greedy_decode, sample_decode)
from encdec_jax.models.contract import (init_cache,  # noqa: E402
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.nn.logical_axes import logical_axes  # noqa: E402
from encdec_jax.nn.relative_position import (  # noqa: E402
    relative_position_bucket)
from encdec_jax import parallel  # noqa: E402
from encdec_jax.pretrained import export_hf, import_hf, stacking  # noqa: E402
from encdec_jax.pretrained import hf as hf_lib  # noqa: E402
from encdec_jax.pretrained.hf_tokenizers import load_tokenizer  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
FAMILIES = ("t5_v11", "t5_v10", "bart", "marian")


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict:
  """family -> (import dir, config, params, meta, reference), each imported
  by the command line entry point."""
  out = {}
  for name in FAMILIES:
    target = str(tmp_path_factory.mktemp("imported") / name)
    assert import_hf.main(["import_hf", os.path.join(DATA, name), target]) == 0
    config, params, meta = import_hf.load(target)
    with np.load(os.path.join(DATA, name, "reference.npz")) as npz:
      reference = dict(npz)
    out[name] = (target, config, params, meta, reference)
  return out


def _until_eos(tokens_BxT, eos: int) -> list[list[int]]:
  rows = []
  for row in np.asarray(tokens_BxT).tolist():
    rows.append(row[:row.index(eos) + 1] if eos in row else row)
  return rows


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_and_tokens_match_pytorch(imported, name):
  _, config, params, meta, ref = imported[name]
  model = EncoderDecoder(config)

  @jax.jit
  def forward(params, inputs_BxS, targets_in_BxT):
    encoded = model.apply({"params": params}, inputs_BxS, method="encode")
    return encoded, model.apply({"params": params}, targets_in_BxT, encoded,
                                method="decode")

  encoded, logits_BxTxV = forward(params, jnp.asarray(ref["input_ids"]),
                                  jnp.asarray(ref["decoder_input_ids"]))
  logits_BxTxV = np.asarray(logits_BxTxV)
  real_BxS = ref["attention_mask"] == 1
  np.testing.assert_array_equal(np.asarray(encoded.mask_BxS), real_BxS)
  hidden_error = np.abs(np.asarray(encoded.hidden_BxSxD)
                        - ref["encoder_hidden"])[real_BxS]
  logits_error = np.abs(logits_BxTxV - ref["logits"])
  # Relative to the largest logit of the same position.
  scale_BxT = np.abs(ref["logits"]).max(-1)
  assert hidden_error.max() <= 1e-4 * np.abs(ref["encoder_hidden"]).max()
  assert (logits_error.max(-1) / scale_BxT).max() <= 1e-4
  assert logits_error.max() / np.abs(ref["logits"]).max() <= 1e-5

  # Greedy and beam search (length_penalty 0, as generate was run) give
  # generate's tokens, up to and including EOS.
  eos = meta["eos_id"]
  batch, source_len = ref["input_ids"].shape
  steps, beams = int(ref["max_new_tokens"]), int(ref["num_beams"])
  greedy_BxT = greedy_decode(
      make_tokens_to_logits(model, params, encoded),
      init_cache(model, batch, steps, source_len), batch, steps, eos,
      start_id=config.start_id)
  assert _until_eos(greedy_BxT, eos) == _until_eos(ref["greedy"], eos)
  beam_BxKxT, _ = beam_search(
      make_tokens_to_logits(model, params, expand_to_beams(encoded, beams)),
      init_cache(model, batch * beams, steps, source_len), batch, beams,
      steps, eos, length_penalty=0.0, start_id=config.start_id)
  assert _until_eos(beam_BxKxT[:, 0], eos) == _until_eos(ref["beam"], eos)
  if name != "t5_v11":  # one family suffices for the sampling loop
    return
  # Sampling limited to the top token is greedy decoding.
  sampled_BxT = sample_decode(
      make_tokens_to_logits(model, params, encoded),
      init_cache(model, batch, steps, source_len), batch, steps, eos,
      jax.random.key(0), top_k=1, start_id=config.start_id)
  np.testing.assert_array_equal(sampled_BxT, greedy_BxT)


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_decoding_equals_teacher_forcing(imported, name):
  _, config, params, _, ref = imported[name]
  model = EncoderDecoder(config)
  targets_in_BxT = jnp.asarray(ref["decoder_input_ids"])
  batch, length = targets_in_BxT.shape
  encoded = jax.jit(lambda p, x: model.apply({"params": p}, x,
                                             method="encode"))(
      params, jnp.asarray(ref["input_ids"]))
  teacher_forced_BxTxV = np.asarray(jax.jit(
      lambda p, y, e: model.apply({"params": p}, y, e, method="decode"))(
          params, targets_in_BxT, encoded))
  # A longer cache than the targets: the relative position bias of a step
  # must see exactly the keys teacher forcing sees.
  cache = init_cache(model, batch, length + 5, ref["input_ids"].shape[1])
  step = jax.jit(make_tokens_to_logits(model, params, encoded))
  stepped = []
  for t in range(length):
    logits_BxV, cache = step(targets_in_BxT[:, t:t + 1], cache)
    stepped.append(logits_BxV)
  # Within 1e-5 of the largest logit (these logits reach 10-30: weights
  # are O(1), so float32 rounding of the other summation order is ~1e-5
  # absolute).
  error = np.abs(np.asarray(jnp.stack(stepped, 1)) - teacher_forced_BxTxV)
  assert error.max() <= 1e-5 * np.abs(teacher_forced_BxTxV).max()


@pytest.mark.parametrize("name", FAMILIES)
def test_export_round_trips_bit_for_bit(imported, name, tmp_path):
  source, _, _, _, _ = imported[name]
  out = str(tmp_path / "exported")
  assert export_hf.main(["export_hf", source, out]) == 0
  original = hf_lib.read_tensors(os.path.join(DATA, name,
                                              "model.safetensors"))
  exported = hf_lib.read_tensors(os.path.join(out, "model.safetensors"))
  assert sorted(exported) == sorted(original)
  for key, value in original.items():
    assert exported[key].dtype == value.dtype, key
    assert exported[key].tobytes() == value.tobytes(), key
  with open(os.path.join(DATA, name, "model.safetensors"), "rb") as f:
    original_bytes = f.read()
  with open(os.path.join(out, "model.safetensors"), "rb") as f:
    assert f.read() == original_bytes  # the same file, header included
  # And the files transformers reads besides the weights, unchanged.
  for file in os.listdir(os.path.join(DATA, name)):
    if file.endswith((".json", ".model", ".spm")) and "reference" not in file:
      with open(os.path.join(DATA, name, file), "rb") as f:
        expected = f.read()
      with open(os.path.join(out, file), "rb") as f:
        assert f.read() == expected, file


@pytest.mark.parametrize("name, kind", [("t5_v11", "t5_sentencepiece"),
                                        ("bart", "bart_bpe"),
                                        ("marian", "marian")])
def test_tokenizers_give_the_hugging_face_ids(imported, name, kind):
  target, _, _, meta, _ = imported[name]
  assert meta["tokenizer"] == kind
  tokenizer = load_tokenizer(os.path.join(target, "hf"), kind)
  assert tokenizer.eos_id == meta["eos_id"]
  with open(os.path.join(DATA, name, "tokenizer_reference.json")) as f:
    ref = json.load(f)
  for text, ids in zip(ref["sentences"], ref["input_ids"]):
    assert tokenizer.encode(text).tolist() + [tokenizer.eos_id] == ids
  for text, ids in zip(ref["sentences"], ref.get("target_ids", [])):
    assert tokenizer.encode_target(text).tolist() + [tokenizer.eos_id] == ids
  assert tokenizer.decode(ref["input_ids"][0]) == ref["sentences"][0]


def test_relative_position_buckets_match_pytorch():
  with np.load(os.path.join(DATA, "t5_buckets.npz")) as ref:
    relative = jnp.asarray(ref["relative"])
    for bidirectional in (True, False):
      buckets = relative_position_bucket(
          relative, bidirectional=bidirectional, num_buckets=32,
          max_distance=128)
      np.testing.assert_array_equal(
          buckets, ref[f"bidirectional_{bidirectional}"])


def test_new_params_have_logical_axes(imported):
  names = {}
  for name in ("t5_v11", "bart"):
    flat = traverse_util.flatten_dict(imported[name][2])
    for path, value in flat.items():
      names["/".join(path[-2:])] = logical_axes(path, value.shape)
  assert names["relative_position_bias/embedding"] == (None, "heads")
  assert names["decoder/final_logits_bias"] == ("vocab",)
  assert names["intermediate_linear/kernel"] == ("embed", "mlp")
  assert names["logits_dense/kernel"] == ("embed", "vocab")
  assert names["mlp_norm/scale"] == ("norm",)


def test_mesh_rules_shard_the_new_params_where_they_divide(imported):
  class Mesh:  # logical_to_spec reads only the mesh's axis sizes
    shape = {"data": 2, "fsdp": 2, "tensor": 2}

  specs = {}
  for name in ("t5_v11", "bart"):
    flat = traverse_util.flatten_dict(parallel.param_specs(
        jax.tree.map(jnp.asarray, imported[name][2]), Mesh()))
    specs.update({f"{name}:{'/'.join(k)}": v for k, v in flat.items()})
  P = jax.sharding.PartitionSpec
  # Gated MLP: columns over "tensor", rows over "fsdp" (d_model 16).
  assert specs["t5_v11:encoder/layers_0/mlp/intermediate_linear/kernel"] == P(
      "fsdp", "tensor")
  # 3 heads do not divide by 2: the relative position table is replicated,
  # as are T5's 3-head projections along heads.
  assert specs["t5_v11:encoder/relative_position_bias/embedding"] == P()
  assert specs["t5_v11:decoder/layers_0/self_attention/query/kernel"] == P(
      "fsdp")
  assert specs["t5_v11:decoder/logits_dense/kernel"] == P("fsdp", "tensor")
  assert specs["bart:decoder/final_logits_bias"] == P("tensor")
  # BART's 2 decoder heads split, its 4 encoder heads too.
  assert specs["bart:decoder/layers_0/self_attention/query/kernel"] == P(
      "fsdp", "tensor")


def test_scan_layers_and_remat_compute_the_same(imported):
  # T5: the relative position table goes through nn.scan and nn.remat as a
  # broadcast argument; decoder head counts are BART's other knob, covered
  # unscanned.
  _, config, params, _, ref = imported["t5_v11"]
  scanned = config.replace(scan_layers=True, remat="full")
  stacked = traverse_util.unflatten_dict(stacking.stack_layers(
      traverse_util.flatten_dict(params)))
  logits = {}
  for cfg, p in ((config, params), (scanned, stacked)):
    model = EncoderDecoder(cfg)
    logits[cfg.scan_layers] = np.asarray(jax.jit(
        lambda p, x, y: model.apply({"params": p}, x, y))(
            p, jnp.asarray(ref["input_ids"]),
            jnp.asarray(ref["decoder_input_ids"])))
  error = np.abs(logits[True] - logits[False]).max()
  assert error <= 1e-5 * np.abs(logits[False]).max()


def _write_model_dir(path, config: dict, tensors=None, source="t5_v11"):
  os.makedirs(path)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  if tensors is not None:
    hf_lib.write_tensors(os.path.join(path, "model.safetensors"), tensors)
  for file in ("spiece.model",):
    src = os.path.join(DATA, source, file)
    if os.path.exists(src):
      with open(src, "rb") as f, open(os.path.join(path, file), "wb") as g:
        g.write(f.read())


@pytest.mark.parametrize("model_type, message", [
    ("longt5", "model_type 'longt5' is not supported: LongT5"),
    ("umt5", "model_type 'umt5' is not supported: UMT5"),
    ("mbart", "model_type 'mbart' is not supported: mBART"),
    ("gpt2", "model_type 'gpt2' is not supported; supported: t5, mt5, "
             "bart, marian"),
])
def test_unsupported_model_types_are_refused_in_one_line(
    model_type, message, tmp_path, capsys):
  model_dir, out = str(tmp_path / "model"), str(tmp_path / "out")
  _write_model_dir(model_dir, {"model_type": model_type})
  assert import_hf.main(["import_hf", model_dir, out]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: config.json: ")
  assert message in err
  assert not os.path.exists(out)


def test_an_unknown_weight_name_is_a_one_line_error(tmp_path, capsys):
  with open(os.path.join(DATA, "t5_v11", "config.json")) as f:
    config = json.load(f)
  tensors = hf_lib.read_tensors(os.path.join(DATA, "t5_v11",
                                             "model.safetensors"))
  tensors["encoder.block.0.layer.0.SelfAttention.gate.weight"] = np.ones(
      (3,), np.float32)
  model_dir, out = str(tmp_path / "model"), str(tmp_path / "out")
  _write_model_dir(model_dir, config, tensors)
  assert import_hf.main(["import_hf", model_dir, out]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1
  assert ("does not know: 'encoder.block.0.layer.0.SelfAttention.gate."
          "weight'") in err
  assert not os.path.exists(out)
  # A missing tensor names what is missing.
  del tensors["encoder.block.0.layer.0.SelfAttention.gate.weight"]
  del tensors["decoder.final_layer_norm.weight"]
  model_dir = str(tmp_path / "model2")
  _write_model_dir(model_dir, config, tensors)
  assert import_hf.main(["import_hf", model_dir, out]) == 1
  assert "lacks 'decoder.final_layer_norm.weight'" in capsys.readouterr().err
  assert not os.path.exists(out)


@pytest.mark.parametrize("changes, message", [
    (dict(norm="batchnorm"), "norm='batchnorm' is not one of"),
    (dict(num_decoder_heads=3), "qkv_dim=32 is not divisible by "
                                "num_decoder_heads=3"),
    (dict(pad_id=20), "pad_id=20 is not an id of the 20-token vocabulary"),
    (dict(decoder_start_id=-1), "decoder_start_id=-1 is not an id"),
    (dict(position_offset=-2), "position_offset must be >= 0"),
    (dict(relative_position_buckets=-1), "relative_position_buckets must"),
    (dict(position_embedding="rotary"), "position_embedding='rotary'"),
])
def test_the_new_config_fields_are_checked(changes, message):
  from encdec_jax.nn.config import TransformerConfig
  with pytest.raises(ValueError, match=message):
    TransformerConfig(vocab_size=20, emb_dim=32, qkv_dim=32, num_heads=4,
                      **changes)
