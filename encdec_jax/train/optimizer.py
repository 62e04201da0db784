"""Learning-rate schedules and the weight-decay mask (see partition.py for the
per-group optimizers built from them)."""

import jax
import optax

SCHEDULES = ("cosine", "rsqrt", "linear", "constant")


def learning_rate_schedule(settings) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then the configured decay.

  `settings` is a config or dict with learning_rate, warmup_steps, schedule
  and num_train_steps.
  """
  peak, warmup = settings["learning_rate"], settings["warmup_steps"]
  total = settings["num_train_steps"]
  if settings["schedule"] not in SCHEDULES:
    raise ValueError(f"schedule={settings['schedule']!r} is not known; use "
                     f"one of {SCHEDULES}.")
  warmup_fn = optax.linear_schedule(0.0, peak, max(warmup, 1))
  decay_steps = max(total - warmup, 1)
  if settings["schedule"] == "cosine":
    decay_fn = optax.cosine_decay_schedule(peak, decay_steps, alpha=0.0)
  elif settings["schedule"] == "linear":
    decay_fn = optax.linear_schedule(peak, 0.0, decay_steps)
  elif settings["schedule"] == "rsqrt":
    # Transformer-paper decay, continuous with the warmup's end.
    decay_fn = lambda s: peak * jax.lax.rsqrt((s + max(warmup, 1)) /
                                               max(warmup, 1))
  else:
    decay_fn = optax.constant_schedule(peak)
  return optax.join_schedules([warmup_fn, decay_fn], [warmup])


def decay_mask(params):
  """Weight decay on matrices only: not on biases, LayerNorm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)
