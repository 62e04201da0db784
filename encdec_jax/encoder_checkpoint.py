"""Encoders on their own: export from training, save, load into another model.

fastai's save_encoder/load_encoder, with the checks a silent partial load
lacks. An encoder is params['encoder'] (the same tree in EncoderDecoder and
EncoderClassifier) plus a spec, {"config": TransformerConfig.encoder_fields(),
"vocab": tokenizer.vocab_record(...)}, that says which models it fits.

A save_encoder directory is self-contained:
  params/          orbax PyTree of params['encoder'];
  tokenizer.model  the SentencePiece model, or
  tokenizer.json   the WordPiece tokenizer of an imported BERT-family encoder
                   (neither for the byte tokenizer; see TOKENIZER_FILES);
  encoder.json     {"format", "version", "config", "vocab"}, written last, so
                   a directory without it is an unfinished save, never loaded.
A conv autoencoder's encoder also loads into a captioner, whose encoder is
the same convs without the bottleneck (see _as_family).
A training step (checkpoint.py) holds the same in its `encoder` item and in
meta["encoder"]; the tokenizer is the workdir's. load_encoder reads only those
two items of a step, never the `state` item with the optimizer moments.
"""

import dataclasses
import json
import os
from typing import Any, Callable

from etils import epath
from flax import traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp

from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.nn.config import TransformerConfig

FORMAT, VERSION = "encdec_jax.encoder", 1
SPEC_FILE, PARAMS_DIR = "encoder.json", "params"
MAX_LISTED = 8  # Offending paths named per kind of problem.


NO_VOCAB = {"kind": "none", "size": 0}  # Encoders of images read no tokens.


def _vocab(tokenizer) -> dict:
  return NO_VOCAB if tokenizer is None else tokenizer_lib.vocab_record(
      tokenizer)


def encoder_spec(model_config, tokenizer) -> dict:
  """What an encoder must agree on with a model (goes into meta["encoder"]).

  `model_config` is any family's config (TransformerConfig, RNNConfig,
  AutoencoderConfig): its encoder_fields(). `tokenizer` is None for images.
  """
  return {"config": model_config.encoder_fields(), "vocab": _vocab(tokenizer)}


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


@dataclasses.dataclass(frozen=True)
class _Source:
  """A located encoder: its spec, params directory and tokenizer's directory."""
  where: str
  spec: dict
  params_dir: str  # An orbax PyTree directory (metadata is read from it).
  tokenizer_dir: str  # Holds the tokenizer file of the spec's vocab kind.
  restore: Callable[[Any, Any], dict]  # (item, restore_args) -> the tree.


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)  # atomic: encoder.json is either whole or absent


def save_encoder(path: str, encoder_params, spec: dict, tokenizer) -> None:
  """Writes params['encoder'], its spec and tokenizer to a new directory `path`.

  Every process calls it (the orbax save is collective); process 0 writes the
  files. encoder.json goes last: a crash leaves a directory that loads refuse.
  """
  path = os.path.abspath(path)
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    raise ValueError(f"refusing to overwrite {path}: it exists and is not "
                     "empty; remove it or choose another path.")
  vocab = _vocab(tokenizer)
  if spec.get("vocab") != vocab:
    raise ValueError(f"spec vocab {spec.get('vocab')} is not the tokenizer's "
                     f"{vocab}; build the spec with encoder_spec(config, "
                     "tokenizer).")
  ocp.PyTreeCheckpointer().save(os.path.join(path, PARAMS_DIR),
                                encoder_params)  # synchronous
  if jax.process_index() == 0:
    if vocab["kind"] in tokenizer_lib.TOKENIZER_FILES:
      tokenizer_lib.write_model_proto(
          tokenizer_lib.tokenizer_path(path, vocab["kind"]),
          tokenizer_lib.serialized(tokenizer))
    _write_json(os.path.join(path, SPEC_FILE),
                {"format": FORMAT, "version": VERSION, "config": spec["config"],
                 "vocab": spec["vocab"]})


