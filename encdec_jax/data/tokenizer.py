"""Tokenizers: SentencePiece trained on the training split, raw UTF-8 bytes,
or the WordPiece vocabulary of an imported BERT-family encoder.

SentencePiece and bytes share one id layout (the Flax WMT convention): 0 = pad
(also the decoder's start token), 1 = EOS, 2 = unknown. WordPiece keeps BERT's
ids, so a pretrained encoder sees exactly what it was trained on: 0 = [PAD]
(our encoders mask id 0 too), [CLS] first, [SEP] as its `eos_id`. The
tokenizer is stored in the workdir next to the checkpoints (TOKENIZER_FILES),
so a resumed or evaluated run reads exactly the vocabulary it was trained with.
An imported BART or Marian model brings its own (data/imported_tokenizers.py:
other pad and EOS ids, Marian a separate target model), read from the
import's files in the workdir.
"""

import hashlib
import os
import sys
import tempfile
from typing import Iterable, Protocol

import numpy as np
import sentencepiece as spm

from encdec_jax import io_utils
from encdec_jax.data import imported_tokenizers
from encdec_jax.data.imported_tokenizers import MissingPackageError  # noqa: F401

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# The values of config.tokenizer.
IMPORTED_KINDS = tuple(imported_tokenizers.IMPORTED_FILES)  # never trained
TOKENIZERS = ("sentencepiece", "bytes", "wordpiece", *IMPORTED_KINDS)


