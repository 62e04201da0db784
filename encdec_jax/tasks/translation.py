"""translation: text -> text, with a Transformer or an (LSTM/GRU) RNN
encoder–decoder; the main job (experiments/number_translation.py).

Evaluation: teacher-forced loss and token accuracy, then the split's first
`num_decode` examples decoded as config.decode says and scored by
config.eval_metrics (default exact match, BLEU (config.bleu_tokenize) and
chrF; "rouge" adds ROUGE-1/2/Lsum: tasks/evaluation.py).
"""

import jax.numpy as jnp

from encdec_jax.data import packing, pipeline, value_substitution
from encdec_jax.data import sources as sources_lib
from encdec_jax.decoding.config import (decode_settings, describe_decoding,
                                        make_decode_fn)
from encdec_jax.models import registry
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.models.rnn_seq2seq import RNNEncoderDecoder
from encdec_jax.nn.recurrent import RNNConfig
from encdec_jax.tasks import evaluation, losses
from encdec_jax.tasks.base import (EvalResult, Task, check_required_fields,
                                  per_split)


def pair_texts(config, sources, max_pairs: int = 50_000):
  """Source and target text of the first training examples (enough for a
  vocabulary)."""
  del config
  for example in pipeline.iter_examples(sources["train"], max_pairs):
    yield example["source"]
    yield example["target"]


def source_init_inputs(config) -> tuple:
  """A batch of one source, for models that read only a source."""
  return (jnp.ones((1, config.max_source_length), jnp.int32),)


def text_init_inputs(config) -> tuple:
  return (jnp.ones((1, config.max_source_length), jnp.int32),
          jnp.ones((1, config.max_target_length), jnp.int32))


def seq2seq_loss(model, config):
  return losses.seq2seq_loss(model, config.label_smoothing,
                             config.get("copy_supervision", 0.0))


def text_train_dataset(exp):
  if exp.config.get("pack_examples", False):  # data/packing.py
    if exp.config.get("substitute_values", 0.0):
      raise ValueError("config.substitute_values works on unpacked batches; "
                       "set config.pack_examples=False to use it.")
    if not isinstance(exp.model, EncoderDecoder):
      raise ValueError("config.pack_examples needs a Transformer "
                       "encoder-decoder (config.model.family), got "
                       f"{type(exp.model).__name__}.")
    return packing.train_dataset(exp.sources["train"], exp.tokenizer,
                                 exp.config, seed=exp.config.seed)
  # A decoder-only LM (prompted) reads no source: only its target can be
  # empty.
  return pipeline.train_dataset(exp.sources["train"], exp.tokenizer,
                                exp.config, seed=exp.config.seed,
                                needs_source=not exp.task.prompted)


def make_evaluator(exp):
  config = exp.config
  eval_step_fn = evaluation.make_eval_step(seq2seq_loss(exp.model, config))
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    metrics = evaluation.evaluate_loss(
        eval_step_fn, params,
        pipeline.eval_batches(exp.sources[split], exp.tokenizer, config,
                              config.eval_batch_size, num_loss), exp.mesh)
    if num_decode == 0:  # loss only (e.g. frequent evals of a long run)
      return EvalResult(metrics, evaluation.loss_line(metrics) +
                        " (num_decode_examples=0: nothing decoded)")
    srcs, refs, hyps = evaluation.decode_split(
        decode_fn, params, exp.sources[split], exp.tokenizer, config,
        exp.mesh, num_decode, seed=decode_settings(config)["seed"])
    metrics.update(evaluation.text_metrics(
        hyps, refs, config.bleu_tokenize, evaluation.chosen_metrics(config)))
    metrics["num_decoded"] = len(hyps)
    samples = []
    for s, r, h in list(zip(srcs, refs, hyps))[:config.num_samples_to_print]:
      mark = "✓" if h.strip() == r.strip() else "✗"
      samples.append(f"  {mark} {s}\n      → {h}\n      ref {r}")
    return EvalResult(
        metrics,
        f"{evaluation.loss_line(metrics)}  "
        f"{evaluation.text_metrics_line(metrics)} ({len(hyps)} examples, "
        f"{describe_decoding(config)})", samples)

  return evaluate


def check_config(config) -> None:
  check_required_fields(config)
  evaluation.chosen_metrics(config)
  value_substitution.check_config(config)
  if config.get("copy_supervision", 0.0) and not config.model.get("copy"):
    raise ValueError("config.copy_supervision trains the copy head's pointer;"
                     " add --config.model.copy=true (or set it to 0).")


def _build_model(arch, config, sources):
  del config, sources
  return (RNNEncoderDecoder(arch) if isinstance(arch, RNNConfig) else
          EncoderDecoder(arch))


TASK = Task(
    name="translation",
    families=("transformer", "rnn"),
    make_sources=per_split(sources_lib.make_source),
    tokenizer_texts=pair_texts,
    model_config=registry.text_model_config,
    build_model=_build_model,
    init_inputs=text_init_inputs,
    make_loss=seq2seq_loss,
    train_dataset=text_train_dataset,
    make_evaluator=make_evaluator,
    decodes_text=True,
    check_config=check_config,
)
