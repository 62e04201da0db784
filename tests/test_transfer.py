"""Encoder transfer through the trainer: init_encoder, freezing, ULMFiT stages."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from num2words import num2words

from encdec_jax import checkpoint
from encdec_jax.train import experiment, trainer
from experiments import number_classification, tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = dict(emb_dim=32, qkv_dim=32, mlp_dim=64, num_heads=2,
                  num_encoder_layers=2, num_decoder_layers=1, max_len=64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Number translation pairs, and number words labelled by parity."""
  d = tmp_path_factory.mktemp("data")
  numbers = np.random.default_rng(0).permutation(1000)
  out = {"translation": {}, "classification": {}}
  for split, part in (("train", numbers[:900]),
                      ("validation", numbers[900:950]),
                      ("test", numbers[950:])):
    for task, line in (("translation", lambda n: f"{n}\t{num2words(n)}"),
                       ("classification",
                        lambda n: f"{num2words(n)}\t{('even', 'odd')[n % 2]}")):
      path = d / f"{task}_{split}.tsv"
      path.write_text("".join(line(int(n)) + "\n" for n in part),
                      encoding="utf-8")
      out[task][split] = str(path)
  return out


@pytest.fixture(scope="module")
def pretrained(files, tmp_path_factory):
  """A workdir holding a briefly trained tiny translation model."""
  c = tiny.get_config()
  c.update(dataset="text_files", num_train_steps=10, checkpoint_every=10,
           eval_every=100, test_at_end=False)
  c.text_files.update(files["translation"])
  c.model.update(TINY_MODEL)
  workdir = str(tmp_path_factory.mktemp("pretrained"))
  trainer.train_and_evaluate(c, workdir)
  return workdir


def _classifier_config(files, arm, pretrained, **overrides):
  c = number_classification.get_config(arm)
  c.update(dataset="text_files", tokenizer="bytes", max_source_length=64,
           bucket_boundaries=(16, 32, 64), batch_size=16, eval_batch_size=32,
           num_train_examples=-1, num_train_steps=12, warmup_steps=2,
           log_every=2, eval_every=100, checkpoint_every=4,
           keep_checkpoints=10, learning_rate=3e-3)
  c.text_files.update(files["classification"])
  c.model.update(TINY_MODEL)
  if c.init_encoder:
    c.init_encoder = pretrained
  if arm == "ulmfit":
    c.unfreeze_every = 4
  c.update(overrides)
  return c


def _params_at(config, workdir, step):
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  return checkpoint.restore_params(checkpoint.make_manager(workdir),
                                   experiment.abstract_params(exp), step)[0]


def _accuracy_by_hand(config, workdir, params, path) -> float:
  exp = experiment.setup(config, workdir, train_tokenizer=False)
  with open(path, encoding="utf-8") as f:
    lines = [line.rstrip("\n").split("\t") for line in f]
  names = sorted({name for _, name in lines})  # the classes: even, odd
  inputs = np.zeros((len(lines), config.max_source_length), np.int32)
  for row, (text, _) in enumerate(lines):
    ids = [b + 3 for b in text.encode("utf-8")] + [1]  # bytes tokenizer, EOS
    inputs[row, :len(ids)] = ids
  logits = exp.model.apply({"params": params}, inputs)
  labels = np.array([names.index(name) for _, name in lines])
  return float(np.mean(np.argmax(logits, -1) == labels))


def _equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_frozen_arm_trains_only_the_head(files, pretrained, tmp_path):
  config = _classifier_config(files, "frozen", pretrained, num_train_steps=8)
  results = trainer.train_and_evaluate(config, str(tmp_path))
  params = _params_at(config, str(tmp_path), 8)
  # The reported test accuracy is the final params' accuracy, counted here
  # by hand: each test line's bytes + EOS, argmax of the logits vs its label.
  assert results["test"]["accuracy"] == pytest.approx(
      _accuracy_by_hand(config, str(tmp_path), params,
                        files["classification"]["test"]), abs=1e-6)
  start = _params_at(config, str(tmp_path), 4)
  assert _equal(params["encoder"], start["encoder"])
  assert not _equal(params["head"], start["head"])
  # ... and the frozen encoder is the pretrained one, bit for bit.
  manager = checkpoint.make_manager(pretrained)
  pre = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      encoder=ocp.args.StandardRestore(params["encoder"])))
  assert _equal(pre["encoder"], params["encoder"])


def test_ulmfit_stages_thaw_layers_in_order_and_resume_exactly(
    files, pretrained, tmp_path, monkeypatch):
  """head, then encoder_1, encoder_0, embeddings every 4 steps; a stop at
  step 8 and a rerun end where an uninterrupted run does."""
  config = _classifier_config(files, "ulmfit", pretrained)
  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(config, straight)
  at = {s: _params_at(config, straight, s) for s in (4, 8, 12)}
  enc = lambda p, name: p["encoder"][name]
  # Steps 0-3: only the head; 4-7: + the top layer; 8-11: + layer 0.
  assert not _equal(enc(at[4], "layers_1"), enc(at[8], "layers_1"))
  assert _equal(enc(at[4], "layers_0"), enc(at[8], "layers_0"))
  assert not _equal(enc(at[8], "layers_0"), enc(at[12], "layers_0"))
  assert _equal(enc(at[4], "embedder"), enc(at[12], "embedder"))

  interrupted = str(tmp_path / "interrupted")
  real_save = checkpoint.save

  def save_then_preempt(manager, state, data_state, meta):
    real_save(manager, state, data_state, meta)
    if int(state.step) == 8:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(checkpoint, "save", save_then_preempt)
  assert trainer.train_and_evaluate(config, interrupted) == {
      "stopped_at_step": 8}
  monkeypatch.setattr(checkpoint, "save", real_save)
  trainer.train_and_evaluate(config, interrupted)
  assert _equal(_params_at(config, interrupted, 12), at[12])


def test_mismatched_init_encoder_is_refused_before_training(
    files, pretrained, tmp_path):
  config = _classifier_config(files, "frozen", pretrained)
  config.model.mlp_dim = 48
  with pytest.raises(ValueError, match=r"mlp/intermediate/kernel checkpoint "
                     r"\(32, 64\) vs model \(32, 48\)"):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints" / "4")


def test_export_encoder_command_then_fine_tune_from_it(
    files, pretrained, tmp_path):
  out = str(tmp_path / "encoder")
  run = subprocess.run(
      [sys.executable, "-m", "encdec_jax.main", "--config=experiments/tiny.py",
       f"--workdir={pretrained}", "--mode=export_encoder", f"--output={out}"],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  assert f"--config.init_encoder={out}" in run.stdout
  config = _classifier_config(files, "frozen", pretrained, num_train_steps=4)
  config.init_encoder = out
  trainer.train_and_evaluate(config, str(tmp_path / "run"))
  again = subprocess.run(
      [sys.executable, "-m", "encdec_jax.main", "--config=experiments/tiny.py",
       f"--workdir={pretrained}", "--mode=export_encoder", f"--output={out}"],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=300)
  assert again.returncode == 1 and "error:" in again.stderr
  assert "Traceback" not in again.stderr


def test_decode_mode_on_a_classifier_says_to_use_eval(files, tmp_path):
  from encdec_jax.train import inference
  config = _classifier_config(files, "scratch", None)
  with pytest.raises(ValueError, match="use --mode=eval"):
    inference.decode_file(config, str(tmp_path), "-", "-")
