"""The tokenizers of imported BART and Marian models (config.tokenizer
"bart_bpe" / "marian"), in our Tokenizer protocol: encode(text) gives the
ids without EOS (the pipeline appends `eos_id`), decode(ids) stops at EOS
and skips padding. Unlike ours they carry their own special ids: `pad_id`
(what the pipeline pads with) and `eos_id`.

  bart_bpe  tokenizer.json (byte-level BPE) through `tokenizers`: <s> +
            pieces (BOS kept, EOS </s> = 2 appended by the pipeline), pad
            1; sources and targets alike, as BartTokenizer(text_target=...).
  marian    source.spm / target.spm pieces looked up in vocab.json (unknown
            pieces -> <unk>), EOS 0, pad = <pad>. Sources are cut with
            source.spm, targets (encode_target) and decoding with
            target.spm, as MarianTokenizer does (its optional Moses
            punctuation normalisation is not applied).

They are imported, never trained: a fine-tuning workdir reads them from the
import's files that the hf_import start copies into it (IMPORTED_DIR).
"""

import hashlib
import json
import os
from typing import Iterable

import numpy as np
import sentencepiece as spm

# kind (config.tokenizer) -> the Hugging Face files it is read from.
IMPORTED_FILES = {"bart_bpe": ("tokenizer.json",),
                  "marian": ("source.spm", "target.spm", "vocab.json")}
# Where a fine-tuning workdir holds them: the import's hf/ directory, copied
# under the workdir's export origin (pretrained/export_hf.ORIGIN) by the
# hf_import start, so export_hf writes the same files back.
IMPORTED_DIR = os.path.join("pretrained", "hf")


class MissingPackageError(ImportError):
  """An optional package is not installed; the message says how to get it."""


def import_tokenizers(what: str = "the WordPiece tokenizer"):
  """The `tokenizers` package, or a one-line error saying how to get it."""
  try:  # optional ('.[pretrained]'): only imported tokenizers need it
    import tokenizers
  except ImportError:
    raise MissingPackageError(
        f"{what} needs the 'tokenizers' package; install it with: "
        "pip install -e '.[pretrained]' (or pip install tokenizers)"
    ) from None
  return tokenizers


class BartTokenizer:
  """BART's byte-level BPE from tokenizer.json (needs `tokenizers`)."""

  def __init__(self, tokenizer_json: bytes):
    tokenizers = import_tokenizers("BART's tokenizer")
    self.tokenizer_json = tokenizer_json
    self._tok = tokenizers.Tokenizer.from_str(tokenizer_json.decode("utf-8"))
    self._tok.no_padding()
    self._tok.no_truncation()
    ids = {t: self._tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>")}
    if None in ids.values():
      raise ValueError("tokenizer.json lacks <s>, <pad> or </s>: not BART's")
    self.bos_id, self.pad_id, self.eos_id = (ids["<s>"], ids["<pad>"],
                                             ids["</s>"])
    self.unk_id = self._tok.token_to_id("<unk>")
    self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def files(self) -> dict:
    return {"tokenizer.json": self.tokenizer_json}

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

  @property
  def files(self) -> dict:
    return {"source.spm": self.source_spm, "target.spm": self.target_spm,
            "vocab.json": self.vocab_json}

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


CLASSES = {"bart_bpe": BartTokenizer, "marian": MarianTokenizer}


def from_files(kind: str, files: dict):
  """The tokenizer of `kind` from its files' bytes (IMPORTED_FILES names)."""
  return CLASSES[kind](*(files[name] for name in IMPORTED_FILES[kind]))


def read(files_dir: str, kind: str):
  """The tokenizer of `kind` from a directory holding its files."""
  files = {}
  for name in IMPORTED_FILES[kind]:
    with open(os.path.join(files_dir, name), "rb") as f:
      files[name] = f.read()
  return from_files(kind, files)


def fingerprint(tokenizer) -> str:
  """sha256 of the tokenizer's files (of the one file's bytes for BART),
  for the vocabulary record: equal fingerprints, same ids."""
  files = tokenizer.files
  if len(files) == 1:
    return hashlib.sha256(next(iter(files.values()))).hexdigest()
  digest = hashlib.sha256()
  for name in sorted(files):
    digest.update(f"{name}\0{len(files[name])}\0".encode())
    digest.update(files[name])
  return digest.hexdigest()
