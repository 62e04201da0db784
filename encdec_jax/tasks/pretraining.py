"""pretraining: an encoder–decoder pretrained on raw text by a denoising
objective, T5's span corruption or BART's text infilling (or T5's prefix
LM), packed; experiments/pretrain_span_corruption.py, docs/pretraining.md.

Data: one document a line, from config.text_files (config.dataset=
"text_files") or the offline Python documentation corpus
(config.dataset="python_docs", data/python_docs.py); documents are cut
into chunks, noised and packed by data/denoising_stream.py. The sentinels
(<extra_id_k>, and BART's mask as <extra_id_0>) are the config.extra_ids
ids after the SentencePiece pieces, so the model's vocabulary must hold
them: starts/t5_scratch.py (config.hf_export="t5") sizes it
config.vocab_size + config.extra_ids, as T5's 32000 pieces + 100 extra ids.

Evaluation, on a split's chunks noised by (config.seed, chunk index) (the
same pairs every time): the denoising loss, token accuracy and, for span
corruption, span accuracy: the share of noise spans whose every token and
the token that closes the span (the next sentinel or EOS) is the model's
best guess with the true targets fed (teacher forcing).
"""

import jax
import jax.numpy as jnp
import numpy as np

from encdec_jax import parallel
from encdec_jax.data import denoising_stream, pipeline, python_docs
from encdec_jax.data import lm as lm_data
from encdec_jax.data.tokenizer import EOS_ID
from encdec_jax.models import registry
from encdec_jax.models.contract import shift_right
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.tasks import evaluation, losses, translation
from encdec_jax.tasks.base import EvalResult, Task

DATASETS = ("python_docs", "text_files")


def make_sources(config, splits) -> dict[str, list[str]]:
  """{split: the split's documents (text lines)}."""
  if config.dataset == "python_docs":
    return {s: python_docs.split(s) for s in splits}
  if config.dataset == "text_files":
    return {s: [ex["target"] for ex in pipeline.iter_examples(
        lm_data.make_source(config, s))] for s in splits}
  raise ValueError(f"config.dataset={config.dataset!r} cannot be pretrained "
                   f"on; use one of {DATASETS} (text_files: one document a "
                   "line in config.text_files.<split>).")


def tokenizer_texts(config, sources):
  del config
  yield from sources["train"]


def check_config(config) -> None:
  """The objective is known and the max lengths hold its pairs."""
  settings = config.pretraining
  if settings.objective not in denoising_stream.OBJECTIVES:
    raise ValueError(f"config.pretraining.objective={settings.objective!r} "
                     f"is not known; use one of "
                     f"{denoising_stream.OBJECTIVES}.")
  if config.get("extra_ids", 0) < 1:
    raise ValueError("config.extra_ids must be >= 1: the sentinel ids "
                     "(<extra_id_k>) the objectives write.")
  if settings.objective == "span_corruption":
    chunk, _, targets = denoising_stream.lengths(
        denoising_stream.Objective("span_corruption", np.zeros(0), **{
            k: settings[k] for k in ("noise_density",
                                     "mean_noise_span_length")}),
        config.max_source_length, config.max_target_length)
    if config.max_target_length < targets:
      raise ValueError(
          f"config.max_target_length={config.max_target_length} cannot hold "
          f"span corruption's targets of {config.max_source_length}-token "
          f"inputs ({chunk} raw tokens): set it to {targets}.")


def _objective(exp) -> denoising_stream.Objective:
  """The objective, with the sentinel ids checked against the model."""
  config, tokenizer = exp.config, exp.tokenizer
  if not hasattr(tokenizer, "piece") or not hasattr(tokenizer, "unk_id"):
    raise ValueError("pretraining needs config.tokenizer='sentencepiece' "
                     "(its sentinels follow the SentencePiece pieces).")
  needed = tokenizer.vocab_size + config.extra_ids
  if exp.model.config.vocab_size < needed:
    raise ValueError(
        f"the model has {exp.model.config.vocab_size} token ids, but "
        f"{tokenizer.vocab_size} pieces + config.extra_ids="
        f"{config.extra_ids} sentinels need {needed}: set "
        "--config.hf_export=t5 (starts/t5_scratch.py sizes the vocabulary).")
  return denoising_stream.make_objective(config.pretraining, tokenizer,
                                         config.extra_ids)


