"""A truncated latest checkpoint: fall back to the one before (kept aside,
not deleted) or stop with a clear error, as config.corrupt_checkpoint says."""

import os

import jax
import numpy as np
import pytest

from encdec_jax import checkpoint
from encdec_jax.train import inference, trainer
from experiments import tiny


def _config(small_text_files, steps, **overrides):
  c = tiny.get_config()
  c.dataset = "text_files"
  c.text_files.update(small_text_files)
  # rsqrt does not depend on num_train_steps, so a run extended from 20 to
  # 30 steps follows the same schedule as one set to 30 from the start.
  c.update(num_train_steps=steps, log_every=5, checkpoint_every=10,
           eval_every=100, test_at_end=False, schedule="rsqrt", **overrides)
  return c


def _truncate_state(workdir, step):
  """Cuts the largest array file of the step's train state to 100 bytes."""
  state_dir = os.path.join(workdir, "checkpoints", str(step), "state")
  files = [os.path.join(root, f) for root, _, names in os.walk(state_dir)
           for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(100)


def _params(config, workdir):
  return jax.device_get(inference.restore_latest(config, workdir)[1])


def test_fallback_resumes_from_the_step_before_and_keeps_the_bad_one(
    small_text_files, tmp_path):
  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(_config(small_text_files, 30), straight)

  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(_config(small_text_files, 20), workdir)
  _truncate_state(workdir, 20)
  with pytest.raises(ValueError, match=r"checkpoints/20 cannot be read .*"
                     "corrupt_checkpoint=fallback"):
    trainer.train_and_evaluate(
        _config(small_text_files, 30, corrupt_checkpoint="error"), workdir)
  assert checkpoint.make_manager(workdir).all_steps() == [10, 20]  # kept

  config = _config(small_text_files, 30, corrupt_checkpoint="fallback")
  trainer.train_and_evaluate(config, workdir)
  assert os.path.isdir(os.path.join(workdir, "unreadable_checkpoints", "20"))
  assert checkpoint.make_manager(workdir).latest_step() == 30
  # Resuming from step 10 gives exactly the uninterrupted run.
  jax.tree.map(np.testing.assert_array_equal, _params(config, workdir),
               _params(config, straight))


def test_no_older_checkpoint_is_a_clear_error(small_text_files, tmp_path):
  workdir = str(tmp_path)
  trainer.train_and_evaluate(_config(small_text_files, 10), workdir)
  _truncate_state(workdir, 10)
  with pytest.raises(ValueError, match="no older checkpoint to fall back to"):
    trainer.train_and_evaluate(_config(small_text_files, 20), workdir)
  assert checkpoint.make_manager(workdir).all_steps() == [10]