def export_encoder(workdir: str, path: str, step: int | None = None) -> int:
  """Writes a training checkpoint's encoder with save_encoder; its step.

  Reads the step's `encoder` and `meta` items only.
  """
  source = _open_step(os.path.join(os.path.abspath(workdir), "checkpoints"),
                      step)
  restore_args = _nest({k: ocp.RestoreArgs(restore_type=np.ndarray)
                        for k in _stored_tree(source)})
  params = source.restore(None, restore_args)  # host numpy: any topology
  save_encoder(path, params, source.spec, _read_tokenizer(source))
  return int(os.path.basename(source.where))


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
  source = _open(path)
  stored_config, unused = _as_family(source, expected_spec["config"])
  stored_all = _stored_tree(source)
  stored = {k: v for k, v in stored_all.items() if k[0] not in unused}
  model = _model_tree(into["encoder"])
  paths = _path_problems(stored, model)
  config = _config_problems(stored_config, expected_spec["config"])
  vocab = _vocab_problems(source.spec.get("vocab"), expected_spec["vocab"])
  problems = {**paths, "config": config, "vocab": vocab}
  if vocab or (strict and any(problems.values())):
    raise ValueError(_error_message(source, problems))

  wanted = sorted(k for k in model if k in stored and stored[k] == model[k])
  flat_into = traverse_util.flatten_dict(into["encoder"])
  abstract = _nest({k: _abstract_leaf(flat_into[k]) for k in wanted})
  restored = {}
  if wanted:
    restored = traverse_util.flatten_dict(source.restore(
        abstract, ocp.checkpoint_utils.construct_restore_args(abstract)))
  # Orbax can restore fewer leaves than asked under partial restore without
  # a word (orbax issue 2972): check the result, not only the request.
  if _model_tree(_nest(restored)) != {k: model[k] for k in wanted}:
    raise ValueError("orbax restored a different tree than requested from "
                     f"{source.where}; the checkpoint may be damaged, save it "
                     "again.")
  encoder = _nest({**flat_into, **restored})
  report = LoadReport(
      source=source.where, loaded=tuple(_name(k) for k in wanted),
      left_at_init=tuple(_name(k) for k in sorted(model) if k not in restored),
      ignored=tuple(_name(k) for k in sorted(stored_all)
                    if k not in restored),
      differences=tuple(f"{kind}: {item}" for kind, items in problems.items()
                        for item in items))
  return dict(into, encoder=encoder), report


def load_encoder_tokenizer(path: str) -> tokenizer_lib.Tokenizer:
  """The tokenizer an encoder was trained with (fine-tune with this one)."""
  return _read_tokenizer(_open(path))


def install_encoder_tokenizer(path: str,
                              workdir: str) -> tokenizer_lib.Tokenizer:
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


# Locating an encoder.


