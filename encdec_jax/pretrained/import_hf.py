r"""Hugging Face encoder-decoders (T5 / Flan-T5 / mT5, BART, Marian) as our
EncoderDecoder, without torch:

  python -m encdec_jax.pretrained.import_hf DIR OUT [--dtype=float32]

DIR is a Hugging Face model directory (config.json, the weights and the
tokenizer files: spiece.model for T5, tokenizer.json for BART,
source.spm + target.spm + vocab.json for Marian); the family comes from
config.json's model_type. The weights are read in any layout the Hub has
(weight_files): model.safetensors, its shards (model.safetensors.index.json),
pytorch_model.bin or its shards (pytorch_model.bin.index.json), preferring
safetensors; a .bin is read without torch and never unpickled
(torch_pickle), one tensor at a time (the checkpoint is never in memory
beside its conversion). float16 / bfloat16 weights import as float32;
--dtype=float16 / bfloat16 keeps (or casts) them to that dtype, --dtype=auto
keeps the checkpoint's. OUT (a new directory) gets

  pretrained.json     {"format", "family", "model": TransformerConfig fields,
                       "eos_id", "tokenizer": kind, "weights_dtype"}
  params.safetensors  our params, flat ("encoder/layers_0/attention/query/
                      kernel"), in weights_dtype (float32 by default), the
                      dtype export_hf writes back unless told otherwise
  hf/                 DIR's files but the weights (config.json,
                      generation_config.json, tokenizer files), which
                      export_hf writes back

It loads with `load(OUT)` (config, params, metadata), fine-tunes with
`--config.init_from=OUT` and goes back to Hugging Face format with
`python -m encdec_jax.pretrained.export_hf`. An unsupported model_type or an
unknown weight name is a one-line error naming it, and nothing is written.
"""

import dataclasses
import functools
import json
import os
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from encdec_jax.checkpoint import output_dir
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.pretrained import bart, config_json, hf_tokenizers, marian
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained import t5, weight_files
from encdec_jax.pretrained.hf import PretrainedError

FORMAT = "encdec_jax.pretrained/1"
FAMILIES = {"t5": t5, "mt5": t5, "bart": bart, "marian": marian}
# model_types that look close but are not one of FAMILIES: refused by name.
REFUSED = {
    "umt5": "UMT5 gives every layer its own relative position table (we "
            "share one per stack, as T5)",
    "longt5": "LongT5's local / transient-global attention is not "
              "implemented",
    "mbart": "mBART (pre-LayerNorm with final norms, language-code decoder "
             "starts) is not implemented",
    "pegasus": "Pegasus (pre-LayerNorm, its own sinusoidal layout) is not "
               "implemented",
    "switch_transformers": "mixture-of-experts layers are not implemented",
}
TOKENIZER_FILES = {  # kind -> files the tokenizer needs
    "t5_sentencepiece": ("spiece.model",),
    "bytes": (),
    "bart_bpe": ("tokenizer.json",),
    "marian": ("source.spm", "target.spm", "vocab.json"),
}
# DIR's files that go to OUT/hf/ (and back out with export_hf): configs,
# tokenizer files, READMEs; never weights.
HF_FILE_SUFFIXES = (".json", ".model", ".spm", ".txt", ".md")
WEIGHTS = weight_files.INDEX_FILES  # indexes of weights: not copied to hf/


def family_of(hf: dict):
  """The family module for config.json's model_type, or a one-line error."""
  model_type = hf.get("model_type")
  if model_type in REFUSED:
    raise PretrainedError(f"config.json: model_type {model_type!r} is not "
                          f"supported: {REFUSED[model_type]}")
  if model_type not in FAMILIES:
    raise PretrainedError(
        f"config.json: model_type {model_type!r} is not supported; "
        f"supported: {', '.join(FAMILIES)}")
  if not hf.get("is_encoder_decoder", True):
    raise PretrainedError(
        f"config.json: a {model_type} model with is_encoder_decoder=false "
        "(a decoder or encoder alone) is not supported")
  return FAMILIES[model_type]


