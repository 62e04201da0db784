"""Captioned images of real handwritten digits, offline (TFDS, array_record).

Each image is a canvas (default 16x40) holding 1 to 4 of scikit-learn's 8x8
handwritten digits (data/digits.py) at random, non-overlapping places, with
optional background noise; its caption names the digits from left to right:

  [ 7 at x=2,y=5 | 0 at x=13,y=1 | 4 at x=27,y=8 ]  ->  "seven zero four"

Why this grammar needs attention over the image: the digits' count, their
horizontal gaps and their heights all vary, so the t-th word's digit sits at
a different place in every image. A decoder must find "the next digit to the
right of the one just named": look somewhere else for every word, which is
what soft attention over region vectors does (Xu et al. 2015). A single
pooled vector (an autoencoder's bottleneck, the mean region) would have to
hold up to four identities and their order at once; vertical jitter also
rules out reading fixed horizontal slots.

Splits are built from disjoint digit images: a train canvas uses only the
images of sklearn_digits' train split, validation and test likewise
(digits.split_ids), so a test caption is read from handwriting never seen in
training. Each example records its layout: `digit_ids` (indices into
load_digits), `labels`, `xs`, `ys` (top-left corners), all padded with -1 to
max_digits, and `num_digits`, so a test can check caption against pixels.

Generation is numpy only, seeded per split, and needs no TensorFlow: `prepare`
writes array_record files that `tfds.data_source` reads back.
"""
import dataclasses
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from encdec_jax.data import digits, prepare_once

DIGIT_SIDE = digits.IMAGE_SHAPE[0]  # 8: the digits are 8x8.
WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
         'eight', 'nine')
SPLITS = ('train', 'validation', 'test')


@dataclasses.dataclass(eq=False, kw_only=True)
class CaptionsConfig(tfds.core.BuilderConfig):
  """Canvas, digits per image, noise and split sizes."""
  height: int = 16
  width: int = 40
  min_digits: int = 1
  max_digits: int = 4
  min_gap: int = 1  # Columns between neighbours: left-to-right is unambiguous.
  noise: float = 0.1  # Each canvas: |N(0, s)| noise, s ~ U(0, noise), in [0, 1].
  num_train: int = 20_000
  num_validation: int = 1_000
  num_test: int = 1_000
  seed: int = 0

  def check(self) -> None:
    """One clear ValueError for a layout that cannot be drawn."""
    if not 1 <= self.min_digits <= self.max_digits:
      raise ValueError(f'captions: need 1 <= min_digits <= max_digits, got '
                       f'{self.min_digits} and {self.max_digits}.')
    need = self.max_digits * DIGIT_SIDE + (self.max_digits - 1) * self.min_gap
    if self.height < DIGIT_SIDE or self.width < need:
      raise ValueError(
          f'captions: a {self.height}x{self.width} canvas is too small for '
          f'{self.max_digits} digits of {DIGIT_SIDE}x{DIGIT_SIDE} with gaps of '
          f'{self.min_gap}; it needs height >= {DIGIT_SIDE} and width >= '
          f'{need} (raise --config.captions.width or lower max_digits).')
    if not 0.0 <= self.noise <= 1.0:
      raise ValueError(f'captions: noise={self.noise} must be in [0, 1].')
    if min(self.num_train, self.num_validation, self.num_test) < 1:
      raise ValueError('captions: every split needs >= 1 example.')


def make_config(**fields) -> CaptionsConfig:
  """A checked CaptionsConfig named by its fields (one TFDS directory each)."""
  config = CaptionsConfig(name='x', **fields)
  config.check()
  name = '_'.join(f'{f.name}{getattr(config, f.name)}'
                  for f in dataclasses.fields(CaptionsConfig)
                  if f.name in CaptionsConfig.__annotations__)
  return dataclasses.replace(config, name=name.replace('.', 'p'))


def caption(labels) -> str:
  """The caption of digits given left to right."""
  return ' '.join(WORDS[int(label)] for label in labels)


def draw(config: CaptionsConfig, pool_images, pool_labels, pool_ids,
         rng: np.random.Generator) -> dict:
  """One example: uint8 canvas HxWx1 and its layout (see the module doc)."""
  n = int(rng.integers(config.min_digits, config.max_digits + 1))
  picks = rng.integers(0, len(pool_ids), n)
  slack = config.width - n * DIGIT_SIDE - (n - 1) * config.min_gap
  gaps = rng.multinomial(slack, np.full(n + 1, 1.0 / (n + 1)))[:n]
  xs = np.cumsum(gaps) + np.arange(n) * (DIGIT_SIDE + config.min_gap)
  ys = rng.integers(0, config.height - DIGIT_SIDE + 1, n)
  canvas = np.zeros((config.height, config.width), np.float32)
  if config.noise > 0:
    sigma = rng.uniform(0.0, config.noise)
    canvas = np.abs(rng.normal(0.0, sigma, canvas.shape)).astype(np.float32)
  for pick, x, y in zip(picks, xs, ys):
    patch = pool_images[pick, :, :, 0] / np.float32(255)
    window = canvas[y:y + DIGIT_SIDE, x:x + DIGIT_SIDE]
    canvas[y:y + DIGIT_SIDE, x:x + DIGIT_SIDE] = np.maximum(window, patch)
  pad = lambda values: np.concatenate(
      [np.asarray(values, np.int64), np.full(config.max_digits - n, -1)])
  labels = pool_labels[picks]
  return {'image': np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8)[
              ..., None],
          'caption': caption(labels), 'labels': pad(labels),
          'digit_ids': pad(pool_ids[picks]), 'xs': pad(xs), 'ys': pad(ys),
          'num_digits': n}


class CaptionedDigits(tfds.core.GeneratorBasedBuilder):
  """Canvases of 1-4 real handwritten digits, captioned left to right."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [make_config()]
  disable_shuffling = True  # Example i of a split is its i-th draw.

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As digits.py: TFDS' own lookup needs the importlib_resources backport.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    layout = lambda: tfds.features.Tensor(shape=(c.max_digits,),
                                          dtype=np.int64)
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(c.height, c.width, 1),
                                          dtype=np.uint8),
            'caption': tfds.features.Text(),
            'labels': layout(), 'digit_ids': layout(), 'xs': layout(),
            'ys': layout(), 'num_digits': np.int64,
        }),
        supervised_keys=('image', 'caption'),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    c.check()
    loaded = digits._load_digits()
    images = digits.scale_pixels(loaded.images)[..., None]
    labels = np.asarray(loaded.target, np.int64)
    ids = digits.split_ids(len(labels))
    sizes = dict(zip(SPLITS, (c.num_train, c.num_validation, c.num_test)))
    return {split: self._generate_examples(
        images[ids[split]], labels[ids[split]], ids[split], sizes[split],
        np.random.default_rng([c.seed, i]))
            for i, split in enumerate(SPLITS)}

  def _generate_examples(self, images, labels, ids, count, rng):
    for i in range(count):
      yield i, draw(self.builder_config, images, labels, ids, rng)


def prepare(config: CaptionsConfig,
            data_dir: str | os.PathLike | None = None) -> CaptionedDigits:
  """Generates the dataset of `config` into `data_dir` unless already there.

  Returns the prepared builder (`.as_data_source(split)` reads it).
  """
  # TFDS refuses a config object named like a predefined one: pass the name.
  known = {c.name for c in CaptionedDigits.BUILDER_CONFIGS}
  return prepare_once.prepare(lambda: CaptionedDigits(
      config=config.name if config.name in known else config,
      data_dir=data_dir))
