"""The tokenizers of imported Hugging Face models, in our Tokenizer protocol
(encdec_jax.data.tokenizer): encode(text) gives the ids without EOS (the
pipeline appends `eos_id`), decode(ids) stops at EOS and skips padding.

  t5_sentencepiece  spiece.model through sentencepiece: T5's ids (pad 0,
                    EOS 1, unk 2) are ours, so it is our SentencePieceTokenizer;
                    ids past the SentencePiece vocabulary (T5's <extra_id_k>
                    sentinels and the model's padding rows) decode to nothing.
  bytes             ByT5: UTF-8 bytes + 3, our ByteTokenizer.
  bart_bpe, marian  BART's byte-level BPE and Marian's two SentencePiece
                    models + vocab.json, with their own pad and EOS ids:
                    encdec_jax/data/imported_tokenizers.py (the trainer reads
                    them too).
"""

import os
from typing import Iterable

from encdec_jax.data import imported_tokenizers
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.data.imported_tokenizers import (  # noqa: F401
    BartTokenizer, MarianTokenizer)


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


class T5SentencePieceTokenizer(tokenizer_lib.SentencePieceTokenizer):
  """spiece.model; decode ignores ids the SentencePiece model lacks."""

  def decode(self, ids: Iterable[int]) -> str:
    return super().decode(i for i in ids if int(i) < self.vocab_size)

  def piece(self, token_id: int) -> str:
    if token_id >= self.vocab_size:
      return f"<id_{int(token_id)}>"
    return super().piece(token_id)


def load_tokenizer(files_dir: str, kind: str):
  """The tokenizer of `kind` (import_hf.TOKENIZER_FILES) from a directory
  holding its files (a Hugging Face model directory, or an import's hf/)."""
  path = lambda name: os.path.join(files_dir, name)
  if kind == "t5_sentencepiece":
    return T5SentencePieceTokenizer(_read(path("spiece.model")))
  if kind == "bytes":
    return tokenizer_lib.ByteTokenizer()
  if kind in imported_tokenizers.IMPORTED_FILES:
    return imported_tokenizers.read(files_dir, kind)
  raise ValueError(f"unknown tokenizer kind {kind!r}")
