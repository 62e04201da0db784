r"""An offline English corpus: the Python Language Reference's prose, as it
ships with every Python (the stdlib module pydoc_data.topics, what
`help('if')` prints: 79 topics, ~465,000 characters, ~70,000 words under
Python 3.11), one paragraph a line.

The paragraphs are the topics' blank-line-separated blocks, whitespace
collapsed; blocks with fewer than MIN_WORDS words (headings, rules,
one-line code) are left out. Each paragraph's split is fixed by its text
(the first byte of its sha256: SPLIT_OF), so the splits never share a
paragraph and the same Python gives the same corpus; another Python version
ships somewhat different topics.

  python -m encdec_jax.data.python_docs OUT_DIR   # train/validation/test.txt

writes the splits as text files, one paragraph a line (what
config.dataset=text_files reads).
"""

import hashlib
import os
import re
import sys

import pydoc_data.topics

MIN_WORDS = 6
SPLITS = ("train", "validation", "test")


def split_of(paragraph: str) -> str:
  """~90 % train, ~5 % validation, ~5 % test, by the text's sha256."""
  bucket = hashlib.sha256(paragraph.encode("utf-8")).digest()[0] % 20
  return "validation" if bucket == 0 else "test" if bucket == 1 else "train"


def paragraphs() -> list[str]:
  """Every kept paragraph, in topic order, duplicates dropped."""
  seen, out = set(), []
  for name in sorted(pydoc_data.topics.topics):
    for block in re.split(r"\n\s*\n", pydoc_data.topics.topics[name]):
      text = " ".join(block.split())
      if len(text.split()) >= MIN_WORDS and text not in seen:
        seen.add(text)
        out.append(text)
  return out


def split(name: str) -> list[str]:
  """The paragraphs of split `name` ('train', 'validation' or 'test')."""
  if name not in SPLITS:
    raise ValueError(f"python_docs has no split {name!r}; use one of "
                     f"{SPLITS}.")
  return [p for p in paragraphs() if split_of(p) == name]


def write_splits(out_dir: str) -> dict[str, str]:
  """OUT_DIR/<split>.txt for each split; {split: path}."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for name in SPLITS:
    paths[name] = os.path.join(out_dir, f"{name}.txt")
    with open(paths[name], "w", encoding="utf-8") as f:
      f.writelines(p + "\n" for p in split(name))
  return paths


def main(argv: list[str]) -> int:
  if len(argv) != 2 or argv[1].startswith("-"):
    print("usage: python -m encdec_jax.data.python_docs OUT_DIR",
          file=sys.stderr)
    return 2
  for name, path in write_splits(argv[1]).items():
    with open(path, encoding="utf-8") as f:
      print(f"{name}: {sum(1 for _ in f)} paragraphs -> {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
