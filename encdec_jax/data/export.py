r"""Writes a dataset's splits as TSV files (source<TAB>target, UTF-8).

  python -m encdec_jax.data.export number_translation/en_de data/en_de

gives data/en_de/{train,validation,test}.tsv: the format of the user
text-file source, so any TFDS dataset here can be edited or mixed with one's
own data and trained with `--config.dataset=text_files`.
"""

import os
import sys

import ml_collections

from encdec_jax.data import pipeline, sources

SPLITS = ("train", "validation", "test")


def export_tsv(dataset: str, out_dir: str, source_lang: str = "source",
               target_lang: str = "target",
               data_dir: str | None = None) -> dict[str, str]:
  config = ml_collections.ConfigDict(dict(
      dataset=dataset, data_dir=data_dir, source_lang=source_lang,
      target_lang=target_lang))
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for split in SPLITS:
    source = sources.make_source(config, split)
    paths[split] = os.path.join(out_dir, f"{split}.tsv")
    # Written whole or not at all: a killed export must not leave a file
    # that looks complete and trains on part of the split.
    tmp = paths[split] + ".tmp"
    try:
      with open(tmp, "w", encoding="utf-8") as f:
        for ex in pipeline.iter_examples(source):
          if any(c in ex["source"] + ex["target"] for c in "\t\n\r"):
            raise ValueError(f"{dataset}/{split}: a pair contains a TAB or "
                             "line break; TSV cannot hold it, use JSONL.")
          f.write(f"{ex['source']}\t{ex['target']}\n")
    except BaseException:
      os.remove(tmp)
      raise
    os.replace(tmp, paths[split])
  return paths


def main(argv: list[str]) -> None:
  if len(argv) not in (3, 5):
    raise SystemExit("usage: python -m encdec_jax.data.export DATASET OUT_DIR "
                     "[SOURCE_LANG TARGET_LANG]")
  for split, path in export_tsv(*argv[1:]).items():
    print(f"{split}: {path}")


if __name__ == "__main__":
  main(sys.argv)
