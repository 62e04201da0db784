"""The tokenizers of imported Hugging Face models, in our Tokenizer protocol
(encdec_jax.data.tokenizer): encode(text) gives the ids without EOS (the
pipeline appends `eos_id`), decode(ids) stops at EOS and skips padding.

  t5_sentencepiece  spiece.model through sentencepiece: T5's ids (pad 0,
                    EOS 1, unk 2) are ours, so it is our SentencePieceTokenizer;
                    ids past the SentencePiece vocabulary (T5's <extra_id_k>
                    sentinels and the model's padding rows) decode to nothing.
  bytes             ByT5: UTF-8 bytes + 3, our ByteTokenizer.
  bart_bpe          tokenizer.json (byte-level BPE) through `tokenizers`:
                    <s> + pieces (BOS kept, EOS </s> = 2 appended by the
                    pipeline), pad 1.
  marian            source.spm / target.spm pieces looked up in vocab.json
                    (unknown pieces -> <unk>), EOS 0, pad = <pad>. Sources
                    are cut with source.spm, targets (encode_target) and
                    decoding with target.spm, as MarianTokenizer does (its
                    optional Moses punctuation normalisation is not applied).
"""

import json
import os
from typing import Iterable

import numpy as np
import sentencepiece as spm

from encdec_jax.data import tokenizer as tokenizer_lib


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


class BartTokenizer:
  """BART's byte-level BPE from tokenizer.json (needs `tokenizers`)."""

  def __init__(self, tokenizer_json: bytes):
    tokenizers = tokenizer_lib._import_tokenizers()
    self.tokenizer_json = tokenizer_json
    self._tok = tokenizers.Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    self._tok.no_padding()
    self._tok.no_truncation()
    ids = {t: self._tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>")}
    if None in ids.values():
      raise ValueError("tokenizer.json lacks <s>, <pad> or </s>: not BART's")
    self.bos_id, self.pad_id, self.eos_id = (ids["<s>"], ids["<pad>"],
                                             ids["</s>"])
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> np.ndarray:
    ids = self._tok.encode(text).ids  # <s> ... </s> (its post-processor)
    if ids and ids[-1] == self.eos_id:
      ids = ids[:-1]
    return np.asarray(ids, np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    out = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if i not in (self.pad_id, self.bos_id):
        out.append(i)
    return self._tok.decode(out, skip_special_tokens=True)

  def piece(self, token_id: int) -> str:
    return self._tok.id_to_token(int(token_id))


class MarianTokenizer:
  """opus-mt: SentencePiece pieces mapped through vocab.json."""

  def __init__(self, source_spm: bytes, target_spm: bytes, vocab_json: bytes):
    self.source_spm, self.target_spm = source_spm, target_spm
    self.vocab_json = vocab_json
    self._source = spm.SentencePieceProcessor(model_proto=source_spm)
    self._target = spm.SentencePieceProcessor(model_proto=target_spm)
    self._vocab = json.loads(vocab_json.decode("utf-8"))
    self._pieces = {i: p for p, i in self._vocab.items()}
    for token in ("</s>", "<unk>", "<pad>"):
      if token not in self._vocab:
        raise ValueError(f"vocab.json lacks {token}: not a Marian vocabulary")
    self.eos_id = self._vocab["</s>"]
    self.unk_id = self._vocab["<unk>"]
    self.pad_id = self._vocab["<pad>"]
    self.vocab_size = max(self._pieces) + 1

  def _ids(self, sp, text: str) -> np.ndarray:
    pieces = sp.encode(text, out_type=str)
    return np.asarray([self._vocab.get(p, self.unk_id) for p in pieces],
                      np.int32)

  def encode(self, text: str) -> np.ndarray:
    """Source-side ids (source.spm)."""
    return self._ids(self._source, text)

  def encode_target(self, text: str) -> np.ndarray:
    """Target-side ids (target.spm), as MarianTokenizer(text_target=...)."""
    return self._ids(self._target, text)

  def decode(self, ids: Iterable[int]) -> str:
    pieces = []
    for i in ids:
      i = int(i)
      if i == self.eos_id:
        break
      if i != self.pad_id and i in self._pieces:
        pieces.append(self._pieces[i])
    return self._target.decode_pieces(pieces)

  def piece(self, token_id: int) -> str:
    return self._pieces.get(int(token_id), "<unk>")


def load_tokenizer(files_dir: str, kind: str):
  """The tokenizer of `kind` (import_hf.TOKENIZER_FILES) from a directory
  holding its files (a Hugging Face model directory, or an import's hf/)."""
  path = lambda name: os.path.join(files_dir, name)
  if kind == "t5_sentencepiece":
    return T5SentencePieceTokenizer(_read(path("spiece.model")))
  if kind == "bytes":
    return tokenizer_lib.ByteTokenizer()
  if kind == "bart_bpe":
    return BartTokenizer(_read(path("tokenizer.json")))
  if kind == "marian":
    return MarianTokenizer(_read(path("source.spm")), _read(path("target.spm")),
                           _read(path("vocab.json")))
  raise ValueError(f"unknown tokenizer kind {kind!r}")