def _open(path: str) -> _Source:
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no encoder at {path}: the path does not exist.")
  if os.path.isfile(os.path.join(path, SPEC_FILE)):
    return _open_saved(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return _open_step(os.path.join(path, "checkpoints"), None)
  parent = os.path.dirname(path)
  if os.path.basename(path).isdigit() and os.path.basename(parent) == (
      "checkpoints"):
    return _open_step(parent, int(os.path.basename(path)))
  if os.path.isdir(os.path.join(path, PARAMS_DIR)):
    raise FileNotFoundError(f"{path} is an unfinished save_encoder (no "
                            f"{SPEC_FILE}); save the encoder again.")
  raise FileNotFoundError(
      f"no encoder at {path}; expected a save_encoder directory, a training "
      "workdir or a step directory <workdir>/checkpoints/<step>.")


def _open_saved(path: str) -> _Source:
  with open(os.path.join(path, SPEC_FILE)) as f:
    spec = json.load(f)
  if spec.get("format") != FORMAT or spec.get("version") != VERSION:
    raise ValueError(f"{path}/{SPEC_FILE} is format {spec.get('format')!r} "
                     f"version {spec.get('version')!r}, not {FORMAT!r} version "
                     f"{VERSION}; load it with the encdec_jax that wrote it.")
  params_dir = os.path.join(path, PARAMS_DIR)

  def restore(item, restore_args):
    return ocp.PyTreeCheckpointer().restore(
        params_dir, args=ocp.args.PyTreeRestore(
            item=item, restore_args=restore_args, partial_restore=True))

  return _Source(path, spec, params_dir, path, restore)


def _open_step(checkpoints_dir: str, step: int | None) -> _Source:
  """A committed step of a training run (only `encoder` and `meta` read)."""
  if not os.path.isdir(checkpoints_dir):
    raise FileNotFoundError(f"no checkpoints in {checkpoints_dir}; train first "
                            "or check the path.")
  manager = ocp.CheckpointManager(
      checkpoints_dir, options=ocp.CheckpointManagerOptions(create=False),
      item_handlers={"encoder": ocp.PyTreeCheckpointHandler(),
                     "meta": ocp.JsonCheckpointHandler()})
  steps = manager.all_steps()
  if step is None and steps:
    step = steps[-1]
  if step not in steps:
    raise FileNotFoundError(
        f"no committed checkpoint{'' if step is None else f' {step}'} in "
        f"{checkpoints_dir} (committed steps: {list(steps)}); train first or "
        "pick a committed step.")
  where = os.path.join(checkpoints_dir, str(step))
  meta = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))["meta"]
  if "encoder" not in meta:
    raise ValueError(f"checkpoint {where} records no meta['encoder'] (written "
                     "by an older trainer), so its encoder cannot be checked; "
                     "train with the current trainer to get one.")

  def restore(item, restore_args):
    return manager.restore(step, args=ocp.args.Composite(
        encoder=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                       partial_restore=True)))["encoder"]

  workdir = os.path.dirname(checkpoints_dir)
  return _Source(where, meta["encoder"], os.path.join(where, "encoder"),
                 workdir, restore)


def _read_tokenizer(source: _Source) -> tokenizer_lib.Tokenizer | None:
  vocab = source.spec["vocab"]
  if vocab["kind"] == NO_VOCAB["kind"]:
    return None
  if vocab["kind"] == "bytes":
    return tokenizer_lib.ByteTokenizer()
  if vocab["kind"] not in tokenizer_lib.TOKENIZER_FILES:
    raise ValueError(f"the encoder at {source.where} has a {vocab['kind']!r} "
                     "vocabulary, which this encdec_jax cannot read; load it "
                     "with the encdec_jax that wrote it.")
  path = tokenizer_lib.tokenizer_path(source.tokenizer_dir, vocab["kind"])
  if not os.path.isfile(path):
    raise FileNotFoundError(f"the encoder at {source.where} needs its "
                            f"tokenizer at {path}; restore that file.")
  with open(path, "rb") as f:
    tokenizer = tokenizer_lib.from_serialized(vocab["kind"], f.read())
  if tokenizer_lib.vocab_record(tokenizer) != vocab:
    raise ValueError(f"{path} is not the vocabulary the encoder at "
                     f"{source.where} was trained with (sha256 differs); "
                     f"restore the original {os.path.basename(path)}.")
  return tokenizer


# An encoder of one family read as another's.

CONV_FEATURES = "conv_features"  # A captioner's encoder (models/captioner.py).
IMAGE_FAMILIES = ("autoencoder_conv", CONV_FEATURES)


def _as_family(source: _Source, expected: dict) -> tuple[dict, tuple]:
  """(the stored config as the expected family's spec, top-level subtrees of
  the stored encoder that family does not have).

  A conv autoencoder's encoder is a captioner's encoder plus a Dense
  `bottleneck`: read as "conv_features" its spec keeps what fixes the conv
  params (conv_features, image channels, param_dtype), not the image height
  and width (a conv's params do not depend on them), and the bottleneck is
  left out, listed as ignored. Any other encoder is not an image encoder with
  a region grid, which is one clear error instead of a list of paths.
  """
  stored = source.spec.get("config", {})
  if expected.get("family") != CONV_FEATURES:
    return stored, ()
  family = stored.get("family", "transformer")
  if family not in IMAGE_FAMILIES:
    kind = ("an MLP autoencoder's, which has no region grid"
            if family == "autoencoder_mlp" else f"a {family} text encoder")
    raise ValueError(
        f"the encoder at {source.where} is {kind}, not a conv image encoder; "
        "a captioner's encoder loads from a conv autoencoder "
        "(experiments/autoencoder_digits.py:conv) or another captioner.")
  if family == CONV_FEATURES:
    return stored, ()
  view = {"family": CONV_FEATURES, "conv_features": stored["conv_features"],
          "channels": stored["image_shape"][2],
          "param_dtype": stored["param_dtype"]}
  return view, ("bottleneck",)


