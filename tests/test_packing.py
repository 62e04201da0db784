"""Encoder–decoder packing (data/packing.py): packed = unpacked, masks,
positions, per-segment shift, and an exactly resumable packed stream."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from encdec_jax.bench import base_small
from encdec_jax.data import packing, tokenizer as tok
from encdec_jax.models import registry
from encdec_jax.models.contract import shift_right
from encdec_jax.nn.transformer import segment_mask
from encdec_jax.tasks import losses
from encdec_jax.train import experiment

L, VOCAB = 16, 50


def _model():
  config = base_small.config(emb_dim=32, qkv_dim=32, mlp_dim=64, num_heads=2,
                             num_encoder_layers=1, num_decoder_layers=1,
                             max_len=L)
  config.max_source_length = config.max_target_length = L
  model = registry.build_model(config.model, VOCAB)
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  return model, params


def _pairs(n=9, seed=0):
  rng = np.random.default_rng(seed)
  return [(rng.integers(3, VOCAB, int(rng.integers(1, 9))),
           rng.integers(3, VOCAB, int(rng.integers(1, 9)))) for _ in range(n)]


def _unpacked(pairs):
  batch = {"inputs": np.zeros((len(pairs), L), np.int32),
           "targets": np.zeros((len(pairs), L), np.int32),
           "example_weight": np.ones((len(pairs),), np.float32)}
  for i, (s, t) in enumerate(pairs):
    batch["inputs"][i, :len(s)] = s
    batch["targets"][i, :len(t)] = t
  return batch


def _token_losses(model, params, batch):
  """Per-token label-smoothed loss BxT (0 at padding)."""
  kwargs, shifted = {}, shift_right(batch["targets"])
  if packing.is_packed(batch):
    kwargs["packing"] = packing.model_packing(batch)
    shifted = packing.shift_right_packed(batch["targets"],
                                         batch["targets_segment_ids"])
  logits = model.apply({"params": params}, batch["inputs"], shifted, **kwargs)
  per_token = jax.vmap(jax.vmap(
      lambda lg, t: losses.cross_entropy_sums(
          lg[None, None], t[None, None], jnp.ones((1, 1)), 0.1)["loss"]))(
              logits, batch["targets"])
  return per_token * losses.token_weights(batch)


def _pair_of_token(batch) -> np.ndarray:
  """BxT: the index of the pair each target token belongs to (-1: pad)."""
  if not packing.is_packed(batch):
    return np.where(batch["targets"] > 0, np.arange(len(batch["targets"]))[
        :, None], -1)
  segments, ids = batch["targets_segment_ids"], iter(batch["example_id"])
  out = np.full(segments.shape, -1)
  for r in range(segments.shape[0]):
    for k in range(1, segments[r].max() + 1):
      out[r][segments[r] == k] = next(ids)
  return out


def _weighted_pair_losses(model, num_pairs):
  def fn(params, batch, pair_BxT, weights_N):
    """sum_i weights_N[i] * (pair i's summed loss), and the losses."""
    per_pair = jax.ops.segment_sum(
        _token_losses(model, params, batch).ravel(),
        jnp.where(pair_BxT < 0, num_pairs, pair_BxT).ravel(), num_pairs + 1)
    return jnp.sum(weights_N * per_pair[:num_pairs]), per_pair[:num_pairs]
  return fn


def test_packed_batch_gives_each_pair_its_unpacked_loss_and_gradient():
  model, params = _model()
  pairs = _pairs()
  n = len(pairs)
  batches = packing.pack_pairs(pairs, 3, L, L, num_bins=3)
  assert sorted(np.concatenate([b["example_id"] for b in batches])) == list(
      range(n))
  assert any(b["targets_segment_ids"].max() > 1 for b in batches)  # packs
  packed = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  unpacked = _unpacked(pairs)
  grad_fn = jax.jit(jax.grad(_weighted_pair_losses(model, n), has_aux=True))
  args = lambda b: (b, _pair_of_token(b))
  # Every pair's loss; the gradient of each of three pairs alone, and of a
  # random combination of all of them.
  rng = np.random.default_rng(0)
  for weights in [np.eye(n)[0], np.eye(n)[4], np.eye(n)[n - 1],
                  rng.normal(size=n)]:
    g_want, want = grad_fn(params, *args(unpacked), jnp.asarray(weights))
    g_got, got = grad_fn(params, *args(packed), jnp.asarray(weights))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, rtol=1e-5, atol=1e-5), g_got, g_want)
  # The training loss (mean per real target token) agrees too.
  loss_fn = jax.jit(losses.seq2seq_loss(model, 0.1))
  (packed_mean, sums), (unpacked_mean, _) = (loss_fn(params, packed),
                                            loss_fn(params, unpacked))
  np.testing.assert_allclose(packed_mean, unpacked_mean, rtol=1e-5)
  assert sums["tokens"] == sum(len(t) for _, t in pairs)


