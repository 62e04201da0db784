r"""Serve an exported model with jax alone: no flax, no configs, no package
code (the directory is written by --mode=export_serving).

  served = serving.load("served/en_de")
  served.translate(["12", "", "345"])                   # greedy
  served.translate(lines, algorithm="beam")             # the exported K
  served.translate(lines, algorithm="sample", seed=3)

  python -m encdec_jax.serving --export=served/en_de --input=in.txt \
      --output=out.txt [--algorithm=beam] [--batch_size=32] [--seed=0]

The directory holds serving.json (what follows), params.safetensors (the
params, a flat '/'-joined name -> array map, passed to every artifact as its
first argument), the tokenizer's files (SentencePiece: tokenizer.model;
an imported BART: tokenizer.json; Marian: source.spm, target.spm,
vocab.json; none for bytes) and one jax.export artifact per entry point:
`encode` (hidden states and mask) and the whole decode loop for `greedy`,
`beam` (beam size fixed when exported) and `sample` (temperature, top-k,
top-p fixed; the seed and batch index are inputs: the key of batch i is
fold_in(key(seed), i), as --mode=decode draws it). The decoder's start
id, forced tokens and the model's own generation settings are baked in;
serving.json's special ids say what sources are padded with and end in,
and its source_prefix what they are read with. Batch size and source
length are symbolic; lines are padded to the source length buckets the
model was trained with, so a run compiles once per (batch size, bucket)
and decodes exactly as --mode=decode does.

This module imports only jax, numpy, sentencepiece, the standard library
and, for a BART export, tokenizers: it is the one file a service needs
besides the directory.
"""

import argparse
import contextlib
import hashlib
import json
import mmap
import os
import struct
import sys
import time
from typing import Iterable, Iterator

import jax
import numpy as np
import sentencepiece as spm
from jax import export

FORMAT = "encdec_jax.serving"
FORMAT_VERSION = 2  # 2: the tokenizer's files and the special ids listed
MANIFEST = "serving.json"
PARAMS_FILE = "params.safetensors"
ALGORITHMS = ("greedy", "beam", "sample")
PAD_ID = 0  # what the decode loop writes after EOS (serving.json: after_eos)
# What jax.default_backend() says -> the jax.export platforms it runs.
_BACKEND_PLATFORMS = {"cpu": ("cpu",), "gpu": ("cuda", "rocm"),
                      "tpu": ("tpu",)}
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16",
                       "BF16": "bfloat16", "I64": "int64", "I32": "int32",
                       "I16": "int16", "I8": "int8", "U8": "uint8",
                       "BOOL": "bool"}
