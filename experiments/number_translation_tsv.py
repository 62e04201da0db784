r"""The main job (English → German numbers) trained from TSV files.

This is how you bring your own parallel text: one `source<TAB>target` pair a
line, one file per split. Here the files are the TFDS dataset exported:

  python -m encdec_jax.data.export number_translation/en_de data/en_de
  python -m encdec_jax.main --config=experiments/number_translation_tsv.py \
      --workdir=runs/en_de_tsv

Result (2026-11-21, 2-core AMD EPYC CPU, float32): 99.95 % test exact match
in 6.3 min, identical to the TFDS run (same data, same order).
"""

from experiments import number_translation


def get_config():
  c = number_translation.get_config()
  c.dataset = "text_files"
  c.text_files.update({"train": "data/en_de/train.tsv",
                       "validation": "data/en_de/validation.tsv",
                       "test": "data/en_de/test.tsv"})
  return c
