"""What the tasks' evaluations share: teacher-forced loss over a split,
decoding batches to text, and text metrics (sacrebleu)."""

import functools

import jax
import numpy as np
import sacrebleu

from encdec_jax import parallel
from encdec_jax.data import pipeline


def summarize(sums: dict) -> dict:
  """Per-token means from summed metrics (host side, after device_get)."""
  tokens = max(float(sums["tokens"]), 1.0)
  out = {"loss": float(sums["loss"]) / tokens,
         "nll": float(sums["nll"]) / tokens}
  if "correct" in sums:  # not for autoencoders: nothing is classified
    out["accuracy"] = float(sums["correct"]) / tokens
  for k, v in sums.items():
    if k.startswith(("grad_norm", "learning_rate")):
      out[k] = float(v)
  return out


def eval_step(params, batch, *, loss_fn):
  return loss_fn(params, batch)[1]


def make_eval_step(loss_fn):
  return jax.jit(functools.partial(eval_step, loss_fn=loss_fn))


def evaluate_loss(eval_step_fn, params, batches, mesh) -> dict:
  """Teacher-forced loss, NLL and token (or example) accuracy over batches."""
  totals = None
  for batch in batches:
    sums = eval_step_fn(params, parallel.shared_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(
        lambda a, b: a + b, totals, sums)
  return summarize(parallel.fetch(totals))


def text_metrics(hypotheses: list[str], references: list[str],
                 bleu_tokenize: str = "13a") -> dict:
  """Exact match (%), corpus BLEU (with `bleu_tokenize`) and chrF."""
  exact = np.mean([h.strip() == r.strip()
                   for h, r in zip(hypotheses, references)])
  return {"exact_match": 100.0 * float(exact),
          "bleu": sacrebleu.corpus_bleu(hypotheses, [references],
                                         tokenize=bleu_tokenize).score,
          "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


def translate_batches(decode_fn, params, batches, tokenizer, mesh,
                      num_examples: int, seed: int = 0):
  """Yields the hypotheses of each batch in turn (a list), for the first
  `num_examples` examples of `batches`.

  Batch i decodes with the key fold_in(key(seed), i) (used by sampling), so a
  file decodes the same way every run.
  """
  done = 0
  base_key = jax.random.key(seed)
  for i, batch in enumerate(batches):
    if done >= num_examples:
      return
    inputs = parallel.shared_batch({"inputs": batch["inputs"]}, mesh)["inputs"]
    tokens_BxT = np.asarray(parallel.fetch(
        decode_fn(params, inputs, jax.random.fold_in(base_key, i))))
    hypotheses = [tokenizer.decode(row)
                  for row in tokens_BxT[:num_examples - done]]
    done += len(hypotheses)
    yield hypotheses


def translate(decode_fn, params, batches, tokenizer, mesh, num_examples: int,
              seed: int = 0, progress=None) -> list[str]:
  """Hypotheses for the first `num_examples` examples of `batches`
  (translate_batches, joined). `progress(done)` is called per batch."""
  hypotheses = []
  for batch_hypotheses in translate_batches(decode_fn, params, batches,
                                            tokenizer, mesh, num_examples,
                                            seed):
    hypotheses.extend(batch_hypotheses)
    if progress:
      progress(len(hypotheses))
  return hypotheses


def num_or_all(requested: int | None, available: int) -> int:
  """`requested` examples of `available` (None or < 0: all of them)."""
  if requested is None or requested < 0:
    return available
  return min(requested, available)


def decode_split(decode_fn, params, source, tokenizer, config, mesh,
                 num_examples: int | None = None, seed: int = 0):
  """(sources, references, hypotheses) for a text-pair split (or its first
  examples)."""
  n = num_or_all(num_examples, len(source))
  batches = pipeline.eval_batches(source, tokenizer, config,
                                  config.eval_batch_size, n)
  hypotheses = translate(decode_fn, params, batches, tokenizer, mesh, n,
                         seed=seed)
  examples = list(pipeline.iter_examples(source, n))
  return ([e["source"] for e in examples], [e["target"] for e in examples],
          hypotheses)


def loss_line(metrics: dict) -> str:
  return f"loss {metrics['loss']:.4f}  token acc {metrics['accuracy']:.4f}"
