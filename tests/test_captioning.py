"""Image captioning: captioned digits (pixels vs captions), the captioner's
two decoders (cached = full pass, attention sums to one, fits a few
examples), encoder init from an autoencoder, and the command line."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from encdec_jax import checkpoint
from encdec_jax import decoding
from encdec_jax.data import captioned_digits as cd
from encdec_jax.data import captions, digits
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models.autoencoder import Autoencoder, AutoencoderConfig
from encdec_jax.models.captioner import Captioner, CaptionerConfig
from encdec_jax.models.contract import init_cache, make_tokens_to_logits, shift_right
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig
from encdec_jax.reports.attention import cross_attention
from encdec_jax.tasks import losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = dict(num_train=64, num_validation=16, num_test=16)
CANVAS = (10, 36, 1)
VOCAB = 13  # 0 pad, 1 EOS, 2 unknown, 3 + digit: one token per word.


def _data_config(data_dir, **captions_fields):
  fields = dict(height=CANVAS[0], width=CANVAS[1], noise=0.0, **SIZES)
  fields.update(captions_fields)
  return ml_collections.ConfigDict(dict(
      dataset="captioned_digits", data_dir=data_dir, captions=fields,
      batch_size=8, max_target_length=8, overlong="truncate"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


# --- the dataset --------------------------------------------------------------


def test_captions_name_the_digits_drawn_where_the_layout_says(data_dir):
  config = _data_config(data_dir)
  ref = load_digits()
  ids_by_split = digits.split_ids(len(ref.target))
  used = {}
  for split in cd.SPLITS:
    source = captions.make_source(config, split)
    assert len(source) == SIZES[f"num_{split}"]
    used[split] = set()
    for e in source.__getitems__(range(len(source))):
      n = int(e["num_digits"])
      labels, ids = e["labels"][:n], e["digit_ids"][:n]
      xs, ys = e["xs"][:n], e["ys"][:n]
      assert 1 <= n <= 4 and (e["labels"][n:] == -1).all()
      np.testing.assert_array_equal(labels, ref.target[ids])
      assert e["caption"] == " ".join(cd.WORDS[d] for d in labels)
      assert (np.diff(xs) >= 8 + 1).all()  # left to right, no overlap
      image = e["image"][..., 0]
      covered = np.zeros_like(image, bool)
      for i, x, y in zip(ids, xs, ys):
        np.testing.assert_array_equal(image[y:y + 8, x:x + 8],
                                      digits.scale_pixels(ref.images[i]))
        covered[y:y + 8, x:x + 8] = True
      assert not image[~covered].any()  # noise=0: nothing else drawn
      used[split] |= set(ids.tolist())
    assert used[split] <= set(ids_by_split[split].tolist())
  assert not used["train"] & used["test"]


def test_noise_and_a_too_small_canvas(data_dir):
  noisy = captions.make_source(_data_config(data_dir, noise=0.2), "test")
  e = noisy[0]
  assert e["image"].any() and e["caption"]
  with pytest.raises(ValueError, match=r"10x30 canvas is too small for 4 "
                     r"digits.*width >= 35"):
    captions.make_source(_data_config(data_dir, width=30), "train")
  with pytest.raises(ValueError, match="unknown fields"):
    captions.builder_config(_data_config(data_dir, colour=True))


def test_batches(data_dir):
  config = _data_config(data_dir)
  source = captions.make_source(config, "train")
  tok = tokenizer_lib.ByteTokenizer()
  batch = next(iter(captions.train_dataset(source, tok, config, seed=0)))
  assert batch["inputs"].shape == (8,) + CANVAS
  assert batch["inputs"].dtype == np.float32 and batch["inputs"].max() <= 1
  assert batch["targets"].shape == (8, 8)
  # Bytes: captions over 7 characters are cut (EOS kept) and counted.
  assert batch["overlong"].any() and (batch["targets"][:, -1] <= 1).all()


# --- the model ----------------------------------------------------------------


def _decoder(family):
  if family == "rnn":
    return RNNConfig(vocab_size=VOCAB, share_embeddings=False,
                     bidirectional=False, emb_dim=8, hidden_dim=16,
                     attention_dim=8)
  return TransformerConfig(vocab_size=VOCAB, share_embeddings=False,
                           emb_dim=16, qkv_dim=16, mlp_dim=32, num_heads=2,
                           num_decoder_layers=2, max_len=16, dropout_rate=0.0,
                           attention_dropout_rate=0.0)


def _model(family, conv_features=(4, 8, 8)):
  return Captioner(CaptionerConfig(decoder=_decoder(family),
                                   image_shape=CANVAS,
                                   conv_features=conv_features))


IMAGES_BxHxWxC = jax.random.uniform(jax.random.key(1), (2,) + CANVAS)
TARGETS_BxT = jnp.array([[5, 9, 4, 1], [7, 1, 0, 0]], jnp.int32)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_cached_decoding_equals_the_full_pass_and_attention_sums_to_one(
    family):
  model = _model(family)
  params = model.init(jax.random.key(0), IMAGES_BxHxWxC,
                      shift_right(TARGETS_BxT))["params"]
  assert sorted(params) == ["decoder", "encoder"]
  assert sorted(params["encoder"]) == ["convs_0", "convs_1", "convs_2"]
  full_BxTxV, state = model.apply({"params": params}, IMAGES_BxHxWxC,
                                  shift_right(TARGETS_BxT),
                                  mutable=["intermediates"])
  weights_BxTxN = cross_attention(state["intermediates"])
  assert weights_BxTxN.shape == (2, 4, 3 * 9)  # 10x36 -> 3x9 regions
  np.testing.assert_allclose(weights_BxTxN.sum(-1), 1.0, atol=1e-5)

  encoded = model.apply({"params": params}, IMAGES_BxHxWxC, method="encode")
  assert encoded.hidden_BxSxD.shape == (2, 27, 8) and encoded.mask_BxS.all()
  cache = init_cache(model, 2, 4, CANVAS, jnp.float32)
  step = make_tokens_to_logits(model, params, encoded)
  inputs_BxT = shift_right(TARGETS_BxT)
  for t in range(4):
    logits_BxV, cache = step(inputs_BxT[:, t:t + 1], cache)
    np.testing.assert_allclose(logits_BxV, full_BxTxV[:, t], atol=1e-5)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_fits_a_handful_of_captions(data_dir, family):
  source = captions.make_source(_data_config(data_dir), "train")
  examples = source.__getitems__(range(6))
  images = jnp.asarray(np.stack([e["image"] for e in examples]) / 255.0,
                       jnp.float32)
  targets = np.zeros((6, 6), np.int32)  # one token per digit word, then EOS
  for i, e in enumerate(examples):
    n = int(e["num_digits"])
    targets[i, :n + 1] = list(e["labels"][:n] + 3) + [1]
  batch = {"inputs": images, "targets": jnp.asarray(targets),
           "example_weight": jnp.ones(6)}
  model = _model(family)
  params = model.init(jax.random.key(0), images,
                      shift_right(batch["targets"]))["params"]
  loss_fn = losses.seq2seq_loss(model, 0.0)
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  first = None
  for _ in range(150):
    params, opt_state, loss = train_step(params, opt_state)
    first = loss if first is None else first
  assert loss < 0.1 * first
  encoded = model.apply({"params": params}, images, method="encode")
  tokens_BxT = decoding.greedy_decode(
      make_tokens_to_logits(model, params, encoded),
      init_cache(model, 6, 6, CANVAS, jnp.float32), 6, 6, 1)
  np.testing.assert_array_equal(np.asarray(tokens_BxT), targets)


# --- encoder init from an autoencoder -----------------------------------------


def _save_autoencoder(path, family="conv", conv_features=(4, 8, 8)):
  cfg = AutoencoderConfig(family=family, image_shape=(8, 8, 1),
                          conv_features=conv_features, hidden_dims=(16,),
                          bottleneck_dim=4)
  params = Autoencoder(cfg).init(jax.random.key(3),
                                 jnp.zeros((1, 8, 8, 1)))["params"]
  checkpoint.save_encoder(str(path), params["encoder"],
                          checkpoint.encoder_spec(cfg, None), None)
  return params


def _captioner_params(conv_features=(4, 8, 8)):
  model = _model("rnn", conv_features)
  params = model.init(jax.random.key(0), IMAGES_BxHxWxC,
                      shift_right(TARGETS_BxT))["params"]
  return params, checkpoint.encoder_spec(model.config, None)


def test_encoder_loads_bit_exactly_from_a_conv_autoencoder(tmp_path):
  ae = _save_autoencoder(tmp_path / "ae")
  params, spec = _captioner_params()
  loaded, report = checkpoint.load_encoder(str(tmp_path / "ae"), into=params,
                                           expected_spec=spec)  # strict
  for name in ("convs_0", "convs_1", "convs_2"):
    for leaf in ("kernel", "bias"):
      np.testing.assert_array_equal(loaded["encoder"][name][leaf],
                                    ae["encoder"][name][leaf])
  assert set(report.ignored) == {"encoder/bottleneck/kernel",
                                 "encoder/bottleneck/bias"}
  assert not report.left_at_init and not report.differences
  jax.tree.map(np.testing.assert_array_equal, loaded["decoder"],
               params["decoder"])


def test_encoder_init_refuses_other_encoders(tmp_path):
  _save_autoencoder(tmp_path / "wide", conv_features=(4, 16, 8))
  _save_autoencoder(tmp_path / "mlp", family="mlp")
  params, spec = _captioner_params()
  with pytest.raises(ValueError, match=r"conv_features checkpoint \[4, 16, 8\]"
                     r" vs model \[4, 8, 8\]"):
    checkpoint.load_encoder(str(tmp_path / "wide"), into=params,
                            expected_spec=spec)
  with pytest.raises(ValueError, match="MLP autoencoder's, which has no "
                     "region grid, not a conv image encoder"):
    checkpoint.load_encoder(str(tmp_path / "mlp"), into=params,
                            expected_spec=spec)
  text = RNNConfig(vocab_size=259, emb_dim=8, hidden_dim=8)
  checkpoint.save_encoder(str(tmp_path / "text"), {"token_embed": {
      "embedding": np.zeros((259, 8), np.float32)}},
      checkpoint.encoder_spec(text, tokenizer_lib.ByteTokenizer()),
      tokenizer_lib.ByteTokenizer())
  with pytest.raises(ValueError, match="is a rnn text encoder, not a conv "
                     "image encoder"):
    checkpoint.load_encoder(str(tmp_path / "text"), into=params,
                            expected_spec=spec)


# --- the command line ---------------------------------------------------------


def _main(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "encdec_jax.main",
       "--config=experiments/tiny.py:captioning", *args], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=600)


def test_cli_trains_and_evaluates_a_tiny_captioner(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  run = _main(f"--workdir={workdir}", f"--config.data_dir={data_dir}",
              "--config.num_train_steps=4", "--config.eval_every=100",
              "--config.checkpoint_every=4", "--config.log_every=2")
  assert run.returncode == 0, run.stderr[-3000:]
  assert "[test @ step 4" in run.stdout and "exact match" in run.stdout
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["test"]["num_decoded"] == 32
  assert {"exact_match", "bleu", "chrf"} <= set(results["test"])
  bad = _main(f"--workdir={tmp_path / 'bad'}", f"--config.data_dir={data_dir}",
              "--config.captions.width=30")
  assert bad.returncode == 1 and "Traceback" not in bad.stderr
  assert "error: captions: a 10x30 canvas is too small" in bad.stderr
