"""A NaN/Inf loss never reaches the params or a checkpoint; the policy
decides whether the run stops (naming the last good checkpoint) or goes on."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from encdec_jax import checkpoint, tasks
from encdec_jax.train import trainer
from experiments import tiny

BAD_STEP = 6  # state.step of the poisoned update; logged as step 7


@pytest.fixture
def poisoned(monkeypatch):
  """The loss is NaN exactly at train step BAD_STEP (found by its dropout
  key, fold_in(base, step)); every other step and evaluation is untouched."""
  task = tasks.TASKS["translation"]

  def make_loss(model, config):
    inner = task.make_loss(model, config)
    bad_key = jax.random.key_data(jax.random.fold_in(
        trainer.dropout_key(config), BAD_STEP))

    def poisoned_loss(params, batch, rng=None):
      loss, sums = inner(params, batch, rng)
      if rng is None:
        return loss, sums
      hit = jnp.all(jax.random.key_data(rng) == bad_key)
      return jnp.where(hit, jnp.nan, loss), sums

    return poisoned_loss

  monkeypatch.setitem(tasks.TASKS, "translation",
                      dataclasses.replace(task, make_loss=make_loss))


def _config(small_text_files, **overrides):
  c = tiny.get_config()
  c.dataset = "text_files"
  c.text_files.update(small_text_files)
  c.update(num_train_steps=20, log_every=5, checkpoint_every=5,
           eval_every=100, test_at_end=False, **overrides)
  return c


def _all_finite(tree) -> bool:
  return all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree))


def test_stop_policy_ends_the_run_naming_the_last_good_checkpoint(
    small_text_files, tmp_path, poisoned):
  workdir = str(tmp_path)
  with pytest.raises(FloatingPointError) as error:
    trainer.train_and_evaluate(_config(small_text_files, nan_policy="stop"),
                               workdir)
  message = str(error.value)
  assert message.startswith("step 7: the loss or gradient is NaN/Inf")
  assert "the last checkpoint is step 5" in message
  manager = checkpoint.make_manager(workdir)
  assert manager.all_steps() == [5]  # nothing written after the bad step
  state = manager.restore(5, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  assert _all_finite(state)


def test_skip_policy_skips_counts_and_goes_on(small_text_files, tmp_path, poisoned):
  workdir = str(tmp_path)
  trainer.train_and_evaluate(_config(small_text_files, nan_policy="skip"), workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    train = [r for r in map(json.loads, f) if r["split"] == "train"]
  assert [r["nonfinite_steps"] for r in train] == [0, 1, 1, 1]
  assert all(np.isfinite(r["loss"]) for r in train)
  manager = checkpoint.make_manager(workdir)
  assert manager.latest_step() == 20
  state = manager.restore(20, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  assert _all_finite(state) and int(state["step"]) == 20


def test_unknown_nan_policy_is_refused(small_text_files, tmp_path):
  with pytest.raises(ValueError, match="config.nan_policy='ignore'"):
    trainer.train_and_evaluate(_config(small_text_files, nan_policy="ignore"),
                               str(tmp_path))
