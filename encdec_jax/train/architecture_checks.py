"""Config checks that need the model's architecture (built from the config
with a stand-in vocabulary, nothing initialised): the model block's own
checks, packing and a self-speculative draft. Each used to fail after
config.json and checkpoints/ were written (packing), or at the first
evaluation, after all training (the draft)."""

from encdec_jax.data import packing
from encdec_jax.decoding.config import decode_settings
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.tasks import translation


def _architecture(config, task, family):
  """The task's model config for `config`, or None when only the real
  vocabulary size can say (the build then reports it)."""
  stand_in = 259 if config.get("tokenizer") == "bytes" else (
      config.get("vocab_size") or 259)
  try:
    return task.model_config(config, family, stand_in)
  except ValueError as e:
    if "vocab_size" not in str(e):
      raise
    return None


def _builds_encoder_decoder(config, task, arch) -> bool:
  """Whether the task builds a Transformer EncoderDecoder of `arch`
  (nothing is initialised)."""
  return isinstance(task.build_model(arch, config, {}), EncoderDecoder)


def _packing(config, task, family, arch) -> None:
  algorithm = config.get("pack_algorithm")
  if algorithm is not None and algorithm not in packing.ALGORITHMS:
    raise ValueError(f"config.pack_algorithm={algorithm!r} is not known; use "
                     f"one of {sorted(packing.ALGORITHMS)}.")
  if (not config.get("pack_examples") or arch is None
      or task.train_dataset is not translation.text_train_dataset):
    return  # (a task with its own stream packs as it says)
  if not _builds_encoder_decoder(config, task, arch):
    raise ValueError(
        "config.pack_examples=True packs pairs for a Transformer encoder-"
        f"decoder, but task={task.name!r} with config.model.family="
        f"{family!r} builds a "
        f"{type(task.build_model(arch, config, {})).__name__}; drop "
        "--config.pack_examples (or train a translation task with "
        "--config.model.family=transformer).")


def _speculative(config, task, family, arch) -> None:
  """A self-draft runs the decoder's first layers: it needs a Transformer
  encoder-decoder with more decoder layers than the draft."""
  if "decode" not in config or arch is None:
    return
  settings = decode_settings(config)
  if settings["algorithm"] != "speculative":
    return
  draft = str(settings["draft"])
  if draft == "model":
    raise ValueError(
        "config.decode.draft='model' needs a separate draft model, which only "
        "the Python API takes (make_decode_fn(..., draft=...)); from the "
        "command line use draft='self' or 'self:N'.")
  if not _builds_encoder_decoder(config, task, arch):
    raise ValueError(
        f"config.decode.draft={draft!r} drafts with the decoder's own first "
        "layers: it needs config.model.family='transformer', not "
        f"{family!r}; use config.decode.algorithm=greedy, beam or sample.")
  total = arch.num_decoder_layers
  if draft == "self" and total < 2:
    raise ValueError(
        "config.decode.draft='self' drafts with the first half of the "
        f"decoder's layers, but config.model.num_decoder_layers={total} "
        "leaves none to skip; use a decoder of >= 2 layers or another "
        "config.decode.algorithm.")
  layers = int(draft[5:]) if draft.startswith("self:") else total // 2
  if not 1 <= layers < total:
    raise ValueError(
        f"config.decode.draft={draft!r} drafts with {layers} of the decoder's "
        f"{total} layers; use 'self:N' with 1 <= N < {total} (a draft must "
        "skip some layers and keep one).")


def check(config, task, family) -> None:
  """Raises ValueError (one line) for the first problem."""
  arch = _architecture(config, task, family)
  _packing(config, task, family, arch)
  _speculative(config, task, family, arch)