def tokenizer_kind(model_dir: str, family) -> str:
  """Which of TOKENIZER_FILES the directory holds for its family."""
  has = lambda f: os.path.isfile(os.path.join(model_dir, f))
  if family is t5:
    if has("spiece.model"):
      return "t5_sentencepiece"
    tok_config = os.path.join(model_dir, "tokenizer_config.json")
    if has("tokenizer_config.json") and hf_lib.read_json(tok_config).get(
        "tokenizer_class") == "ByT5Tokenizer":
      return "bytes"
    kind = "t5_sentencepiece"
  elif family is bart:
    kind = "bart_bpe"
  else:
    kind = "marian"
  missing = [f for f in TOKENIZER_FILES[kind] if not has(f)]
  if missing:
    raise FileNotFoundError(
        f"{model_dir} lacks the tokenizer file(s) {', '.join(missing)} of a "
        f"{family.NAME} model; download them with the weights (they are in "
        "the model's Hugging Face repository)")
  return kind


def abstract_params(config: TransformerConfig) -> dict:
  """Our params' shapes (nothing computed)."""
  model = EncoderDecoder(config)
  ids_1x4 = jnp.full((1, 4), 2, jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), ids_1x4,
                                           ids_1x4))["params"]


@functools.lru_cache(maxsize=16)
def param_shapes(config: TransformerConfig) -> types.MappingProxyType:
  """Flat "a/b/c" path -> shape of our params, read-only (tracing the init
  costs ~0.5 s; the same config is imported again and again in tests)."""
  return types.MappingProxyType(hf_lib.flat_shapes(abstract_params(config)))


# --dtype: what the imported params are stored as (and exported as).
WEIGHTS_DTYPES = {"float32": np.dtype(np.float32),
                  "float16": np.dtype(np.float16),
                  "bfloat16": np.dtype(ml_dtypes.bfloat16)}
AUTO = "auto"  # the checkpoint's own floating-point dtype


def weights_dtype(name: str, tensors: weight_files.LazyTensors) -> np.dtype:
  """The dtype --dtype=`name` stores; "auto": the one the checkpoint holds."""
  if name == AUTO:
    stored = sorted(d.name for d in tensors.float_dtypes())
    if len(stored) != 1 or stored[0] not in WEIGHTS_DTYPES:
      raise PretrainedError(
          f"--dtype=auto: the checkpoint holds {' and '.join(stored) or 'no'}"
          " floating-point tensors; choose one with --dtype="
          + "|".join(WEIGHTS_DTYPES))
    name = stored[0]
  if name not in WEIGHTS_DTYPES:
    raise PretrainedError(f"--dtype={name} is not one of "
                          f"{', '.join(WEIGHTS_DTYPES)}, {AUTO}")
  return WEIGHTS_DTYPES[name]


def convert(model_dir: str, dtype=np.float32):
  """(family module, config, params, eos_id) of a Hugging Face directory.

  Floating-point weights (float16, bfloat16, ...) become `dtype` (float32 by
  default; a WEIGHTS_DTYPES name or "auto"; None keeps each tensor's
  dtype). The checkpoint is read one tensor at a time."""
  hf = config_json.read(model_dir)
  family = family_of(hf)
  weights = weight_files.find_weights(model_dir)
  tensors = weights.open(None)
  if isinstance(dtype, str):
    dtype = weights_dtype(dtype, tensors)
  tensors = family_normalize(family, weight_files.LazyTensors(tensors.refs,
                                                              dtype))
  config = family.config_from_hf(hf, tensors)
  params = hf_lib.import_params(
      tensors, family.weight_table(config),
      param_shapes(config), family=family.NAME,
      ignored=family.ignored(tensors, config), source=weights.label,
      dtype=dtype)
  return family, config, params, family.eos_id(hf)


def family_normalize(family, tensors: dict) -> dict:
  return bart.strip_prefix(tensors) if family in (bart, marian) else tensors


def import_hf(model_dir: str, out_dir: str, log=None,
              dtype: str = "float32") -> TransformerConfig:
  """Writes `model_dir` (Hugging Face format) to `out_dir` (see the module
  docstring), its params as `dtype` (a WEIGHTS_DTYPES name, or "auto");
  returns the model's config. Nothing is written on an error; what a
  killed run left beside out_dir is removed (output_dir)."""
  what = "the imported model"
  output_dir.check_new(out_dir, what)  # before anything is read
  if dtype != AUTO:
    weights_dtype(dtype, None)  # a bad name: before anything is read
  family, config, params, eos_id = convert(model_dir, dtype)
  kind = tokenizer_kind(model_dir, family)
  check_tokenizer(model_dir, kind, config)
  log = log or (lambda line: print(line, file=sys.stderr, flush=True))
  with output_dir.new_directory(out_dir, what, log) as tmp:
    save(tmp, family.NAME, config, params, eos_id, kind)
    os.makedirs(os.path.join(tmp, "hf"))
    for name in sorted(os.listdir(model_dir)):
      path = os.path.join(model_dir, name)
      if (os.path.isfile(path) and name.endswith(HF_FILE_SUFFIXES)
          and name not in WEIGHTS):
        shutil.copyfile(path, os.path.join(tmp, "hf", name))
  return config


