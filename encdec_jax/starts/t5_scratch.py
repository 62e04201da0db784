r"""A new T5 (v1.1) trained from scratch, exportable to Hugging Face:
config.hf_export="t5" (experiments/pretrain_span_corruption.py).

  python -m encdec_jax.main --config=experiments/pretrain_span_corruption.py \
      --workdir=runs/pretrain
  python -m encdec_jax.pretrained.export_hf runs/pretrain runs/pretrain_hf

The run
  - builds the T5 v1.1 architecture (T5_FIELDS: pre-RMSNorm, no biases,
    bucketed relative positions, gated-GELU, unscaled attention, an untied
    lm_head), whatever sizes config.model gives; a field set otherwise, or
    one Hugging Face's T5 has no place for, is a one-line error;
  - gives the model config.vocab_size + config.extra_ids token ids, as T5's
    32000 pieces + 100 extra ids (<extra_id_k> = pieces + extra_ids - 1 - k,
    how Hugging Face's T5 tokenizer numbers them; ids between the pieces and
    the extra ids, if the corpus gave fewer pieces, are never used);
  - trains its SentencePiece tokenizer before the trainer reads it and
    writes <workdir>/pretrained/ (pretrained.json and hf/: config.json,
    generation_config.json, tokenizer_config.json, spiece.model), the origin
    export_hf reads, so the workdir exports like one fine-tuned from an
    import (export_hf.latest_params) and fine-tunes from it
    (starts/pretrained_workdir.py).
"""

import json
import os
import shutil

import jax
import numpy as np

from encdec_jax import tasks
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models import registry
from encdec_jax.pretrained import export_hf, import_hf, t5
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.starts.base import Start

FAMILIES = ("t5",)
# What makes a TransformerConfig Hugging Face's T5 v1.1 (t5.config_from_hf).
T5_FIELDS = dict(
    position_embedding="none", pre_layernorm=True, norm="rmsnorm",
    activation="gelu_tanh", mlp_gated=True, mlp_bias=False, use_bias=False,
    scale_attention=False, scale_embeddings=False, share_embeddings=True,
    logits_via_embedding=False, logits_dense_bias=False,
    scale_decoder_outputs=False, pad_id=tokenizer_lib.PAD_ID,
    decoder_start_id=tokenizer_lib.PAD_ID)
# Fields Hugging Face's config.json does not carry (the run's own).
RUN_FIELDS = ("dropout_rate", "attention_dropout_rate", "dtype",
              "param_dtype", "remat", "scan_layers", "causal")


def configure(config) -> None:
  """config.model <- T5_FIELDS; a field set to another value is an error."""
  if config.hf_export not in FAMILIES:
    raise ValueError(f"config.hf_export={config.hf_export!r} is not known; "
                     f"use one of {FAMILIES}.")
  if config.get("tokenizer") != "sentencepiece":
    raise ValueError("config.hf_export='t5' needs config.tokenizer="
                     "'sentencepiece' (T5's spiece.model).")
  model = config.model
  for key, value in T5_FIELDS.items():
    if key in model and model[key] != value:
      raise ValueError(f"config.model.{key}={model[key]!r}, but a Hugging "
                       f"Face T5 (config.hf_export='t5') has {value!r}: "
                       "drop the field")
  with config.unlocked():
    model.update(T5_FIELDS)
    if not model.get("relative_position_buckets"):
      model.relative_position_buckets = 32
  architecture(config)  # every other field must fit Hugging Face's T5


def vocab_size(config) -> int:
  """The model's token ids: the pieces and the extra ids after them."""
  return config.vocab_size + config.get("extra_ids", 0)


