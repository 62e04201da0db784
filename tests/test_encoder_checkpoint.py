"""Encoders alone: save, export, load (strict or not) with clear errors."""

import functools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from encdec_jax import checkpoint
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.models import registry
from encdec_jax.models.classifier import EncoderClassifier
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.train.step import TrainState

BYTES = tokenizer_lib.ByteTokenizer()
TINY = dict(emb_dim=32, qkv_dim=32, mlp_dim=64, num_heads=2,
            num_encoder_layers=1, num_decoder_layers=1, max_len=32)


def _config(vocab_size=259, **overrides):
  return registry.transformer_config(dict(TINY, **overrides), vocab_size)


@functools.cache
def _shapes(classifier: bool, config):
  ids_1x8 = jnp.ones((1, 8), jnp.int32)
  if classifier:
    model, args = EncoderClassifier(config, num_classes=3), (ids_1x8,)
  else:
    model, args = EncoderDecoder(config), (ids_1x8, ids_1x8)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), *args))["params"]


def _params(classifier: bool, seed: int, overrides: dict):
  """Distinct random values in the model's layout (faster than a real init)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.standard_normal(s.shape), s.dtype),
      _shapes(classifier, _config(**overrides)))


def _seq2seq(seed=0, **overrides):
  return _params(False, seed, overrides)


def _classifier(seed=1, **overrides):
  return _params(True, seed, overrides)


def _spec(tokenizer=BYTES, **overrides):
  return checkpoint.encoder_spec(_config(tokenizer.vocab_size, **overrides),
                                 tokenizer)


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def _assert_equal(a, b):
  fa, fb = _flat(a), _flat(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    assert fa[k].dtype == fb[k].dtype, k
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), k)


def _saved(tmp_path, name="enc", seed=0, **overrides):
  path = str(tmp_path / name)
  checkpoint.save_encoder(path, _seq2seq(seed, **overrides)["encoder"],
                          _spec(**overrides), BYTES)
  return path


def _load_error(path, strict=True, **model_overrides):
  with pytest.raises(ValueError) as error:
    checkpoint.load_encoder(path, _classifier(**model_overrides),
                            expected_spec=_spec(**model_overrides),
                            strict=strict)
  return str(error.value)


def test_round_trip_into_classifier_is_exact(tmp_path):
  encoder = _seq2seq()["encoder"]
  path = str(tmp_path / "enc")
  checkpoint.save_encoder(path, encoder, _spec(), BYTES)
  assert not os.path.exists(os.path.join(path, "tokenizer.model"))
  into = _classifier()
  params, report = checkpoint.load_encoder(path, into, expected_spec=_spec())
  _assert_equal(params["encoder"], encoder)
  _assert_equal(params["head"], into["head"])
  for new, old in zip(jax.tree.leaves(params), jax.tree.leaves(into)):
    assert new.sharding == old.sharding
  assert len(report.loaded) == len(_flat(encoder))
  assert "encoder/layers_0/mlp/output/kernel" in report.loaded
  assert report.left_at_init == report.ignored == report.differences == ()
  assert isinstance(checkpoint.load_encoder_tokenizer(path),
                    tokenizer_lib.ByteTokenizer)
  logits = EncoderClassifier(_config(), num_classes=3).apply(
      {"params": params}, jnp.ones((2, 8), jnp.int32))
  assert logits.shape == (2, 3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A training run's checkpoints at steps 3 and 7 (different params)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  manager = checkpoint.make_manager(workdir)
  for step, seed in ((3, 10), (7, 11)):
    params = _seq2seq(seed)
    state = TrainState(step=jnp.array(step, jnp.int32), params=params,
                       opt_state=optax.adam(1e-3).init(params))
    checkpoint.save(manager, state, {"position": step},
                    {"model": TINY, "encoder": _spec()})
  manager.wait_until_finished()
  manager.close()
  # Proves the loads below read only `encoder` and `meta`.
  for step in (3, 7):
    for item in ("state", "data"):
      shutil.rmtree(os.path.join(workdir, "checkpoints", str(step), item))
  return workdir


def test_loads_from_workdir_latest_step_without_state(workdir):
  params, report = checkpoint.load_encoder(workdir, _classifier(),
                                           expected_spec=_spec())
  _assert_equal(params["encoder"], _seq2seq(11)["encoder"])
  assert report.source == os.path.join(workdir, "checkpoints", "7")
  assert report.left_at_init == ()


def test_loads_from_step_dir(workdir):
  step_dir = os.path.join(workdir, "checkpoints", "3")
  params, _ = checkpoint.load_encoder(step_dir, _classifier(),
                                      expected_spec=_spec())
  _assert_equal(params["encoder"], _seq2seq(10)["encoder"])


def test_export_encoder_then_load(workdir, tmp_path):
  path = str(tmp_path / "exported")
  assert checkpoint.export_encoder(workdir, path, step=3) == 3
  params, _ = checkpoint.load_encoder(path, _classifier(),
                                      expected_spec=_spec())
  _assert_equal(params["encoder"], _seq2seq(10)["encoder"])


def test_checkpoint_without_encoder_spec_is_refused(tmp_path):
  workdir = str(tmp_path)
  manager = checkpoint.make_manager(workdir, async_save=False)
  params = _seq2seq()
  state = TrainState(jnp.array(1), params, optax.adam(1e-3).init(params))
  checkpoint.save(manager, state, {}, {})
  manager.close()
  with pytest.raises(ValueError, match=r"no meta\['encoder'\]"):
    checkpoint.export_encoder(workdir, str(tmp_path / "out"))
  with pytest.raises(ValueError, match=r"no meta\['encoder'\]"):
    checkpoint.load_encoder(workdir, _classifier(), expected_spec=_spec())


def test_extra_paths_named_capped_with_advice(tmp_path):
  message = _load_error(_saved(tmp_path, num_encoder_layers=2))
  assert ("in the checkpoint but not the model (16): encoder/layers_1/"
          in message)
  assert "and 8 more" in message
  assert "num_encoder_layers checkpoint 2 vs model 1" in message
  assert "in the model but not" not in message
  assert "strict=False" in message and "\n" not in message


def test_missing_paths_named(tmp_path):
  message = _load_error(_saved(tmp_path), num_encoder_layers=2)
  assert ("in the model but not the checkpoint (16): encoder/layers_1/"
          in message)
  assert "in the checkpoint but" not in message


def test_shape_mismatch_names_path_and_both_shapes(tmp_path):
  message = _load_error(_saved(tmp_path), mlp_dim=48)
  assert ("encoder/layers_0/mlp/output/kernel checkpoint (64, 32) vs model "
          "(48, 32)") in message
  assert "mlp_dim checkpoint 64 vs model 48" in message


def test_every_kind_in_one_error(tmp_path):
  message = _load_error(_saved(tmp_path, num_encoder_layers=2), mlp_dim=48)
  assert "in the checkpoint but not the model (16)" in message
  assert "shape (3)" in message


def test_dtype_mismatch(tmp_path):
  message = _load_error(_saved(tmp_path, param_dtype=jnp.bfloat16))
  assert ("encoder/embedder/token_embed/embedding checkpoint bfloat16 vs model"
          " float32") in message
  assert "param_dtype checkpoint 'bfloat16' vs model 'float32'" in message


@pytest.mark.parametrize("field,saved,wanted", [
    ("activation", "relu", "gelu"), ("pre_layernorm", True, False)])
def test_config_mismatch_with_equal_shapes(tmp_path, field, saved, wanted):
  message = _load_error(_saved(tmp_path, **{field: saved}),
                        **{field: wanted})
  assert f"config (1): {field} checkpoint {saved!r} vs model {wanted!r}" in (
      message)
  assert "shape" not in message and "in the model but" not in message


def test_not_strict_loads_what_matches(tmp_path):
  saved = _seq2seq(0)["encoder"]
  path = _saved(tmp_path, seed=0)
  into = _classifier(num_encoder_layers=2)
  params, report = checkpoint.load_encoder(
      path, into, expected_spec=_spec(num_encoder_layers=2), strict=False)
  loaded, kept = _flat(params["encoder"]), _flat(into["encoder"])
  for k, v in _flat(saved).items():
    np.testing.assert_array_equal(loaded[k], v)
  layer_1 = sorted(k for k in kept if k.startswith("layers_1/"))
  for k in layer_1:
    np.testing.assert_array_equal(loaded[k], kept[k])
  assert report.left_at_init == tuple(f"encoder/{k}" for k in layer_1)
  assert len(report.loaded) == len(_flat(saved)) and report.ignored == ()
  assert report.differences[-1] == (
      "config: num_encoder_layers checkpoint 1 vs model 2")
  assert report.differences[0].startswith(
      "in the model but not the checkpoint: encoder/layers_1/")


def test_not_strict_skips_mismatched_shapes(tmp_path):
  path = _saved(tmp_path)
  _, report = checkpoint.load_encoder(path, _classifier(mlp_dim=48),
                                      expected_spec=_spec(mlp_dim=48),
                                      strict=False)
  mlp = tuple(f"encoder/layers_0/mlp/{n}" for n in (
      "intermediate/bias", "intermediate/kernel", "output/kernel"))
  assert report.left_at_init == report.ignored == mlp
  assert "encoder/layers_0/mlp/output/bias" in report.loaded


@pytest.fixture(scope="module")
def sentencepiece():
  texts = [f"{n} plus {n + 1} is {2 * n + 1}" for n in range(300)]
  return tokenizer_lib.train_sentencepiece(texts, vocab_size=40)


def test_sentencepiece_encoder_carries_its_tokenizer(tmp_path, sentencepiece):
  vocab = sentencepiece.vocab_size
  path = str(tmp_path / "enc")
  checkpoint.save_encoder(path, _seq2seq(vocab_size=vocab)["encoder"],
                          _spec(sentencepiece), sentencepiece)
  assert checkpoint.load_encoder_tokenizer(path).model_proto == (
      sentencepiece.model_proto)
  finetune = str(tmp_path / "finetune")
  checkpoint.install_encoder_tokenizer(path, finetune)
  with open(tokenizer_lib.tokenizer_path(finetune), "rb") as f:
    assert f.read() == sentencepiece.model_proto
  # Same size, other vocabulary: an error even when not strict.
  other = dict(_spec(sentencepiece), vocab=dict(
      tokenizer_lib.vocab_record(sentencepiece), sha256="0" * 64))
  with pytest.raises(ValueError, match=f"vocab .*sha256 .* vs model "
                     f"sentencepiece of {vocab} ids sha256 000000000000"):
    checkpoint.load_encoder(path, _classifier(vocab_size=vocab),
                            expected_spec=other, strict=False)


def test_bytes_vs_sentencepiece_vocab(tmp_path, sentencepiece):
  # Only the vocabulary differs.
  spec = checkpoint.encoder_spec(_config(), sentencepiece)
  with pytest.raises(ValueError, match="checkpoint bytes of 259 ids vs model "
                     "sentencepiece of .*encoder's tokenizer"):
    checkpoint.load_encoder(_saved(tmp_path), _classifier(), expected_spec=spec,
                            strict=False)


def test_save_refuses_to_overwrite(tmp_path):
  path = _saved(tmp_path)
  with pytest.raises(ValueError, match="refusing to overwrite"):
    checkpoint.save_encoder(path, _seq2seq()["encoder"], _spec(), BYTES)


def test_not_an_encoder_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpoint.load_encoder(str(tmp_path / "nope"), _classifier(),
                            expected_spec=_spec())
  with pytest.raises(FileNotFoundError, match="no encoder at"):
    checkpoint.load_encoder(str(tmp_path), _classifier(), expected_spec=_spec())
  path = _saved(tmp_path)
  # As if the save had crashed.
  os.remove(os.path.join(path, checkpoint.SPEC_FILE))
  with pytest.raises(FileNotFoundError, match="unfinished"):
    checkpoint.load_encoder(path, _classifier(), expected_spec=_spec())
  os.makedirs(tmp_path / "run" / "checkpoints")
  with pytest.raises(FileNotFoundError, match="no committed checkpoint in"):
    checkpoint.load_encoder(str(tmp_path / "run"), _classifier(),
                            expected_spec=_spec())
