"""The pure train step and the TrainState it carries (the tasks' losses and
the eval step are in encdec_jax/tasks/)."""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from encdec_jax.train import param_groups


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params))


def accumulated_grads(loss_fn, params_of, trainable, batch, rng,
                      num_micro: int):
  """((mean loss, sums), grads of the mean loss) over `num_micro`
  micro-batches, one at a time (lax.scan), for a batch too big to fit.

  Micro-batch i takes rows i, i + k, i + 2k, ... (so each keeps its share of
  every device's rows). The *summed* loss and its gradient are accumulated,
  with the token counts, and divided once at the end: the result is the
  per-token mean over the whole batch, as one step on it would give (up to
  float rounding). Micro-batch i's dropout key is fold_in(rng, i). A
  contrastive loss sees only its micro-batch's negatives, so there it is a
  different (smaller-batch) loss.
  """
  k = num_micro

  def split(x):
    if x.shape[0] % k:
      raise ValueError(f"a batch of {x.shape[0]} rows cannot be split into "
                       f"config.grad_accum_steps={k} micro-batches.")
    return jnp.moveaxis(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 1, 0)

  micro = jax.tree.map(split, batch)

  def summed(trainable, mb, r):
    sums = loss_fn(params_of(trainable), mb, r)[1]
    return sums["loss"], sums

  grad_fn = jax.value_and_grad(summed, has_aux=True)
  first = jax.tree.map(lambda x: x[0], micro)
  shapes = jax.eval_shape(grad_fn, trainable, first, rng)
  zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                       (shapes[0][1], shapes[1]))

  def body(carry, xs):
    i, mb = xs
    (_, sums), grads = grad_fn(
        trainable, mb, None if rng is None else jax.random.fold_in(rng, i))
    return jax.tree.map(jnp.add, carry, (sums, grads)), None

  (sums, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(k), micro))
  tokens = jnp.maximum(sums["tokens"], 1.0)
  return ((sums["loss"] / tokens, sums),
          jax.tree.map(lambda g: g / tokens.astype(g.dtype), grads))


def train_step(state: TrainState, batch, rng, *, loss_fn, tx, plan,
               trainable_mask: dict, learning_rates_fn,
               grad_accum_steps: int = 1):
  """One optimizer update; `rng` is the run's base key (folded with step).

  Only the trainable parameters are differentiated, so frozen ones cost no
  gradient compute (XLA drops the unused backward matmuls); the optimizer
  sees zeros for them (set_to_zero) and they are written back bit for bit.

  A step whose loss or gradient is not finite (NaN/Inf) changes nothing but
  the step counter: params and optimizer state stay the last finite ones, so
  no checkpoint can hold a NaN; metrics["nonfinite"] is 1 for it and the
  trainer's config.nan_policy decides whether to go on.

  grad_accum_steps > 1 splits the batch into that many micro-batches inside
  the step (see accumulated_grads) and makes one update from their summed
  gradients.
  """
  dropout_rng = jax.random.fold_in(rng, state.step)
  flat = traverse_util.flatten_dict(state.params)
  trainable = {k: v for k, v in flat.items() if trainable_mask[k]}
  frozen = {k: v for k, v in flat.items() if not trainable_mask[k]}

  def trainable_loss(trainable):
    params = traverse_util.unflatten_dict({**frozen, **trainable})
    return loss_fn(params, batch, dropout_rng)

  if grad_accum_steps > 1:
    (loss, sums), flat_grads = accumulated_grads(
        loss_fn,
        lambda t: traverse_util.unflatten_dict({**frozen, **t}),
        trainable, batch, dropout_rng, grad_accum_steps)
  else:
    (loss, sums), flat_grads = jax.value_and_grad(
        trainable_loss, has_aux=True)(trainable)
  grad_norm = optax.tree.norm(flat_grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  grads = traverse_util.unflatten_dict(
      {**{k: jnp.zeros_like(v) for k, v in frozen.items()}, **flat_grads})

  def update(args):
    grads, opt_state, params = args
    updates, opt_state = tx.update(grads, opt_state, params)
    updated = traverse_util.flatten_dict(optax.apply_updates(params, updates))
    return traverse_util.unflatten_dict({**updated, **frozen}), opt_state

  # A cond, not a select of new and old: the update then runs in place in
  # the donated buffers (a select kept ~2 more params-sized temporaries).
  params, opt_state = jax.lax.cond(
      finite, update, lambda args: (args[2], args[1]),
      (grads, state.opt_state, state.params))
  sums = jax.tree.map(lambda x: jnp.where(finite, x, 0), sums)  # no NaN logs
  metrics = dict(sums, grad_norm=grad_norm,
                 overlong=jnp.sum(batch["overlong"]),
                 empty=jnp.sum(batch.get("empty", jnp.zeros((), jnp.int32))),
                 nonfinite=(~finite).astype(jnp.int32))
  for g, lr in learning_rates_fn(state.step).items():
    metrics[f"learning_rate/{g}"] = lr
  for g, norm in param_groups.group_norms(plan, flat_grads).items():
    metrics[f"grad_norm/{g}"] = norm
  return TrainState(step=state.step + 1, params=params,
                    opt_state=opt_state), metrics


def bind_train_step(loss_fn, tx, plan, config, step: int,
                    trainable_mask: dict | None = None):
  """train_step(state, batch, rng) for the unfreezing stage of `step`.

  `trainable_mask` (default: the plan's at `step`) overrides which params are
  differentiated; the freezing benchmark uses it to show what it saves.
  """
  accumulate = config.get("grad_accum_steps", 1)
  if accumulate < 1:
    raise ValueError(f"config.grad_accum_steps={accumulate} must be >= 1 "
                     "(1: no accumulation).")
  return functools.partial(
      train_step, loss_fn=loss_fn, tx=tx, plan=plan,
      trainable_mask=(plan.trainable_mask(step) if trainable_mask is None
                      else trainable_mask),
      learning_rates_fn=functools.partial(param_groups.group_learning_rates,
                                          plan, config),
      grad_accum_steps=accumulate)
