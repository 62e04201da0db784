"""Config values that make sense only from a list, or only together with
other fields. `config_checks.check` runs these before anything is read or
written. Each used to fail where it was first used: after config.json and
checkpoints/ were written, at the first evaluation, or not at all (files
given without the dataset that reads them).
"""

from sacrebleu.metrics import BLEU

from encdec_jax import tasks
from encdec_jax.data import pipeline
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.decoding.config import decode_settings
from encdec_jax.train import param_groups

# What a training pair with an empty (or whitespace-only) source or target
# does: "skip" gives it weight 0, "keep" trains on it. Counted either way
# (empty_examples in the training log).
EMPTY_PAIRS = ("skip", "keep")
TOKENIZERS = tokenizer_lib.TOKENIZERS  # bart_bpe, marian: imported only


def _choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not known; use one of "
                     f"{tuple(choices)}.")


def _text_files_need_their_dataset(config) -> None:
  """--config.text_files.train=... without --config.dataset=text_files would
  train on the built-in dataset and never read the files."""
  files = config.get("text_files") or {}
  order = {"train": 0, "validation": 1, "test": 2}
  named = sorted(((split, path) for split, path in files.items() if path),
                 key=lambda item: order.get(item[0], 3))
  if named and config.get("dataset") != "text_files":
    split, path = named[0]
    raise ValueError(
        f"config.text_files.{split}={path!r} is set, but config.dataset="
        f"{config.get('dataset')!r}, so the file would be ignored; add "
        "--config.dataset=text_files to train on your files (or leave "
        "config.text_files empty).")


def _choices(config) -> None:
  for field, choices in (("overlong", pipeline.OVERLONG_POLICIES),
                         ("tokenizer", TOKENIZERS),
                         ("empty_pairs", EMPTY_PAIRS),
                         ("schedule", param_groups.SCHEDULES)):
    if config.get(field) is not None:
      _choice(f"config.{field}", config[field], choices)
  for group, settings in (config.get("group_optim") or {}).items():
    if settings.get("schedule") is not None:
      _choice(f"config.group_optim.{group}.schedule", settings["schedule"],
              param_groups.SCHEDULES)
  if config.get("bleu_tokenize") is not None:
    _choice("config.bleu_tokenize", config.bleu_tokenize,
            tuple(BLEU.TOKENIZERS))


def _evaluation(config) -> None:
  if config.get("num_eval_examples") == 0:
    raise ValueError("config.num_eval_examples=0 evaluates the loss on no "
                     "example; use a number >= 1, or -1 for the whole split "
                     "(config.num_decode_examples=0 is the one that turns "
                     "decoding off).")
  if "decode" in config:
    seed = decode_settings(config)["seed"]  # also checks the algorithm
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
      raise ValueError(f"config.decode.seed={seed!r} must be an integer "
                       ">= 0.")


def _buckets(config) -> None:
  """The last bucket boundary must hold the longest sequence (a
  classifier has no target)."""
  boundaries = config.get("bucket_boundaries")
  if not boundaries:
    return
  fields = list(tasks.get(config).length_fields)
  lengths = [config[f] for f in fields if config.get(f)]
  if lengths and max(lengths) > max(boundaries):
    raise ValueError(
        "config.bucket_boundaries must reach the max lengths: last boundary "
        f"{max(boundaries)} < max length {max(lengths)} (config."
        f"{' / '.join(fields)}); add a boundary or lower them.")


def check(config) -> None:
  """Raises ValueError (one line) for the first inconsistent value."""
  _text_files_need_their_dataset(config)
  _choices(config)
  _evaluation(config)
  _buckets(config)
  tasks.get(config).check_config(config)
