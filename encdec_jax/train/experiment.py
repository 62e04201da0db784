"""What train, eval and decode share: data sources, tokenizer, model, state."""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from encdec_jax import encoder_checkpoint, parallel
from encdec_jax.data import classification, pipeline
from encdec_jax.data import sources as sources_lib
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models import registry
from encdec_jax.models.classifier import EncoderClassifier
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import step as step_lib

SPLITS = ("train", "validation", "test")
TASKS = ("translation", "classification")


def is_classification(config) -> bool:
  task = config.get("task", "translation")
  if task not in TASKS:
    raise ValueError(f"config.task={task!r} is not known; use one of {TASKS}.")
  return task == "classification"


@dataclasses.dataclass
class Experiment:
  config: object
  workdir: str
  mesh: Mesh
  sources: dict
  tokenizer: tokenizer_lib.Tokenizer
  model: EncoderDecoder | EncoderClassifier


def _training_texts(source, max_pairs: int = 50_000):
  """Source and target text of the first examples (enough for a vocabulary)."""
  for example in pipeline.iter_examples(source, max_pairs):
    yield example["source"]
    yield example["target"]


def setup(config, workdir: str, *, train_tokenizer: bool) -> Experiment:
  """Opens the splits, gets the tokenizer and builds the model.

  The tokenizer is trained on the training split the first time and read from
  the workdir afterwards; eval/decode (`train_tokenizer=False`) require it.
  """
  os.makedirs(workdir, exist_ok=True)
  splits = SPLITS if train_tokenizer else ("validation", "test")
  if is_classification(config):
    sources = {s: classification.make_source(config, s) for s in splits}
    texts = lambda: classification.texts(config)
  else:
    sources = {s: sources_lib.make_source(config, s) for s in splits}
    texts = lambda: _training_texts(sources["train"])
  if train_tokenizer and config.get("init_encoder"):
    # A transferred encoder only makes sense with the vocabulary it was
    # trained with: adopt it (load_encoder checks it again).
    encoder_checkpoint.install_encoder_tokenizer(config.init_encoder, workdir)
  if (not train_tokenizer and config.tokenizer == "sentencepiece" and
      not os.path.exists(tokenizer_lib.tokenizer_path(workdir))):
    raise FileNotFoundError(
        f"no tokenizer at {tokenizer_lib.tokenizer_path(workdir)}: this "
        "workdir holds no trained run; train first (--mode=train).")
  tokenizer = tokenizer_lib.load_or_train_tokenizer(config, workdir, texts)
  if is_classification(config):
    model = registry.build_classifier(
        config.model, tokenizer.vocab_size,
        len(sources[splits[-1]].class_names), config.get("pooling", "mean"))
  else:
    model = registry.build_model(config.model, tokenizer.vocab_size)
  return Experiment(config, workdir, parallel.make_mesh(), sources, tokenizer,
                    model)


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def init_params(model, rng, config):
  inputs = jnp.ones((1, config.max_source_length), jnp.int32)
  if is_classification(config):
    return model.init({"params": rng}, inputs, deterministic=True)["params"]
  targets = jnp.ones((1, config.max_target_length), jnp.int32)
  return model.init({"params": rng}, inputs, targets,
                    deterministic=True)["params"]


def create_state(exp: Experiment, make_tx, rng):
  """A fresh TrainState, created directly with its (replicated) sharding.

  `make_tx(params)` gives the optimizer (its partition depends on the params'
  paths).
  """

  def make(r):
    params = init_params(exp.model, r, exp.config)
    return step_lib.init_state(params, make_tx(params))

  abstract = jax.eval_shape(make, rng)
  shardings = jax.tree.map(lambda _: parallel.replicated(exp.mesh), abstract)
  return jax.jit(make, out_shardings=shardings)(rng), shardings


def abstract_params(exp: Experiment):
  """Shapes, dtypes and shardings of the params, without computing them."""
  abstract = jax.eval_shape(
      functools.partial(init_params, exp.model, config=exp.config),
      jax.random.key(0))
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                     sharding=parallel.replicated(exp.mesh)),
      abstract)


def loss_fn(exp: Experiment):
  make = (step_lib.classification_loss if is_classification(exp.config)
          else step_lib.translation_loss)
  return make(exp.model, exp.config.label_smoothing)


def train_dataset(exp: Experiment):
  data = classification if is_classification(exp.config) else pipeline
  return data.train_dataset(exp.sources["train"], exp.tokenizer, exp.config,
                            seed=exp.config.seed)


def encoder_spec(exp: Experiment) -> dict:
  """The encoder's architecture and vocabulary, as saved with it."""
  return encoder_checkpoint.encoder_spec(
      registry.transformer_config(exp.config.model, exp.tokenizer.vocab_size),
      exp.tokenizer)


def checkpoint_meta(exp: Experiment) -> dict:
  """Saved with every checkpoint; a resume must agree on all but `encoder`."""
  meta = {"model": exp.config.model.to_dict(), "dataset": exp.config.dataset,
          "vocab_size": exp.tokenizer.vocab_size,
          "encoder": encoder_spec(exp)}
  if is_classification(exp.config):
    meta["classes"] = list(exp.sources["train"].class_names)
  return meta


def load_encoder(exp: Experiment, params):
  """params with the encoder of `config.init_encoder` (strict by default)."""
  config = exp.config
  params, report = encoder_checkpoint.load_encoder(
      config.init_encoder, into=params, expected_spec=encoder_spec(exp),
      strict=config.get("init_encoder_strict", True))
  mw.log(report.summary())
  for title, paths in (("left at init", report.left_at_init),
                       ("ignored", report.ignored),
                       ("differences", report.differences)):
    if paths:
      mw.log(f"  {title}: " + ", ".join(paths))
  return params


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def write_json(path: str, obj) -> None:
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(obj, f, indent=2)
