"""One evaluator per task: (params, writer, step, elapsed, split=, num_loss=,
num_decode=) -> metrics, logged and written to TensorBoard/metrics.jsonl.

  translation     loss, decoding, exact match / BLEU / chrF (evaluate.py)
  lm              loss, perplexity, continuations of config.lm_prompts
  classification  loss, accuracy
  embedding       contrastive loss, retrieval among the split (top-1/5, MRR)
  autoencoder     loss, MSE per pixel, anomaly ROC-AUC (config.anomaly_class)
  captioning      loss, decoded captions: exact match / BLEU / chrF
"""

import functools

import numpy as np

from encdec_jax.data import captions, classification, images, pipeline
from encdec_jax.train import experiment, reconstruction, retrieval
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train.evaluate import (decode_settings, describe_decoding,
                                       evaluate_and_report, evaluate_loss,
                                       make_decode_fn, make_eval_step,
                                       translate, translation_metrics)


def classification_report(exp, params, eval_step_fn, writer, step, elapsed,
                          split="validation", num_loss=None) -> dict:
  """Loss and accuracy of a classifier on a split."""
  batches = classification.eval_batches(
      exp.sources[split], exp.tokenizer, exp.config,
      exp.config.eval_batch_size, num_loss)
  metrics = evaluate_loss(eval_step_fn, params, batches, exp.mesh)
  metrics["wall_time_s"] = elapsed
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}")
  return metrics


def lm_report(exp, params, eval_step_fn, writer, step, elapsed,
              split="validation", num_loss=None, *, decode_fn) -> dict:
  """Loss and perplexity of an LM on a split, and its continuations of
  config.lm_prompts (decoded as config.decode says)."""
  config = exp.config
  metrics = evaluate_loss(
      eval_step_fn, params,
      pipeline.eval_batches(exp.sources[split], exp.tokenizer, config,
                            config.eval_batch_size, num_loss), exp.mesh)
  metrics["perplexity"] = float(np.exp(metrics["nll"]))
  metrics["wall_time_s"] = elapsed
  prompts = list(config.get("lm_prompts", ("",)))
  outputs = translate(
      decode_fn, params,
      pipeline.eval_batches([{"source": p, "target": ""} for p in prompts],
                            exp.tokenizer, config, config.eval_batch_size),
      exp.tokenizer, exp.mesh, len(prompts),
      seed=decode_settings(config)["seed"])
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  perplexity {metrics['perplexity']:.3f}"
         f"  token acc {metrics['accuracy']:.4f} ({describe_decoding(config)})")
  samples = "\n".join(f"  {p!r} → {o}" for p, o in zip(prompts, outputs))
  mw.log(samples)
  writer.text(step, f"{split}/samples", samples)
  return metrics


def embedding_report(exp, params, eval_step_fn, writer, step, elapsed,
                     split="validation", num_loss=None) -> dict:
  """Contrastive loss, and retrieval of each pair's second text by its first
  among all of the split's (or its first num_loss) examples."""
  config = exp.config
  n = len(exp.sources[split]) if num_loss is None or num_loss < 0 else min(
      num_loss, len(exp.sources[split]))
  batches = lambda: pipeline.eval_batches(
      exp.sources[split], exp.tokenizer, config, config.eval_batch_size, n)
  metrics = evaluate_loss(eval_step_fn, params, batches(), exp.mesh)
  embed_fn = retrieval.make_embed_fn(exp.model)
  queries = retrieval.embed_batches(embed_fn, params, batches(), exp.mesh, n)
  keys = retrieval.embed_batches(embed_fn, params, batches(), exp.mesh, n,
                                 field="targets")
  metrics.update(retrieval.retrieval_metrics(queries, keys))
  metrics["wall_time_s"] = elapsed
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  retrieval top-1 "
         f"{metrics['retrieval_top1']:.2f}% top-5 "
         f"{metrics['retrieval_top5']:.2f}%  MRR {metrics['mrr']:.4f} "
         f"(among {n})")
  return metrics


