"""A Hugging Face config.json, read and checked before any field is used.

The family readers (t5.py, bart.py, marian.py) take config.json's values as
they are; a value of the wrong type would otherwise fail deep inside JAX
(`"d_model": "16"` as a shape) with a traceback. `read(model_dir)` gives the
JSON object once every field the readers use has the JSON type they need,
or a one-line PretrainedError naming config.json, the field and the value.
"""

import json
import math
import os

from encdec_jax.pretrained.hf import PretrainedError

# Sizes and counts: integers >= 1.
SIZES = ("d_model", "d_ff", "d_kv", "num_heads", "num_layers",
         "num_decoder_layers", "vocab_size", "decoder_vocab_size",
         "n_positions", "encoder_attention_heads", "decoder_attention_heads",
         "encoder_ffn_dim", "decoder_ffn_dim", "encoder_layers",
         "decoder_layers", "max_position_embeddings",
         "relative_attention_num_buckets", "relative_attention_max_distance")
# Token ids: integers >= 0.
IDS = ("pad_token_id", "eos_token_id", "decoder_start_token_id",
       "bos_token_id")
# Rates and epsilons: finite numbers >= 0.
NUMBERS = ("dropout_rate", "dropout", "attention_dropout",
           "layer_norm_epsilon")
FLAGS = ("is_encoder_decoder", "tie_word_embeddings",
         "scale_decoder_outputs", "scale_embedding",
         "share_encoder_decoder_embeddings")
STRINGS = ("model_type", "feed_forward_proj", "activation_function")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _problem(key: str, value) -> str | None:
  """What is wrong with config.json's `key`, or None."""
  if key in SIZES and not (_is_int(value) and value >= 1):
    return "must be an integer >= 1"
  if key in IDS and not (_is_int(value) and value >= 0):
    return "must be a token id (an integer >= 0)"
  if key in NUMBERS and not (isinstance(value, (int, float))
                             and not isinstance(value, bool)
                             and math.isfinite(value) and value >= 0):
    return "must be a number >= 0"
  if key in FLAGS and not isinstance(value, bool):
    return "must be true or false"
  if key in STRINGS and not isinstance(value, str):
    return "must be a string"
  return None


def check(config: object, name: str = "config.json") -> dict:
  """`config` if it is a JSON object whose known fields have usable values;
  else a one-line PretrainedError."""
  if not isinstance(config, dict):
    raise PretrainedError(
        f"{name} holds a JSON {type(config).__name__}, not an object of "
        "model settings ({\"model_type\": ..., \"d_model\": ...}); use the "
        "model's own config.json")
  for key, value in config.items():
    problem = _problem(key, value)
    # A null optional field (num_decoder_layers: null) means its default.
    if problem and value is not None:
      raise PretrainedError(
          f"{name}: {key!r} is {json.dumps(value)}, which {problem}; "
          f"{_fix(key, value)}")
  return config


def _fix(key: str, value) -> str:
  """What to write instead: the number a quoted number stands for, else an
  example of the type."""
  if isinstance(value, str) and key not in STRINGS:
    try:
      json.loads(value)
      return f"write {value} without quotes"
    except ValueError:
      pass
  example = ("true" if key in FLAGS else '"relu"' if key in STRINGS else
             "0.1" if key in NUMBERS else "0" if key in IDS else "512")
  return f"fix the value (e.g. \"{key}\": {example})"


def read(model_dir: str) -> dict:
  """model_dir/config.json, checked (see the module docstring)."""
  path = os.path.join(model_dir, "config.json")
  if not os.path.isfile(path):
    raise PretrainedError(f"{model_dir} has no config.json: not a Hugging "
                          "Face model directory")
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise PretrainedError(f"{path} is not valid JSON "
                          f"({' '.join(str(e).split())}); use the model's "
                          "own config.json") from None
  return check(config)
