"""Evaluation: teacher-forced loss/accuracy, and decoding scored with sacrebleu."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import sacrebleu

from encdec_jax import parallel
from encdec_jax.decoding.config import (decode_settings, describe_decoding,  # noqa: F401
                                        make_decode_fn)
from encdec_jax.data import pipeline
from encdec_jax.data.tokenizer import EOS_ID
from encdec_jax.train import experiment
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import step as step_lib


def translation_metrics(hypotheses: list[str], references: list[str],
                        bleu_tokenize: str = "13a") -> dict:
  """Exact match (%), corpus BLEU (with `bleu_tokenize`) and chrF."""
  exact = np.mean([h.strip() == r.strip()
                   for h, r in zip(hypotheses, references)])
  return {"exact_match": 100.0 * float(exact),
          "bleu": sacrebleu.corpus_bleu(hypotheses, [references],
                                         tokenize=bleu_tokenize).score,
          "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


def translate(decode_fn, params, batches, tokenizer, mesh, num_examples: int,
              seed: int = 0, progress=None) -> list[str]:
  """Hypotheses for the first `num_examples` examples of `batches`.

  Batch i decodes with the key fold_in(key(seed), i) (used by sampling), so a
  file decodes the same way every run. `progress(done)` is called per batch.
  """
  hypotheses = []
  base_key = jax.random.key(seed)
  for i, batch in enumerate(batches):
    inputs = parallel.shared_batch({"inputs": batch["inputs"]}, mesh)["inputs"]
    tokens_BxT = np.asarray(parallel.fetch(
        decode_fn(params, inputs, jax.random.fold_in(base_key, i))))
    for row in tokens_BxT:
      if len(hypotheses) < num_examples:
        hypotheses.append(tokenizer.decode(row))
    if progress:
      progress(len(hypotheses))
  return hypotheses


def decode_split(decode_fn, params, source, tokenizer, config, mesh,
                 num_examples: int | None = None):
  """(sources, references, hypotheses) for a split (or its first examples)."""
  n = len(source) if num_examples is None or num_examples < 0 else min(
      num_examples, len(source))
  batches = pipeline.eval_batches(source, tokenizer, config,
                                  config.eval_batch_size, n)
  hypotheses = translate(decode_fn, params, batches, tokenizer, mesh, n,
                         seed=decode_settings(config)["seed"])
  examples = list(pipeline.iter_examples(source, n))
  return ([e["source"] for e in examples], [e["target"] for e in examples],
          hypotheses)


def make_eval_step(loss_fn):
  return jax.jit(functools.partial(step_lib.eval_step, loss_fn=loss_fn))


def evaluate_loss(eval_step_fn, params, batches, mesh) -> dict:
  """Teacher-forced loss, NLL and token (or example) accuracy over batches."""
  totals = None
  for batch in batches:
    sums = eval_step_fn(params, parallel.shared_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(
        lambda a, b: a + b, totals, sums)
  return step_lib.summarize(parallel.fetch(totals))


def evaluate_and_report(exp, params, writer, step, elapsed, split="validation",
                        num_loss=None, num_decode=None, *, decode_fn,
                        eval_step_fn) -> dict:
  """Loss/accuracy and decoding metrics on a split; prints sample outputs."""
  config = exp.config
  metrics = evaluate_loss(
      eval_step_fn, params,
      pipeline.eval_batches(exp.sources[split], exp.tokenizer, config,
                            config.eval_batch_size, num_loss), exp.mesh)
  if num_decode == 0:  # loss only (e.g. frequent evals of a long run)
    metrics["wall_time_s"] = elapsed
    writer.write(step, split, metrics)
    mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
           f"loss {metrics['loss']:.4f}  token acc {metrics['accuracy']:.4f} "
           "(num_decode_examples=0: nothing decoded)")
    return metrics
  srcs, refs, hyps = decode_split(
      decode_fn, params, exp.sources[split], exp.tokenizer, config, exp.mesh,
      num_decode)
  metrics.update(translation_metrics(hyps, refs, config.bleu_tokenize))
  metrics["wall_time_s"] = elapsed
  metrics["num_decoded"] = len(hyps)
  writer.write(step, split, metrics)
  mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
         f"loss {metrics['loss']:.4f}  token acc {metrics['accuracy']:.4f}  "
         f"exact match {metrics['exact_match']:.2f}%  "
         f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f} "
         f"({len(hyps)} examples, {describe_decoding(config)})")
  samples = []
  for s, r, h in list(zip(srcs, refs, hyps))[:config.num_samples_to_print]:
    mark = "✓" if h.strip() == r.strip() else "✗"
    samples.append(f"  {mark} {s}\n      → {h}\n      ref {r}")
  if samples:
    mw.log("\n".join(samples))
    writer.text(step, f"{split}/samples", "\n\n".join(samples))
  return metrics