def autoencoder_report(exp, params, eval_step_fn, writer, step, elapsed,
                       split="validation", num_loss=None) -> dict:
  """Reconstruction loss and MSE per pixel on a split; on a split that holds
  config.anomaly_class (test), the ROC-AUC of the reconstruction error as an
  anomaly score for it."""
  config = exp.config
  batches = lambda: images.eval_batches(exp.sources[split], config,
                                        config.eval_batch_size, num_loss)
  metrics = evaluate_loss(eval_step_fn, params, batches(), exp.mesh)
  scores, labels = reconstruction.anomaly_scores(exp.model, params, batches())
  metrics["mse"] = float(np.mean(scores))
  anomaly = config.get("anomaly_class", -1)
  auc = ""
  if anomaly >= 0 and anomaly in labels and len(set(labels)) > 1:
    metrics["anomaly_auc"] = reconstruction.anomaly_auc(scores, labels,
                                                        anomaly)
    auc = f"  anomaly ROC-AUC (class {anomaly}) {metrics['anomaly_auc']:.4f}"
  metrics["wall_time_s"] = elapsed
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  MSE/pixel {metrics['mse']:.5f}{auc}")
  return metrics


def captioning_report(exp, params, writer, step, elapsed, split="validation",
                      num_loss=None, num_decode=None, *, decode_fn,
                      eval_step_fn) -> dict:
  """Teacher-forced loss of a captioner, and its decoded captions of the
  split's (first num_decode) images scored as translations are: exact match,
  BLEU (config.bleu_tokenize) and chrF against the reference captions."""
  config, source = exp.config, exp.sources[split]
  batches = lambda n: captions.eval_batches(source, exp.tokenizer, config,
                                            config.eval_batch_size, n)
  metrics = evaluate_loss(eval_step_fn, params, batches(num_loss), exp.mesh)
  n = len(source) if num_decode is None or num_decode < 0 else min(
      num_decode, len(source))
  if n == 0:  # loss only (num_decode_examples=0)
    metrics["wall_time_s"] = elapsed
    writer.write(step, split, metrics)
    mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] loss "
           f"{metrics['loss']:.4f}  token acc {metrics['accuracy']:.4f}")
    return metrics
  hyps = translate(decode_fn, params, batches(n), exp.tokenizer, exp.mesh, n,
                   seed=decode_settings(config)["seed"])
  examples = list(pipeline.iter_examples(source, n))
  refs = [e["caption"] for e in examples]
  metrics.update(translation_metrics(hyps, refs, config.bleu_tokenize))
  metrics["wall_time_s"] = elapsed
  metrics["num_decoded"] = n
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  token acc {metrics['accuracy']:.4f}  "
         f"exact match {metrics['exact_match']:.2f}%  "
         f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f} "
         f"({n} images, {describe_decoding(config)})")
  samples = [f"  {'✓' if h == r else '✗'} image {i} (digits at x="
             f"{','.join(str(x) for x in e['xs'] if x >= 0)}) → {h}\n"
             f"      ref {r}"
             for i, (e, r, h) in enumerate(zip(examples, refs, hyps))]
  samples = samples[:config.num_samples_to_print]
  if samples:
    mw.log("\n".join(samples))
    writer.text(step, f"{split}/samples", "\n\n".join(samples))
  return metrics


def make_evaluator(exp):
  """(params, writer, step, elapsed, split=, num_loss=, num_decode=) -> metrics
  for the experiment's task."""
  eval_step_fn = make_eval_step(experiment.loss_fn(exp))
  task = experiment.task_of(exp.config)
  if task == "translation":
    return functools.partial(evaluate_and_report, exp,
                             decode_fn=make_decode_fn(exp.model, exp.config,
                                                      exp.tokenizer.eos_id),
                             eval_step_fn=eval_step_fn)
  if task == "captioning":
    return functools.partial(
        captioning_report, exp, eval_step_fn=eval_step_fn,
        decode_fn=make_decode_fn(exp.model, exp.config,
                                 exp.tokenizer.eos_id))
  if task == "lm":
    report = functools.partial(
        lm_report, decode_fn=make_decode_fn(exp.model, exp.config,
                                            exp.tokenizer.eos_id,
                                            prompted=True))
  else:
    report = {"classification": classification_report,
              "embedding": embedding_report,
              "autoencoder": autoencoder_report}[task]

  def evaluate(params, writer, step, elapsed, split="validation",
               num_loss=None, num_decode=None):
    del num_decode  # only translation decodes examples of the split
    return report(exp, params, eval_step_fn, writer, step, elapsed, split,
                  num_loss)

  return evaluate
