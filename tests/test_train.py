"""End to end on a tiny task: learning, checkpoints, resume, eval and decode."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from num2words import num2words

from encdec_jax import checkpoint
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, inference, trainer
from experiments import tiny


def _write_tsv(path, numbers):
  with open(path, "w", encoding="utf-8") as f:
    for n in numbers:
      f.write(f"{n}\t{num2words(n)}\n")


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(0)
  numbers = rng.permutation(1000)
  files = {}
  for split, part in (("train", numbers[:900]), ("validation", numbers[900:950]),
                      ("test", numbers[950:])):
    files[split] = str(d / f"{split}.tsv")
    _write_tsv(files[split], part)
  return files


def _config(text_files, **overrides):
  c = tiny.get_config()
  c.dataset = "text_files"
  c.text_files.update(text_files)
  c.update(overrides)
  return c


def _metrics(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


def test_tiny_model_learns_tiny_task(text_files, tmp_path):
  config = _config(text_files, num_train_steps=300, learning_rate=3e-3,
                   warmup_steps=30, eval_every=150, log_every=50,
                   checkpoint_every=300, batch_size=32)
  config.model.update(emb_dim=64, qkv_dim=64, mlp_dim=128,
                      num_encoder_layers=2, num_decoder_layers=2)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  train = _metrics(str(tmp_path), "train")
  assert train[-1]["loss"] < 0.5 * train[0]["loss"]
  val = _metrics(str(tmp_path), "validation")
  assert val[-1]["exact_match"] > val[0]["exact_match"]
  assert results["test"]["chrf"] > 50
  assert os.listdir(tmp_path / "tensorboard")


def test_checkpoint_round_trip(text_files, tmp_path):
  workdir = str(tmp_path)
  config = _config(text_files, num_train_steps=10, checkpoint_every=5,
                   eval_every=100, test_at_end=False)
  trainer.train_and_evaluate(config, workdir)
  manager = checkpoint.make_manager(workdir)
  assert manager.all_steps() == [5, 10]
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  params, step = checkpoint.restore_params(manager,
                                           experiment.abstract_params(exp))
  assert step == 10 and set(params) == {"encoder", "decoder"}
  # The encoder item restores alone, equal to the state's encoder.
  encoder = manager.restore(10, args=ocp.args.Composite(
      encoder=ocp.args.StandardRestore(params["encoder"])))["encoder"]
  for a, b in zip(jax.tree.leaves(encoder), jax.tree.leaves(params["encoder"])):
    np.testing.assert_array_equal(a, b)


def test_eval_and_decode_modes(text_files, tmp_path):
  workdir = str(tmp_path)
  config = _config(text_files, num_train_steps=5, eval_every=100,
                   test_at_end=False)
  trainer.train_and_evaluate(config, workdir)
  results = inference.evaluate_checkpoint(config, workdir)
  assert set(results) == {"validation", "test"}
  assert results["test"]["num_decoded"] == 50
  src = tmp_path / "in.txt"
  src.write_text("12\n345\n\n7\n", encoding="utf-8")
  out = tmp_path / "out.txt"
  inference.decode_file(config, workdir, str(src), str(out))
  assert len(out.read_text(encoding="utf-8").splitlines()) == 4
  with pytest.raises(FileNotFoundError, match="no such file"):
    inference.decode_file(config, workdir, str(tmp_path / "nope.txt"), "-")

  # The same file with beam search and with sampling (reproducible by seed).
  lines = ["12", "345", "7"]
  config.decode.update(algorithm="beam", beam_size=3)
  assert len(inference.decode_lines(config, workdir, lines)) == 3
  config.decode.update(algorithm="sample", temperature=1.0, seed=3)
  first = inference.decode_lines(config, workdir, lines)
  assert inference.decode_lines(config, workdir, lines) == first
  config.decode.update(algorithm="sample", top_k=1)
  config_greedy = _config(text_files)
  assert (inference.decode_lines(config, workdir, lines) ==
          inference.decode_lines(config_greedy, workdir, lines))
  config.decode.algorithm = "nucleus"
  with pytest.raises(ValueError, match="decode.algorithm='nucleus' is not "
                     "known"):
    inference.decode_lines(config, workdir, lines)


def test_eval_without_a_trained_workdir_is_a_clear_error(text_files, tmp_path):
  config = _config(text_files, tokenizer="sentencepiece")
  with pytest.raises(FileNotFoundError, match="train first"):
    inference.evaluate_checkpoint(config, str(tmp_path))


def test_resume_with_a_different_model_is_refused_by_name(text_files, tmp_path):
  config = _config(text_files, num_train_steps=5, eval_every=100,
                   test_at_end=False)
  trainer.train_and_evaluate(config, str(tmp_path))
  wider = _config(text_files, num_train_steps=10, eval_every=100,
                  test_at_end=False)
  wider.model.emb_dim = 48
  with pytest.raises(ValueError, match=r"model\.emb_dim: checkpoint 32 vs "
                     r"config 48.*new --workdir"):
    trainer.train_and_evaluate(wider, str(tmp_path))
  assert checkpoint.make_manager(str(tmp_path)).all_steps() == [5]


def test_a_bfloat16_run_resumes_and_decodes_in_float32(text_files, tmp_path):
  """The compute dtype is not part of what a checkpoint must agree on: the
  params stay float32, so a bfloat16 run decodes (and resumes) in float32
  and back."""
  config = _config(text_files, num_train_steps=2, eval_every=100,
                   test_at_end=False)
  config.model.dtype = "bfloat16"
  trainer.train_and_evaluate(config, str(tmp_path))
  lines = ["12", "345", "7"]
  as_trained = inference.decode_lines(config, str(tmp_path), lines)
  config.model.dtype = "float32"
  assert len(inference.decode_lines(config, str(tmp_path), lines)) == 3
  config.num_train_steps = 3
  assert trainer.train_and_evaluate(config, str(tmp_path))["step"] == 3
  config.model.dtype = "bfloat16"
  assert inference.decode_lines(config, str(tmp_path), lines) != [""] * 3
  assert len(as_trained) == 3


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_fused_smoothed_loss_equals_optax_on_one_hot_targets(label_smoothing):
  import jax.numpy as jnp
  import optax
  key = jax.random.key(0)
  logits = 3 * jax.random.normal(key, (4, 7, 50))
  targets = jax.random.randint(key, (4, 7), 0, 50)
  weights = (jnp.arange(7) < 5).astype(jnp.float32)[None].repeat(4, 0)
  sums = losses.cross_entropy_sums(logits, targets, weights,
                                     label_smoothing)
  vocab, conf = 50, 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  floor = -(conf * np.log(conf) + (vocab - 1) * low * np.log(low + 1e-20))
  soft = optax.smooth_labels(jax.nn.one_hot(targets, vocab),
                             label_smoothing * vocab / (vocab - 1))
  expected = optax.softmax_cross_entropy(logits, soft) - floor
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  np.testing.assert_allclose(sums["loss"], jnp.sum(expected * weights),
                             rtol=1e-5)
  np.testing.assert_allclose(sums["nll"], jnp.sum(nll * weights), rtol=1e-5)
  assert float(sums["tokens"]) == 20
