"""From an experiment config's `model` block to architecture dataclasses.

Which model a task builds is the task's choice (encdec_jax/tasks/); this
module turns `config.model` into the dataclass of its family: the fields of
`model` are the fields of TransformerConfig, RNNConfig, AutoencoderConfig or
CaptionerConfig, with dtypes given by name ("float32", "bfloat16") and
`family` naming which.
"""

import jax.numpy as jnp

from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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


def family(config, task_name: str, families: tuple[str, ...]) -> str:
  """config.model.family, checked against the task's `families` (the first
  is the default)."""
  name = config.model.get("family", families[0])
  if name not in families:
    raise ValueError(f"config.model.family={name!r} does not fit "
                     f"task={task_name!r}; use one of {families}.")
  return name


def transformer_config(model_config, vocab_size: int) -> TransformerConfig:
  fields = _fields(model_config)
  fields.pop("family", None)
  return TransformerConfig(vocab_size=vocab_size, **fields)


def model_fields(config) -> dict:
  """config.model as dataclass fields (dtypes resolved, no `family`)."""
  fields = _fields(config.model)
  fields.pop("family", None)
  return fields


def text_model_config(config, family_name: str, vocab_size: int | None, *,
                      causal: bool = False):
  """The TransformerConfig or RNNConfig of a text model's `model` block."""
  fields = model_fields(config)
  if family_name == "rnn":
    return RNNConfig(vocab_size=vocab_size, **fields)
  if causal:
    fields["causal"] = True  # a decoder-only LM sees only the past
  if config.get("remat", "none") != "none":  # config.remat: a run setting
    fields.setdefault("remat", config.remat)
  return TransformerConfig(vocab_size=vocab_size, **fields)


def build_model(model_config_block, vocab_size: int) -> EncoderDecoder:
  """A Transformer encoder–decoder from a `model` block (benchmarks, tests)."""
  return EncoderDecoder(transformer_config(model_config_block, vocab_size))
