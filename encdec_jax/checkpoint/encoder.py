"""Encoders on their own: export from training, save, load into another model.

fastai's save_encoder/load_encoder, with the checks a silent partial load
lacks. An encoder is params['encoder'] (the same tree in every family) plus
a spec (encoder_spec.py) that says which models it fits. Where an encoder
can be read from: encoder_source.py. A conv autoencoder's encoder also loads
into a captioner, whose encoder is the same convs without the bottleneck
(encoder_spec.as_family).
"""

import dataclasses
import json
import os

from flax import traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp

from encdec_jax import io_utils, parallel
from encdec_jax.checkpoint import encoder_source, layout, output_dir
from encdec_jax.checkpoint import encoder_spec as spec_lib
from encdec_jax.data import tokenizer as tokenizer_lib


@dataclasses.dataclass(frozen=True)
class LoadReport:
  """What load_encoder did; paths are named like 'encoder/layers_0/mlp/...'."""
  source: str
  loaded: tuple[str, ...]  # Read from the checkpoint.
  left_at_init: tuple[str, ...]  # In the model, kept from `into`.
  ignored: tuple[str, ...]  # In the checkpoint, not read.
  differences: tuple[str, ...]  # "<kind>: <what>" for every mismatch found.

  def summary(self) -> str:
    return (f"loaded {len(self.loaded)} encoder params from {self.source}; "
            f"{len(self.left_at_init)} left at init, {len(self.ignored)} "
            f"ignored, {len(self.differences)} differences")


def save_encoder(path: str, encoder_params, spec: dict, tokenizer) -> None:
  """Writes params['encoder'], its spec and tokenizer to a new directory `path`.

  Every process calls it (the orbax save is collective); process 0 writes the
  files, in a sibling renamed to `path` at the end (output_dir.py): a
  non-empty `path` is refused, a killed save leaves no `path`.
  """
  path = output_dir.check_new(path, "the encoder")
  vocab = spec_lib.vocab_of(tokenizer)
  if spec.get("vocab") != vocab:
    raise ValueError(f"spec vocab {spec.get('vocab')} is not the tokenizer's "
                     f"{vocab}; build the spec with encoder_spec(config, "
                     "tokenizer).")
  with output_dir.new_directory(path, "the encoder") as partial:
    ocp.PyTreeCheckpointer().save(os.path.join(partial, layout.PARAMS_DIR),
                                  encoder_params)  # synchronous
    if jax.process_index() == 0:
      if vocab["kind"] in tokenizer_lib.TOKENIZER_FILES:
        tokenizer_lib.write_model_proto(
            tokenizer_lib.tokenizer_path(partial, vocab["kind"]),
            tokenizer_lib.serialized(tokenizer))
      record = {"format": encoder_source.FORMAT,
                "version": encoder_source.VERSION, "config": spec["config"],
                "vocab": spec["vocab"]}
      io_utils.write_atomically(os.path.join(partial, layout.SPEC_FILE),
                                json.dumps(record, indent=2, sort_keys=True))


def export_encoder(workdir: str, path: str, step: int | None = None) -> int:
  """Writes a training checkpoint's encoder with save_encoder; its step.

  Reads the step's `encoder` and `meta` items only.
  """
  source = encoder_source.open_step(workdir, step)
  restore_args = spec_lib.nest({k: ocp.RestoreArgs(restore_type=np.ndarray)
                                for k in encoder_source.stored_tree(source)})
  params = source.restore(None, restore_args)  # host numpy: any topology
  save_encoder(path, params, source.spec,
               encoder_source.read_tokenizer(source))
  return source.step