def _chunks(exp, split: str, objective) -> denoising_stream.Chunks:
  chunk, _, _ = denoising_stream.lengths(objective,
                                         exp.config.max_source_length,
                                         exp.config.max_target_length)
  return denoising_stream.Chunks(exp.sources[split], exp.tokenizer, chunk)


def train_dataset(exp):
  objective = _objective(exp)
  return denoising_stream.train_dataset(_chunks(exp, "train", objective),
                                        objective, exp.config,
                                        seed=exp.config.seed)


def span_hits(targets_BxT: np.ndarray, correct_BxT: np.ndarray,
              sentinel_ids) -> tuple[int, int]:
  """(spans predicted exactly, spans) of span-corruption targets: span k
  runs from after sentinel k to the next sentinel or EOS, both included."""
  is_sentinel = np.isin(targets_BxT, sentinel_ids)
  hits = total = 0
  for targets_T, correct_T, sentinel_T in zip(targets_BxT, correct_BxT,
                                              is_sentinel):
    ends = np.flatnonzero(sentinel_T | (targets_T == EOS_ID))
    for start, end in zip(ends[:-1], ends[1:]):
      if sentinel_T[start]:
        total += 1
        hits += bool(correct_T[start + 1:end + 1].all())
  return hits, total


def _make_eval_step(model, label_smoothing: float):
  """Jitted (params, batch) -> (sums, correct_BxT): the loss's sums and
  which target tokens are the model's best guess (teacher-forced)."""
  def step(params, batch):
    logits_BxTxV = model.apply({"params": params}, batch["inputs"],
                               shift_right(batch["targets"]),
                               deterministic=True)
    sums = losses.cross_entropy_sums(logits_BxTxV, batch["targets"],
                       losses.token_weights(batch), label_smoothing)
    target_logit_BxT = jnp.take_along_axis(
        logits_BxTxV, batch["targets"][..., None], axis=-1)[..., 0]
    return sums, target_logit_BxT >= jnp.max(logits_BxTxV, axis=-1)

  return jax.jit(step)


def make_evaluator(exp):
  config = exp.config
  objective = _objective(exp)
  eval_step = _make_eval_step(exp.model, config.label_smoothing)
  chunks = {}

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    del num_decode  # nothing is decoded: spans are scored teacher-forced
    if split not in chunks:
      chunks[split] = _chunks(exp, split, objective)
    totals, hits, spans = None, 0, 0
    for batch in denoising_stream.eval_batches(
        chunks[split], objective, config, config.eval_batch_size, num_loss,
        seed=config.seed):
      sums, correct_BxT = eval_step(params,
                                    parallel.shared_batch(batch, exp.mesh))
      totals = sums if totals is None else jax.tree.map(
          lambda a, b: a + b, totals, sums)
      if objective.name == "span_corruption":
        real_BxT = np.asarray(parallel.fetch(correct_BxT)) & (
            batch["example_weight"][:, None] > 0)
        found = span_hits(batch["targets"], real_BxT,
                          objective.sentinel_ids)
        hits, spans = hits + found[0], spans + found[1]
    metrics = evaluation.summarize(parallel.fetch(totals))
    line = evaluation.loss_line(metrics)
    if spans:
      metrics["span_accuracy"] = hits / spans
      line += f"  span acc {metrics['span_accuracy']:.4f} ({spans} spans)"
    return EvalResult(metrics, f"{line}  [{objective.name}]")

  return evaluate


def _checkpoint_meta(exp) -> dict:
  """What a resume must agree on: the objective and its sentinels."""
  return {"pretraining": dict(exp.config.pretraining.to_dict(),
                              extra_ids=exp.config.extra_ids)}


TASK = Task(
    name="pretraining",
    families=("transformer",),
    make_sources=make_sources,
    tokenizer_texts=tokenizer_texts,
    model_config=registry.text_model_config,
    build_model=lambda arch, config, sources: EncoderDecoder(arch),
    init_inputs=translation.text_init_inputs,
    make_loss=translation.seq2seq_loss,
    train_dataset=train_dataset,
    make_evaluator=make_evaluator,
    decode_refusal=("a pretraining run denoises text; fine-tune it for a "
                    "task that decodes (--config.init_from=THIS_WORKDIR, "
                    "docs/pretraining.md)"),
    checkpoint_meta=_checkpoint_meta,
    check_config=check_config,
)
