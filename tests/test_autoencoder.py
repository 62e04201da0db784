"""Autoencoders of real digits: data, batches, models, training, anomalies."""

import re
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits
import tensorflow_datasets as tfds

from encdec_jax import checkpoint
from encdec_jax.data import digits
from encdec_jax.data import images
from encdec_jax.models.autoencoder import Autoencoder, AutoencoderConfig
from encdec_jax.tasks import autoencoder as reconstruction
from encdec_jax.tasks import evaluation

ANOMALY = 0  # Held out of training in the trained-model fixture.


def _config(data_dir, **overrides):
  c = ml_collections.ConfigDict(dict(
      dataset='sklearn_digits', data_dir=data_dir, anomaly_class=-1,
      batch_size=32, eval_batch_size=64))
  c.update(overrides)
  return c


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('tfds'))
  digits.prepare(path)
  return path


# --- (a) the dataset ----------------------------------------------------------


def test_splits_are_disjoint_real_digits(data_dir):
  ref = load_digits()
  seen = []
  for split, size in digits.SPLIT_SIZES.items():
    images_Nx8x8x1, labels_N, ids_N = digits.load_split_arrays(split, data_dir)
    assert images_Nx8x8x1.shape == (size, 8, 8, 1)
    assert images_Nx8x8x1.dtype == np.uint8 and len(labels_N) == len(ids_N)
    want = (ref.images[ids_N] * 255 // 16).astype(np.uint8)
    np.testing.assert_array_equal(images_Nx8x8x1[..., 0], want)
    np.testing.assert_array_equal(labels_N, ref.target[ids_N])
    seen.append(ids_N)
    raw = tfds.data_source('sklearn_digits', split=split, data_dir=data_dir)
    assert len(raw) == size
  all_ids = np.concatenate(seen)  # Disjoint and covering every image.
  assert sorted(all_ids.tolist()) == list(range(1797))


# --- (b) image sources and batches --------------------------------------------


def test_train_and_eval_batches(data_dir):
  config = _config(data_dir)
  source = images.make_source(config, 'train')
  assert len(source) == 1197 and source.image_shape == (8, 8, 1)
  batch = next(iter(images.train_dataset(source, config, seed=0)))
  assert batch['image'].shape == (32, 8, 8, 1)
  assert batch['image'].dtype == batch['example_weight'].dtype == np.float32
  assert 0.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  assert batch['image'].max() == 1.0  # 16/16 scales to exactly 255 -> 1.
  assert batch['label'].dtype == batch['overlong'].dtype == np.int32
  assert not batch['overlong'].any() and batch['example_weight'].all()
  test = images.make_source(config, 'test')
  batches = list(images.eval_batches(test, config, config.eval_batch_size))
  assert [b['image'].shape[0] for b in batches] == [64] * 5
  assert sum(b['example_weight'].sum() for b in batches) == 300
  last = batches[-1]  # 300 = 4 * 64 + 44: 44 real rows, then padding.
  np.testing.assert_array_equal(last['example_weight'], np.arange(64) < 44)
  assert not last['image'][44:].any()
  few = list(images.eval_batches(test, config, 16, num_examples=20))
  assert len(few) == 2 and few[1]['example_weight'].sum() == 4
  want, _, _ = digits.load_split_arrays('test', data_dir)
  np.testing.assert_allclose(batches[0]['image'], want[:64] / 255, rtol=1e-6)


def test_anomaly_class_only_in_test(data_dir):
  config = _config(data_dir, anomaly_class=3)
  for split, held_out in (('train', False), ('validation', False),
                          ('test', True)):
    source = images.make_source(config, split)
    _, all_labels, _ = digits.load_split_arrays(split, data_dir)
    assert (3 in source.labels()) == held_out
    kept = all_labels if held_out else all_labels[all_labels != 3]
    assert len(source) == len(kept)
  train = images.make_source(config, 'train')
  for _, batch in zip(range(20), images.train_dataset(train, config, seed=1)):
    assert 3 not in batch['label']
  with pytest.raises(ValueError, match='config.anomaly_class'):
    images.make_source(_config(data_dir, anomaly_class=10), 'train')
  with pytest.raises(ValueError, match='config.dataset'):
    images.make_source(_config(data_dir, dataset='cifar10'), 'train')


def test_train_dataset_resumes_exactly(data_dir):
  config = _config(data_dir)
  source = images.make_source(config, 'train')
  it = iter(images.train_dataset(source, config, seed=7))
  for _ in range(45):  # past an epoch end (1197 / 32 = 37.4 batches)
    next(it)
  state = it.get_state()
  want = next(it)
  resumed = iter(images.train_dataset(source, config, seed=7))
  resumed.set_state(state)
  jax.tree.map(np.testing.assert_array_equal, next(resumed), want)
  other = next(iter(images.train_dataset(source, config, seed=8)))
  assert not np.array_equal(other['label'], want['label'])


# --- (c) mnist through mock data ----------------------------------------------


def test_mnist_mocked(tmp_path):
  config = _config(str(tmp_path), dataset='mnist', batch_size=4,
                   eval_batch_size=8)
  with tfds.testing.mock_data(num_examples=24):
    sizes = [len(images.make_source(config, s))
             for s in ('train', 'validation')]
    assert sizes == [20, 4]  # Validation is the last sixth of mnist's train.
    test = images.make_source(config, 'test')
    batch = next(iter(images.eval_batches(test, config, 8)))
    assert batch['image'].shape == (8, 28, 28, 1)
    assert 0 <= batch['image'].min() and batch['image'].max() <= 1
    train = images.make_source(config, 'train')
    batch = next(iter(images.train_dataset(train, config, seed=0)))
    assert batch['image'].shape == (4, 28, 28, 1)
    held_out = int(batch['label'][0])
    cut = images.make_source(_config(str(tmp_path), dataset='mnist',
                                     anomaly_class=held_out), 'train')
    assert held_out not in cut.labels() and len(cut) < len(train)


# --- (d) models ---------------------------------------------------------------


@pytest.mark.parametrize('family,side,conv_features', [
    ('mlp', 8, (16, 32)), ('mlp', 28, (16, 32)), ('conv', 8, (16, 32)),
    ('conv', 28, (16, 32)), ('conv', 28, (8, 8, 8)), ('conv', 7, (4, 4, 4))])
def test_model_shapes(family, side, conv_features):
  cfg = AutoencoderConfig(family=family, image_shape=(side, side, 1),
                          hidden_dims=(32,), conv_features=conv_features,
                          bottleneck_dim=6)
  model = Autoencoder(cfg)
  x = jnp.linspace(0, 1, 3 * side * side).reshape(3, side, side, 1)
  params = model.init(jax.random.key(0), x)['params']
  assert set(params) == {'encoder', 'decoder'}
  z = model.apply({'params': params}, x, method='encode')
  logits = model.apply({'params': params}, z, method='decode')
  assert z.shape == (3, 6)
  assert logits.shape == x.shape and logits.dtype == jnp.float32
  np.testing.assert_allclose(model.apply({'params': params}, x), logits,
                             rtol=1e-6, atol=1e-6)
  if family == 'conv':
    grid = model.apply({'params': params}, x, method='features')
    assert grid.shape == (3,) + cfg.grid_shape()
    want_side = {(8, 2): 4, (28, 2): 14, (28, 3): 7, (7, 3): 2}
    assert cfg.grid_shape()[0] == want_side[side, len(conv_features)]


# --- (e, f) learning and anomaly scores ---------------------------------------


@pytest.fixture(scope='module')
def trained(data_dir):
  """A tiny MLP autoencoder trained 300 steps without class ANOMALY."""
  config = _config(data_dir, anomaly_class=ANOMALY, batch_size=64)
  cfg = AutoencoderConfig(family='mlp', hidden_dims=(128,), bottleneck_dim=16)
  model = Autoencoder(cfg)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  tx = optax.adam(3e-3)
  loss_fn = reconstruction.reconstruction_loss(model)

  @jax.jit
  def train_step(params, opt_state, batch):
    grads, sums = jax.grad(lambda p: loss_fn(p, batch), has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, sums

  start, opt_state = time.perf_counter(), tx.init(params)
  train = images.make_source(config, 'train')
  it = iter(images.train_dataset(train, config, seed=0))
  for _ in range(300):
    params, opt_state, sums = train_step(params, opt_state, next(it))
  jax.block_until_ready(params)
  return dict(model=model, params=params, config=config, sums=sums,
              seconds=time.perf_counter() - start)


def test_learns_below_mean_image_baseline(trained):
  config, model, params = trained['config'], trained['model'], trained['params']
  valid = images.make_source(config, 'validation')
  batches = list(images.eval_batches(valid, config, 64))
  mse = reconstruction.reconstruction_error(model, params, batches)
  valid_images = np.concatenate([b['image'][b['example_weight'] > 0]
                                 for b in batches])
  # Predicting validation's own mean image: a baseline hard to beat by luck.
  baseline = float(np.mean((valid_images - valid_images.mean(0)) ** 2))
  print(f'trained in {trained["seconds"]:.1f}s: validation MSE {mse:.4f}, '
        f'mean-image baseline {baseline:.4f}')
  assert mse < 0.5 * baseline
  # The sums summarize as per-pixel means, as the trainer reports them.
  summary = evaluation.summarize(jax.device_get(trained['sums']))
  assert 'accuracy' not in summary and 0 < summary['nll'] < summary['loss']
  assert float(trained['sums']['tokens']) == 64 * 64


def test_loss_sums_skip_padding():
  model = Autoencoder(AutoencoderConfig(hidden_dims=(8,), bottleneck_dim=2))
  x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
  params = model.init(jax.random.key(1), x)['params']
  loss_fn = reconstruction.reconstruction_loss(model)
  weight = np.array([1, 1, 0, 0], np.float32)
  _, sums = loss_fn(params, {'image': x, 'example_weight': weight})
  _, half = loss_fn(params, {'image': x[:2], 'example_weight': weight[:2]})
  assert float(sums['tokens']) == 2 * 64 and 'correct' not in sums
  np.testing.assert_allclose(sums['loss'], half['loss'], rtol=1e-5)
  np.testing.assert_allclose(sums['nll'], half['nll'], rtol=1e-5)


def test_anomaly_auc_helper():
  labels = np.array([0, 1, 2, 0, 1, 2])
  assert reconstruction.anomaly_auc([9, 1, 2, 8, 3, 1], labels, 0) == 1.0
  assert reconstruction.anomaly_auc([0, 1, 2, 0, 3, 1], labels, 0) == 0.0
  assert reconstruction.anomaly_auc(np.ones(6), labels, 2) == 0.5
  with pytest.raises(ValueError, match='needs both'):
    reconstruction.anomaly_auc(np.ones(6), labels, 5)


def test_anomaly_auc_of_trained_model(trained):
  config = trained['config']
  test = images.make_source(config, 'test')
  scores, labels = reconstruction.anomaly_scores(
      trained['model'], trained['params'],
      images.eval_batches(test, config, 64))
  assert scores.shape == labels.shape == (300,)
  _, want_labels, _ = digits.load_split_arrays('test', config.data_dir)
  np.testing.assert_array_equal(labels, want_labels)
  auc = reconstruction.anomaly_auc(scores, labels, ANOMALY)
  print(f'anomaly AUC (class {ANOMALY} held out): {auc:.3f}')
  # Scores by hand: each test image's mean squared reconstruction error.
  want_images, _, _ = digits.load_split_arrays('test', config.data_dir)
  x = want_images.astype(np.float32) / 255
  recon = jax.nn.sigmoid(trained['model'].apply({'params': trained['params']},
                                                x))
  np.testing.assert_allclose(
      scores, np.mean((np.asarray(recon) - x) ** 2, axis=(1, 2, 3)),
      rtol=1e-5, atol=1e-7)
  # AUC by hand: P(an anomaly scores above a normal image), ties count 1/2.
  pos, neg = scores[labels == ANOMALY], scores[labels != ANOMALY]
  greater = (pos[:, None] > neg[None, :]).mean()
  ties = (pos[:, None] == neg[None, :]).mean()
  assert auc == pytest.approx(greater + 0.5 * ties, abs=1e-9)
  # The held-out class is reconstructed worse (0.93 measured; chance is 0.5).
  assert auc > 0.8


# --- (g) saving the encoder ---------------------------------------------------


def test_encoder_saves_and_loads_bit_exactly(tmp_path):
  cfg = AutoencoderConfig(family='conv', conv_features=(4, 8),
                          bottleneck_dim=4)
  model = Autoencoder(cfg)
  x = jnp.zeros((1, 8, 8, 1))
  params = model.init(jax.random.key(0), x)['params']
  spec = checkpoint.encoder_spec(cfg, None)  # images: no tokenizer
  assert spec['config'] == cfg.encoder_fields()
  checkpoint.save_encoder(str(tmp_path / 'enc'), params['encoder'],
                          spec, None)
  fresh = model.init(jax.random.key(1), x)['params']
  loaded, report = checkpoint.load_encoder(
      str(tmp_path / 'enc'), fresh, expected_spec=spec, strict=True)
  assert not report.left_at_init and not report.differences
  same = lambda a, b: a.dtype == b.dtype and np.array_equal(a, b)
  assert all(jax.tree.leaves(jax.tree.map(same, loaded['encoder'],
                                          params['encoder'])))
  assert all(jax.tree.leaves(jax.tree.map(same, loaded['decoder'],
                                          fresh['decoder'])))  # untouched
  other = cfg.replace(bottleneck_dim=5)
  into = Autoencoder(other).init(jax.random.key(0), x)['params']
  with pytest.raises(ValueError, match='bottleneck_dim'):
    checkpoint.load_encoder(
        str(tmp_path / 'enc'), into,
        expected_spec=checkpoint.encoder_spec(other, None))


# --- (h) config errors --------------------------------------------------------


@pytest.mark.parametrize('changes,message', [
    pytest.param(dict(family='rnn'),
                 "family='rnn' is not known; use one of ('mlp', 'conv').",
                 id='family'),
    pytest.param(dict(bottleneck_dim=0),
                 'bottleneck_dim must be positive, got 0; use e.g. 16 or 32.',
                 id='bottleneck_dim_0'),
    pytest.param(dict(bottleneck_dim=-3),
                 'bottleneck_dim must be positive, got -3; use e.g. 16 or 32.',
                 id='bottleneck_dim_negative'),
    pytest.param(dict(image_shape=(8, 8)),
                 'image_shape=(8, 8) must be 3 positive sizes (H, W, C), e.g. '
                 '(8, 8, 1).', id='image_shape'),
    pytest.param(dict(hidden_dims=()),
                 "hidden_dims=() must be one or more positive sizes for family "
                 "'mlp', e.g. (256, 128) or (16, 32).", id='hidden_dims'),
    pytest.param(dict(family='conv', conv_features=(16, 0)),
                 "conv_features=(16, 0) must be one or more positive sizes for "
                 "family 'conv', e.g. (256, 128) or (16, 32).",
                 id='conv_features')])
def test_config_error_messages(changes, message):
  """The whole message, as docs/errors.md lists it."""
  with pytest.raises(ValueError, match=f'^{re.escape(message)}$'):
    AutoencoderConfig(**changes)
  fields = AutoencoderConfig(family='conv', image_shape=[28, 28, 1],
                             conv_features=[8, 16]).encoder_fields()
  assert fields == {'family': 'autoencoder_conv', 'image_shape': [28, 28, 1],
                    'conv_features': [8, 16], 'bottleneck_dim': 32,
                    'param_dtype': 'float32'}
