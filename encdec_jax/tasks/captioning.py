"""captioning: image -> text, a Captioner (conv regions + an attending LSTM
or Transformer decoder) on canvases of digits (data/captioned_digits.py);
experiments/captioning_digits.py.

Evaluation: teacher-forced loss, then the split's first `num_decode` images
captioned as config.decode says and scored as translations are (exact
match, BLEU, chrF).
"""

import jax.numpy as jnp

from encdec_jax.data import captions
from encdec_jax.data import pipeline
from encdec_jax.decoding.config import (decode_settings, describe_decoding,
                                        make_decode_fn)
from encdec_jax.models import registry
from encdec_jax.models.captioner import Captioner, CaptionerConfig
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig
from encdec_jax.tasks import evaluation, translation
from encdec_jax.tasks.autoencoder import check_image_shape
from encdec_jax.tasks.base import EvalResult, Task


def _make_sources(config, splits) -> dict:
  sources = {s: captions.make_source(config, s) for s in splits}
  check_image_shape(config, sources[splits[-1]], "the captioned canvases")
  return sources


def _model_config(config, family: str, vocab_size) -> CaptionerConfig:
  """`model` holds the image encoder's image_shape and conv_features; the
  rest configure the decoder."""
  fields = registry.model_fields(config)
  image = {k: tuple(fields.pop(k)) for k in ("image_shape", "conv_features")
           if k in fields}
  decoder = (RNNConfig if family == "rnn" else TransformerConfig)(
      vocab_size=vocab_size, **fields)
  return CaptionerConfig(decoder=decoder, **image)


def make_evaluator(exp):
  config = exp.config
  eval_step_fn = evaluation.make_eval_step(
      translation.seq2seq_loss(exp.model, config))
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)

  def evaluate(params, split, num_loss=None, num_decode=None) -> EvalResult:
    source = exp.sources[split]
    batches = lambda n: captions.eval_batches(source, exp.tokenizer, config,
                                              config.eval_batch_size, n)
    metrics = evaluation.evaluate_loss(eval_step_fn, params,
                                       batches(num_loss), exp.mesh)
    n = evaluation.num_or_all(num_decode, len(source))
    if n == 0:  # loss only (num_decode_examples=0)
      return EvalResult(metrics, evaluation.loss_line(metrics))
    hyps = evaluation.translate(decode_fn, params, batches(n), exp.tokenizer,
                                exp.mesh, n,
                                seed=decode_settings(config)["seed"])
    examples = list(pipeline.iter_examples(source, n))
    refs = [e["caption"] for e in examples]
    metrics.update(evaluation.text_metrics(hyps, refs, config.bleu_tokenize))
    metrics["num_decoded"] = n
    samples = [f"  {'✓' if h == r else '✗'} image {i} (digits at x="
               f"{','.join(str(x) for x in e['xs'] if x >= 0)}) → {h}\n"
               f"      ref {r}"
               for i, (e, r, h) in enumerate(zip(examples, refs, hyps))]
    return EvalResult(
        metrics,
        f"{evaluation.loss_line(metrics)}  exact match "
        f"{metrics['exact_match']:.2f}%  BLEU {metrics['bleu']:.2f}  chrF "
        f"{metrics['chrf']:.2f} ({n} images, {describe_decoding(config)})",
        samples[:config.num_samples_to_print])

  return evaluate


TASK = Task(
    name="captioning",
    families=("transformer", "rnn"),
    make_sources=_make_sources,
    tokenizer_texts=lambda config, sources: captions.captions(
        sources.get("train", list(sources.values())[-1])),
    model_config=_model_config,
    build_model=lambda arch, config, sources: Captioner(arch),
    init_inputs=lambda config: (
        jnp.zeros((1, *config.model.image_shape), jnp.float32),
        jnp.ones((1, config.max_target_length), jnp.int32)),
    make_loss=translation.seq2seq_loss,
    train_dataset=lambda exp: captions.train_dataset(
        exp.sources["train"], exp.tokenizer, exp.config,
        seed=exp.config.seed),
    make_evaluator=make_evaluator,
    decode_refusal=("--mode=decode reads text lines, and a captioner reads "
                    "images: use --mode=eval (captions of the test split) or "
                    "python -m encdec_jax.reports.captions "
                    "--workdirs=WORKDIR."),
    encoder_reads_text=False,
    embeds_text=False,
    embed_refusal=("--mode=embed embeds text; this config's task is "
                   "'captioning' (images): use --mode=eval for its scores."),
)
