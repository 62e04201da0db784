"""Writes the workdir of a tiny run, saved by the code of its day.

tests/test_checkpoint_compat.py resumes, evaluates and decodes it with the
current code, so a change to the checkpoint layout that would strand
existing runs fails a test. Rerun this only on purpose (a deliberate format
change), from the repository root:

  .venv/bin/python tests/data/old_checkpoint/regenerate.py

It keeps the tokenizer, config.json and checkpoints/<STEP> (~0.5 MB).
"""

import os
import shutil
import sys
import tempfile

from num2words import num2words

HERE = os.path.dirname(os.path.abspath(__file__))
WORKDIR = os.path.join(HERE, "workdir")
STEP = 4  # The one checkpoint the fixture holds.
KEPT = ("config.json", "tokenizer.model", "checkpoints")


def write_text_files(directory: str) -> dict:
  """Digits -> English words TSV splits of 200/32/32 numbers."""
  files = {}
  for split, numbers in (("train", range(200)), ("validation", range(200, 232)),
                         ("test", range(232, 264))):
    files[split] = os.path.join(directory, f"{split}.tsv")
    with open(files[split], "w", encoding="utf-8") as f:
      f.writelines(f"{n}\t{num2words(n)}\n" for n in numbers)
  return files


def config(text_files: dict, num_train_steps: int):
  """experiments/tiny.py with a SentencePiece vocabulary (so the workdir
  holds a tokenizer file) and one checkpoint every STEP steps."""
  from experiments import tiny
  c = tiny.get_config()
  c.dataset = "text_files"
  c.text_files.update(text_files)
  c.tokenizer = "sentencepiece"
  c.vocab_size = 48
  c.update(num_train_steps=num_train_steps, checkpoint_every=STEP,
           keep_checkpoints=1, log_every=STEP, eval_every=1000,
           num_eval_examples=32, num_decode_examples=8, test_at_end=False)
  return c


def main() -> None:
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
  from encdec_jax.train import trainer
  with tempfile.TemporaryDirectory() as tmp:
    run = os.path.join(tmp, "run")
    trainer.train_and_evaluate(
        config(write_text_files(tmp), num_train_steps=STEP), run)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    os.makedirs(WORKDIR)
    for name in KEPT:
      source = os.path.join(run, name)
      copy = shutil.copytree if os.path.isdir(source) else shutil.copy2
      copy(source, os.path.join(WORKDIR, name))
  print(f"wrote {WORKDIR}")


if __name__ == "__main__":
  main()
