"""An imported BART's or Marian's own ids, everywhere the trainer uses ids:
batches padded with the tokenizer's pad id (Marian targets cut by
target.spm), the loss over Hugging Face's labels (decoder inputs = the
decoder start then the labels; every label but padding counted, id 0
included), packed rows, and decoding from the model's start id. The tiny
fixtures' PyTorch outputs (tests/data/hf_tiny/) are the reference; no torch
needed. Needs the `pretrained` extra.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

for _module in ("safetensors", "tokenizers"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: "
                      "pip install -e '.[pretrained]'")

from encdec_jax.data import imported_tokenizers  # noqa: E402
from encdec_jax.data import packing, pipeline  # noqa: E402
from encdec_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from encdec_jax.decoding.config import make_decode_fn  # noqa: E402
from encdec_jax.models.contract import shift_right, special_ids  # noqa: E402
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.pretrained import export_hf, hf_tokenizers  # noqa: E402
from encdec_jax.pretrained import import_hf  # noqa: E402
from encdec_jax.tasks import losses  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
FAMILIES = (("bart", "bart_bpe"), ("marian", "marian"))


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f[0])
def family(request):
  """(name, kind, TransformerConfig, params, eos id, tokenizer, reference)."""
  name, kind = request.param
  _, config, params, eos = import_hf.convert(os.path.join(DATA, name))
  tokenizer = hf_tokenizers.load_tokenizer(os.path.join(DATA, name), kind)
  with np.load(os.path.join(DATA, name, "reference.npz")) as ref:
    reference = dict(ref)
  return name, kind, config, params, eos, tokenizer, reference


def _config(**fields) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      max_source_length=32, max_target_length=32, bucket_boundaries=(32,),
      overlong="truncate", max_decode_length=8,
      decode=ml_collections.ConfigDict({"algorithm": "greedy"})))
  config.update(fields)
  return config


def test_batches_hold_the_hugging_face_ids(family):
  name, _, config, _, _, tokenizer, _ = family
  with open(os.path.join(DATA, name, "tokenizer_reference.json")) as f:
    ref = json.load(f)
  pairs = [{"source": s, "target": s} for s in ref["sentences"]]
  batch = next(iter(pipeline.eval_batches(pairs, tokenizer, _config(), 8)))
  pad = config.pad_id
  assert tokenizer_lib.pad_id_of(tokenizer) == pad != 0
  # BART: <s> ... </s>, targets alike; Marian: targets through target.spm.
  for side, key in (("inputs", "input_ids"),
                    ("targets", "target_ids" if name == "marian"
                     else "input_ids")):
    for row, ids in zip(batch[side], ref[key]):
      assert row[:len(ids)].tolist() == ids, side
      assert (row[len(ids):] == pad).all(), side
    assert (batch[side][len(pairs):] == pad).all()  # the padding rows
  if name == "marian":
    assert ref["target_ids"] != ref["input_ids"]


def test_the_loss_is_the_cross_entropy_of_hugging_faces_labels(family):
  """Labels whose shift is the reference's decoder inputs: our loss reads
  the reference logits and counts every label but padding (id 0 too: BART's
  <s>, Marian's EOS)."""
  _, _, config, params, eos, _, ref = family
  pad_id, start_id = special_ids(EncoderDecoder(config))
  decoder_in = ref["decoder_input_ids"]
  assert (decoder_in[:, 0] == start_id).all() and start_id == config.start_id
  labels = np.concatenate(
      [decoder_in[:, 1:], np.array([[pad_id], [0], [eos]])], axis=1)
  np.testing.assert_array_equal(shift_right(jnp.asarray(labels), start_id),
                                decoder_in)
  batch = {"inputs": ref["input_ids"], "targets": labels,
           "example_weight": np.ones(3, np.float32)}
  _, sums = losses.seq2seq_loss(EncoderDecoder(config), 0.0)(params, batch)
  logp = jax.nn.log_softmax(ref["logits"].astype(np.float64), axis=-1)
  picked = np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  real = labels != pad_id
  assert real.sum() == 3 * labels.shape[1] - 1 == float(sums["tokens"])
  np.testing.assert_allclose(float(sums["nll"]), -(picked * real).sum(),
                             rtol=1e-5)


def test_packed_rows_start_each_pair_with_the_start_id_and_mask_by_segment():
  # grain pads packed rows with 0, which is a real id of BART (<s>).
  targets = jnp.array([[0, 7, 2, 0, 9, 2, 0, 0]])
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 0, 0]])
  np.testing.assert_array_equal(
      packing.shift_right_packed(targets, segments, start_id=2),
      [[2, 0, 7, 2, 0, 9, 2, 0]])
  batch = {"targets": targets, "targets_segment_ids": segments,
           "example_weight": jnp.ones(1)}
  np.testing.assert_array_equal(losses.token_weights(batch, pad_id=1),
                                [[1, 1, 1, 1, 1, 1, 0, 0]])


def test_decoding_starts_from_the_models_start_id(family):
  _, _, config, params, eos, _, ref = family
  steps = int(ref["max_new_tokens"])
  decode = make_decode_fn(EncoderDecoder(config),
                          _config(max_decode_length=steps), eos)
  tokens = np.asarray(decode(params, jnp.asarray(ref["input_ids"]),
                             jax.random.key(0)))
  for row, expected in zip(tokens.tolist(), ref["greedy"].tolist()):
    end = expected.index(eos) + 1 if eos in expected else len(expected)
    assert row[:end] == expected[:end]


def test_an_imported_tokenizer_is_read_from_the_workdirs_origin(tmp_path):
  assert imported_tokenizers.IMPORTED_DIR == os.path.join(export_hf.ORIGIN,
                                                          "hf")
  assert set(imported_tokenizers.IMPORTED_FILES.items()) <= set(
      import_hf.TOKENIZER_FILES.items())
  config = ml_collections.ConfigDict({"tokenizer": "marian"})
  with pytest.raises(FileNotFoundError, match="lacks source.spm, target.spm, "
                     "vocab.json: .* set --config.init_from"):
    tokenizer_lib.load_or_train_tokenizer(config, str(tmp_path), None)
  import_hf.import_hf(os.path.join(DATA, "marian"), str(tmp_path / "pre"))
  os.makedirs(tmp_path / "run" / export_hf.ORIGIN)
  os.symlink(tmp_path / "pre" / "hf",
             tmp_path / "run" / imported_tokenizers.IMPORTED_DIR)
  tokenizer = tokenizer_lib.load_or_train_tokenizer(
      config, str(tmp_path / "run"), None)
  assert tokenizer_lib.kind_of(tokenizer) == "marian"
  record = tokenizer_lib.vocab_record(tokenizer)
  assert record["kind"] == "marian" and len(record["sha256"]) == 64
  bart = hf_tokenizers.load_tokenizer(os.path.join(DATA, "bart"), "bart_bpe")
  assert tokenizer_lib.vocab_record(bart)["sha256"] != record["sha256"]
