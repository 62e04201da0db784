r"""A Hugging Face model imported by import_hf: config.init_from.

  python -m encdec_jax.pretrained.import_hf flan-t5-small/ pretrained/flan
  python -m encdec_jax.main --config=experiments/t5_finetune.py \
      --config.init_from=pretrained/flan --workdir=runs/flan --mode=train

With config.init_from (an import_hf directory) the run
  - takes the model's architecture from its pretrained.json: config.model
    keeps only the run-level fields of RUN_FIELDS (dropout rates, dtypes,
    remat, scan_layers) and any other field it names must agree;
  - reads text with the model's own tokenizer, installed in the workdir
    (T5: spiece.model as the workdir's SentencePiece tokenizer.model; ByT5:
    bytes; BART, Marian: read from the import's files in <workdir>/
    pretrained/hf, --config.tokenizer=bart_bpe / marian), never a newly
    trained one;
  - pads, masks, shifts and decodes with the model's own ids (BART: pad 1,
    decoder start 2 = EOS; Marian: pad = decoder start = <pad>, EOS 0):
    TransformerConfig.pad_id / start_id and the tokenizer's pad_id / eos_id;
  - starts from the imported params (all of them, checked against the model
    the config builds; stacked when config.model.scan_layers);
  - copies pretrained.json and hf/ into <workdir>/pretrained/, so that
    `python -m encdec_jax.pretrained.export_hf <workdir> OUT` writes the
    fine-tuned model in Hugging Face format;
  - decodes (eval, --mode=decode) with the model's own generation settings
    (hf/generation_config.json, pretrained/generation.py) wherever
    config.decode leaves a key unset (absent, or at its built-in default:
    experiment files spell the defaults out); config.decode.model_generation
    =false ignores them, config.decode.task picks a task_specific_params
    entry.
Everything else (separate encoder/decoder optimizers, frozen groups, ULMFiT
schedules, checkpoints and resume, eval/decode) is the trainer's. Under LoRA
(starts/lora_base.py) this start gives the architecture, tokenizer and
origin, and the base comes from config.lora.base.
"""

import os
import shutil

import jax
import ml_collections
from flax import traverse_util

from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.decoding import config as decode_config
from encdec_jax.pretrained import export_hf, generation, import_hf, stacking
from encdec_jax.starts.base import Start

# config.model fields a fine-tuning run may set itself; every other field
# comes from the imported model.
RUN_FIELDS = ("dropout_rate", "attention_dropout_rate", "dtype",
              "param_dtype", "remat", "scan_layers")
# tokenizer kind (import_hf.TOKENIZER_FILES) -> config.tokenizer
TRAINER_TOKENIZERS = {"t5_sentencepiece": "sentencepiece", "bytes": "bytes",
                      "bart_bpe": "bart_bpe", "marian": "marian"}


def _meta(config) -> dict | None:
  path = config.get("init_from")
  return import_hf.read_meta(path) if path else None


def configure(config) -> None:
  """config.model <- the imported architecture (+ config's RUN_FIELDS);
  a no-op without config.init_from. Idempotent (resume, eval)."""
  meta = _meta(config)
  if meta is None:
    return
  fields = dict(meta["model"])
  vocab = fields.pop("vocab_size")
  del vocab  # the model's vocabulary: model_vocab_size
  if meta["tokenizer"] not in TRAINER_TOKENIZERS:
    raise ValueError(
        f"config.init_from={config.init_from} reads {meta['tokenizer']} "
        f"tokens, which the trainer cannot; it reads "
        f"{', '.join(TRAINER_TOKENIZERS)}")
  model = config.model
  for key, value in model.items():
    if key in RUN_FIELDS or key == "family":
      continue
    if key not in fields:
      raise ValueError(f"config.model.{key} is not a field of the imported "
                       f"model ({config.init_from}); its architecture comes "
                       "from there: drop the field")
    if value != fields[key]:
      raise ValueError(
          f"config.model.{key}={value!r} but the imported model "
          f"({config.init_from}) has {fields[key]!r}; its architecture comes "
          "from there: drop the field")
  with config.unlocked():
    for key, value in fields.items():
      # The imported dropout rates unless the config sets its own; dtypes,
      # remat and scan_layers stay the run's (or TransformerConfig's).
      if key not in RUN_FIELDS or (key.endswith("dropout_rate")
                                   and key not in model):
        model[key] = value
  kind = TRAINER_TOKENIZERS[meta["tokenizer"]]
  if config.get("tokenizer") != kind:
    raise ValueError(
        f"config.init_from={config.init_from} reads {meta['tokenizer']} "
        f"tokens; set --config.tokenizer={kind}")
  configure_generation(config, meta)