_LINE_BREAKS = str.maketrans({c: " " for c in
                              "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


class ServingError(ValueError):
  """Bad input or a directory this loader cannot serve; one line that says
  what is wrong and what to do."""


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """name -> array of a safetensors file (memory-mapped, read-only): an
  8-byte little-endian header length, a JSON header, then the raw data."""
  try:
    with open(path, "rb") as f:
      data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    out = {}
    for name, entry in header.items():
      if name == "__metadata__":
        continue
      dtype = np.dtype(getattr(jax.numpy, _SAFETENSORS_DTYPES[entry["dtype"]]))
      start, end = entry["data_offsets"]
      array = np.frombuffer(data, np.uint8, end - start,
                            8 + header_len + start).view(dtype)
      out[name] = array.reshape(entry["shape"])
  except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
    raise ServingError(f"{path} is not a readable safetensors file ({e}); "
                       "export the model again.") from None
  return out


class ByteCodec:
  """UTF-8 bytes shifted past the special ids (encdec_jax's ByteTokenizer)."""

  def __init__(self, directory: str, ids: dict):
    del directory
    self.ids = ids

  def encode(self, text: str) -> list[int]:
    return [b + 3 for b in text.encode("utf-8")]

  def decode(self, ids: Iterable[int]) -> str:
    return bytes(i - 3 for i in _until_eos(ids, self.ids) if i >= 3).decode(
        "utf-8", errors="replace")


class SentencePieceCodec:
  """tokenizer.model; ids past it (an imported T5's sentinels and padding
  rows) decode to nothing."""

  def __init__(self, directory: str, ids: dict):
    self.ids = ids
    self._sp = spm.SentencePieceProcessor(
        model_file=os.path.join(directory, "tokenizer.model"))

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    size = self._sp.get_piece_size()
    return self._sp.decode([i for i in _until_eos(ids, self.ids)
                            if i < size])


class BartCodec:
  """An imported BART's byte-level BPE (tokenizer.json, through the
  `tokenizers` package): <s> + pieces, EOS appended by the loader."""

  def __init__(self, directory: str, ids: dict):
    try:
      import tokenizers  # only BART needs it (pip install tokenizers)
    except ImportError:
      raise ServingError("this export's BART tokenizer needs the "
                         "'tokenizers' package: pip install tokenizers"
                         ) from None
    self.ids = ids
    with open(os.path.join(directory, "tokenizer.json"),
              encoding="utf-8") as f:
      self._tok = tokenizers.Tokenizer.from_str(f.read())
    self._tok.no_padding()
    self._tok.no_truncation()

  def encode(self, text: str) -> list[int]:
    ids = self._tok.encode(text).ids  # <s> ... </s> (its post-processor)
    return ids[:-1] if ids and ids[-1] == self.ids["eos"] else ids

  def decode(self, ids: Iterable[int]) -> str:
    return self._tok.decode([i for i in _until_eos(ids, self.ids)
                             if i != self.ids["bos"]],
                            skip_special_tokens=True)


class MarianCodec:
  """An imported Marian's two SentencePiece models, pieces looked up in
  vocab.json: sources cut by source.spm, outputs joined by target.spm."""

  def __init__(self, directory: str, ids: dict):
    self.ids = ids
    path = lambda name: os.path.join(directory, name)
    self._source = spm.SentencePieceProcessor(model_file=path("source.spm"))
    self._target = spm.SentencePieceProcessor(model_file=path("target.spm"))
    with open(path("vocab.json"), encoding="utf-8") as f:
      self._vocab = json.load(f)
    self._pieces = {i: p for p, i in self._vocab.items()}

  def encode(self, text: str) -> list[int]:
    return [self._vocab.get(p, self.ids["unk"])
            for p in self._source.encode(text, out_type=str)]

  def decode(self, ids: Iterable[int]) -> str:
    return self._target.decode_pieces(
        [self._pieces[i] for i in _until_eos(ids, self.ids)
         if i in self._pieces])


# serving.json's tokenizer kind -> its codec.
CODECS = {"bytes": ByteCodec, "sentencepiece": SentencePieceCodec,
          "bart_bpe": BartCodec, "marian": MarianCodec}


def _until_eos(ids: Iterable[int], special: dict) -> list[int]:
  """The ids before the first EOS, pads dropped."""
  out = []
  for i in map(int, ids):
    if i == special["eos"]:
      break
    if i != special["pad"]:
      out.append(i)
  return out


def _read_manifest(directory: str) -> dict:
  path = os.path.join(directory, MANIFEST)
  if not os.path.isdir(directory):
    raise ServingError(f"{directory} is not a directory; give the --output "
                       "of --mode=export_serving.")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except FileNotFoundError:
    raise ServingError(f"{path} is missing: {directory} is not a served "
                       "model; export one with --mode=export_serving.") from None
  except (OSError, ValueError) as e:
    raise ServingError(f"{path} cannot be read ({e}); export the model "
                       "again.") from None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    raise ServingError(f"{path} is not an {FORMAT} manifest; export the "
                       "model with --mode=export_serving.")
  version = manifest.get("format_version")
  if version != FORMAT_VERSION:
    raise ServingError(
        f"{directory} was written in serving format version {version} (by "
        f"jax {manifest.get('jax_version')}); this loader reads version "
        f"{FORMAT_VERSION}: export it again with this version of encdec_jax.")
  return manifest


def _check_platform(manifest: dict, directory: str) -> None:
  backend = jax.default_backend()
  runs = _BACKEND_PLATFORMS.get(backend, (backend,))
  if not set(runs) & set(manifest["platforms"]):
    raise ServingError(
        f"{directory} was lowered for {', '.join(manifest['platforms'])}; "
        f"this machine runs jax on {backend}: export it again with "
        f"--platforms=cpu,{runs[0]}, or serve it where it was lowered for.")


class Served:
  """An exported model, loaded: translate lines with any exported decoder."""

  def __init__(self, directory: str):
    self.directory = directory
    self.manifest = _read_manifest(directory)
    _check_platform(self.manifest, directory)
    files = [PARAMS_FILE] + [a["file"] for a in
                             self.manifest["artifacts"].values()]
    files += list(self.manifest["tokenizer"]["files"])
    missing = [f for f in files if not os.path.isfile(
        os.path.join(directory, f))]
    if missing:
      raise ServingError(f"{directory} lacks {', '.join(missing)}: the "
                         "export is incomplete; export the model again.")
    self.special_ids = self.manifest["special_ids"]
    self.source_prefix = self.manifest["source_prefix"]
    self.codec = self._codec()
    self._exported = {name: self._deserialize(entry["file"])
                      for name, entry in self.manifest["artifacts"].items()}
    params = read_safetensors(os.path.join(directory, PARAMS_FILE))
    self.params = jax.device_put(params)
    self._calls = {name: jax.jit(exported.call)
                   for name, exported in self._exported.items()}
    limits = self.manifest["limits"]
    self.max_batch_size = limits["max_batch_size"]
    self.max_source_tokens = limits["max_source_tokens"]
    self.buckets = limits["source_buckets"]

  def _codec(self):
    """The tokenizer, its files checked against serving.json's sha256."""
    tokenizer = self.manifest["tokenizer"]
    if tokenizer["kind"] not in CODECS:
      raise ServingError(
          f"{self.directory} holds a {tokenizer['kind']!r} tokenizer; this "
          f"loader reads {', '.join(CODECS)}: update encdec_jax.")
    for name, sha256 in tokenizer["files"].items():
      with open(os.path.join(self.directory, name), "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != sha256:
          raise ServingError(
              f"{os.path.join(self.directory, name)} is not the tokenizer "
              "file that was exported (its sha256 differs from serving."
              "json's); export the model again.")
    try:
      return CODECS[tokenizer["kind"]](self.directory, self.special_ids)
    except ServingError:
      raise
    except Exception as e:  # noqa: BLE001  sentencepiece, tokenizers: bare
      first = str(e).splitlines()[0] if str(e) else ""
      raise ServingError(
          f"the {tokenizer['kind']} tokenizer in {self.directory} cannot be "
          f"read ({type(e).__name__}: {first}); export the model again."
          ) from None

  def _deserialize(self, name: str) -> export.Exported:
    path = os.path.join(self.directory, name)
    with open(path, "rb") as f:
      blob = f.read()
    try:
      return export.deserialize(bytearray(blob))
    except ImportError:
      raise ServingError("reading a jax.export artifact needs the "
                         "'flatbuffers' package: pip install flatbuffers"
                         ) from None
    except Exception as e:  # noqa: BLE001  flatbuffers says little
      raise ServingError(
          f"{path} cannot be read by jax {jax.__version__} (written by jax "
          f"{self.manifest['jax_version']}: {type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}); export the model "
          "again with this jax.") from None

  @property
  def algorithms(self) -> tuple[str, ...]:
    return tuple(a for a in ALGORITHMS if a in self.manifest["artifacts"])

  def encode_line(self, text: str, number: int = 0) -> list[int]:
    """Token ids of one line read with the model's task prefix, EOS
    appended; a ServingError if longer than the model reads (line
    `number`, 1-based, named in it)."""
    if not text.startswith(self.source_prefix):
      text = self.source_prefix + text
    ids = list(self.codec.encode(text)) + [self.special_ids["eos"]]
    if len(ids) > self.max_source_tokens:
      where = f"line {number}" if number else "a line"
      raise ServingError(
          f"{where} is {len(ids)} tokens long (EOS included); this export "
          f"reads at most {self.max_source_tokens} (the model's "
          "max_source_length): shorten or split it.")
    return ids

  def pad(self, rows: list[list[int]], batch_size: int) -> np.ndarray:
    """int32 batch_size x bucket, padded with the model's pad id (rows past
    len(rows) all pad): the batch --mode=decode gives the same lines."""
    longest = max(map(len, rows))
    bucket = next(b for b in self.buckets if b >= longest)
    inputs_BxS = np.full((batch_size, bucket), self.special_ids["pad"],
                         np.int32)
    for i, row in enumerate(rows):
      inputs_BxS[i, :len(row)] = row
    return inputs_BxS

  def _check_batch(self, batch_size: int) -> None:
    if not 1 <= batch_size <= self.max_batch_size:
      raise ServingError(f"batch size {batch_size} is outside 1.."
                         f"{self.max_batch_size}, the bound this export was "
                         "made for; use a smaller batch.")

  def _artifact(self, algorithm: str):
    if algorithm not in self._calls or algorithm == "encode":
      raise ServingError(f"algorithm {algorithm!r} was not exported; use "
                         f"one of {', '.join(self.algorithms)}.")
    return self._calls[algorithm]

  def decode_ids(self, inputs_BxS: np.ndarray, algorithm: str = "greedy",
                 seed: int = 0, batch_index: int = 0) -> np.ndarray:
    """int32 tokens BxT (pad after EOS) of a padded batch of source ids."""
    call = self._artifact(algorithm)
    self._check_batch(inputs_BxS.shape[0])
    if inputs_BxS.ndim != 2 or inputs_BxS.shape[1] not in self.buckets:
      raise ServingError(f"source batch of shape {inputs_BxS.shape}: the "
                         f"length must be one of the buckets {self.buckets} "
                         "(use pad()).")
    args = [self.params, np.asarray(inputs_BxS, np.int32)]
    if algorithm == "sample":
      if not -2**31 <= seed < 2**31:
        raise ServingError(f"seed {seed} is not a 32-bit integer.")
      args += [np.int32(seed), np.int32(batch_index)]
    return np.asarray(call(*args))

  def encode(self, lines: list[str]) -> dict[str, np.ndarray]:
    """The encoder's outputs (hidden states, mask) for non-blank lines."""
    rows = [self.encode_line(line, n) for n, line in enumerate(lines, 1)]
    self._check_batch(len(rows))
    out = self._calls["encode"](self.params, self.pad(rows, len(rows)))
    return {name: np.asarray(value) for name, value in out.items()}

  def iter_translate(self, lines: Iterable[str], algorithm: str = "greedy",
                     batch_size: int | None = None,
                     seed: int = 0) -> Iterator[list[str]]:
    """Outputs of `lines` in input order, a chunk (list) per decoded batch
    of `batch_size` non-blank lines (default: the run's eval_batch_size);
    a blank line's output is ''. Reads `lines` lazily (a stream)."""
    self._artifact(algorithm)
    batch_size = batch_size or self.manifest["batch_size"]
    self._check_batch(batch_size)
    pending, rows, batch_index = [], [], 0
    for number, line in enumerate(lines, 1):
      blank = not line.strip()
      pending.append(None if blank else len(rows))
      if not blank:
        rows.append(self.encode_line(line, number))
      if len(rows) == batch_size:
        yield self._finish(pending, rows, algorithm, batch_size, seed,
                           batch_index)
        pending, rows, batch_index = [], [], batch_index + 1
    if pending:
      yield self._finish(pending, rows, algorithm, batch_size, seed,
                         batch_index)

  def _finish(self, pending, rows, algorithm, batch_size, seed, batch_index):
    outputs = []
    if rows:
      tokens_BxT = self.decode_ids(self.pad(rows, batch_size), algorithm,
                                   seed, batch_index)
      outputs = [self.codec.decode(row) for row in tokens_BxT[:len(rows)]]
    return ["" if i is None else outputs[i] for i in pending]

  def translate(self, lines: Iterable[str], algorithm: str = "greedy",
                batch_size: int | None = None, seed: int = 0) -> list[str]:
    """The output of each line ('' for a blank one), in order."""
    return [out for chunk in self.iter_translate(lines, algorithm,
                                                 batch_size, seed)
            for out in chunk]


def load(directory: str) -> Served:
  return Served(directory)


def read_lines(stream) -> Iterator[str]:
  """Lines of a binary stream as --mode=decode splits them: only '\\n' (and
  '\\r\\n') ends one, a leading BOM dropped, invalid UTF-8 an error."""
  for number, raw in enumerate(stream, 1):
    if number == 1:
      raw = raw.removeprefix(b"\xef\xbb\xbf")
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
      yield raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ServingError(f"input line {number}: invalid UTF-8 at byte "
                         f"{e.start + 1}; re-save it as UTF-8.") from None


def _parse(argv):
  parser = argparse.ArgumentParser(
      prog="python -m encdec_jax.serving",
      description="Translate one line per line with an exported model.")
  parser.add_argument("--export", required=True,
                      help="the directory --mode=export_serving wrote")
  parser.add_argument("--input", default="-", help="a text file, one "
                      "source a line; '-' (default) reads stdin")
  parser.add_argument("--output", default="-", help="a file, one output a "
                      "line; '-' (default) is stdout")
  parser.add_argument("--algorithm", default="greedy", choices=ALGORITHMS)
  parser.add_argument("--batch_size", type=int, default=None,
                      help="lines a batch (default: the run's eval batch)")
  parser.add_argument("--seed", type=int, default=0,
                      help="--algorithm=sample: batch i draws with "
                      "fold_in(key(seed), i)")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = _parse(argv)
  start = time.time()
  written = 0
  try:
    if args.input != "-" and not os.path.isfile(args.input):
      raise ServingError(f"--input={args.input}: no such file; give a text "
                         "file with one source per line, or '-' for stdin.")
    served = load(args.export)
    with contextlib.ExitStack() as files:  # closes what it opened only
      source = (sys.stdin.buffer if args.input == "-" else
                files.enter_context(open(args.input, "rb")))
      out = (sys.stdout if args.output == "-" else files.enter_context(
          open(args.output, "w", encoding="utf-8")))
      # Each batch is written (and flushed) as soon as it is decoded.
      for chunk in served.iter_translate(read_lines(source), args.algorithm,
                                         args.batch_size, args.seed):
        out.write("".join(line.translate(_LINE_BREAKS) + "\n"
                          for line in chunk))
        out.flush()
        written += len(chunk)
  except (ServingError, OSError) as e:
    print(f"error: {e}" + (f" ({written} lines written before it)"
                           if written else ""), file=sys.stderr)
    return 1
  print(f"wrote {written} lines in {time.time() - start:.1f} s",
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