def hf_config(arch) -> dict:
  """Hugging Face's config.json of a T5 v1.1 TransformerConfig."""
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "d_model": arch.emb_dim, "d_kv": arch.qkv_dim // arch.num_heads,
      "d_ff": arch.mlp_dim, "num_heads": arch.num_heads,
      "num_layers": arch.num_encoder_layers,
      "num_decoder_layers": arch.num_decoder_layers,
      "relative_attention_num_buckets": arch.relative_position_buckets,
      "relative_attention_max_distance":
          arch.relative_position_max_distance,
      "n_positions": arch.max_len, "dropout_rate": arch.dropout_rate,
      "layer_norm_epsilon": arch.layernorm_epsilon,
      "feed_forward_proj": "gated-gelu", "is_encoder_decoder": True,
      "tie_word_embeddings": False, "scale_decoder_outputs": False,
      "vocab_size": arch.vocab_size, "pad_token_id": tokenizer_lib.PAD_ID,
      "eos_token_id": tokenizer_lib.EOS_ID,
      "decoder_start_token_id": tokenizer_lib.PAD_ID}


def architecture(config):
  """The run's TransformerConfig, checked to read back from hf_config."""
  arch = registry.text_model_config(config, "transformer",
                                    vocab_size(config))
  untied = {"shared.weight": np.zeros(1), "lm_head.weight": np.ones(1)}
  back = t5.config_from_hf(hf_config(arch), untied)
  fields, read = hf_lib.model_fields(arch), hf_lib.model_fields(back)
  for key in sorted(fields):
    if key not in RUN_FIELDS and fields[key] != read[key]:
      raise ValueError(
          f"config.model.{key}={fields[key]!r} has no place in a Hugging "
          f"Face T5 (it would load as {read[key]!r}; config.hf_export='t5')")
  return arch


def _hf_files(config, arch, spiece: bytes) -> dict[str, bytes]:
  """hf/: what export_hf copies beside model.safetensors."""
  as_json = lambda obj: json.dumps(obj, indent=1).encode()
  ids = {"pad_token_id": tokenizer_lib.PAD_ID,
         "eos_token_id": tokenizer_lib.EOS_ID,
         "decoder_start_token_id": tokenizer_lib.PAD_ID}
  return {
      "config.json": as_json(hf_config(arch)),
      "generation_config.json": as_json(ids),
      "tokenizer_config.json": as_json({
          "tokenizer_class": "T5Tokenizer", "extra_ids": config.extra_ids,
          "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}),
      "spiece.model": spiece}


def install(config, workdir: str, reads_text: bool = True) -> None:
  """Trains (or reads) the workdir's tokenizer and writes its origin."""
  del reads_text
  if jax.process_index() != 0:
    return
  task = tasks.get(config)
  tokenizer = tokenizer_lib.load_or_train_tokenizer(
      config, workdir, lambda: task.tokenizer_texts(
          config, task.make_sources(config, ("train",))))
  origin = os.path.join(workdir, export_hf.ORIGIN)
  spiece = os.path.join(origin, "hf", "spiece.model")
  if os.path.isfile(spiece):
    with open(spiece, "rb") as f:
      if f.read() != tokenizer.model_proto:
        raise ValueError(f"{spiece} is not this workdir's tokenizer.model: "
                         "the origin belongs to another run; use a new "
                         "--workdir")
    return
  arch = architecture(config)
  tmp = origin + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(os.path.join(tmp, "hf"))
  meta = {"format": import_hf.FORMAT, "family": "t5",
          "model": hf_lib.model_fields(arch), "eos_id": tokenizer_lib.EOS_ID,
          "tokenizer": "t5_sentencepiece"}
  with open(os.path.join(tmp, "pretrained.json"), "w") as f:
    json.dump(meta, f, indent=1)
  for name, data in _hf_files(config, arch, tokenizer.model_proto).items():
    with open(os.path.join(tmp, "hf", name), "wb") as f:
      f.write(data)
  shutil.rmtree(origin, ignore_errors=True)
  os.replace(tmp, origin)


START = Start(
    "t5_scratch",
    configure=configure,
    install=install,
    vocab_size=vocab_size,
)