def check_tokenizer(model_dir: str, kind: str,
                    config: TransformerConfig) -> None:
  """The tokenizer files load, and every id they give has a row in the
  model's embedding (JAX would clamp a larger id to the last row, without
  a word)."""
  files = ", ".join(TOKENIZER_FILES[kind]) or "the byte tokenizer"
  try:
    tokenizer = hf_tokenizers.load_tokenizer(model_dir, kind)
  except (ImportError, tokenizer_lib.MissingPackageError):
    raise  # its message says what to install
  except Exception as e:  # noqa: BLE001  the files are the user's: any
    # parser's error (tokenizers raises a bare Exception) means a bad file
    what = {"t5_sentencepiece": "a SentencePiece model",
            "marian": "Marian's SentencePiece models and vocabulary",
            "bart_bpe": "a tokenizers tokenizer.json"}.get(kind, kind)
    # sentencepiece's own text names its C++ source line, not the problem.
    detail = ("a truncated or wrong download?" if isinstance(e, RuntimeError)
              else " ".join(str(e).split())[:200] or type(e).__name__)
    where = (os.path.join(model_dir, files) if len(TOKENIZER_FILES[kind]) == 1
             else f"{files} in {model_dir}")
    raise PretrainedError(
        f"{where} cannot be read as {what} ({detail}); download the model's "
        "tokenizer files again") from None
  rows = min(config.vocab_size, config.output_vocab_size or config.vocab_size)
  if tokenizer.vocab_size > rows:
    raise PretrainedError(
        f"{files} has {tokenizer.vocab_size} tokens but the model's embedding "
        f"has {rows} rows (config.json vocab_size): ids {rows} and up would "
        "have no embedding; use the tokenizer that came with these weights")