# Trees as {path tuple: (shape, dtype name)}.


def _stored_tree(source: _Source) -> dict:
  """From orbax's metadata: shapes and dtypes without reading any array."""
  metadata = ocp.PyTreeCheckpointHandler().metadata(
      epath.Path(source.params_dir))
  leaves, _ = jax.tree_util.tree_flatten_with_path(metadata)
  return {tuple(str(k.key) for k in key_path):
          (tuple(m.shape), np.dtype(m.dtype).name) for key_path, m in leaves}


def _model_tree(params) -> dict:
  return {k: (tuple(v.shape), np.dtype(v.dtype).name)
          for k, v in traverse_util.flatten_dict(params).items()}


def _nest(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat) if flat else {}


def _abstract_leaf(x) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(x.shape, x.dtype,
                              sharding=getattr(x, "sharding", None))


def _name(key: tuple) -> str:
  return "/".join(("encoder",) + key)


# Problems, one readable line per offending path or field.


def _path_problems(stored: dict, model: dict) -> dict:
  both = sorted(set(stored) & set(model))
  return {
      "in the model but not the checkpoint":
          [_name(k) for k in sorted(set(model) - set(stored))],
      "in the checkpoint but not the model":
          [_name(k) for k in sorted(set(stored) - set(model))],
      "shape": [f"{_name(k)} checkpoint {stored[k][0]} vs model {model[k][0]}"
                for k in both if stored[k][0] != model[k][0]],
      "dtype": [f"{_name(k)} checkpoint {stored[k][1]} vs model {model[k][1]}"
                for k in both if stored[k][1] != model[k][1]],
  }


def _config_problems(stored: dict, expected: dict) -> list[str]:
  absent = "<absent>"
  if "family" not in stored and "family" not in expected:  # Transformers.
    # A field added to ENCODER_FIELDS after an encoder was saved (causal) is
    # missing from its spec: that encoder had the field's default behaviour.
    defaults = TransformerConfig(vocab_size=1).encoder_fields()
    del defaults["vocab_size"]  # Required: it has no default.
    stored = {**{k: v for k, v in defaults.items() if k in expected}, **stored}
  return [f"{k} checkpoint {stored.get(k, absent)!r} vs model "
          f"{expected.get(k, absent)!r}"
          for k in sorted(set(stored) | set(expected))
          if stored.get(k, absent) != expected.get(k, absent)]


def _describe_vocab(record: dict | None) -> str:
  if not record:
    return "unrecorded"
  sha = f" sha256 {record['sha256'][:12]}" if "sha256" in record else ""
  return f"{record.get('kind')} of {record.get('size')} ids{sha}"


def _vocab_problems(stored: dict | None, expected: dict) -> list[str]:
  if stored == expected:
    return []
  return [f"checkpoint {_describe_vocab(stored)} vs model "
          f"{_describe_vocab(expected)}"]


def _error_message(source: _Source, problems: dict) -> str:
  parts = []
  for kind, items in problems.items():
    if items:
      more = (f", and {len(items) - MAX_LISTED} more"
              if len(items) > MAX_LISTED else "")
      parts.append(f"{kind} ({len(items)}): "
                   f"{', '.join(items[:MAX_LISTED])}{more}")
  fix = ("give the model the encoder's config (the config fields above), or "
         "load only the matching parameters with "
         "--config.init_encoder_strict=false (strict=False in Python)")
  if problems["vocab"]:
    fix = ("the vocabularies differ, so no parameter can be reused; fine-tune "
           "with the encoder's tokenizer (load_encoder_tokenizer)")
  return (f"the encoder at {source.where} does not fit the model: "
          f"{'; '.join(parts)}. To fix: {fix}.")