class Tokenizer(Protocol):
  """What the pipeline and the evaluations use. A tokenizer may also have
  `pad_id` (what batches are padded with; PAD_ID without it) and
  `encode_target(text)` (target-side ids where they are cut differently:
  Marian); see pad_id_of and encode_target."""

  vocab_size: int
  eos_id: int  # What the pipeline appends to every text (EOS_ID, or [SEP]).

  def encode(self, text: str) -> np.ndarray:
    """Token ids of `text`, without EOS."""

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`, stopping at the first EOS and skipping pads."""


def pad_id_of(tokenizer: Tokenizer) -> int:
  """The id batches of this tokenizer's text are padded with."""
  return getattr(tokenizer, "pad_id", PAD_ID)


def encode_target(tokenizer: Tokenizer, text: str) -> np.ndarray:
  """Target-side ids of `text` (Marian: its target SentencePiece model)."""
  encode = getattr(tokenizer, "encode_target", tokenizer.encode)
  return encode(text)


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
  eos_id = EOS_ID

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

  eos_id = EOS_ID
  unk_id = UNK_ID

  def __init__(self, model_proto: bytes):
    self.model_proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size = self._sp.get_piece_size()

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._sp.encode(text), np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    # Ids past the model (an imported T5's sentinels and padding rows) are
    # skipped, not an error.
    return self._sp.decode([i for i in _strip(ids) if i < self.vocab_size])

  def piece(self, token_id: int) -> str:
    """The vocabulary entry of one id ('▁' marks a word start)."""
    return self._sp.id_to_piece(int(token_id))


_import_tokenizers = imported_tokenizers.import_tokenizers


class WordPieceTokenizer:
  """BERT's uncased WordPiece, from a Hugging Face `tokenizer.json`.

  encode(text) is [CLS] + word pieces; the pipeline appends `eos_id` ([SEP])
  and caps the length with it kept, so batches hold exactly the `input_ids`
  of Hugging Face's tokenizer with truncation=True, max_length =
  max_source_length. The shipped file pads every text to 128 and truncates
  there; both are switched off here because the pipeline pads to its buckets
  and truncates itself. `tokenizer_json` (the file's bytes, unchanged) is
  what the vocabulary record hashes and what checkpoints store.
  """

  def __init__(self, tokenizer_json: bytes):
    tokenizers = _import_tokenizers()
    self.tokenizer_json = tokenizer_json
    self._tok = tokenizers.Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    self._tok.no_padding()
    self._tok.no_truncation()
    self.vocab_size = self._tok.get_vocab_size()
    ids = {t: self._tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]")}
    if None in ids.values() or ids["[PAD]"] != PAD_ID:
      raise ValueError(f"not a BERT WordPiece tokenizer.json: need [PAD] = "
                       f"{PAD_ID} (the id our encoders mask), [CLS] and "
                       f"[SEP]; found {ids}.")
    self.cls_id, self.eos_id = ids["[CLS]"], ids["[SEP]"]
    self.unk_id = self._tok.token_to_id("[UNK]")

  def encode(self, text: str) -> np.ndarray:
    pieces = self._tok.encode(text, add_special_tokens=False).ids
    return np.asarray([self.cls_id, *pieces], np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    """Text up to the first [SEP], special tokens dropped (lower-cased)."""
    out = []
    for i in map(int, ids):
      if i == self.eos_id:
        break
      out.append(i)
    return self._tok.decode(out, skip_special_tokens=True)

  def piece(self, token_id: int) -> str:
    """The vocabulary entry of one id ('##' marks a word continuation)."""
    return self._tok.id_to_token(int(token_id))


def unknown_characters(tokenizer: Tokenizer, text: str) -> list[str]:
  """The characters of `text` that `tokenizer` can only read as unknown
  (sorted; none for bytes, which covers everything)."""
  unk = getattr(tokenizer, "unk_id", None)
  if unk is None or unk not in tokenizer.encode(text):
    return []
  return sorted(c for c in set(text)
                if not c.isspace() and unk in tokenizer.encode(c))


def warn_unknown(tokenizer: Tokenizer, lines: list[str], file=None) -> int:
  """One warning line if any of `lines` has characters outside the
  tokenizer's vocabulary (the model reads them as <unk>); how many lines."""
  found = {}
  for number, line in enumerate(lines, 1):
    for char in unknown_characters(tokenizer, line):
      found.setdefault(char, number)
  bad = sum(bool(unknown_characters(tokenizer, line)) for line in lines
            ) if found else 0
  if found:
    shown = ", ".join(f"{c!r} (line {n})" for c, n in list(found.items())[:5])
    print(f"warning: {bad} of {len(lines)} input lines have characters the "
          f"tokenizer does not know, read as unknown: {shown}"
          + (f" and {len(found) - 5} more" if len(found) > 5 else ""),
          file=file or sys.stderr, flush=True)
  return bad


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
      return SentencePieceTokenizer(without_training_paths(f.read()))


def without_training_paths(model_proto: bytes) -> bytes:
  """The model with what records where and how it was trained cleared (the
  temporary corpus and prefix paths, the thread count), so the same pieces,
  scores, types and normaliser give the same bytes, and the same sha256 in
  vocab_record: a tokenizer.model trained again on the same data (after it
  was deleted from a workdir) is recognised as the same vocabulary."""
  # Here, not at the top: the proto module needs protobuf, which only this
  # vocabulary record reads.
  from sentencepiece import sentencepiece_model_pb2
  model = sentencepiece_model_pb2.ModelProto()
  model.ParseFromString(model_proto)
  for field in ("input", "model_prefix", "num_threads"):
    model.trainer_spec.ClearField(field)
  return model.SerializeToString(deterministic=True)


# The file each kind of tokenizer is stored as (bytes need none).
TOKENIZER_FILES = {"sentencepiece": "tokenizer.model",
                   "wordpiece": "tokenizer.json"}


def tokenizer_path(workdir: str, kind: str = "sentencepiece") -> str:
  return os.path.join(workdir, TOKENIZER_FILES[kind])


def kind_of(tokenizer: Tokenizer) -> str:
  """One of TOKENIZERS (the values of config.tokenizer)."""
  for kind, cls in (("bytes", ByteTokenizer),
                    ("sentencepiece", SentencePieceTokenizer),
                    ("wordpiece", WordPieceTokenizer),
                    *imported_tokenizers.CLASSES.items()):
    if isinstance(tokenizer, cls):
      return kind
  raise ValueError(f"no vocabulary record for {type(tokenizer).__name__}; use "
                   "ByteTokenizer, SentencePieceTokenizer, "
                   "WordPieceTokenizer or an imported model's tokenizer.")


def serialized(tokenizer: Tokenizer) -> bytes | None:
  """The bytes of the tokenizer's file (TOKENIZER_FILES), None for bytes
  and an imported model's (read from the import's files)."""
  kind = kind_of(tokenizer)
  if kind == "sentencepiece":
    return tokenizer.model_proto
  if kind == "wordpiece":
    return tokenizer.tokenizer_json
  return None


def from_serialized(kind: str, data: bytes) -> Tokenizer:
  """The tokenizer of `kind` whose file holds `data`."""
  if kind == "sentencepiece":
    return SentencePieceTokenizer(data)
  if kind == "wordpiece":
    return WordPieceTokenizer(data)
  raise ValueError(f"tokenizer kind {kind!r} is not stored as a file; "
                   f"expected one of {sorted(TOKENIZER_FILES)}.")


def vocab_record(tokenizer: Tokenizer) -> dict:
  """JSON-able identity of the id -> token mapping: equal records, same ids."""
  kind = kind_of(tokenizer)
  record = {"kind": kind, "size": tokenizer.vocab_size}
  data = serialized(tokenizer)
  if data is not None:
    record["sha256"] = hashlib.sha256(data).hexdigest()
  elif kind in imported_tokenizers.IMPORTED_FILES:
    record["sha256"] = imported_tokenizers.fingerprint(tokenizer)
  return record


def write_model_proto(path: str, model_proto: bytes) -> None:
  """Atomic: a killed run never leaves half a model at `path`."""
  io_utils.write_atomically(path, model_proto)


def load_or_train_tokenizer(config, workdir: str | None,
                            train_texts) -> Tokenizer:
  """The workdir's tokenizer if present, else a new one (saved there).

  `train_texts` is a zero-argument callable yielding training text, so nothing
  is read when the tokenizer already exists.
  """
  if config.tokenizer == "bytes":
    return ByteTokenizer()
  if config.tokenizer == "wordpiece":
    return _read_wordpiece(workdir)
  if config.tokenizer in IMPORTED_KINDS:
    return read_imported(config.tokenizer, workdir)
  if config.tokenizer != "sentencepiece":
    raise ValueError(f"config.tokenizer={config.tokenizer!r} is not known; "
                     f"use one of {TOKENIZERS}.")
  path = tokenizer_path(workdir) if workdir else None
  if path and os.path.exists(path):
    with open(path, "rb") as f:
      return SentencePieceTokenizer(f.read())
  tokenizer = train_sentencepiece(train_texts(), config.vocab_size)
  if path:
    write_model_proto(path, tokenizer.model_proto)
  return tokenizer


def _read_wordpiece(workdir: str | None) -> WordPieceTokenizer:
  """The workdir's tokenizer.json: WordPiece is imported, never trained."""
  path = tokenizer_path(workdir, "wordpiece") if workdir else "<no workdir>"
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"no WordPiece tokenizer at {path}: WordPiece comes with an imported "
        "encoder; set --config.init_encoder to it (python -m "
        "encdec_jax.pretrained.minilm DIR imports one).")
  with open(path, "rb") as f:
    return WordPieceTokenizer(f.read())


def read_imported(kind: str, workdir: str | None):
  """An imported model's tokenizer, from the import's files that the
  hf_import start put in the workdir (imported_tokenizers.IMPORTED_DIR)."""
  where = (os.path.join(workdir, imported_tokenizers.IMPORTED_DIR)
           if workdir else "<no workdir>")
  missing = [name for name in imported_tokenizers.IMPORTED_FILES[kind]
             if not os.path.isfile(os.path.join(where, name))]
  if missing:
    raise FileNotFoundError(
        f"config.tokenizer={kind} but {where} lacks {', '.join(missing)}: "
        "this tokenizer comes with an imported model; set "
        "--config.init_from to its import_hf directory.")
  return imported_tokenizers.read(where, kind)
