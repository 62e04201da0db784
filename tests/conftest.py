"""Test-wide settings: small compile times on a 2-core CPU, float32 matmuls."""
import os

# Must be set before JAX initialises. Most XLA optimisations only cost compile
# time for the tiny models used in tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402
from num2words import num2words  # noqa: E402

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
