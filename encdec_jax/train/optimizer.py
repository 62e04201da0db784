"""AdamW with linear warmup and a decay schedule, and global-norm clipping."""

import jax
import optax

SCHEDULES = ("cosine", "rsqrt", "linear", "constant")


def learning_rate_schedule(config) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then the configured decay."""
  peak, warmup = config.learning_rate, config.warmup_steps
  total = config.num_train_steps
  if config.schedule not in SCHEDULES:
    raise ValueError(f"config.schedule={config.schedule!r} is not known; use "
                     f"one of {SCHEDULES}.")
  warmup_fn = optax.linear_schedule(0.0, peak, max(warmup, 1))
  decay_steps = max(total - warmup, 1)
  if config.schedule == "cosine":
    decay_fn = optax.cosine_decay_schedule(peak, decay_steps, alpha=0.0)
  elif config.schedule == "linear":
    decay_fn = optax.linear_schedule(peak, 0.0, decay_steps)
  elif config.schedule == "rsqrt":
    # Transformer-paper decay, continuous with the warmup's end.
    decay_fn = lambda s: peak * jax.lax.rsqrt((s + max(warmup, 1)) /
                                               max(warmup, 1))
  else:
    decay_fn = optax.constant_schedule(peak)
  return optax.join_schedules([warmup_fn, decay_fn], [warmup])


def decay_mask(params):
  """Weight decay on matrices only: not on biases, LayerNorm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(config)
  clip = (optax.clip_by_global_norm(config.grad_clip_norm)
          if config.grad_clip_norm else optax.identity())
  return optax.chain(
      clip,
      optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2,
                  eps=1e-9, weight_decay=config.weight_decay,
                  mask=decay_mask))
