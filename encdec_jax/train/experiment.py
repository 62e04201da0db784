"""What train, eval and decode share: the experiment a config describes.

`setup` picks the task (encdec_jax/tasks/) and the start (encdec_jax/starts/:
where the architecture, tokenizer and first params come from) once, opens
the splits, gets the tokenizer and builds the model; everything after that
asks `exp.task` and `exp.start`.
"""

import dataclasses
import functools
import json
import os
from typing import Any

import jax
from jax.sharding import Mesh

from encdec_jax import checkpoint, io_utils, parallel, starts, tasks
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models import registry
from encdec_jax.train import architecture_checks, config_checks
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import step as step_lib

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass
class Experiment:
  config: object
  workdir: str
  mesh: Mesh
  sources: dict
  tokenizer: tokenizer_lib.Tokenizer | None  # None: an image task
  model: Any
  task: tasks.Task
  start: starts.Start = starts.scratch.START  # (a benchmark's: by hand)


def build_model(task: tasks.Task, config, vocab_size: int | None,
                sources: dict):
  """The task's model of `config` (family checked against the task)."""
  family = registry.family(config, task.name, task.families)
  return task.build_model(task.model_config(config, family, vocab_size),
                          config, sources)


def request_determinism(config) -> None:
  """config.deterministic (default True): bit-identical reruns and resumes.

  XLA on CPU and TPU is deterministic already, so this costs nothing there
  (the resume tests check bit-equality on CPU). On GPU it adds
  --xla_gpu_deterministic_ops (deterministic scatter-adds and reductions,
  slower: embedding gradients are scatter-adds). XLA reads the flag when the
  backend starts, so call this before the first JAX computation.
  """
  flag = "--xla_gpu_deterministic_ops=true"
  flags = os.environ.get("XLA_FLAGS", "")
  if config.get("deterministic", True) and flag not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


def check_config(config) -> tasks.Task:
  """The config's task, once every value is checked (before anything is read
  or written): the start (which may set the architecture: an import, an
  adapter), a wrong task or family, then config_checks."""
  starts.get(config).configure(config)
  task = tasks.get(config)
  family = registry.family(config, task.name, task.families)
  config_checks.check(config)
  architecture_checks.check(config, task, family)
  parallel.mesh_shape(config)  # the mesh fits the devices
  return task


def setup(config, workdir: str, *, train_tokenizer: bool) -> Experiment:
  """Opens the splits, gets the tokenizer and builds the model.

  The tokenizer is trained on the training split the first time and read from
  the workdir afterwards; eval/decode (`train_tokenizer=False`) require it.
  Image tasks have none.
  """
  start = starts.get(config)
  task = check_config(config)
  reads_text = task.tokenizer_texts is not None and task.encoder_reads_text
  if train_tokenizer:
    check_writable(workdir)
    start.install(config, workdir, reads_text)  # e.g. an imported tokenizer
  else:
    os.makedirs(workdir, exist_ok=True)
  splits = SPLITS if train_tokenizer else ("validation", "test")
  sources = task.make_sources(config, splits)
  texts = task.tokenizer_texts and (
      lambda: task.tokenizer_texts(config, sources))
  tokenizer = None
  if texts is not None:
    _check_tokenizer_file(config, workdir, train_tokenizer)
    # Multi-host: process 0 trains and writes the tokenizer; the others
    # read it after a barrier (a no-op with one process).
    if jax.process_index() == 0:
      tokenizer = tokenizer_lib.load_or_train_tokenizer(config, workdir,
                                                        texts)
    parallel.sync("tokenizer")
    if jax.process_index() != 0:
      tokenizer = tokenizer_lib.load_or_train_tokenizer(config, workdir,
                                                        texts)
  model = build_model(task, config, start.vocab_size(config) or (
      tokenizer and tokenizer.vocab_size), sources)
  model = start.wrap_model(model, config)  # LoRA: params {"base", "lora"}
  return Experiment(config, workdir, parallel.make_mesh(config), sources,
                    tokenizer, model, task, start)


def _check_tokenizer_file(config, workdir: str, train_tokenizer: bool) -> None:
  """A SentencePiece workdir needs its tokenizer.model: eval/decode stop
  without it, naming what is missing; training makes it again from the
  training split (a checkpoint's vocabulary hash then says whether the new
  one is the same)."""
  path = tokenizer_lib.tokenizer_path(workdir)
  if config.tokenizer != "sentencepiece" or os.path.exists(path):
    return
  trained = checkpoint.has_checkpoint(workdir)
  if not train_tokenizer and not trained:
    raise FileNotFoundError(
        f"no tokenizer at {path}: this workdir holds no trained run; train "
        "first (--mode=train).")
  if not train_tokenizer:
    raise FileNotFoundError(
        f"tokenizer.model is missing from a trained workdir ({path}; the "
        f"checkpoints are in {workdir}/checkpoints): put the file back, or "
        "rerun --mode=train with the same config, which trains it again "
        "from the training split and checks it against the checkpoint's "
        "vocabulary.")
  if trained:
    mw.log(f"note: tokenizer.model is missing from a trained workdir "
           f"({path}); training it again from the training split (the "
           "resume checks that it gives the checkpoint's vocabulary)")


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


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    io_utils.write_atomically(os.path.join(workdir, "config.json"),
                              config.to_json_best_effort(indent=2))


def init_params(model, rng, config):
  """Fresh params of `model` (the task's dummy inputs give the shapes)."""
  inputs = tasks.get(config).init_inputs(config)
  return model.init({"params": rng}, *inputs, deterministic=True)["params"]


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
  return parallel.abstract(abstract, shardings)


def vocab_size(exp: Experiment) -> int | None:
  """The model's vocabulary (an imported T5's exceeds its tokenizer's)."""
  return exp.start.vocab_size(exp.config) or (
      exp.tokenizer.vocab_size if exp.tokenizer else None)


def encoder_spec(exp: Experiment) -> dict:
  """The encoder's architecture and vocabulary, as saved with it (a
  captioner's encoder reads pixels: no vocabulary, like an autoencoder's)."""
  task = exp.task
  arch = task.model_config(exp.config,
                           registry.family(exp.config, task.name, task.families),
                           vocab_size(exp))
  return checkpoint.encoder_spec(
      arch, exp.tokenizer if task.encoder_reads_text else None)


def checkpoint_meta(exp: Experiment) -> dict:
  """Saved with every checkpoint; a resume must agree on all but `encoder`."""
  meta = {"task": exp.task.name, "model": exp.config.model.to_dict(),
          "dataset": exp.config.dataset, "vocab_size": vocab_size(exp),
          "encoder": encoder_spec(exp)}
  meta.update(exp.task.checkpoint_meta(exp))
  return meta


def resume_meta(exp: Experiment, shapes=None) -> dict:
  """checkpoint_meta with what the start records (LoRA: its base); a
  resume or a reader must agree with it. `shapes`, the abstract params if
  the caller has them, saves computing them again."""
  shapes_fn = ((lambda: shapes) if shapes is not None else
               (lambda: abstract_params(exp)))
  return dict(checkpoint_meta(exp), **exp.start.meta(exp.config, shapes_fn))


def unchecked_meta(exp: Experiment) -> tuple[str, ...]:
  """Meta entries a resume or a reader does not compare: the compute dtype
  (params stay in param_dtype, so a bfloat16 run resumes and decodes in
  float32 and back), and what the start records but does not compare."""
  return ("model.dtype",) + exp.start.unchecked_meta


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def write_json(path: str, obj) -> None:
  if jax.process_index() == 0:
    io_utils.write_atomically(path, json.dumps(obj, indent=2))
