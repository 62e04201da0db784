"""Builds a model from the `model` block of an experiment config."""

import jax.numpy as jnp

from encdec_jax.models.classifier import EncoderClassifier
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def transformer_config(model_config, vocab_size: int) -> TransformerConfig:
  fields = dict(model_config.to_dict() if hasattr(model_config, "to_dict")
                else model_config)
  dtype = fields.pop("dtype", "float32")
  if dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={dtype!r} is not known; use one of "
                     f"{sorted(DTYPES)}.")
  return TransformerConfig(vocab_size=vocab_size, dtype=DTYPES[dtype], **fields)


def build_model(model_config, vocab_size: int) -> EncoderDecoder:
  return EncoderDecoder(transformer_config(model_config, vocab_size))


def build_classifier(model_config, vocab_size: int, num_classes: int,
                     pooling: str) -> EncoderClassifier:
  return EncoderClassifier(transformer_config(model_config, vocab_size),
                           num_classes=num_classes, pooling=pooling)
