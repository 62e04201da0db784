"""autoencoder: image -> bottleneck -> image (an MLP or conv Autoencoder on
sklearn digits or MNIST; no tokenizer); experiments/autoencoder_digits.py.

Evaluation: reconstruction loss and MSE per pixel; on a split that holds
config.anomaly_class (test), the ROC-AUC of the reconstruction error as an
anomaly score for it.

The loss returns the same summed metrics as the text losses (tasks/losses.py) ("loss", "nll",
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

from encdec_jax.data import images
from encdec_jax.models import registry
from encdec_jax.models.autoencoder import Autoencoder, AutoencoderConfig
from encdec_jax.tasks import evaluation
from encdec_jax.tasks.base import EvalResult, Task


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


def reconstruction_loss(model, config=None):
  """(params, batch, rng) -> (mean per-pixel BCE, sums) of an Autoencoder.

  rng=None evaluates deterministically (no dropout).
  """
  del config  # nothing to set

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


def check_image_shape(config, source, what: str) -> None:
  """config.model.image_shape must be the shape of the data's images."""
  shape = tuple(source.image_shape)
  if tuple(config.model.image_shape) != shape:
    raise ValueError(
        f"config.model.image_shape={tuple(config.model.image_shape)} but "
        f"{what} are {shape}; set --config.model.image_shape='{shape}'.")


def _make_sources(config, splits) -> dict:
  sources = {s: images.make_source(config, s) for s in splits}
  check_image_shape(config, sources[splits[-1]], f"{config.dataset} images")
  return sources


def _model_config(config, family: str, vocab_size) -> AutoencoderConfig:
  del vocab_size  # images in, images out
  fields = registry.model_fields(config)
  for key in ("image_shape", "hidden_dims", "conv_features"):
    if key in fields:
      fields[key] = tuple(fields[key])
  return AutoencoderConfig(family=family, **fields)


def make_evaluator(exp):
  config = exp.config
  eval_step_fn = evaluation.make_eval_step(reconstruction_loss(exp.model))

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    del num_decode  # nothing is decoded
    batches = lambda: images.eval_batches(exp.sources[split], config,
                                          config.eval_batch_size, num_loss)
    metrics = evaluation.evaluate_loss(eval_step_fn, params, batches(),
                                       exp.mesh)
    scores, labels = anomaly_scores(exp.model, params, batches())
    metrics["mse"] = float(np.mean(scores))
    anomaly = config.get("anomaly_class", -1)
    auc = ""
    if anomaly >= 0 and anomaly in labels and len(set(labels)) > 1:
      metrics["anomaly_auc"] = anomaly_auc(scores, labels, anomaly)
      auc = f"  anomaly ROC-AUC (class {anomaly}) {metrics['anomaly_auc']:.4f}"
    return EvalResult(metrics, f"loss {metrics['loss']:.4f}  MSE/pixel "
                      f"{metrics['mse']:.5f}{auc}")

  return evaluate


TASK = Task(
    name="autoencoder",
    families=("mlp", "conv"),
    make_sources=_make_sources,
    tokenizer_texts=None,
    model_config=_model_config,
    build_model=lambda arch, config, sources: Autoencoder(arch),
    init_inputs=lambda config: (
        jnp.zeros((1, *config.model.image_shape), jnp.float32),),
    make_loss=reconstruction_loss,
    train_dataset=lambda exp: images.train_dataset(
        exp.sources["train"], exp.config, seed=exp.config.seed),
    make_evaluator=make_evaluator,
    decode_refusal=("--mode=decode generates text; this config's task is "
                    "'autoencoder', so use --mode=eval."),
    encoder_reads_text=False,
    embeds_text=False,
    embed_refusal=("--mode=embed embeds text; this config's task is "
                   "'autoencoder' (images): use --mode=eval for its scores."),
)