def save(out_dir: str, family: str, config: TransformerConfig, params,
         eos_id: int, tokenizer: str) -> None:
  """pretrained.json + params.safetensors (not the hf/ files); the params'
  dtype (one for all) is recorded as weights_dtype."""
  flat = {"/".join(k): np.asarray(v) for k, v in
          traverse_util.flatten_dict(jax.device_get(params)).items()}
  dtypes = sorted({v.dtype.name for v in flat.values()})
  if len(dtypes) != 1 or dtypes[0] not in WEIGHTS_DTYPES:
    raise ValueError(f"params of dtypes {dtypes}: one of "
                     f"{', '.join(WEIGHTS_DTYPES)} expected")
  meta = {"format": FORMAT, "family": family,
          "model": hf_lib.model_fields(config), "eos_id": int(eos_id),
          "tokenizer": tokenizer, "weights_dtype": dtypes[0]}
  with open(os.path.join(out_dir, "pretrained.json"), "w") as f:
    json.dump(meta, f, indent=1)
  hf_lib.write_tensors(os.path.join(out_dir, "params.safetensors"), flat)


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def config_from_fields(fields: dict) -> TransformerConfig:
  fields = dict(fields)
  for key in ("dtype", "param_dtype"):
    fields[key] = DTYPES[fields[key]]
  known = {f.name for f in dataclasses.fields(TransformerConfig)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise PretrainedError(f"pretrained.json: model field {unknown[0]!r} is "
                          "not a TransformerConfig field (a newer encdec_jax "
                          "wrote it?)")
  return TransformerConfig(**fields)


def read_meta(pretrained_dir: str) -> dict:
  path = os.path.join(pretrained_dir, "pretrained.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(not_an_import(pretrained_dir))
  try:
    meta = hf_lib.read_json(path)
  except (ValueError, UnicodeDecodeError) as e:
    raise PretrainedError(f"{path} is not valid JSON ({e}); import the model "
                          "again into a new directory") from None
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    found = meta.get("format") if isinstance(meta, dict) else meta
    raise PretrainedError(f"{path}: format {found!r} is not {FORMAT!r}; "
                          "import the model again into a new directory")
  missing = [k for k in ("family", "model", "eos_id", "tokenizer")
             if k not in meta]
  if missing:
    raise PretrainedError(f"{path} lacks {missing[0]!r}; import the model "
                          "again into a new directory")
  meta.setdefault("weights_dtype", "float32")  # imports before --dtype
  if meta["weights_dtype"] not in WEIGHTS_DTYPES:
    raise PretrainedError(f"{path}: weights_dtype {meta['weights_dtype']!r} "
                          f"is not one of {', '.join(WEIGHTS_DTYPES)}")
  return meta


def not_an_import(path: str) -> str:
  """Why `path` is not an import_hf directory, and the command that makes
  one (never: import into a directory that is not empty)."""
  make = "python -m encdec_jax.pretrained.import_hf"
  if not os.path.exists(path):
    return (f"{path} does not exist; import a Hugging Face model there with: "
            f"{make} HF_MODEL_DIR {path}, or pretrain one there "
            "(docs/pretraining.md)")
  if os.path.isfile(os.path.join(path, "config.json")):
    name = os.path.basename(os.path.normpath(path)) or "model"
    return (f"{path} is a Hugging Face model directory, not an import; "
            f"import it once with: {make} {path} pretrained/{name} (then "
            f"use pretrained/{name})")
  if os.path.isfile(os.path.join(path, "pretrained", "pretrained.json")):
    return (f"{path} is a training workdir, not an import_hf directory; to "
            "start from its weights export them (python -m "
            f"encdec_jax.pretrained.export_hf {path} HF_OUT) and import "
            f"HF_OUT with: {make} HF_OUT NEW_DIR")
  if os.path.isdir(path) and not os.listdir(path):
    return (f"{path} is empty; import a Hugging Face model there with: "
            f"{make} HF_MODEL_DIR {path}")
  return (f"{path} is not an import_hf directory (no pretrained.json); "
          f"import into a new directory: {make} HF_MODEL_DIR NEW_DIR")


def load(pretrained_dir: str) -> tuple[TransformerConfig, dict, dict]:
  """(config, params (numpy, nested, in pretrained.json's weights_dtype),
  pretrained.json) of an import_hf directory."""
  meta = read_meta(pretrained_dir)
  try:
    config = config_from_fields(meta["model"])
  except (KeyError, TypeError) as e:
    raise PretrainedError(
        f"{os.path.join(pretrained_dir, 'pretrained.json')}: its model "
        f"fields do not make a model ({type(e).__name__}: {e}); import the "
        "model again into a new directory") from None
  flat = hf_lib.read_tensors(os.path.join(pretrained_dir,
                                          "params.safetensors"))
  params = traverse_util.unflatten_dict(
      {tuple(k.split("/")): v for k, v in flat.items()})
  return config, params, meta


USAGE = ("usage: python -m encdec_jax.pretrained.import_hf HF_MODEL_DIR "
         f"OUT_DIR [--dtype={'|'.join(WEIGHTS_DTYPES)}|{AUTO}]")


def dtype_option(argv: list[str], default: str):
  """(positional args, --dtype's value) of a command line; None if it has
  another option."""
  args, dtype, rest = [], default, list(argv[1:])
  while rest:
    arg = rest.pop(0)
    if arg == "--dtype" and rest:
      dtype = rest.pop(0)
    elif arg.startswith("--dtype="):
      dtype = arg.split("=", 1)[1]
    elif arg.startswith("-"):
      return None
    else:
      args.append(arg)
  return args, dtype


def main(argv: list[str]) -> int:
  parsed = dtype_option(argv, "float32")
  if parsed is None or len(parsed[0]) != 2:
    print(USAGE, file=sys.stderr)
    return 2
  (model_dir, out_dir), dtype = parsed
  argv = [argv[0], model_dir, out_dir]
  try:
    config = import_hf(model_dir, out_dir, dtype=dtype)
  except (ImportError, ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  meta = read_meta(argv[2])
  print(f"imported {meta['family']} ({config.num_encoder_layers}+"
        f"{config.num_decoder_layers} layers, d_model {config.emb_dim}, "
        f"vocab {config.vocab_size}, {meta['weights_dtype']}) into "
        f"{argv[2]}; fine-tune with "
        f"--config.init_from={argv[2]}, export with python -m "
        f"encdec_jax.pretrained.export_hf {argv[2]} HF_OUT_DIR")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
