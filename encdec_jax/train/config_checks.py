"""Config values checked before anything is read, built or written.

ml_collections already refuses an unknown field and a value of the wrong type
(`--config.batch_size=abc`); this catches values of the right type that make
no sense (a negative step count, a learning rate of 0, a smoothing of 1), so
a typo costs one line at startup instead of a traceback an hour in. Every
message names the field and says what it accepts. Fields a config does not
have are skipped: the checks cover every task's configs.
"""

import math

from encdec_jax.train import config_consistency

from encdec_jax import checkpoint

# (field, lowest allowed value): integers.
_INT_MINIMUMS = (
    ("num_train_steps", 0), ("warmup_steps", 0), ("batch_size", 1),
    ("eval_batch_size", 1), ("log_every", 1), ("eval_every", 1),
    ("checkpoint_every", 1), ("keep_checkpoints", 1),
    ("max_source_length", 2), ("max_target_length", 2),
    ("max_decode_length", 1), ("vocab_size", 8), ("unfreeze_every", 0),
    ("num_samples_to_print", 0), ("grad_accum_steps", 1), ("seed", 0),
)
_MODEL_INT_MINIMUMS = (
    ("emb_dim", 1), ("qkv_dim", 1), ("mlp_dim", 1), ("num_heads", 1),
    ("num_encoder_layers", 0), ("num_decoder_layers", 0), ("max_len", 2),
    ("hidden_dim", 1), ("attention_dim", 1), ("bottleneck_dim", 1),
)
# (field, low, high, whether high itself is allowed): floats.
_FLOAT_RANGES = (
    ("learning_rate", 0.0, math.inf, False), ("label_smoothing", 0.0, 1.0,
                                              False),
    ("weight_decay", 0.0, math.inf, False), ("grad_clip_norm", 0.0, math.inf,
                                             False),
    ("adam_b1", 0.0, 1.0, False), ("adam_b2", 0.0, 1.0, False),
    ("lr_decay_per_group", 0.0, math.inf, False),
    ("contrastive_temperature", 0.0, math.inf, False),
)
_MODEL_FLOAT_RANGES = (
    ("dropout_rate", 0.0, 1.0, False), ("attention_dropout_rate", 0.0, 1.0,
                                        False),
    ("layernorm_epsilon", 0.0, 1.0, True),
)


def _check_int(name: str, value, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
  if value < minimum:
    raise ValueError(f"{name}={value} must be >= {minimum}.")


def _check_float(name: str, value, low: float, high: float,
                 high_ok: bool) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ValueError(f"{name}={value!r} must be a number.")
  above_low = value > low if name in _EXCLUSIVE_LOW else value >= low
  below_high = value <= high if high_ok else value < high
  if not (above_low and below_high and math.isfinite(value)):
    left = "(" if name in _EXCLUSIVE_LOW else "["
    right = "]" if high_ok else ")"
    raise ValueError(f"{name}={value} is out of range; use a value in "
                     f"{left}{low:g}, {high:g}{right}.")


# (field, the names it accepts).
NAN_POLICIES = ("stop", "skip")  # What a NaN/Inf loss or gradient does.
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")  # Dropout's generator.
_CHOICES = (
    ("nan_policy", NAN_POLICIES), ("dropout_prng", PRNG_IMPLS),
    ("corrupt_checkpoint", checkpoint.CORRUPT_POLICIES),
)


# Fields whose lower bound is excluded (a learning rate of 0 trains nothing).
_EXCLUSIVE_LOW = ("config.learning_rate", "config.contrastive_temperature",
                  "config.lora.alpha",
                  "config.lr_decay_per_group", "config.model.layernorm_epsilon")


def check(config) -> None:
  """Raises ValueError (one line) for the first value that makes no sense."""
  model = config.get("model") or {}
  for prefix, node, ints, floats in (
      ("config", config, _INT_MINIMUMS, _FLOAT_RANGES),
      ("config.model", model, _MODEL_INT_MINIMUMS, _MODEL_FLOAT_RANGES)):
    for field, minimum in ints:
      if node.get(field) is not None:
        _check_int(f"{prefix}.{field}", node[field], minimum)
    for field, low, high, high_ok in floats:
      if node.get(field) is not None:
        _check_float(f"{prefix}.{field}", node[field], low, high, high_ok)
  if "group_optim" in config:
    for group, settings in config.group_optim.items():
      if settings.get("learning_rate") is not None:
        _check_float(f"config.group_optim.{group}.learning_rate",
                     settings["learning_rate"], 0.0, math.inf, False)
  heads, width = model.get("num_heads"), model.get("qkv_dim")
  if heads and width and width % heads:
    raise ValueError(f"config.model.qkv_dim={width} is not divisible by "
                     f"config.model.num_heads={heads}; pick a number of heads "
                     f"that divides it (e.g. {_divisor_near(width, heads)}).")
  max_len = model.get("max_len")
  for field in ("max_source_length", "max_target_length", "max_decode_length"):
    if max_len and config.get(field) and config[field] > max_len:
      if config.get("init_from"):  # the import fixes the architecture
        raise ValueError(
            f"config.{field}={config[field]} > {max_len}, the longest "
            "sequence the imported model (config.init_from="
            f"{config.init_from}) has positions for; lower config.{field}.")
      raise ValueError(
          f"config.{field}={config[field]} > config.model.max_len={max_len}, "
          "the longest sequence the model has positions for; raise "
          f"config.model.max_len or lower config.{field}.")
  for field, choices in _CHOICES:
    if config.get(field) is not None and config[field] not in choices:
      raise ValueError(f"config.{field}={config[field]!r} is not known; use "
                       f"one of {choices}.")
  _check_lora(config.get("lora") or {})
  boundaries = config.get("bucket_boundaries")
  if boundaries is not None and (not boundaries or min(boundaries) < 1):
    raise ValueError(f"config.bucket_boundaries={tuple(boundaries)} must be "
                     "positive lengths, the last reaching the max lengths.")
  config_consistency.check(config)


def _check_lora(lora) -> None:
  """The adapters' sizes (a rank of 0 or less used to fail in the model
  init with numpy's "negative dimensions are not allowed")."""
  if not lora.get("targets") and not lora.get("adapter"):
    return
  if lora.get("rank") is not None:
    _check_int("config.lora.rank", lora["rank"], 1)
  if lora.get("alpha") is not None:
    _check_float("config.lora.alpha", lora["alpha"], 0.0, math.inf, False)
  if lora.get("dropout") is not None:
    _check_float("config.lora.dropout", lora["dropout"], 0.0, 1.0, False)


def _divisor_near(width: int, heads: int) -> int:
  return min((d for d in range(1, width + 1) if width % d == 0),
             key=lambda d: abs(d - heads))