def load_encoder(path: str, into: dict, *, expected_spec: dict,
                 strict: bool = True) -> tuple[dict, LoadReport]:
  """`into` with into['encoder'] read from the encoder at `path`.

  `path`: a save_encoder directory, a training workdir (its latest committed
  step) or a step directory <workdir>/checkpoints/<step>. `into` is the target
  model's params (concrete arrays; jax.ShapeDtypeStructs do where a strict
  load replaces every leaf of into['encoder']); restored leaves take the
  dtype and sharding of its leaves. `expected_spec` is encoder_spec() of the
  target.

  strict: any difference in the tree (missing/extra paths, shapes, dtypes) or
  config is one ValueError naming it all. strict=False loads every leaf whose
  path, shape and dtype match, keeps the rest from `into` and returns the
  differences in the report. A different vocabulary is an error either way:
  the ids would mean other tokens, so no parameter would mean what it did.
  """
  if not {"config", "vocab"} <= set(expected_spec):
    raise ValueError("expected_spec needs 'config' and 'vocab'; build it with "
                     "encoder_spec(config, tokenizer).")
  source = encoder_source.open_source(path)
  stored_config, unused = spec_lib.as_family(
      source.spec.get("config", {}), expected_spec["config"], source.where)
  stored_all = encoder_source.stored_tree(source)
  stored = {k: v for k, v in stored_all.items() if k[0] not in unused}
  model = spec_lib.model_tree(into["encoder"])
  paths = spec_lib.path_problems(stored, model)
  config = spec_lib.config_problems(stored_config, expected_spec["config"])
  vocab = spec_lib.vocab_problems(source.spec.get("vocab"),
                                  expected_spec["vocab"])
  problems = {**paths, "config": config, "vocab": vocab}
  if vocab or (strict and any(problems.values())):
    raise ValueError(spec_lib.error_message(source.where, problems))

  wanted = sorted(k for k in model if k in stored and stored[k] == model[k])
  flat_into = traverse_util.flatten_dict(into["encoder"])
  abstract = parallel.abstract(spec_lib.nest({k: flat_into[k]
                                              for k in wanted}))
  restored = {}
  if wanted:
    restored = traverse_util.flatten_dict(source.restore(
        abstract, ocp.checkpoint_utils.construct_restore_args(abstract)))
  # Orbax can restore fewer leaves than asked under partial restore without
  # a word (google/orbax#2972): check the result, not only the request.
  if spec_lib.model_tree(spec_lib.nest(restored)) != {k: model[k]
                                                      for k in wanted}:
    raise ValueError("orbax restored a different tree than requested from "
                     f"{source.where}; the checkpoint may be damaged, save it "
                     "again.")
  encoder = spec_lib.nest({**flat_into, **restored})
  name = spec_lib.name
  report = LoadReport(
      source=source.where, loaded=tuple(name(k) for k in wanted),
      left_at_init=tuple(name(k) for k in sorted(model) if k not in restored),
      ignored=tuple(name(k) for k in sorted(stored_all) if k not in restored),
      differences=tuple(f"{kind}: {item}" for kind, items in problems.items()
                        for item in items))
  return dict(into, encoder=encoder), report


def load_encoder_tokenizer(path: str) -> tokenizer_lib.Tokenizer | None:
  """The tokenizer an encoder was trained with (fine-tune with this one)."""
  return encoder_source.read_tokenizer(encoder_source.open_source(path))


def install_encoder_tokenizer(path: str,
                              workdir: str) -> tokenizer_lib.Tokenizer | None:
  """Puts the encoder's tokenizer file in a new workdir; its tokenizer.

  load_or_train_tokenizer then finds it there instead of training a new one.
  A byte tokenizer writes nothing. config.tokenizer must name the encoder's
  kind (tokenizer_lib.kind_of).
  """
  tokenizer = load_encoder_tokenizer(path)
  data = tokenizer and tokenizer_lib.serialized(tokenizer)
  if data is not None:
    target = tokenizer_lib.tokenizer_path(workdir,
                                          tokenizer_lib.kind_of(tokenizer))
    if os.path.exists(target):
      with open(target, "rb") as f:
        if f.read() != data:
          raise ValueError(f"{target} is not the encoder's tokenizer; use a "
                           "new --workdir for fine-tuning.")
    elif jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      tokenizer_lib.write_model_proto(target, data)
  return tokenizer
