"""What train, eval and decode share: data sources, tokenizer, model, state."""

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from encdec_jax import encoder_checkpoint, parallel
from encdec_jax.data import captions, classification, images, lm, pipeline
from encdec_jax.data import sources as sources_lib
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models import registry
from encdec_jax.train import config_checks
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import reconstruction
from encdec_jax.train import step as step_lib

SPLITS = ("train", "validation", "test")
# What is trained (model: encdec_jax.models.registry):
#   translation     text -> text (Transformer or RNN encoder–decoder)
#   lm              text, decoder-only (prompted generation)
#   classification  text -> class (encoder, pooling, head)
#   embedding       text -> unit vector, contrastive on text pairs
#   autoencoder     image -> bottleneck -> image
#   captioning      image -> text (conv regions + attending decoder)
TASKS = tuple(registry.FAMILIES)


def task_of(config) -> str:
  task = config.get("task", "translation")
  if task not in TASKS:
    raise ValueError(f"config.task={task!r} is not known; use one of {TASKS}.")
  return task


def is_classification(config) -> bool:
  return task_of(config) == "classification"


def decodes_text(config) -> bool:
  """Whether the model generates text (translation or LM)."""
  return task_of(config) in ("translation", "lm")


@dataclasses.dataclass
class Experiment:
  config: object
  workdir: str
  mesh: Mesh
  sources: dict
  tokenizer: tokenizer_lib.Tokenizer | None  # None: an image task
  model: Any


def _pair_texts(source, max_pairs: int = 50_000):
  """Source and target text of the first examples (enough for a vocabulary)."""
  for example in pipeline.iter_examples(source, max_pairs):
    yield example["source"]
    yield example["target"]


def _check_image_shape(config, source, what: str) -> None:
  shape = tuple(source.image_shape)
  if tuple(config.model.image_shape) != shape:
    raise ValueError(
        f"config.model.image_shape={tuple(config.model.image_shape)} but "
        f"{what} are {shape}; set --config.model.image_shape='{shape}'.")


def _make_sources(config, splits):
  """{split: source} and a function giving the tokenizer's training texts."""
  task = task_of(config)
  if task == "autoencoder":
    sources = {s: images.make_source(config, s) for s in splits}
    _check_image_shape(config, sources[splits[-1]], f"{config.dataset} images")
    return sources, None
  if task == "captioning":
    sources = {s: captions.make_source(config, s) for s in splits}
    _check_image_shape(config, sources[splits[-1]], "the captioned canvases")
    return sources, lambda: captions.captions(
        sources.get("train", sources[splits[-1]]))
  if task == "classification":
    return ({s: classification.make_source(config, s) for s in splits},
            lambda: classification.texts(config))
  make = lm.make_source if task == "lm" else sources_lib.make_source
  sources = {s: make(config, s) for s in splits}
  return sources, lambda: _pair_texts(sources["train"])


def setup(config, workdir: str, *, train_tokenizer: bool) -> Experiment:
  """Opens the splits, gets the tokenizer and builds the model.

  The tokenizer is trained on the training split the first time and read from
  the workdir afterwards; eval/decode (`train_tokenizer=False`) require it.
  Image tasks have none.
  """
  task_of(config)  # mistakes in the task or family fail before any data
  registry.family(config)
  config_checks.check(config)
  if train_tokenizer:
    check_writable(workdir)
  else:
    os.makedirs(workdir, exist_ok=True)
  splits = SPLITS if train_tokenizer else ("validation", "test")
  sources, texts = _make_sources(config, splits)
  tokenizer = None
  if texts is not None:
    if (train_tokenizer and config.get("init_encoder") and
        task_of(config) != "captioning"):  # an image encoder has no tokens
      # A transferred encoder only makes sense with the vocabulary it was
      # trained with: adopt it (load_encoder checks it again).
      adopted = encoder_checkpoint.install_encoder_tokenizer(
          config.init_encoder, workdir)
      kind = adopted and tokenizer_lib.kind_of(adopted)  # None: images
      if kind and kind != config.tokenizer:
        raise ValueError(
            f"config.init_encoder={config.init_encoder} reads {kind} tokens "
            f"but config.tokenizer={config.tokenizer!r}; set "
            f"--config.tokenizer={kind}.")
    if (not train_tokenizer and config.tokenizer == "sentencepiece" and
        not os.path.exists(tokenizer_lib.tokenizer_path(workdir))):
      raise FileNotFoundError(
          f"no tokenizer at {tokenizer_lib.tokenizer_path(workdir)}: this "
          "workdir holds no trained run; train first (--mode=train).")
    # Multi-host: process 0 trains and writes the tokenizer; the others
    # read it after a barrier (a no-op with one process).
    if jax.process_index() == 0:
      tokenizer = tokenizer_lib.load_or_train_tokenizer(config, workdir,
                                                        texts)
    parallel.sync("tokenizer")
    if jax.process_index() != 0:
      tokenizer = tokenizer_lib.load_or_train_tokenizer(config, workdir,
                                                        texts)
  num_classes = (len(sources[splits[-1]].class_names)
                 if is_classification(config) else None)
  model = registry.build(config, tokenizer and tokenizer.vocab_size,
                         num_classes)
  return Experiment(config, workdir, parallel.make_mesh(config), sources,
                    tokenizer, model)


