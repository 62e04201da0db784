"""classification: text -> one of config's classes, with a Transformer
encoder, pooling and a head (data/classification.py: topics, number parity,
imdb_reviews, text files); experiments/number_classification.py.

Evaluation: loss and accuracy (here a "token" is an example).
"""

import jax.numpy as jnp

from encdec_jax.data import classification as data
from encdec_jax.models import registry
from encdec_jax.models.classifier import EncoderClassifier
from encdec_jax.tasks import evaluation, losses, translation
from encdec_jax.tasks.base import (EvalResult, Task, per_split,
                                  refuse_copy)

DECODE_REFUSAL = ("--mode=decode generates text; this config's task is "
                  "'classification', so use --mode=eval (or --mode=embed for "
                  "sentence vectors).")


def classification_loss(model, config):
  """(params, batch, rng=None) -> (mean loss, sums); "tokens" counts
  examples."""
  label_smoothing = config.label_smoothing

  def loss_fn(params, batch, rng=None):
    logits_BxC = model.apply(
        {"params": params}, batch["inputs"], deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng})
    sums = losses.cross_entropy_sums(logits_BxC, batch["labels"],
                                     batch["example_weight"], label_smoothing)
    return sums["loss"] / jnp.maximum(sums["tokens"], 1.0), sums

  return loss_fn


def class_names(sources) -> list[str]:
  return list(list(sources.values())[-1].class_names)


def make_evaluator(exp):
  config = exp.config
  eval_step_fn = evaluation.make_eval_step(
      classification_loss(exp.model, config))

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    del num_decode  # nothing is decoded
    batches = data.eval_batches(exp.sources[split], exp.tokenizer, config,
                                config.eval_batch_size, num_loss)
    metrics = evaluation.evaluate_loss(eval_step_fn, params, batches,
                                       exp.mesh)
    return EvalResult(metrics, f"loss {metrics['loss']:.4f}  accuracy "
                      f"{metrics['accuracy']:.4f}")

  return evaluate


def check_config(config) -> None:
  refuse_copy(config, "classification", "a classifier is an encoder only")


TASK = Task(
    name="classification",
    families=("transformer",),
    make_sources=per_split(data.make_source),
    # Unlabelled text is plentiful: the whole train split's texts.
    tokenizer_texts=lambda config, sources: data.texts(config),
    model_config=registry.text_model_config,
    build_model=lambda arch, config, sources: EncoderClassifier(
        arch, num_classes=len(class_names(sources)),
        pooling=config.get("pooling", "mean")),
    init_inputs=translation.source_init_inputs,
    make_loss=classification_loss,
    train_dataset=lambda exp: data.train_dataset(
        exp.sources["train"], exp.tokenizer, exp.config,
        seed=exp.config.seed),
    make_evaluator=make_evaluator,
    decode_refusal=DECODE_REFUSAL,
    length_fields=("max_source_length",),  # no target sequence
    checkpoint_meta=lambda exp: {
        "classes": list(exp.sources["train"].class_names)},
    check_config=check_config,
)
