"""A readable checkpoint that does not fit the config is refused, naming the
difference and the flags that fix it, and stays where it is. It used to be
taken for a corrupt one: moved to unreadable_checkpoints/, the run resumed
from an older step (the newest good one lost) and a decode silently used
the older one."""

import json
import os
import shutil

import pytest

from encdec_jax import checkpoint
from encdec_jax.train import inference, trainer
from conftest import tiny_run_config, train_base_and_lora



_config = tiny_run_config


@pytest.fixture(scope="module")
def runs(small_text_files, tmp_path_factory):
  """A plain base run (step 1) and a LoRA run on it (steps 1, 2)."""
  return train_base_and_lora(small_text_files,
                             tmp_path_factory.mktemp("runs"), 2)


def _copy(source, tmp_path):
  target = str(tmp_path / os.path.basename(source))
  shutil.copytree(source, target)
  return target


def _untouched(workdir, steps, config_before):
  assert checkpoint.make_manager(workdir).all_steps() == steps
  assert not os.path.exists(os.path.join(workdir, "unreadable_checkpoints"))
  with open(os.path.join(workdir, "config.json")) as f:
    assert f.read() == config_before


def _refused(fn, *patterns):
  with pytest.raises((ValueError, OSError)) as error:
    fn()
  message = str(error.value)
  assert "\n" not in message, message
  for pattern in patterns:
    assert pattern in message, message
  return message


def test_a_plain_train_on_a_lora_workdir_is_refused_and_nothing_moved(
    small_text_files, runs, tmp_path):
  base, lora = runs
  workdir = _copy(lora, tmp_path)
  before = open(os.path.join(workdir, "config.json")).read()
  _refused(lambda: trainer.train_and_evaluate(
      _config(small_text_files, 3), workdir),
           "holds LoRA adapters (meta lora.targets",
           "but config.lora.targets is empty; rerun with the run's "
           "--config.lora.* flags", f"--config.lora.base={base}")
  _untouched(workdir, [1, 2], before)


def test_a_decode_without_the_lora_flags_is_refused_not_an_older_step(
    small_text_files, runs, tmp_path):
  _, lora = runs
  workdir = _copy(lora, tmp_path)
  before = open(os.path.join(workdir, "config.json")).read()
  _refused(lambda: inference.restore_latest(_config(small_text_files, 2),
                                            workdir),
           "holds LoRA adapters", "config.lora.targets is empty")
  _untouched(workdir, [1, 2], before)


def test_a_lora_resume_with_another_rank_names_the_flag(
    small_text_files, runs, tmp_path):
  base, lora = runs
  workdir = _copy(lora, tmp_path)
  before = open(os.path.join(workdir, "config.json")).read()
  config = _config(small_text_files, 3, base)
  config.lora.rank = 4
  message = _refused(lambda: trainer.train_and_evaluate(config, workdir),
                     "was written by another configuration",
                     "lora_a has shape (32, 8) in the checkpoint, (32, 4) in "
                     "the run", "--config.lora.rank=8")
  assert "new --workdir" in message
  _untouched(workdir, [1, 2], before)


def test_lora_flags_on_a_plain_workdir_are_refused(small_text_files, runs,
                                                   tmp_path):
  base, _ = runs
  workdir = _copy(base, tmp_path)
  before = open(os.path.join(workdir, "config.json")).read()
  _refused(lambda: trainer.train_and_evaluate(
      _config(small_text_files, 3, base), workdir),
           "holds a whole model, no LoRA adapters",
           "drop the --config.lora.* flags")
  _untouched(workdir, [1], before)


def test_other_parameter_groups_are_refused_not_set_aside(
    small_text_files, runs, tmp_path):
  """Freezing a group changes the optimizer state's tree."""
  base, _ = runs
  workdir = _copy(base, tmp_path)
  before = open(os.path.join(workdir, "config.json")).read()
  config = _config(small_text_files, 3, frozen_groups=("encoder",))
  _refused(lambda: trainer.train_and_evaluate(config, workdir),
           "was written by another configuration", "opt_state",
           "--config.frozen_groups=()")
  _untouched(workdir, [1], before)


def test_an_unreadable_step_is_still_set_aside(small_text_files, runs,
                                               tmp_path):
  """The fit check does not hide a truncated step from the fallback."""
  base, lora = runs
  workdir = _copy(lora, tmp_path)
  state_dir = os.path.join(workdir, "checkpoints", "2", "state")
  files = [os.path.join(root, f) for root, _, names in os.walk(state_dir)
           for f in names]
  with open(max(files, key=os.path.getsize), "r+b") as f:
    f.truncate(100)
  trainer.train_and_evaluate(_config(small_text_files, 3, base), workdir)
  assert os.path.isdir(os.path.join(workdir, "unreadable_checkpoints", "2"))
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["step"] == 3


@pytest.mark.parametrize("where, message", [
    ("missing", "does not exist; name the workdir of the trained model"),
    ("step", "is one step of a run; name the run's workdir "
     "(--config.lora.base={base})"),
    ("checkpoints", "is a checkpoints directory; name the run's workdir"),
    ("empty", "holds no checkpoint: it is not a trained run's workdir"),
    ("lora", "is a LoRA run (its checkpoints hold adapters only); merge it"),
    ("other_model", "is not a model of this config's architecture"),
])
def test_a_wrong_lora_base_says_what_it_is(small_text_files, runs, tmp_path,
                                           where, message):
  base, lora = runs
  path = {"missing": str(tmp_path / "gone"),
          "step": os.path.join(base, "checkpoints", "1"),
          "checkpoints": os.path.join(base, "checkpoints"),
          "empty": str(tmp_path), "lora": lora, "other_model": base}[where]
  config = _config(small_text_files, 1, base)
  config.lora.base = path
  if where == "other_model":
    config.model.mlp_dim = 48
  _refused(lambda: trainer.train_and_evaluate(config, str(tmp_path / "new")),
           message.format(base=base))


def test_an_adapter_in_train_mode_is_refused_and_the_base_untouched(
    small_text_files, runs, tmp_path):
  from encdec_jax import exports
  base, lora = runs
  adapter = str(tmp_path / "adapter")
  exports.export_adapter(_config(small_text_files, 2, base), lora, adapter)
  workdir = _copy(base, tmp_path)
  before = open(os.path.join(workdir, "config.json")).read()
  config = _config(small_text_files, 3)
  config.lora.adapter = adapter
  _refused(lambda: trainer.train_and_evaluate(config, workdir),
           "config.lora.adapter applies an exported adapter to its base for "
           "--mode=eval or --mode=decode")
  _untouched(workdir, [1], before)
