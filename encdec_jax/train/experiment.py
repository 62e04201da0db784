"""What train, eval and decode share: data sources, tokenizer, model, state."""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from encdec_jax import parallel
from encdec_jax.data import pipeline
from encdec_jax.data import sources as sources_lib
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models import registry
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.train import step as step_lib

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Experiment:
  config: object
  workdir: str
  mesh: Mesh
  sources: dict
  tokenizer: tokenizer_lib.Tokenizer
  model: EncoderDecoder


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
  sources = {s: sources_lib.make_source(config, s) for s in splits}
  if (not train_tokenizer and config.tokenizer == "sentencepiece" and
      not os.path.exists(tokenizer_lib.tokenizer_path(workdir))):
    raise FileNotFoundError(
        f"no tokenizer at {tokenizer_lib.tokenizer_path(workdir)}: this "
        "workdir holds no trained run; train first (--mode=train).")
  tokenizer = tokenizer_lib.load_or_train_tokenizer(
      config, workdir,
      lambda: _training_texts(sources["train"]))
  model = registry.build_model(config.model, tokenizer.vocab_size)
  return Experiment(config, workdir, parallel.make_mesh(), sources, tokenizer,
                    model)


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def init_params(model: EncoderDecoder, rng, config):
  inputs = jnp.ones((1, config.max_source_length), jnp.int32)
  targets = jnp.ones((1, config.max_target_length), jnp.int32)
  return model.init({"params": rng}, inputs, targets,
                    deterministic=True)["params"]


def create_state(exp: Experiment, tx: optax.GradientTransformation, rng):
  """A fresh TrainState, created directly with its (replicated) sharding."""
  make = lambda r: step_lib.init_state(init_params(exp.model, r, exp.config),
                                       tx)
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


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def write_json(path: str, obj) -> None:
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(obj, f, indent=2)
