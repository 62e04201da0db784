"""lm: a decoder-only (causal) Transformer language model over text, trained
by the translation pipeline and loss unchanged on (empty source, text) pairs
(data/lm.py); experiments/number_lm.py.

Evaluation: loss and perplexity, then the continuations of
config.lm_prompts decoded as config.decode says. `--mode=decode` continues
each input line (the line is a prompt, forced first).
"""

import functools

import numpy as np

from encdec_jax.data import lm as lm_data
from encdec_jax.data import pipeline
from encdec_jax.decoding.config import (decode_settings, describe_decoding,
                                        make_decode_fn)
from encdec_jax.models import registry
from encdec_jax.models.language_model import DecoderOnlyLM
from encdec_jax.tasks import evaluation, translation
from encdec_jax.tasks.base import (EvalResult, Task, per_split,
                                  refuse_copy)


def check_config(config) -> None:
  """config.lm_field picks the side of a pair dataset to model; a
  decoder-only LM has no copy head."""
  refuse_copy(config, "lm", "a decoder-only LM has no source to copy from")
  if config.get("dataset") != "text_files":
    field = config.get("lm_field", "source")
    if field not in lm_data.LM_FIELDS:
      raise ValueError(f"config.lm_field={field!r} is not known; use one of "
                       f"{tuple(lm_data.LM_FIELDS)}.")


def make_evaluator(exp):
  config = exp.config
  eval_step_fn = evaluation.make_eval_step(
      translation.seq2seq_loss(exp.model, config))
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id,
                             prompted=True)
  prompts = list(config.get("lm_prompts", ("",)))

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    del num_decode  # an LM decodes its prompts, not the split
    metrics = evaluation.evaluate_loss(
        eval_step_fn, params,
        pipeline.eval_batches(exp.sources[split], exp.tokenizer, config,
                              config.eval_batch_size, num_loss), exp.mesh)
    metrics["perplexity"] = float(np.exp(metrics["nll"]))
    outputs = evaluation.translate(
        decode_fn, params,
        pipeline.eval_batches([{"source": p, "target": ""} for p in prompts],
                              exp.tokenizer, config, config.eval_batch_size),
        exp.tokenizer, exp.mesh, len(prompts),
        seed=decode_settings(config)["seed"])
    return EvalResult(
        metrics,
        f"loss {metrics['loss']:.4f}  perplexity {metrics['perplexity']:.3f}"
        f"  token acc {metrics['accuracy']:.4f} ({describe_decoding(config)})",
        [f"  {p!r} → {o}" for p, o in zip(prompts, outputs)])

  return evaluate


TASK = Task(
    name="lm",
    families=("transformer",),
    make_sources=per_split(lm_data.make_source),
    tokenizer_texts=translation.pair_texts,
    model_config=functools.partial(registry.text_model_config, causal=True),
    build_model=lambda arch, config, sources: DecoderOnlyLM(arch),
    init_inputs=translation.text_init_inputs,
    make_loss=translation.seq2seq_loss,
    train_dataset=translation.text_train_dataset,
    make_evaluator=make_evaluator,
    decodes_text=True,
    prompted=True,
    check_config=check_config,
)
