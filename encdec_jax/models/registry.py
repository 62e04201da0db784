"""Builds a model from an experiment config: its task and `model` block.

  task            model.family          model
  translation     transformer (default)  EncoderDecoder
  translation     rnn                    RNNEncoderDecoder (LSTM/GRU)
  lm              transformer            DecoderOnlyLM (causal encoder stack)
  classification  transformer            EncoderClassifier
  embedding       transformer            SentenceEmbedder
  autoencoder     mlp | conv             Autoencoder (images; no tokenizer)
  captioning      rnn | transformer      Captioner (image -> caption: conv
                                         regions + LSTM or Transformer decoder)

The rest of `model` are the fields of the family's config dataclass; a
captioner's `model` also holds its image encoder's `image_shape` and
`conv_features` (CaptionerConfig), the rest configure its decoder.
"""

import jax.numpy as jnp

from encdec_jax.models.autoencoder import Autoencoder, AutoencoderConfig
from encdec_jax.models.captioner import Captioner, CaptionerConfig
from encdec_jax.models.classifier import EncoderClassifier
from encdec_jax.models.embedder import SentenceEmbedder
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.language_model import DecoderOnlyLM
from encdec_jax.models.rnn_seq2seq import RNNEncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TEXT_FAMILIES = ("transformer", "rnn")
FAMILIES = {"translation": TEXT_FAMILIES, "lm": ("transformer",),
            "classification": ("transformer",),
            "embedding": ("transformer",), "autoencoder": ("mlp", "conv"),
            "captioning": TEXT_FAMILIES}


def _fields(model_config) -> dict:
  fields = dict(model_config.to_dict() if hasattr(model_config, "to_dict")
                else model_config)
  for key in ("dtype", "param_dtype"):
    if isinstance(fields.get(key), str):
      if fields[key] not in DTYPES:
        raise ValueError(f"config.model.{key}={fields[key]!r} is not known; "
                         f"use one of {sorted(DTYPES)}.")
      fields[key] = DTYPES[fields[key]]
  return fields


def family(config) -> str:
  """config.model.family, checked against the task."""
  task = config.get("task", "translation")
  default = "mlp" if task == "autoencoder" else "transformer"
  name = config.model.get("family", default)
  if name not in FAMILIES[task]:
    raise ValueError(f"config.model.family={name!r} does not fit "
                     f"task={task!r}; use one of {FAMILIES[task]}.")
  return name


def transformer_config(model_config, vocab_size: int) -> TransformerConfig:
  fields = _fields(model_config)
  fields.pop("family", None)
  return TransformerConfig(vocab_size=vocab_size, **fields)


def model_config(config, vocab_size: int | None):
  """The architecture dataclass of the experiment (what encoder specs save)."""
  task = config.get("task", "translation")
  name = family(config)
  fields = _fields(config.model)
  fields.pop("family", None)
  if task == "autoencoder":
    fields["image_shape"] = tuple(fields["image_shape"])
    for key in ("hidden_dims", "conv_features"):
      if key in fields:
        fields[key] = tuple(fields[key])
    return AutoencoderConfig(family=name, **fields)
  if task == "captioning":
    image = {k: tuple(fields.pop(k)) for k in ("image_shape", "conv_features")
             if k in fields}
    decoder = (RNNConfig if name == "rnn" else TransformerConfig)(
        vocab_size=vocab_size, **fields)
    return CaptionerConfig(decoder=decoder, **image)
  if name == "rnn":
    return RNNConfig(vocab_size=vocab_size, **fields)
  if task == "lm":
    fields["causal"] = True  # a decoder-only LM sees only the past
  if config.get("remat", "none") != "none":  # config.remat: a run setting
    fields.setdefault("remat", config.remat)
  return TransformerConfig(vocab_size=vocab_size, **fields)


def build(config, vocab_size: int | None, num_classes: int | None = None):
  """The model of `config` (see the table above)."""
  task = config.get("task", "translation")
  arch = model_config(config, vocab_size)
  pooling = config.get("pooling", "mean")
  if task == "autoencoder":
    return Autoencoder(arch)
  if task == "captioning":
    return Captioner(arch)
  if task == "classification":
    return EncoderClassifier(arch, num_classes=num_classes, pooling=pooling)
  if task == "embedding":
    return SentenceEmbedder(arch, pooling=pooling)
  if task == "lm":
    return DecoderOnlyLM(arch)
  return RNNEncoderDecoder(arch) if family(config) == "rnn" else (
      EncoderDecoder(arch))


def build_model(model_config_block, vocab_size: int) -> EncoderDecoder:
  """A Transformer encoder–decoder from a `model` block (benchmarks, tests)."""
  return EncoderDecoder(transformer_config(model_config_block, vocab_size))

