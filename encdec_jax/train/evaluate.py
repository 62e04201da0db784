"""Evaluation: teacher-forced loss/accuracy, and decoding scored with sacrebleu."""

import functools

import jax
import numpy as np
import sacrebleu

from encdec_jax import decoding, parallel
from encdec_jax.data import classification, pipeline
from encdec_jax.data.tokenizer import EOS_ID
from encdec_jax.models.encoder_decoder import (EncoderDecoder, init_cache,
                                               make_tokens_to_logits)
from encdec_jax.train import experiment
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import step as step_lib


def make_greedy_fn(model: EncoderDecoder, max_decode_len: int):
  """jit(params, inputs_BxS) -> tokens_BxT, greedy with the KV cache."""

  @jax.jit
  def greedy(params, inputs_BxS):
    batch_size, source_len = inputs_BxS.shape
    encoded = model.apply({"params": params}, inputs_BxS,
                          method=EncoderDecoder.encode)
    cache = init_cache(model, batch_size, max_decode_len, source_len)
    tokens_to_logits = make_tokens_to_logits(model, params, encoded)
    return decoding.greedy_decode(tokens_to_logits, cache, batch_size,
                                  max_decode_len, EOS_ID)

  return greedy


def translation_metrics(hypotheses: list[str], references: list[str],
                        bleu_tokenize: str = "13a") -> dict:
  """Exact match (%), corpus BLEU (with `bleu_tokenize`) and chrF."""
  exact = np.mean([h.strip() == r.strip()
                   for h, r in zip(hypotheses, references)])
  return {"exact_match": 100.0 * float(exact),
          "bleu": sacrebleu.corpus_bleu(hypotheses, [references],
                                         tokenize=bleu_tokenize).score,
          "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


def translate(greedy_fn, params, batches, tokenizer, mesh,
              num_examples: int) -> list[str]:
  """Hypotheses for the first `num_examples` examples of `batches`."""
  hypotheses = []
  for batch in batches:
    inputs = parallel.global_batch({"inputs": batch["inputs"]}, mesh)["inputs"]
    tokens_BxT = np.asarray(jax.device_get(greedy_fn(params, inputs)))
    for row in tokens_BxT:
      if len(hypotheses) < num_examples:
        hypotheses.append(tokenizer.decode(row))
  return hypotheses


def decode_split(greedy_fn, params, source, tokenizer, config, mesh,
                 num_examples: int | None = None):
  """(sources, references, hypotheses) for a split (or its first examples)."""
  n = len(source) if num_examples is None or num_examples < 0 else min(
      num_examples, len(source))
  batches = pipeline.eval_batches(source, tokenizer, config,
                                  config.eval_batch_size, n)
  hypotheses = translate(greedy_fn, params, batches, tokenizer, mesh, n)
  examples = list(pipeline.iter_examples(source, n))
  return ([e["source"] for e in examples], [e["target"] for e in examples],
          hypotheses)


def make_eval_step(loss_fn):
  return jax.jit(functools.partial(step_lib.eval_step, loss_fn=loss_fn))


def evaluate_loss(eval_step_fn, params, batches, mesh) -> dict:
  """Teacher-forced loss, NLL and token (or example) accuracy over batches."""
  totals = None
  for batch in batches:
    sums = eval_step_fn(params, parallel.global_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(
        lambda a, b: a + b, totals, sums)
  return step_lib.summarize(jax.device_get(totals))


def evaluate_and_report(exp, params, writer, step, elapsed, split="validation",
                        num_loss=None, num_decode=None, *, greedy_fn,
                        eval_step_fn) -> dict:
  """Loss/accuracy and decoding metrics on a split; prints sample outputs."""
  config = exp.config
  metrics = evaluate_loss(
      eval_step_fn, params,
      pipeline.eval_batches(exp.sources[split], exp.tokenizer, config,
                            config.eval_batch_size, num_loss), exp.mesh)
  srcs, refs, hyps = decode_split(
      greedy_fn, params, exp.sources[split], exp.tokenizer, config, exp.mesh,
      num_decode)
  metrics.update(translation_metrics(hyps, refs, config.bleu_tokenize))
  metrics["wall_time_s"] = elapsed
  metrics["num_decoded"] = len(hyps)
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  token acc {metrics['accuracy']:.4f}  "
         f"exact match {metrics['exact_match']:.2f}%  "
         f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f} "
         f"({len(hyps)} examples)")
  samples = []
  for s, r, h in list(zip(srcs, refs, hyps))[:config.num_samples_to_print]:
    mark = "✓" if h.strip() == r.strip() else "✗"
    samples.append(f"  {mark} {s}\n      → {h}\n      ref {r}")
  if samples:
    mw.log("\n".join(samples))
    writer.text(step, f"{split}/samples", "\n\n".join(samples))
  return metrics


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


def make_evaluator(exp):
  """(params, writer, step, elapsed, split=, num_loss=, num_decode=) -> metrics
  for the experiment's task."""
  eval_step_fn = make_eval_step(experiment.loss_fn(exp))
  if experiment.is_classification(exp.config):

    def evaluate_classifier(params, writer, step, elapsed, split="validation",
                            num_loss=None, num_decode=None):
      del num_decode  # nothing to decode
      return classification_report(exp, params, eval_step_fn, writer, step,
                                   elapsed, split, num_loss)

    return evaluate_classifier
  greedy_fn = make_greedy_fn(exp.model, exp.config.max_decode_length)
  return functools.partial(evaluate_and_report, exp, greedy_fn=greedy_fn,
                           eval_step_fn=eval_step_fn)
