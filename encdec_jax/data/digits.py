"""Real handwritten digits offline: scikit-learn's `load_digits` as a TFDS set.

`load_digits()` ships inside scikit-learn (no network): 1,797 8x8 images of
handwritten digits from the UCI "Optical Recognition of Handwritten Digits"
set, each pixel a count of 0..16 set bits in a 4x4 block of the 32x32 scan.
Pixels are stored as uint8 `value * 255 // 16`, so 0 -> 0 and 16 -> 255 and
images look like any other 8-bit greyscale dataset (divide by 255 for [0, 1]).

Splits are a seeded permutation of the image indices cut by position
(1,197 / 300 / 300): the same images always land in the same split, and the
`id` feature (the index in `load_digits`) shows the splits are disjoint.

Generation needs no TensorFlow: `prepare` writes array_record files that
`tfds.data_source` reads back.
"""
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from encdec_jax.data import pipeline, prepare_once

NAME = 'sklearn_digits'
IMAGE_SHAPE = (8, 8, 1)
SPLIT_SIZES = {'train': 1_197, 'validation': 300, 'test': 300}
SEED = 0


def _load_digits():
  # Imported here: scikit-learn is only needed to generate the dataset.
  from sklearn.datasets import load_digits
  return load_digits()


def scale_pixels(values) -> np.ndarray:
  """load_digits' 0..16 counts -> uint8 0..255 (value * 255 // 16)."""
  return (np.asarray(values, np.int64) * 255 // 16).astype(np.uint8)


def split_ids(num_images: int, seed: int = SEED) -> dict[str, np.ndarray]:
  """{split: indices into load_digits}, a seeded permutation cut by position."""
  if num_images != sum(SPLIT_SIZES.values()):
    raise ValueError(f'load_digits has {num_images} images, expected '
                     f'{sum(SPLIT_SIZES.values())}; check the scikit-learn '
                     'version.')
  order = np.random.default_rng(seed).permutation(num_images)
  ends = np.cumsum(list(SPLIT_SIZES.values()))
  return dict(zip(SPLIT_SIZES, np.split(order, ends[:-1])))


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits, split train/validation/test."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # Keep each split in its seeded order, so example i of a split is the i-th
  # id of split_ids (eases debugging and cross-checks against load_digits).
  disable_shuffling = True

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS' own lookup needs the `importlib_resources` backport, which is not
    # installed on Python >= 3.9; this is the path it would find.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # A plain tensor, not Image: no PNG codec needed to read 64 bytes.
            'image': tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
            'id': np.int64,
        }),
        supervised_keys=('image', 'label'),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    digits = _load_digits()
    images = scale_pixels(digits.images)[..., None]  # Nx8x8x1
    labels = np.asarray(digits.target, np.int64)
    return {split: self._generate_examples(images, labels, ids)
            for split, ids in split_ids(len(labels)).items()}

  def _generate_examples(self, images, labels, ids):
    for i in ids.tolist():
      yield i, {'image': images[i], 'label': labels[i], 'id': i}


def prepare(data_dir: str | os.PathLike | None = None) -> SklearnDigits:
  """Generates the dataset into `data_dir` unless already there; no network.

  Returns the prepared builder (use `.as_data_source(split)` to read it).
  """
  return prepare_once.prepare(lambda: SklearnDigits(data_dir=data_dir))


def load_split_arrays(split: str, data_dir: str | os.PathLike | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(uint8 images_Nx8x8x1, int64 labels_N, int64 ids_N) of a whole split.

  Prepares the dataset first if needed; 1,797 images fit in memory easily.
  """
  if split not in SPLIT_SIZES:
    raise ValueError(f'split={split!r} is not known; use one of '
                     f'{list(SPLIT_SIZES)}.')
  data = prepare(data_dir).as_data_source(split)
  examples = pipeline.read_many(data, range(len(data)))
  images_Nx8x8x1 = np.stack([e['image'] for e in examples]).astype(np.uint8)
  labels_N = np.array([e['label'] for e in examples], np.int64)
  ids_N = np.array([e['id'] for e in examples], np.int64)
  return images_Nx8x8x1, labels_N, ids_N
