"""What the tasks' evaluations share: teacher-forced loss over a split,
decoding batches to text, and text metrics: exact match, BLEU and chrF
(sacrebleu), ROUGE-1/2/Lsum (Google's rouge-score, as T5 reports on
CNN/DailyMail), chosen by config.eval_metrics."""

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


# config.eval_metrics: what a text task scores its decoded examples with.
METRICS = ("exact_match", "bleu", "chrf", "rouge")
DEFAULT_METRICS = ("exact_match", "bleu", "chrf")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")  # what "rouge" reports


def chosen_metrics(config) -> tuple[str, ...]:
  """config.eval_metrics (default DEFAULT_METRICS), checked: one line
  naming an unknown metric."""
  metrics = config.get("eval_metrics")
  if metrics is None:
    return DEFAULT_METRICS
  metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
  unknown = [m for m in metrics if m not in METRICS]
  if unknown or not metrics:
    raise ValueError(f"config.eval_metrics={metrics!r}: "
                     + (f"{unknown[0]!r} is not known; " if unknown else
                        "empty; ")
                     + f"choose from {METRICS}.")
  return metrics


def _sentence_lines(summary: str) -> str:
  """Sentences on lines of their own, for ROUGE-Lsum (which splits at
  newlines): a " . " ends one, as in T5's evaluation (t5.evaluation.metrics
  .rouge), since a TSV summary is one line."""
  return summary.replace(" . ", " .\n")


def rouge_scores(hypotheses: list[str], references: list[str]) -> dict:
  """ROUGE-1, ROUGE-2 and ROUGE-Lsum F-measures (x 100), each averaged over
  the examples, by rouge-score's RougeScorer as T5 uses it (no stemming;
  its tokenizer lower-cases and keeps [a-z0-9] runs only)."""
  # Imported here: rouge_score loads nltk (~1 s), which only ROUGE needs.
  from rouge_score import rouge_scorer
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES))
  totals = dict.fromkeys(ROUGE_TYPES, 0.0)
  for hypothesis, reference in zip(hypotheses, references):
    scores = scorer.score(target=_sentence_lines(reference),
                          prediction=_sentence_lines(hypothesis))
    for key in ROUGE_TYPES:
      totals[key] += scores[key].fmeasure
  n = max(len(hypotheses), 1)
  return {key: 100.0 * total / n for key, total in totals.items()}


def text_metrics(hypotheses: list[str], references: list[str],
                 bleu_tokenize: str = "13a",
                 metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict:
  """The chosen `metrics` (METRICS): exact match (%), corpus BLEU (with
  `bleu_tokenize`), chrF, ROUGE (ROUGE_TYPES, rouge_scores)."""
  out = {}
  if "exact_match" in metrics:
    exact = np.mean([h.strip() == r.strip()
                     for h, r in zip(hypotheses, references)])
    out["exact_match"] = 100.0 * float(exact)
  if "bleu" in metrics:
    out["bleu"] = sacrebleu.corpus_bleu(hypotheses, [references],
                                        tokenize=bleu_tokenize).score
  if "chrf" in metrics:
    out["chrf"] = sacrebleu.corpus_chrf(hypotheses, [references]).score
  if "rouge" in metrics:
    out.update(rouge_scores(hypotheses, references))
  return out


_LABELS = (("exact_match", "exact match {:.2f}%"), ("bleu", "BLEU {:.2f}"),
           ("chrf", "chrF {:.2f}"), ("rouge1", "ROUGE-1 {:.2f}"),
           ("rouge2", "ROUGE-2 {:.2f}"), ("rougeLsum", "ROUGE-Lsum {:.2f}"))


def text_metrics_line(metrics: dict) -> str:
  """The text metrics `metrics` holds, as the evaluation line shows them."""
  return "  ".join(label.format(metrics[key]) for key, label in _LABELS
                   if key in metrics)


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
