"""Captioned images for the captioners: sources and grain batches.

A source is a sequence of `{'image': uint8 HxWx1, 'caption': str, ...layout}`
read from the captioned_digits TFDS data source (data/captioned_digits.py,
generated into config.data_dir on first use from `config.captions`), with
`image_shape`.

Batches have the translation batches' keys, so the encoder–decoder loss,
decoding and evaluation take them unchanged; only the inputs are images:
  inputs_BxHxWx1    float32 in [0, 1] (uint8 / 255);
  targets_BxT       int32 caption ids + EOS, 0-padded to max_target_length
                    (one shape: the step compiles once);
  example_weight_B  float32, 1 for real rows, 0 for padding rows (and for
                    over-long captions with config.overlong='drop');
  overlong_B        int32, 1 where a caption was cut (counted by the trainer).
"""

import grain
import numpy as np

from encdec_jax.data import captioned_digits
from encdec_jax.data import pipeline
from encdec_jax.data import sources
from encdec_jax.data.tokenizer import Tokenizer

NAME = captioned_digits.CaptionedDigits.name  # 'captioned_digits'


def builder_config(config) -> captioned_digits.CaptionsConfig:
  """config.captions (canvas, digits, noise, sizes) as a checked config."""
  fields = dict(config.get('captions', {}))
  known = set(captioned_digits.CaptionsConfig.__annotations__)
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f'config.captions has unknown fields {unknown}; it '
                     f'takes {sorted(known)}.')
  return captioned_digits.make_config(**fields)


def image_shape(config) -> tuple[int, int, int]:
  """(H, W, 1): the canvas of config.captions."""
  c = builder_config(config)
  return (c.height, c.width, 1)


class CaptionSource:
  """A split of captioned_digits as {'image', 'caption', layout fields}."""

  def __init__(self, data, name: str):
    self._data = data
    self.name = name
    self.image_shape = tuple(data.dataset_info.features['image'].shape)
    self._batched_reads = sources._batched_reads_work(data)

  def __len__(self) -> int:
    return len(self._data)

  @staticmethod
  def _example(raw) -> dict:
    example = {k: np.asarray(v) for k, v in raw.items()
               if k not in ('image', 'caption')}
    example['image'] = np.asarray(raw['image'], np.uint8)
    example['caption'] = sources._text(raw['caption'])
    return example

  def __getitem__(self, index: int) -> dict:
    return self._example(self._data[int(index)])

  def __getitems__(self, indices) -> list[dict]:
    keys = [int(i) for i in indices]
    raws = (self._data.__getitems__(keys) if self._batched_reads
            else [self._data[k] for k in keys])
    return [self._example(r) for r in raws]

  def __repr__(self) -> str:
    return f'CaptionSource({self.name!r}, {len(self)} images {self.image_shape})'


def make_source(config, split: str) -> CaptionSource:
  """The split ('train', 'validation', 'test') of config.captions' dataset."""
  if config.dataset != NAME:
    raise ValueError(f'config.dataset={config.dataset!r} has no captions; '
                     f'task captioning reads {NAME!r}.')
  if split not in captioned_digits.SPLITS:
    raise ValueError(f'split={split!r} is not known; use one of '
                     f'{captioned_digits.SPLITS}.')
  builder = captioned_digits.prepare(builder_config(config), config.data_dir)
  return CaptionSource(builder.as_data_source(split), f'{NAME}/{split}')


def captions(source, max_examples: int = 50_000):
  """The captions of the first examples (the tokenizer's training text)."""
  for example in pipeline.iter_examples(source, max_examples):
    yield example['caption']


def _batch_fn(source, tokenizer: Tokenizer, config, batch_size: int):
  """indices -> a batch: one read, scale images, tokenize and pad captions."""
  shape, max_len = source.image_shape, config.max_target_length

  def make_batch(indices):
    examples = pipeline.read_many(source, indices)
    inputs = np.zeros((batch_size,) + shape, np.float32)
    targets = np.zeros((batch_size, max_len), np.int32)
    overlong = []
    for i, e in enumerate(examples):
      inputs[i] = e['image'] / np.float32(255)
      ids, cut = pipeline.encode_capped(tokenizer, e['caption'], max_len)
      targets[i, :len(ids)] = ids
      overlong.append(cut)
    weight, overlong_B = pipeline.example_weights(overlong, batch_size,
                                                  config.overlong)
    return {'inputs': inputs, 'targets': targets, 'example_weight': weight,
            'overlong': overlong_B}

  return make_batch


def train_dataset(source, tokenizer: Tokenizer, config,
                  seed: int) -> grain.IterDataset:
  """Endless, shuffled, this process's share (pipeline.shuffled_batches)."""
  per_process = pipeline.process_batch_size(config.batch_size)
  return pipeline.shuffled_batches(
      len(source), per_process, seed,
      _batch_fn(source, tokenizer, config, per_process))


def eval_batches(source, tokenizer: Tokenizer, config, batch_size: int,
                 num_examples: int | None = None) -> grain.MapDataset:
  """One ordered pass over (the first `num_examples` of) a split."""
  return pipeline.ordered_batches(
      len(source), batch_size, _batch_fn(source, tokenizer, config,
                                         batch_size), num_examples)
