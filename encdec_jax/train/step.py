"""Pure train and eval steps, and the TrainState they carry."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from encdec_jax.models.encoder_decoder import shift_right


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params))


def token_weights(batch) -> jax.Array:
  """1 at real target tokens of kept examples, 0 at padding and drops."""
  return ((batch["targets"] > 0) *
          batch["example_weight"][:, None]).astype(jnp.float32)


def cross_entropy_sums(logits_BxTxV, targets_BxT, weights_BxT,
                       label_smoothing: float):
  """Summed label-smoothed cross-entropy, exact NLL and correct tokens.

  The smoothed loss subtracts its minimum (the entropy of the smoothed target)
  so that a perfect model scores 0, as in the Flax WMT example.
  """
  vocab = logits_BxTxV.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  normalizer = -(confidence * jnp.log(confidence) +
                 (vocab - 1) * low * jnp.log(low + 1e-20))
  soft_BxTxV = optax.smooth_labels(jax.nn.one_hot(targets_BxT, vocab),
                                   label_smoothing * vocab / (vocab - 1))
  logits_BxTxV = logits_BxTxV.astype(jnp.float32)
  loss_BxT = optax.softmax_cross_entropy(logits_BxTxV, soft_BxTxV) - normalizer
  nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV,
                                                            targets_BxT)
  correct_BxT = jnp.argmax(logits_BxTxV, -1) == targets_BxT
  return {"loss": jnp.sum(loss_BxT * weights_BxT),
          "nll": jnp.sum(nll_BxT * weights_BxT),
          "correct": jnp.sum(correct_BxT * weights_BxT),
          "tokens": jnp.sum(weights_BxT)}


def train_step(state: TrainState, batch, rng, *, model, tx, label_smoothing,
               learning_rate_fn):
  """One optimizer update; `rng` is the run's base key (folded with step)."""
  dropout_rng = jax.random.fold_in(rng, state.step)
  weights_BxT = token_weights(batch)

  def loss_fn(params):
    logits = model.apply({"params": params}, batch["inputs"],
                         shift_right(batch["targets"]), deterministic=False,
                         rngs={"dropout": dropout_rng})
    sums = cross_entropy_sums(logits, batch["targets"], weights_BxT,
                              label_smoothing)
    return sums["loss"] / jnp.maximum(sums["tokens"], 1.0), sums

  (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(sums, grad_norm=optax.tree.norm(grads),
                 learning_rate=learning_rate_fn(state.step),
                 overlong=jnp.sum(batch["overlong"]))
  return TrainState(step=state.step + 1, params=params,
                    opt_state=opt_state), metrics


def eval_step(params, batch, *, model, label_smoothing):
  logits = model.apply({"params": params}, batch["inputs"],
                       shift_right(batch["targets"]), deterministic=True)
  return cross_entropy_sums(logits, batch["targets"], token_weights(batch),
                            label_smoothing)


def summarize(sums: dict) -> dict:
  """Per-token means from summed metrics (host side, after device_get)."""
  tokens = max(float(sums["tokens"]), 1.0)
  out = {"loss": float(sums["loss"]) / tokens,
         "nll": float(sums["nll"]) / tokens,
         "accuracy": float(sums["correct"]) / tokens}
  for k in ("grad_norm", "learning_rate"):
    if k in sums:
      out[k] = float(sums[k])
  return out
