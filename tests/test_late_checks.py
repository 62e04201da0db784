"""Every config value is checked before anything is read or written, and
files that would be ignored are refused. Each of these used to
fail late (after config.json and checkpoints/ were written, or after
training, at the first evaluation) or not at all."""

import importlib
import os

import pytest

from encdec_jax.train import config_checks, experiment, trainer
from experiments import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _set(config, field, value):
  node = config
  for part in field.split(".")[:-1]:
    node = node[part]
  node[field.split(".")[-1]] = value


def test_text_files_without_their_dataset_are_refused(small_text_files,
                                                      tmp_path):
  config = tiny.get_config()
  config.text_files.update(small_text_files)  # config.dataset not set
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError, match=r"config.text_files.train='.*train.tsv'"
                     r" is set, but config.dataset='number_translation/"
                     r"digits_en_small', so the file would be ignored; add "
                     r"--config.dataset=text_files"):
    trainer.train_and_evaluate(config, workdir)
  assert not os.path.exists(workdir)
  config.dataset = "text_files"
  config_checks.check(config)


_LATE = [
    ("seed", -1, "config.seed=-1 must be >= 0."),
    ("num_eval_examples", 0, "config.num_eval_examples=0 evaluates the loss "
     "on no example; use a number >= 1, or -1 for the whole split"),
    ("max_decode_length", 100, "config.max_decode_length=100 > "
     "config.model.max_len=64, the longest sequence the model has positions "
     "for; raise config.model.max_len or lower config.max_decode_length."),
    ("decode.seed", -1, "config.decode.seed=-1 must be an integer >= 0."),
    ("decode.algorithm", "nucleus", "config.decode.algorithm='nucleus' is "
     "not known"),
    ("overlong", "cut", "config.overlong='cut' is not known; use one of "
     "('truncate', 'drop')."),
    ("empty_pairs", "drop", "config.empty_pairs='drop' is not known; use one "
     "of ('skip', 'keep')."),
    ("schedule", "cosin", "config.schedule='cosin' is not known"),
    ("bleu_tokenize", "chars", "config.bleu_tokenize='chars' is not known"),
    ("tokenizer", "bpe", "config.tokenizer='bpe' is not known"),
    ("bucket_boundaries", (16, 32), "config.bucket_boundaries must reach the "
     "max lengths: last boundary 32 < max length 64"),
    ("model.activation", "swish", "activation='swish' is not one of"),
    ("remat", "some", "remat='some' is not one of"),
    ("mesh.data", 3, r"config.mesh={'data': 3, 'fsdp': 1, 'tensor': 1} needs "
     "3 devices"),
    ("pack_algorithm", "firstfit", "config.pack_algorithm='firstfit' is not "
     "known; use one of"),
    ({"pack_examples": True, "model": "rnn"}, None, "config.pack_examples="
     "True packs pairs for a Transformer encoder-decoder, but task="
     "'translation' with config.model.family='rnn' builds a"),
    ({"pack_examples": True, "task": "lm"}, None, "config.pack_examples=True "
     "packs pairs for a Transformer encoder-decoder, but task='lm'"),
    ("decode.algorithm", "speculative", "config.decode.draft='self' drafts "
     "with the first half of the decoder's layers, but "
     "config.model.num_decoder_layers=1 leaves none to skip"),
    ({"decode.algorithm": "speculative", "decode.draft": "self:2",
      "model.num_decoder_layers": 2}, None, "config.decode.draft='self:2' "
     "drafts with 2 of the decoder's 2 layers; use 'self:N' with 1 <= N < 2"),
    ({"decode.algorithm": "speculative", "decode.draft": "model"}, None,
     "config.decode.draft='model' needs a separate draft model, which only "
     "the Python API takes"),
    ({"lora.targets": ("encoder/.*/query",), "lora.rank": -1}, None,
     "config.lora.rank=-1 must be >= 1."),
    ({"lora.targets": ("encoder/.*/query",), "lora.alpha": 0.0}, None,
     "config.lora.alpha=0.0 is out of range; use a value in (0, inf)."),
    ({"decode.algorithm": "speculative", "model": "rnn"}, None,
     "config.decode.draft='self' drafts with the decoder's own first layers: "
     "it needs config.model.family='transformer'"),
]


@pytest.mark.parametrize(
    "field, value, message", _LATE,
    ids=[field if isinstance(field, str) else "+".join(
        f"{k}={v}" for k, v in field.items()) for field, _, _ in _LATE])
def test_late_values_are_checked_before_anything_is_written(
    small_text_files, tmp_path, field, value, message):
  config = tiny.get_config()
  config.dataset = "text_files"
  config.text_files.update(small_text_files)
  config.update(num_train_steps=2, eval_every=1000, test_at_end=False)
  changes = field if isinstance(field, dict) else {field: value}
  for name, new in changes.items():
    if name == "model":  # another family's model block
      config.model = tiny.get_config(new).model
    elif name == "task":
      config.update(task=new, lm_field="target", label_smoothing=0.0)
    else:
      _set(config, name, new)
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError) as error:
    trainer.train_and_evaluate(config, workdir)
  assert str(error.value).startswith(message.replace("\\", "")), error.value
  assert "\n" not in str(error.value)
  assert not os.path.exists(workdir)  # nothing was written


def test_every_shipped_config_passes_the_early_checks():
  """(A LoRA config names a base run the user trains first, a fine-tuning
  config may start from a pretraining run made first, and a config
  may require a field the user gives (config.required_fields): without
  them, the early checks say so.)"""
  for name in sorted(os.listdir(os.path.join(REPO, "experiments"))):
    if name.endswith(".py") and not name.startswith("_"):
      module = importlib.import_module(f"experiments.{name[:-3]}")
      config = module.get_config()
      unset = [f for f in (config.get("required_fields") or {})
               if not config.get(f)]
      if unset:
        with pytest.raises(ValueError, match=f"config.{unset[0]} is not set"):
          experiment.check_config(config)
        continue
      base = (config.get("lora") or {}).get("base")
      if base and not os.path.exists(base):
        with pytest.raises(FileNotFoundError, match=r"config.lora.base=.* "
                           "does not exist; .* train it there first"):
          experiment.check_config(config)
        continue
      start = config.get("init_from")  # a pretraining run the user makes first
      if start and not os.path.exists(start):
        with pytest.raises(FileNotFoundError, match=f"{start} does not exist; "
                           ".* or pretrain one there"):
          experiment.check_config(config)
        continue
      experiment.check_config(config)


def test_a_length_beyond_an_imported_model_says_to_lower_it(tmp_path):
  """config.model.max_len comes from config.init_from: the message used to
  say to raise it, which the import then refused."""
  from encdec_jax.pretrained import import_hf
  from experiments import t5_finetune
  pretrained = str(tmp_path / "t5")
  import_hf.import_hf(os.path.join(REPO, "tests", "data", "hf_tiny",
                                   "t5_v11"), pretrained)
  config = t5_finetune.get_config()
  config.update(init_from=pretrained, max_source_length=5000)
  with pytest.raises(ValueError) as error:
    experiment.check_config(config)
  assert str(error.value) == (
      "config.max_source_length=5000 > 512, the longest sequence the "
      f"imported model (config.init_from={pretrained}) has positions for; "
      "lower config.max_source_length.")
