"""A pretrained T5's export against logits that transformers recorded once
(tests/data/pretrained_tiny/make_reference.py, torch 2.13 / transformers
5.23): our model computes them from the exported directory, and the
tokenizer numbers the sentinels as Hugging Face's T5 tokenizer did. No torch
needed; tests/test_pretraining.py checks that today's export_hf writes
that directory's format."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.pretrained import import_hf

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "pretrained_tiny")
EXPORTED = os.path.join(REFERENCE, "hf")


def _reference() -> dict:
  with np.load(os.path.join(REFERENCE, "reference.npz")) as npz:
    return dict(npz)


def test_the_export_gives_the_recorded_transformers_logits():
  ref = _reference()
  _, config, params, eos = import_hf.convert(EXPORTED)
  model = EncoderDecoder(config)
  # Jitted: op by op, the tiny model takes ~4x longer.
  ours = jax.jit(lambda p, inputs, targets_in: model.apply(
      {"params": p}, inputs, targets_in))(
          params, jnp.asarray(ref["input_ids"], jnp.int32),
          jnp.asarray(ref["decoder_input_ids"], jnp.int32))
  assert eos == tokenizer_lib.EOS_ID
  assert ours.shape == ref["logits"].shape == (2, 4, 400)
  error = np.abs(np.asarray(ours) - ref["logits"]).max()
  assert error <= 1e-5 * np.abs(ref["logits"]).max(), error


def test_the_sentinels_are_numbered_as_transformers_read_them():
  with open(os.path.join(EXPORTED, "spiece.model"), "rb") as f:
    pieces = tokenizer_lib.SentencePieceTokenizer(f.read()).vocab_size
  extra_ids = 100
  # <extra_id_k> = pieces + extra_ids - 1 - k (docs/pretraining.md).
  assert _reference()["extra_ids"].tolist() == [pieces + extra_ids - 1,
                                                pieces]