def test_segments_positions_masks_and_shift():
  pairs = _pairs(12, seed=1)
  for batch in packing.pack_pairs(pairs, 4, L, L):
    ids = iter(batch["example_id"])
    for r in range(4):
      for k in range(1, batch["targets_segment_ids"][r].max() + 1):
        source, target = pairs[int(next(ids))]  # the k-th pair of the row
        for key, want in (("inputs", source), ("targets", target)):
          at = batch[f"{key}_segment_ids"][r] == k
          np.testing.assert_array_equal(batch[key][r][at], want)
          np.testing.assert_array_equal(batch[f"{key}_positions"][r][at],
                                        np.arange(len(want)))
        # decoder input: start token, then the pair's own targets
        at = batch["targets_segment_ids"][r] == k
        shifted = np.asarray(packing.shift_right_packed(
            batch["targets"], batch["targets_segment_ids"]))[r][at]
        np.testing.assert_array_equal(shifted, np.r_[0, target[:-1]])
  seg_q = jnp.array([[1, 1, 2, 0]])
  seg_k = jnp.array([[1, 2, 2, 0, 0]])
  np.testing.assert_array_equal(segment_mask(seg_q, seg_k)[0, 0], [
      [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])


def _config(**overrides):
  c = ml_collections.ConfigDict(dict(
      max_source_length=16, max_target_length=16, overlong="truncate",
      bucket_boundaries=(16,), batch_size=4, empty_pairs="skip",
      pack_examples=True, pack_algorithm="first_fit", pack_bins=0))
  c.update(overrides)
  return c


SOURCE = [{"source": f"{i} x" * (i % 4 + 1), "target": "y" * (i % 7 + 1)}
          for i in range(41)] + [{"source": "a", "target": " "}]


@pytest.mark.parametrize("algorithm", ["first_fit", "best_fit"])
def test_resumed_packed_stream_yields_the_same_batches(algorithm):
  config = _config(pack_algorithm=algorithm)
  make = lambda: iter(packing.train_dataset(SOURCE, tok.ByteTokenizer(),
                                            config, seed=3))
  it = make()
  first = [next(it) for _ in range(5)]
  state = json.loads(json.dumps(it.get_state()))
  rest = [next(it) for _ in range(12)]  # past an epoch end
  again = make()
  again.set_state(state)
  for want in rest:
    got = next(again)
    assert got.keys() == want.keys()
    for k in want:
      np.testing.assert_array_equal(got[k], want[k])
  seen = np.concatenate([b["example_id"] for b in first + rest])
  assert 41 not in seen  # the empty pair is skipped
  assert set(range(41)) <= set(seen.tolist())  # every pair, each epoch
  assert first[0]["inputs"].shape == (4, 16)


def test_unknown_algorithm_is_refused():
  with pytest.raises(ValueError, match="pack_algorithm"):
    packing.train_dataset(SOURCE, tok.ByteTokenizer(),
                          _config(pack_algorithm="next_fit"), seed=0)
