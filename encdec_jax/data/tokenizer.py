"""Tokenizers: SentencePiece trained on the training split, or raw UTF-8 bytes.

Both share one id layout (the Flax WMT convention): 0 = pad (also the decoder's
start token), 1 = EOS, 2 = unknown. The tokenizer is stored in the workdir next
to the checkpoints, so a resumed or evaluated run reads exactly the vocabulary
it was trained with.
"""

import hashlib
import os
import tempfile
from typing import Iterable, Protocol

import numpy as np
import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


class Tokenizer(Protocol):
  vocab_size: int

  def encode(self, text: str) -> np.ndarray:
    """Token ids of `text`, without EOS."""

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`, stopping at the first EOS and skipping pads."""


def _strip(ids: Iterable[int]) -> list[int]:
  out = []
  for i in ids:
    i = int(i)
    if i == EOS_ID:
      break
    if i != PAD_ID:
      out.append(i)
  return out


class ByteTokenizer:
  """UTF-8 bytes shifted past the special ids: no training, any language."""

  vocab_size = 256 + 3

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 3

  def decode(self, ids: Iterable[int]) -> str:
    data = bytes(i - 3 for i in _strip(ids) if i >= 3)
    return data.decode("utf-8", errors="replace")

  def piece(self, token_id: int) -> str:
    """One id as text (special ids as <pad>, <eos>, <unk>)."""
    if token_id < 3:
      return ("<pad>", "<eos>", "<unk>")[token_id]
    return bytes([token_id - 3]).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
  """A trained SentencePiece model (read from its serialized bytes)."""

  def __init__(self, model_proto: bytes):
    self.model_proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size = self._sp.get_piece_size()

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._sp.encode(text), np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    return self._sp.decode(_strip(ids))

  def piece(self, token_id: int) -> str:
    """The vocabulary entry of one id ('▁' marks a word start)."""
    return self._sp.id_to_piece(int(token_id))


def train_sentencepiece(texts: Iterable[str], vocab_size: int,
                        max_sentences: int = 200_000) -> SentencePieceTokenizer:
  """Trains a unigram SentencePiece model on `texts` (source and target)."""
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
      for i, text in enumerate(texts):
        if i >= max_sentences:
          break
        f.write(text.replace("\n", " ") + "\n")
    prefix = os.path.join(tmp, "sp")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        # A small closed-domain corpus may not support the requested size.
        hard_vocab_limit=False, num_threads=os.cpu_count() or 1,
        # One piece per digit (as T5 and LLaMA): otherwise random digit
        # strings fill a small vocabulary with n-grams like '3385'.
        split_digits=True, minloglevel=2)
    with open(prefix + ".model", "rb") as f:
      return SentencePieceTokenizer(f.read())


def tokenizer_path(workdir: str) -> str:
  return os.path.join(workdir, "tokenizer.model")


def vocab_record(tokenizer: Tokenizer) -> dict:
  """JSON-able identity of the id -> token mapping: equal records, same ids."""
  if isinstance(tokenizer, ByteTokenizer):
    return {"kind": "bytes", "size": tokenizer.vocab_size}
  if isinstance(tokenizer, SentencePieceTokenizer):
    return {"kind": "sentencepiece", "size": tokenizer.vocab_size,
            "sha256": hashlib.sha256(tokenizer.model_proto).hexdigest()}
  raise ValueError(f"no vocabulary record for {type(tokenizer).__name__}; use "
                   "ByteTokenizer or SentencePieceTokenizer.")


def write_model_proto(path: str, model_proto: bytes) -> None:
  """Atomic: a killed run never leaves half a model at `path`."""
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(model_proto)
  os.replace(tmp, path)


def load_or_train_tokenizer(config, workdir: str | None,
                            train_texts) -> Tokenizer:
  """The workdir's tokenizer if present, else a new one (saved there).

  `train_texts` is a zero-argument callable yielding training text, so nothing
  is read when the tokenizer already exists.
  """
  if config.tokenizer == "bytes":
    return ByteTokenizer()
  if config.tokenizer != "sentencepiece":
    raise ValueError(f"config.tokenizer={config.tokenizer!r} is not known; "
                     "use 'sentencepiece' or 'bytes'.")
  path = tokenizer_path(workdir) if workdir else None
  if path and os.path.exists(path):
    with open(path, "rb") as f:
      return SentencePieceTokenizer(f.read())
  tokenizer = train_sentencepiece(train_texts(), config.vocab_size)
  if path:
    write_model_proto(path, tokenizer.model_proto)
  return tokenizer
