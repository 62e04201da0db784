"""Finding an encoder: a save_encoder directory, a training workdir (its
latest committed step) or one step directory <workdir>/checkpoints/<step>.

A save_encoder directory is self-contained:
  params/          orbax PyTree of params['encoder'];
  tokenizer.model  the SentencePiece model, or
  tokenizer.json   the WordPiece tokenizer of an imported BERT-family encoder
                   (neither for the byte tokenizer; see TOKENIZER_FILES);
  encoder.json     {"format", "version", "config", "vocab"}, written last, so
                   a directory without it is an unfinished save, never loaded.
A training step holds the same in its `encoder` item and meta["encoder"]; the
tokenizer is the workdir's. Only those two items of a step are ever read,
never the `state` item with the optimizer moments.
"""

import dataclasses
import json
import os
from typing import Any, Callable

from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from encdec_jax.checkpoint import layout
from encdec_jax.checkpoint.encoder_spec import NO_VOCAB
from encdec_jax.data import tokenizer as tokenizer_lib

FORMAT, VERSION = "encdec_jax.encoder", 1


@dataclasses.dataclass(frozen=True)
class Source:
  """A located encoder: its spec, params directory and tokenizer's directory."""
  where: str
  spec: dict
  params_dir: str  # An orbax PyTree directory (metadata is read from it).
  tokenizer_dir: str  # Holds the tokenizer file of the spec's vocab kind.
  restore: Callable[[Any, Any], dict]  # (item, restore_args) -> the tree.

  @property
  def step(self) -> int:
    """The training step it was exported from (a step directory only)."""
    return int(os.path.basename(self.where))


def open_source(path: str) -> Source:
  """The encoder at `path`, any of the three kinds (module docstring)."""
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no encoder at {path}: the path does not exist.")
  if os.path.isfile(os.path.join(path, layout.SPEC_FILE)):
    return _open_saved(path)
  if os.path.isdir(layout.checkpoints_dir(path)):
    return open_step(path, None)
  parent = os.path.dirname(path)
  if os.path.basename(path).isdigit() and os.path.basename(parent) == (
      layout.CHECKPOINTS_DIR):
    return open_step(os.path.dirname(parent), int(os.path.basename(path)))
  if os.path.isdir(os.path.join(path, layout.PARAMS_DIR)):
    raise FileNotFoundError(f"{path} is an unfinished save_encoder (no "
                            f"{layout.SPEC_FILE}); save the encoder again.")
  raise FileNotFoundError(
      f"no encoder at {path}; expected a save_encoder directory, a training "
      "workdir or a step directory <workdir>/checkpoints/<step>.")


def _open_saved(path: str) -> Source:
  with open(os.path.join(path, layout.SPEC_FILE)) as f:
    spec = json.load(f)
  if spec.get("format") != FORMAT or spec.get("version") != VERSION:
    raise ValueError(f"{path}/{layout.SPEC_FILE} is format "
                     f"{spec.get('format')!r} version {spec.get('version')!r}, "
                     f"not {FORMAT!r} version {VERSION}; load it with the "
                     "encdec_jax that wrote it.")
  params_dir = os.path.join(path, layout.PARAMS_DIR)

  def restore(item, restore_args):
    return ocp.PyTreeCheckpointer().restore(
        params_dir, args=ocp.args.PyTreeRestore(
            item=item, restore_args=restore_args, partial_restore=True))

  return Source(path, spec, params_dir, path, restore)


def open_step(workdir: str, step: int | None) -> Source:
  """A committed step of a training run (default: the latest)."""
  checkpoints_dir = layout.checkpoints_dir(workdir)
  if not os.path.isdir(checkpoints_dir):
    raise FileNotFoundError(f"no checkpoints in {checkpoints_dir}; train first "
                            "or check the path.")
  manager = layout.make_manager(workdir)
  steps = manager.all_steps()
  if step is None and steps:
    step = steps[-1]
  if step not in steps:
    raise FileNotFoundError(
        f"no committed checkpoint{'' if step is None else f' {step}'} in "
        f"{checkpoints_dir} (committed steps: {list(steps)}); train first or "
        "pick a committed step.")
  where = layout.step_dir(manager, step)
  meta = manager.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore()))["meta"]
  if not os.path.isdir(os.path.join(where, "encoder")):
    lora = meta.get("lora")
    raise ValueError(
        f"checkpoint {where} holds no encoder: "
        + ("it is a LoRA run's, which saves only the adapters; merge them "
           "into a whole model first (--mode=merge_adapter --output=DIR) and "
           "export the encoder of DIR" if lora else
           "the run's model has no encoder params to export"))
  if "encoder" not in meta:
    raise ValueError(f"checkpoint {where} records no meta['encoder'] (written "
                     "by an older trainer), so its encoder cannot be checked; "
                     "train with the current trainer to get one.")

  def restore(item, restore_args):
    return manager.restore(step, args=ocp.args.Composite(
        encoder=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                       partial_restore=True)))["encoder"]

  return Source(where, meta["encoder"], os.path.join(where, "encoder"),
                os.path.abspath(workdir), restore)


def stored_tree(source: Source) -> dict:
  """{path: (shape, dtype name)} from orbax's metadata, reading no array."""
  metadata = ocp.PyTreeCheckpointHandler().metadata(
      epath.Path(source.params_dir))
  leaves, _ = jax.tree_util.tree_flatten_with_path(metadata)
  return {tuple(str(k.key) for k in key_path):
          (tuple(m.shape), np.dtype(m.dtype).name) for key_path, m in leaves}


def read_tokenizer(source: Source) -> tokenizer_lib.Tokenizer | None:
  """The tokenizer the encoder was trained with, checked against its spec."""
  vocab = source.spec["vocab"]
  if vocab["kind"] == NO_VOCAB["kind"]:
    return None
  if vocab["kind"] == "bytes":
    return tokenizer_lib.ByteTokenizer()
  if vocab["kind"] in tokenizer_lib.IMPORTED_KINDS:  # BART's, Marian's
    tokenizer = tokenizer_lib.read_imported(vocab["kind"], source.tokenizer_dir)
    if tokenizer_lib.vocab_record(tokenizer) != vocab:
      raise ValueError(f"the tokenizer files under {source.tokenizer_dir} are "
                       f"not those the encoder at {source.where} was trained "
                       "with (sha256 differs); restore the original ones.")
    return tokenizer
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
