"""Image data for the autoencoders: labelled image sources and grain batches.

A source is a sequence of `{'image': uint8 HxWx1, 'label': int}` read from a
TFDS data source (array_record, no TensorFlow), with `image_shape` and
`num_classes`:
  'sklearn_digits': 8x8 real digits (data/digits.py), generated into
    config.data_dir on first use; train/validation/test as prepared.
  'mnist': 28x28 MNIST, prepared array_record files in config.data_dir.
    MNIST has only train and test, so validation is a fixed slice of train:
    its last sixth (train[50000:], 10,000 images), and train the first
    five sixths. Being a fraction, the cut also fits mocked data.

config.anomaly_class (-1: none) leaves that class out of train and
validation, so an autoencoder never sees it; test keeps every class, so
reconstruction error can be scored as an anomaly detector on it.

Batches are dicts of numpy arrays, shaped like the other tasks' batches so the
trainer's step and metrics need nothing new:
  image_BxHxWx1     float32 in [0, 1] (uint8 / 255);
  label_B           int32 class ids (0 in padding rows);
  example_weight_B  float32, 1 for real rows, 0 for padding rows;
  overlong_B        int32 zeros (images are never cut; the trainer sums it).
"""

import grain
import numpy as np
import tensorflow_datasets as tfds

from encdec_jax.data import digits
from encdec_jax.data import pipeline
from encdec_jax.data import sources

DATASETS = ('sklearn_digits', 'mnist')
SPLITS = ('train', 'validation', 'test')
MNIST_VALIDATION_FRACTION = 1 / 6  # 10,000 of MNIST's 60,000 train images.


class ImageSource:
  """Examples `indices` of a TFDS data source, as {'image', 'label'}."""

  def __init__(self, data, indices, name: str):
    self._data = data
    self._indices = np.asarray(indices, np.int64)
    self.name = name
    features = data.dataset_info.features
    self.image_shape = tuple(features['image'].shape)
    self.num_classes = features['label'].num_classes
    # Mocked sources declare __getitems__ but fail in it; fall back then.
    self._batched_reads = sources._batched_reads_work(data)

  def __len__(self) -> int:
    return len(self._indices)

  @staticmethod
  def _example(raw) -> dict:
    return {'image': np.asarray(raw['image'], np.uint8),
            'label': int(raw['label'])}

  def __getitem__(self, index: int) -> dict:
    return self._example(self._data[int(self._indices[int(index)])])

  def __getitems__(self, indices) -> list[dict]:
    keys = [int(self._indices[int(i)]) for i in indices]
    raws = (self._data.__getitems__(keys) if self._batched_reads
            else [self._data[k] for k in keys])
    return [self._example(r) for r in raws]

  def labels(self) -> np.ndarray:
    """int64 labels_N of every example (one pass over the source)."""
    return np.array([e['label'] for e in pipeline.iter_examples(self)],
                    np.int64)

  def subset(self, positions, name: str) -> 'ImageSource':
    """The examples at `positions` (indices into this source)."""
    return ImageSource(self._data, self._indices[np.asarray(positions)], name)

  def __repr__(self) -> str:
    return f'ImageSource({self.name!r}, {len(self)} images {self.image_shape})'


def _mnist(config, split: str) -> ImageSource:
  tfds_split = 'test' if split == 'test' else 'train'
  try:
    data = tfds.data_source('mnist', split=tfds_split,
                            data_dir=config.data_dir)
  except NotImplementedError as e:  # TFDS' way of saying "no array_record".
    where = config.data_dir or 'the TFDS default data_dir'
    raise sources.DataError(
        f'mnist: no array_record files in {where}; prepare it with '
        "download_and_prepare(file_format='array_record') on a machine with "
        'network and set config.data_dir to that directory') from e
  n = len(data)
  if split == 'test':
    return ImageSource(data, np.arange(n), 'mnist/test')
  first_validation = n - int(round(n * MNIST_VALIDATION_FRACTION))
  if split == 'train':
    return ImageSource(data, np.arange(first_validation), 'mnist/train')
  return ImageSource(data, np.arange(first_validation, n), 'mnist/validation')


def _sklearn_digits(config, split: str) -> ImageSource:
  data = digits.prepare(config.data_dir).as_data_source(split)
  return ImageSource(data, np.arange(len(data)), f'sklearn_digits/{split}')


def make_source(config, split: str) -> ImageSource:
  """The image source for `split` ('train', 'validation', 'test').

  Reads config.dataset (one of DATASETS), data_dir and anomaly_class (-1 or
  absent: none; else that class is left out of train and validation).
  """
  if config.dataset not in DATASETS:
    raise ValueError(f'config.dataset={config.dataset!r} has no images; use '
                     f'one of {DATASETS}.')
  if split not in SPLITS:
    raise ValueError(f'split={split!r} is not known; use one of {SPLITS}.')
  load = _mnist if config.dataset == 'mnist' else _sklearn_digits
  source = load(config, split)
  anomaly = config.get('anomaly_class', -1)
  if not -1 <= anomaly < source.num_classes:
    raise ValueError(f'config.anomaly_class={anomaly} must be -1 (none) or a '
                     f'class id in [0, {source.num_classes}).')
  if anomaly == -1 or split == 'test':
    return source
  return source.subset(np.flatnonzero(source.labels() != anomaly),
                       f'{source.name} without class {anomaly}')


def _batch_fn(source, batch_size: int):
  """indices -> a batch: one read, scale to [0, 1], pad rows with weight 0."""
  shape = source.image_shape

  def make_batch(indices):
    examples = pipeline.read_many(source, indices)
    image_BxHxWxC = np.zeros((batch_size,) + shape, np.float32)
    labels_B = np.zeros((batch_size,), np.int32)
    for i, e in enumerate(examples):
      image_BxHxWxC[i] = e['image'] / np.float32(255)
      labels_B[i] = e['label']
    weight_B, overlong_B = pipeline.example_weights(
        [False] * len(examples), batch_size, 'truncate')
    return {'image': image_BxHxWxC, 'label': labels_B,
            'example_weight': weight_B, 'overlong': overlong_B}

  return make_batch


def train_dataset(source, config, seed: int) -> grain.IterDataset:
  """Endless, shuffled (reshuffled each epoch), this process's share only.

  get_state()/set_state() of its iterator resume exactly (see
  pipeline.shuffled_batches).
  """
  per_process = pipeline.process_batch_size(config.batch_size)
  return pipeline.shuffled_batches(len(source), per_process, seed,
                                   _batch_fn(source, per_process))


def eval_batches(source, config, batch_size: int | None = None,
                 num_examples: int | None = None) -> grain.MapDataset:
  """One ordered pass over (the first `num_examples` of) a split; the last
  batch is padded to batch_size (default config.eval_batch_size) with rows of
  weight 0."""
  batch_size = batch_size or config.eval_batch_size
  return pipeline.ordered_batches(len(source), batch_size,
                                  _batch_fn(source, batch_size), num_examples)