def check_writable(workdir: str) -> None:
  """Creates `workdir` if needed and proves it can be written, so a wrong
  --workdir fails now, not at the first checkpoint."""
  probe = os.path.join(workdir, f".write_test.{os.getpid()}")
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise type(e)(f"--workdir={workdir} cannot be written "
                  f"({e.strerror}); choose a directory you can write to, or "
                  "fix its permissions") from e


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its config.json), for reports."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no {path}: {workdir} holds no training run.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def write_atomically(path: str, text: str) -> None:
  """A kill never leaves half a file at `path`: it is whole or the old one."""
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    write_atomically(os.path.join(workdir, "config.json"),
                     config.to_json_best_effort(indent=2))


def init_params(model, rng, config):
  task = task_of(config)
  if task == "autoencoder":
    images_1xHxWxC = jnp.zeros((1, *config.model.image_shape), jnp.float32)
    return model.init({"params": rng}, images_1xHxWxC,
                      deterministic=True)["params"]
  if task == "captioning":
    inputs = jnp.zeros((1, *config.model.image_shape), jnp.float32)
  else:
    inputs = jnp.ones((1, config.max_source_length), jnp.int32)
  if task in ("classification", "embedding"):
    return model.init({"params": rng}, inputs, deterministic=True)["params"]
  targets = jnp.ones((1, config.max_target_length), jnp.int32)
  return model.init({"params": rng}, inputs, targets,
                    deterministic=True)["params"]


def create_state(exp: Experiment, make_tx, rng):
  """A fresh TrainState, created directly with its sharding on the mesh.

  `make_tx(params)` gives the optimizer (its partition depends on the params'
  paths). Params are sharded by their logical axes and config's rules, the
  optimizer state like its params (parallel.state_shardings).
  """

  def make(r):
    params = init_params(exp.model, r, exp.config)
    return step_lib.init_state(params, make_tx(params))

  abstract = jax.eval_shape(make, rng)
  shardings = parallel.state_shardings(abstract, exp.mesh,
                                       parallel.axis_rules(exp.config))
  return jax.jit(make, out_shardings=shardings)(rng), shardings


def abstract_params(exp: Experiment):
  """Shapes, dtypes and shardings of the params, without computing them."""
  abstract = jax.eval_shape(
      functools.partial(init_params, exp.model, config=exp.config),
      jax.random.key(0))
  shardings = parallel.param_shardings(abstract, exp.mesh,
                                       parallel.axis_rules(exp.config))
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      abstract, shardings)


def loss_fn(exp: Experiment):
  """(params, batch, rng=None) -> (mean loss, sums) of the task."""
  config, task = exp.config, task_of(exp.config)
  if task == "autoencoder":
    return reconstruction.reconstruction_loss(exp.model)
  if task == "embedding":
    return step_lib.contrastive_loss(
        exp.model, config.get("contrastive_temperature", 0.05))
  if task == "classification":
    return step_lib.classification_loss(exp.model, config.label_smoothing)
  return step_lib.translation_loss(exp.model, config.label_smoothing)


def train_dataset(exp: Experiment):
  config, task, source = exp.config, task_of(exp.config), exp.sources["train"]
  if task == "autoencoder":
    return images.train_dataset(source, config, seed=config.seed)
  if task == "captioning":
    return captions.train_dataset(source, exp.tokenizer, config,
                                  seed=config.seed)
  data = classification if task == "classification" else pipeline
  return data.train_dataset(source, exp.tokenizer, config, seed=config.seed)


def vocab_size(exp: Experiment) -> int | None:
  return exp.tokenizer.vocab_size if exp.tokenizer else None


def encoder_spec(exp: Experiment) -> dict:
  """The encoder's architecture and vocabulary, as saved with it (a
  captioner's encoder reads pixels: no vocabulary, like an autoencoder's)."""
  reads_text = task_of(exp.config) != "captioning"
  return encoder_checkpoint.encoder_spec(
      registry.model_config(exp.config, vocab_size(exp)),
      exp.tokenizer if reads_text else None)


def checkpoint_meta(exp: Experiment) -> dict:
  """Saved with every checkpoint; a resume must agree on all but `encoder`."""
  meta = {"model": exp.config.model.to_dict(), "dataset": exp.config.dataset,
          "vocab_size": vocab_size(exp), "encoder": encoder_spec(exp)}
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
    write_atomically(path, json.dumps(obj, indent=2))
