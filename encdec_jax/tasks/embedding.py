"""embedding: text -> unit vector, a SentenceEmbedder trained contrastively
on text pairs (row i of `inputs` and of `targets` mean the same);
experiments/sentence_embedding.py, experiments/minilm_embed.py.

Evaluation: contrastive loss, and retrieval of each pair's second text by
its first among the split's examples (top-1/5, MRR).
"""

import jax
import jax.numpy as jnp

from encdec_jax.data import pipeline
from encdec_jax.data import sources as sources_lib
from encdec_jax.models import registry
from encdec_jax.models.embedder import SentenceEmbedder
from encdec_jax.tasks import evaluation, losses, retrieval, translation
from encdec_jax.tasks.base import (EvalResult, Task, per_split,
                                  refuse_copy)


def contrastive_loss(model, config):
  """In-batch-negatives contrastive loss of a sentence embedder.

  Every other row of the batch is a negative (van den Oord et al. 2018;
  sentence-transformers' MultipleNegativesRankingLoss), in both directions,
  at config.contrastive_temperature. "correct" counts pairs retrieved at
  rank 1 within the batch; "tokens" counts directions x examples. Padding
  rows are neither queries nor candidates.
  """
  temperature = config.get("contrastive_temperature", 0.05)

  def loss_fn(params, batch, rng=None):
    def embed(ids_BxS, salt):
      return model.apply(
          {"params": params}, ids_BxS, deterministic=rng is None,
          rngs=None if rng is None else {"dropout": jax.random.fold_in(
              rng, salt)})

    a_BxD = embed(batch["inputs"], 0)
    b_BxD = embed(batch["targets"], 1)
    weight_B = batch["example_weight"]
    valid_1xB = (weight_B > 0)[None, :]
    # Finite: cross_entropy_sums sums all logits (its smoothing term), and a
    # sum of float32 minima would overflow to -inf and give 0 * inf = NaN.
    big_negative = -1e9
    logits_BxB = (a_BxD @ b_BxD.T) / temperature
    logits_2xBxB = jnp.stack([
        jnp.where(valid_1xB, logits_BxB, big_negative),
        jnp.where(valid_1xB, logits_BxB.T, big_negative)])
    labels_2xB = jnp.broadcast_to(jnp.arange(weight_B.shape[0]),
                                  logits_2xBxB.shape[:2])
    sums = losses.cross_entropy_sums(logits_2xBxB, labels_2xB,
                                     jnp.stack([weight_B, weight_B]), 0.0)
    return sums["loss"] / jnp.maximum(sums["tokens"], 1.0), sums

  return loss_fn


def make_evaluator(exp):
  config = exp.config
  eval_step_fn = evaluation.make_eval_step(contrastive_loss(exp.model, config))
  embed_fn = retrieval.make_embed_fn(exp.model)

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    del num_decode  # nothing is decoded
    n = evaluation.num_or_all(num_loss, len(exp.sources[split]))
    batches = lambda: pipeline.eval_batches(
        exp.sources[split], exp.tokenizer, config, config.eval_batch_size, n)
    metrics = evaluation.evaluate_loss(eval_step_fn, params, batches(),
                                       exp.mesh)
    queries = retrieval.embed_batches(embed_fn, params, batches(), exp.mesh,
                                      n)
    keys = retrieval.embed_batches(embed_fn, params, batches(), exp.mesh, n,
                                   field="targets")
    metrics.update(retrieval.retrieval_metrics(queries, keys))
    return EvalResult(
        metrics,
        f"loss {metrics['loss']:.4f}  retrieval top-1 "
        f"{metrics['retrieval_top1']:.2f}% top-5 "
        f"{metrics['retrieval_top5']:.2f}%  MRR {metrics['mrr']:.4f} "
        f"(among {n})")

  return evaluate


def check_config(config) -> None:
  refuse_copy(config, "embedding", "a sentence embedder is an encoder only")


TASK = Task(
    name="embedding",
    families=("transformer",),
    make_sources=per_split(sources_lib.make_source),
    tokenizer_texts=translation.pair_texts,
    model_config=registry.text_model_config,
    build_model=lambda arch, config, sources: SentenceEmbedder(
        arch, pooling=config.get("pooling", "mean")),
    init_inputs=translation.source_init_inputs,
    make_loss=contrastive_loss,
    train_dataset=translation.text_train_dataset,
    make_evaluator=make_evaluator,
    decode_refusal=("--mode=decode generates text; this config's task is "
                    "'embedding', so use --mode=eval (or --mode=embed for "
                    "sentence vectors)."),
    embeds_untrained=True,
    check_config=check_config,
)
