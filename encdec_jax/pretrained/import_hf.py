r"""Hugging Face encoder-decoders (T5 / Flan-T5 / mT5, BART, Marian) as our
EncoderDecoder, without torch:

  python -m encdec_jax.pretrained.import_hf DIR OUT

DIR is a Hugging Face model directory (config.json, the weights and the
tokenizer files: spiece.model for T5, tokenizer.json for BART,
source.spm + target.spm + vocab.json for Marian); the family comes from
config.json's model_type. The weights are read in any layout the Hub has
(weight_files): model.safetensors, its shards (model.safetensors.index.json),
pytorch_model.bin or its shards (pytorch_model.bin.index.json), preferring
safetensors; a .bin is read without torch and never unpickled
(torch_pickle), and float16 / bfloat16 weights import as float32. OUT (a
new directory) gets

  pretrained.json     {"format", "family", "model": TransformerConfig fields,
                       "eos_id", "tokenizer": kind}
  params.safetensors  our params, flat ("encoder/layers_0/attention/query/
                      kernel"), float32
  hf/                 DIR's files but the weights (config.json,
                      generation_config.json, tokenizer files), which
                      export_hf writes back

It loads with `load(OUT)` (config, params, metadata), fine-tunes with
`--config.init_from=OUT` and goes back to Hugging Face format with
`python -m encdec_jax.pretrained.export_hf`. An unsupported model_type or an
unknown weight name is a one-line error naming it, and nothing is written.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.pretrained import bart, marian, t5
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained import weight_files
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
        f"{family.NAME} model")
  return kind


def abstract_params(config: TransformerConfig) -> dict:
  """Our params' shapes (nothing computed)."""
  model = EncoderDecoder(config)
  ids_1x4 = jnp.full((1, 4), 2, jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), ids_1x4,
                                           ids_1x4))["params"]


def convert(model_dir: str, dtype=np.float32):
  """(family module, config, params, eos_id) of a Hugging Face directory.

  Floating-point weights (float16, bfloat16, ...) become `dtype` (float32 by
  default; None keeps the checkpoint's dtypes)."""
  config_path = os.path.join(model_dir, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"{model_dir} has no config.json: not a Hugging "
                            "Face model directory")
  hf = hf_lib.read_json(config_path)
  family = family_of(hf)
  weights = weight_files.find_weights(model_dir)
  tensors = family_normalize(family, weights.read(dtype))
  config = family.config_from_hf(hf, tensors)
  params = hf_lib.import_params(
      tensors, family.weight_table(config),
      hf_lib.flat_shapes(abstract_params(config)), family=family.NAME,
      ignored=family.ignored(tensors, config), source=weights.label,
      dtype=dtype)
  return family, config, params, family.eos_id(hf)


def family_normalize(family, tensors: dict) -> dict:
  return bart.strip_prefix(tensors) if family in (bart, marian) else tensors


def import_hf(model_dir: str, out_dir: str) -> TransformerConfig:
  """Writes `model_dir` (Hugging Face format) to `out_dir` (see the module
  docstring); returns the model's config. Nothing is written on an error."""
  if os.path.exists(out_dir) and os.listdir(out_dir):
    raise FileExistsError(f"{out_dir} exists and is not empty")
  family, config, params, eos_id = convert(model_dir)
  kind = tokenizer_kind(model_dir, family)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".import_hf-", dir=parent)
  try:
    save(tmp, family.NAME, config, params, eos_id, kind)
    os.makedirs(os.path.join(tmp, "hf"))
    for name in sorted(os.listdir(model_dir)):
      path = os.path.join(model_dir, name)
      if (os.path.isfile(path) and name.endswith(HF_FILE_SUFFIXES)
          and name not in WEIGHTS):
        shutil.copy2(path, os.path.join(tmp, "hf", name))
    if os.path.exists(out_dir):
      os.rmdir(out_dir)
    os.replace(tmp, out_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return config


def save(out_dir: str, family: str, config: TransformerConfig, params,
         eos_id: int, tokenizer: str) -> None:
  """pretrained.json + params.safetensors (not the hf/ files)."""
  meta = {"format": FORMAT, "family": family,
          "model": hf_lib.model_fields(config), "eos_id": int(eos_id),
          "tokenizer": tokenizer}
  with open(os.path.join(out_dir, "pretrained.json"), "w") as f:
    json.dump(meta, f, indent=1)
  flat = {"/".join(k): np.asarray(v, np.float32) for k, v in
          traverse_util.flatten_dict(jax.device_get(params)).items()}
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
    raise FileNotFoundError(
        f"{pretrained_dir} has no pretrained.json; make it with: python -m "
        "encdec_jax.pretrained.import_hf HF_MODEL_DIR "
        f"{pretrained_dir}")
  meta = hf_lib.read_json(path)
  if meta.get("format") != FORMAT:
    raise PretrainedError(f"{path}: format {meta.get('format')!r} is not "
                          f"{FORMAT!r}")
  return meta


def load(pretrained_dir: str) -> tuple[TransformerConfig, dict, dict]:
  """(config, params (numpy float32, nested), pretrained.json) of an
  import_hf directory."""
  meta = read_meta(pretrained_dir)
  config = config_from_fields(meta["model"])
  flat = hf_lib.read_tensors(os.path.join(pretrained_dir,
                                          "params.safetensors"))
  params = traverse_util.unflatten_dict(
      {tuple(k.split("/")): v for k, v in flat.items()})
  return config, params, meta


USAGE = "usage: python -m encdec_jax.pretrained.import_hf HF_MODEL_DIR OUT_DIR"


def main(argv: list[str]) -> int:
  if len(argv) != 3 or any(a.startswith("-") for a in argv[1:]):
    print(USAGE, file=sys.stderr)
    return 2
  try:
    config = import_hf(argv[1], argv[2])
  except (ImportError, ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  meta = read_meta(argv[2])
  print(f"imported {meta['family']} ({config.num_encoder_layers}+"
        f"{config.num_decoder_layers} layers, d_model {config.emb_dim}, "
        f"vocab {config.vocab_size}) into {argv[2]}; fine-tune with "
        f"--config.init_from={argv[2]}, export with python -m "
        f"encdec_jax.pretrained.export_hf {argv[2]} HF_OUT_DIR")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
