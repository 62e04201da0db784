"""Input that was accepted and then ignored (or worse, used wrongly) is
refused in one line: a copy head on a model without a cross-attending
decoder, a config that needs init_from without it, --input to
--mode=eval, a speculative draft with another vocabulary."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from encdec_jax import tasks
from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.models.encoder_decoder import EncoderDecoder
from encdec_jax.nn.config import TransformerConfig
from experiments import (number_classification, number_lm,
                         sentence_embedding, t5_finetune)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("module, task", [
    (number_lm, "lm"), (sentence_embedding, "embedding"),
    (number_classification, "classification")])
def test_a_copy_head_without_a_cross_attending_decoder_is_refused(module,
                                                                 task):
  config = module.get_config()
  config.model.copy = True
  with pytest.raises(ValueError, match=(
      f"config.model.copy=True does nothing for task '{task}'")):
    tasks.get(config).check_config(config)
  config.model.copy = False
  tasks.get(config).check_config(config)


def test_a_config_that_needs_init_from_refuses_to_train_from_scratch():
  config = t5_finetune.get_config("tiny")
  with pytest.raises(ValueError, match=(
      r"config.init_from is not set, and experiments/t5_finetune.py needs "
      r"it: .*import_hf")):
    tasks.get(config).check_config(config)
  config.init_from = "pretrained/flan"  # the check reads nothing yet
  tasks.get(config).check_config(config)


@pytest.mark.parametrize("mode, flag", [
    ("eval", "--input=lines.txt"), ("eval", "--output=out.txt"),
    ("train", "--input=lines.txt"), ("decode", "--neighbours=3")])
def test_a_flag_the_mode_does_not_read_is_refused(mode, flag, tmp_path):
  run = subprocess.run(
      [sys.executable, "-m", "encdec_jax.main",
       "--config=experiments/tiny.py", f"--workdir={tmp_path / 'run'}",
       f"--mode={mode}", flag], cwd=REPO, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  assert run.returncode == 1
  name = flag[2:].split("=")[0]
  assert run.stderr.startswith(f"error: --{name} is not read by "
                               f"--mode={mode}"), run.stderr[-2000:]
  assert run.stderr.count("\n") == 1
  assert not (tmp_path / "run").exists()


def _transformer(vocab_size, seed=0, **changes):
  fields = dict(vocab_size=vocab_size, emb_dim=16, num_heads=2, qkv_dim=16,
                mlp_dim=32, num_encoder_layers=1, num_decoder_layers=2,
                max_len=16)
  model = EncoderDecoder(TransformerConfig(**dict(fields, **changes)))
  ids_1x4 = jnp.ones((1, 4), jnp.int32)
  return model, model.init(jax.random.key(seed), ids_1x4, ids_1x4)["params"]


def test_a_speculative_draft_with_another_vocabulary_is_refused():
  model, params = _transformer(20)
  draft = _transformer(24, seed=1, num_decoder_layers=1)
  config = ml_collections.ConfigDict(dict(
      decode=dict(algorithm="speculative", k=2, draft="model"),
      max_decode_length=6))
  decode_fn = make_decode_fn(model, config, 1, draft=draft)
  inputs_BxS = jnp.array([[3, 4, 5, 1]], jnp.int32)
  with pytest.raises(ValueError, match=(
      "the speculative draft predicts 24 tokens and the model 20")):
    decode_fn(params, inputs_BxS, jax.random.key(0))
