"""Reconstruction losses and anomaly scores for the image autoencoders.

The loss returns the same summed metrics as step.py's losses ("loss", "nll",
"tokens"; no "correct": nothing is classified), so train_step, eval_step and
summarize work unchanged;
here a "token" is a pixel of a real image:
  loss   summed per-pixel binary cross-entropy of sigmoid(logits) against the
         pixel intensity in [0, 1] (soft targets: its minimum is the pixels'
         entropy, not 0, so compare it between runs, not to 0);
  nll    summed squared error of sigmoid(logits): summarize's "nll" is then
         the per-pixel MSE.

Anomaly detection: an autoencoder trained without one class
(config.anomaly_class, see data/images.py) reconstructs that class worse, so
the per-image MSE on test scores anomalies; anomaly_auc is its ROC AUC.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import metrics


def _pixel_weights(batch) -> jax.Array:
  """example_weight broadcast to BxHxWxC: 1 at pixels of real images."""
  weight_B = batch["example_weight"].astype(jnp.float32)
  return jnp.broadcast_to(weight_B[:, None, None, None], batch["image"].shape)


def reconstruction_sums(logits_BxHxWxC, images_BxHxWxC, weights_BxHxWxC):
  """Summed per-pixel BCE, squared error and pixel count (step.py's keys)."""
  logits = logits_BxHxWxC.astype(jnp.float32)
  targets = images_BxHxWxC.astype(jnp.float32)
  bce = optax.sigmoid_binary_cross_entropy(logits, targets)
  squared_error = jnp.square(jax.nn.sigmoid(logits) - targets)
  return {"loss": jnp.sum(bce * weights_BxHxWxC),
          "nll": jnp.sum(squared_error * weights_BxHxWxC),
          "tokens": jnp.sum(weights_BxHxWxC)}


def reconstruction_loss(model):
  """(params, batch, rng) -> (mean per-pixel BCE, sums) of an Autoencoder.

  rng=None evaluates deterministically (no dropout).
  """

  def loss_fn(params, batch, rng=None):
    logits_BxHxWxC = model.apply(
        {"params": params}, batch["image"], deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng})
    sums = reconstruction_sums(logits_BxHxWxC, batch["image"],
                               _pixel_weights(batch))
    return sums["loss"] / jnp.maximum(sums["tokens"], 1.0), sums

  return loss_fn


def per_image_mse(model, params, images_BxHxWxC) -> jax.Array:
  """float32 B: mean squared error of each image's reconstruction."""
  logits_BxHxWxC = model.apply({"params": params}, images_BxHxWxC)
  error = jnp.square(jax.nn.sigmoid(logits_BxHxWxC) -
                     images_BxHxWxC.astype(jnp.float32))
  return jnp.mean(error.reshape(error.shape[0], -1), axis=-1)


@functools.lru_cache(maxsize=8)
def _score_fn(model):
  # Cached per model (linen modules hash by their config), so evaluating
  # every few thousand steps compiles once, not at every evaluation.
  return jax.jit(functools.partial(per_image_mse, model))


def anomaly_scores(model, params, batches) -> tuple[np.ndarray, np.ndarray]:
  """(float32 scores_N, int64 labels_N): per-image reconstruction MSE of the
  real (weight > 0) rows of `batches`, in order."""
  score_fn = _score_fn(model)
  scores, labels = [], []
  for batch in batches:
    real_B = np.asarray(batch["example_weight"]) > 0
    scores.append(np.asarray(score_fn(params, batch["image"]))[real_B])
    labels.append(np.asarray(batch["label"])[real_B])
  if not scores:
    return np.zeros((0,), np.float32), np.zeros((0,), np.int64)
  return (np.concatenate(scores).astype(np.float32),
          np.concatenate(labels).astype(np.int64))


def anomaly_auc(scores, labels, anomaly_class: int) -> float:
  """ROC AUC of `scores` for telling `anomaly_class` (positive) from the rest.

  1.0: every anomaly scores above every normal image; 0.5: no better than
  chance (e.g. all scores tied).
  """
  positive_N = np.asarray(labels) == anomaly_class
  if positive_N.all() or not positive_N.any():
    raise ValueError(f"anomaly_auc needs both class {anomaly_class} and other "
                     f"classes among the {len(positive_N)} labels; score the "
                     "test split, which keeps every class.")
  return float(metrics.roc_auc_score(positive_N, np.asarray(scores)))


def reconstruction_error(model, params, batches) -> float:
  """Mean per-pixel squared error over the real images of `batches`.

  All images of a split have the same number of pixels, so this is also the
  mean of the per-image MSEs.
  """
  scores, _ = anomaly_scores(model, params, batches)
  if not len(scores):
    raise ValueError("reconstruction_error got no real images; pass a "
                     "non-empty split.")
  return float(np.mean(scores, dtype=np.float64))
