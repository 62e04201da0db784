"""Test-wide settings: small compile times on a 2-core CPU, float32 matmuls."""
import os
import random

# Must be set before JAX initialises. Most XLA optimisations only cost compile
# time for the tiny models used in tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402
from num2words import num2words  # noqa: E402

from encdec_jax.train import trainer  # noqa: E402
from experiments import tiny  # noqa: E402

jax.config.update("jax_default_matmul_precision", "float32")


@pytest.fixture(scope="module")
def small_text_files(tmp_path_factory):
  """Digits -> English words TSV splits of 200/32/32 numbers (tiny runs)."""
  d = tmp_path_factory.mktemp("data")
  files = {}
  for split, numbers in (("train", range(200)), ("validation", range(200, 232)),
                         ("test", range(232, 264))):
    files[split] = str(d / f"{split}.tsv")
    with open(files[split], "w", encoding="utf-8") as f:
      f.writelines(f"{n}\t{num2words(n)}\n" for n in numbers)
  return files


COPY_WORDS = ("the quick brown fox jumps over lazy dog a small model is easy "
              "to test and load house wonderful garden children play").split()


def _write_copy_pairs(directory, num_train: int = 64) -> dict:
  """'copy: w1 w2 w3 w4' -> 'w1 w2' TSV pairs, one file per split."""
  rng = random.Random(0)
  paths = {}
  for split, n in (("train", num_train), ("validation", 8), ("test", 8)):
    paths[split] = str(directory / f"{split}.tsv")
    with open(paths[split], "w") as f:
      for _ in range(n):
        words = rng.sample(COPY_WORDS, 4)
        f.write(f"copy: {' '.join(words)}\t{' '.join(words[:2])}\n")
  return paths


@pytest.fixture(scope="session")
def write_copy_pairs():
  """_write_copy_pairs(directory, num_train=64): the T5-style text-to-text
  splits the pretrained fine-tuning tests train on."""
  return _write_copy_pairs


LORA_QV = (r"encoder/.*/attention/(query|value)",)


def tiny_run_config(files, steps, base="", **overrides):
  """The tiny experiment on text files, a checkpoint every step; with
  `base`, a LoRA run (query/value adapters) on that base workdir."""
  c = tiny.get_config()
  c.update(dataset="text_files", num_train_steps=steps, checkpoint_every=1,
           log_every=1, eval_every=1000, num_eval_examples=8,
           num_decode_examples=0, test_at_end=False, **overrides)
  c.text_files.update(files)
  if base:
    c.lora.base, c.lora.targets = base, LORA_QV
  return c


def train_base_and_lora(files, root, lora_steps: int) -> tuple[str, str]:
  """(base, lora) workdirs under `root`: a plain tiny run of 1 step and a
  LoRA run of `lora_steps` on it."""
  base, lora = str(root / "base"), str(root / "lora")
  trainer.train_and_evaluate(tiny_run_config(files, 1), base)
  trainer.train_and_evaluate(tiny_run_config(files, lora_steps, base), lora)
  return base, lora
