"""What an encoder must agree on with the model it loads into, and the one
line that names every disagreement.

A spec is {"config": model_config.encoder_fields(), "vocab": a vocabulary
record}. Trees are compared as {path tuple: (shape, dtype name)}, the stored
one read from orbax metadata (no arrays), because orbax's partial restore
alone loads a shallower checkpoint into a deeper model without a word.
"""

from flax import traverse_util
import numpy as np

from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.nn.config import TransformerConfig

NO_VOCAB = {"kind": "none", "size": 0}  # Encoders of images read no tokens.
MAX_LISTED = 8  # Offending paths named per kind of problem.


def vocab_of(tokenizer) -> dict:
  return NO_VOCAB if tokenizer is None else tokenizer_lib.vocab_record(
      tokenizer)


def encoder_spec(model_config, tokenizer) -> dict:
  """What an encoder must agree on with a model (goes into meta["encoder"]).

  `model_config` is any family's config (TransformerConfig, RNNConfig,
  AutoencoderConfig): its encoder_fields(). `tokenizer` is None for images.
  """
  return {"config": model_config.encoder_fields(),
          "vocab": vocab_of(tokenizer)}


# An encoder of one family read as another's.

CONV_FEATURES = "conv_features"  # A captioner's encoder (models/captioner.py).
IMAGE_FAMILIES = ("autoencoder_conv", CONV_FEATURES)


def as_family(stored: dict, expected: dict, where: str) -> tuple[dict, tuple]:
  """(the stored config as the expected family's spec, top-level subtrees of
  the stored encoder that family does not have).

  A conv autoencoder's encoder is a captioner's encoder plus a Dense
  `bottleneck`: read as "conv_features" its spec keeps what fixes the conv
  params (conv_features, image channels, param_dtype), not the image height
  and width (a conv's params do not depend on them), and the bottleneck is
  left out, listed as ignored. Any other encoder is not an image encoder with
  a region grid, which is one clear error instead of a list of paths.
  """
  if expected.get("family") != CONV_FEATURES:
    return stored, ()
  family = stored.get("family", "transformer")
  if family not in IMAGE_FAMILIES:
    kind = ("an MLP autoencoder's, which has no region grid"
            if family == "autoencoder_mlp" else f"a {family} text encoder")
    raise ValueError(
        f"the encoder at {where} is {kind}, not a conv image encoder; "
        "a captioner's encoder loads from a conv autoencoder "
        "(experiments/autoencoder_digits.py:conv) or another captioner.")
  if family == CONV_FEATURES:
    return stored, ()
  view = {"family": CONV_FEATURES, "conv_features": stored["conv_features"],
          "channels": stored["image_shape"][2],
          "param_dtype": stored["param_dtype"]}
  return view, ("bottleneck",)


# Trees as {path tuple: (shape, dtype name)}.


def model_tree(params) -> dict:
  return {k: (tuple(v.shape), np.dtype(v.dtype).name)
          for k, v in traverse_util.flatten_dict(params).items()}


def nest(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat) if flat else {}


def name(key: tuple) -> str:
  return "/".join(("encoder",) + key)


# Problems, one readable line per offending path or field.


def path_problems(stored: dict, model: dict) -> dict:
  both = sorted(set(stored) & set(model))
  return {
      "in the model but not the checkpoint":
          [name(k) for k in sorted(set(model) - set(stored))],
      "in the checkpoint but not the model":
          [name(k) for k in sorted(set(stored) - set(model))],
      "shape": [f"{name(k)} checkpoint {stored[k][0]} vs model {model[k][0]}"
                for k in both if stored[k][0] != model[k][0]],
      "dtype": [f"{name(k)} checkpoint {stored[k][1]} vs model {model[k][1]}"
                for k in both if stored[k][1] != model[k][1]],
  }


def config_problems(stored: dict, expected: dict) -> list[str]:
  absent = "<absent>"
  if "family" not in stored and "family" not in expected:  # Transformers.
    # A field added to ENCODER_FIELDS after an encoder was saved (causal) is
    # missing from its spec: that encoder had the field's default behaviour.
    defaults = TransformerConfig(vocab_size=1).encoder_fields()
    del defaults["vocab_size"]  # Required: it has no default.
    stored = {**{k: v for k, v in defaults.items() if k in expected}, **stored}
  return [f"{k} checkpoint {stored.get(k, absent)!r} vs model "
          f"{expected.get(k, absent)!r}"
          for k in sorted(set(stored) | set(expected))
          if stored.get(k, absent) != expected.get(k, absent)]


def _describe_vocab(record: dict | None) -> str:
  if not record:
    return "unrecorded"
  sha = f" sha256 {record['sha256'][:12]}" if "sha256" in record else ""
  return f"{record.get('kind')} of {record.get('size')} ids{sha}"


def vocab_problems(stored: dict | None, expected: dict) -> list[str]:
  if stored == expected:
    return []
  return [f"checkpoint {_describe_vocab(stored)} vs model "
          f"{_describe_vocab(expected)}"]


def error_message(where: str, problems: dict) -> str:
  parts = []
  for kind, items in problems.items():
    if items:
      more = (f", and {len(items) - MAX_LISTED} more"
              if len(items) > MAX_LISTED else "")
      parts.append(f"{kind} ({len(items)}): "
                   f"{', '.join(items[:MAX_LISTED])}{more}")
  fix = ("give the model the encoder's config (the config fields above), or "
         "load only the matching parameters with "
         "--config.init_encoder_strict=false (strict=False in Python)")
  if problems["vocab"]:
    fix = ("the vocabularies differ, so no parameter can be reused; fine-tune "
           "with the encoder's tokenizer (load_encoder_tokenizer)")
  return (f"the encoder at {where} does not fit the model: "
          f"{'; '.join(parts)}. To fix: {fix}.")