def configure_generation(config, meta: dict) -> None:
  """config.decode <- the imported model's generation settings, for every
  key config.decode leaves unset (absent or at decoding.config's default)."""
  with config.unlocked():
    if config.get("decode") is None:
      config.decode = ml_collections.ConfigDict()
    decode = config.decode
    if not decode.get("model_generation", True):
      return
    settings = generation.decode_settings_of(
        os.path.join(config.init_from, "hf"), meta, decode.get("task", ""))
    defaults = dict(decode_config.DEFAULT_DECODE,
                    **decode_config.DEFAULT_GENERATION)
    for key, value in settings.items():
      if key not in decode or decode[key] == defaults[key]:
        if key in decode:  # the model's value may be of another type
          del decode[key]
        decode[key] = value


def vocab_size(config) -> int | None:
  """The imported model's vocabulary size (T5: 32128, more than its
  SentencePiece model's 32000 ids), or None without init_from."""
  meta = _meta(config)
  return meta["model"]["vocab_size"] if meta else None


def install(config, workdir: str, reads_text: bool = True) -> None:
  """Puts the imported tokenizer and the origin files in the workdir (before
  training reads or trains a tokenizer); a no-op without init_from."""
  meta = _meta(config)
  if meta is None or jax.process_index() != 0:
    return
  source = os.path.join(config.init_from, "hf")
  if meta["tokenizer"] == "t5_sentencepiece":
    target = tokenizer_lib.tokenizer_path(workdir)
    with open(os.path.join(source, "spiece.model"), "rb") as f:
      proto = f.read()
    if os.path.exists(target):
      with open(target, "rb") as f:
        if f.read() != proto:
          raise ValueError(
              f"{target} is not the spiece.model of config.init_from="
              f"{config.init_from}: this workdir was trained with another "
              "vocabulary; use a new --workdir")
    else:
      tokenizer_lib.write_model_proto(target, proto)
  origin = os.path.join(workdir, export_hf.ORIGIN)
  if not os.path.isfile(os.path.join(origin, "pretrained.json")):
    tmp = origin + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shutil.copy2(os.path.join(config.init_from, "pretrained.json"), tmp)
    shutil.copytree(source, os.path.join(tmp, "hf"))
    shutil.rmtree(origin, ignore_errors=True)
    os.replace(tmp, origin)


def initial_params(config, target_params, encoder_spec=None, log=print):
  """The imported params, laid out (and sharded) like `target_params` (the
  fresh state's): every leaf must be there with its shape."""
  _, params, _ = import_hf.load(config.init_from)
  flat = traverse_util.flatten_dict(params)
  if config.model.get("scan_layers"):
    flat = stacking.stack_layers(flat)
  target = traverse_util.flatten_dict(target_params)
  name = lambda k: "/".join(k)
  missing = sorted(name(k) for k in set(target) - set(flat))
  extra = sorted(name(k) for k in set(flat) - set(target))
  if missing or extra:
    raise ValueError(
        f"config.init_from={config.init_from} does not fit the model: "
        f"missing {missing[:3]}, not in the model {extra[:3]}")
  for key, value in target.items():
    if tuple(value.shape) != flat[key].shape:
      raise ValueError(f"config.init_from={config.init_from}: {name(key)} "
                       f"has shape {flat[key].shape}, the model "
                       f"{tuple(value.shape)}")
  placed = {k: jax.device_put(flat[k].astype(v.dtype), v.sharding)
            for k, v in target.items()}
  log(f"params from config.init_from={config.init_from}")
  return traverse_util.unflatten_dict(placed)


START = Start(
    "hf_import",
    configure=configure,
    install=install,
    vocab_size=vocab_size,
    initial_params=initial_params,
)
