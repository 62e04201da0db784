"""The Task: everything that differs between what encdec_jax trains.

A task is a frozen dataclass of functions and flags (like nanodo's
`get_model_and_loss`, one step further): its data, its model, its loss, its
batches, its evaluation and what `--mode=decode|embed` do for it. The
trainer, the inference modes, the benchmarks and the reports call these and
never branch on the task's name; `encdec_jax.tasks.get(config)` picks the
task once, from `config.task`.

`exp` below is the `encdec_jax.train.experiment.Experiment` the trainer
builds from these functions (config, workdir, mesh, sources, tokenizer,
model, task).
"""

import dataclasses
from typing import Any, Callable, Iterable


def per_split(make_source: Callable[[Any, str], Any]):
  """make_sources from a (config, split) -> source function."""
  return lambda config, splits: {s: make_source(config, s) for s in splits}


@dataclasses.dataclass
class EvalResult:
  """What a task's evaluation of one split found.

  `metrics` go to TensorBoard and metrics.jsonl, `summary` is the rest of the
  log line after "[split @ step N, M min]", `samples` are example outputs
  (logged, and shown as text in TensorBoard).
  """
  metrics: dict
  summary: str
  samples: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  # config.model.family choices; the first is the default.
  families: tuple[str, ...]
  # (config, splits) -> {split: source} (random access, len(), grain-ready).
  make_sources: Callable[[Any, tuple], dict]
  # (config, {split: source}) -> texts to train the tokenizer on; None: no
  # tokenizer (images in, images out).
  tokenizer_texts: Callable[[Any, dict], Iterable[str]] | None
  # (config, family, vocab_size) -> the architecture dataclass (what an
  # encoder checkpoint saves as the encoder's spec).
  model_config: Callable[[Any, str, int | None], Any]
  # (arch, config, sources) -> the flax module.
  build_model: Callable[[Any, Any, dict], Any]
  # config -> dummy positional inputs of model.init (shapes matter only).
  init_inputs: Callable[[Any], tuple]
  # (model, config) -> loss_fn(params, batch, rng=None) -> (mean, sums);
  # rng=None evaluates deterministically.
  make_loss: Callable[[Any, Any], Callable]
  # exp -> the training batches (a checkpointable grain iterable).
  train_dataset: Callable[[Any], Any]
  # exp -> evaluate(params, split, num_loss=None, num_decode=None)
  #        -> EvalResult
  make_evaluator: Callable[[Any], Callable[..., EvalResult]]
  # --mode=decode generates text from text lines (else: decode_refusal).
  decodes_text: bool = False
  decode_refusal: str = ""
  # Decoding inputs are prompts to continue (a decoder-only LM).
  prompted: bool = False
  # The encoder reads tokens: its spec carries the vocabulary, and
  # config.init_encoder brings its tokenizer along (not an image encoder).
  encoder_reads_text: bool = True
  # --mode=embed turns lines into vectors (else: embed_refusal).
  embeds_text: bool = True
  embed_refusal: str = ""
  # --mode=embed with config.init_encoder and no checkpoint embeds with the
  # pretrained encoder as it is (e.g. all-MiniLM-L6-v2).
  embeds_untrained: bool = False
  # exp -> extra entries of every checkpoint's metadata (a resume must
  # agree on them, e.g. a classifier's class names).
  checkpoint_meta: Callable[[Any], dict] = lambda exp: {}
  # config -> None, or a one-line ValueError for a value only this task
  # reads (run with the config checks, before anything is written).
  check_config: Callable[[Any], None] = lambda config: None
  # The length fields the bucket boundaries must reach.
  length_fields: tuple[str, ...] = ("max_source_length", "max_target_length")


def refuse_copy(config, task: str, why: str) -> None:
  """config.model.copy=True on a model with no decoder cross-attention to
  point with would be built and trained without a copy head, silently."""
  if (config.get("model") or {}).get("copy"):
    raise ValueError(f"config.model.copy=True does nothing for task {task!r}: "
                     f"the copy head points with a decoder's cross-attention "
                     f"into the source, and {why}; drop it (docs/copy.md).")


def check_required_fields(config) -> None:
  """config.required_fields ({field: why}): fields a config cannot run
  without (e.g. experiments/t5_finetune.py's init_from, without which the
  model would be trained from scratch)."""
  for field, why in (config.get("required_fields") or {}).items():
    if not config.get(field):
      raise ValueError(f"config.{field} is not set, and {why}")
