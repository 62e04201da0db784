"""A workdir saved by an earlier version of the code still resumes, evaluates
and decodes: tests/data/old_checkpoint/workdir holds step 4 of a tiny run
(written by tests/data/old_checkpoint/regenerate.py before the checkpoint
package was reorganised)."""

import importlib.util
import os
import shutil

import pytest

from encdec_jax.train import inference, trainer

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                       "old_checkpoint")


def _load_fixture_module():
  spec = importlib.util.spec_from_file_location(
      "old_checkpoint_regenerate", os.path.join(FIXTURE, "regenerate.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


fixture = _load_fixture_module()


@pytest.fixture
def old_run(tmp_path):
  """(workdir copy, text files) of the saved run."""
  workdir = str(tmp_path / "run")
  shutil.copytree(os.path.join(FIXTURE, "workdir"), workdir)
  return workdir, fixture.write_text_files(str(tmp_path))


def test_an_old_checkpoint_resumes_and_finishes(old_run, capsys):
  workdir, files = old_run
  results = trainer.train_and_evaluate(
      fixture.config(files, num_train_steps=2 * fixture.STEP), workdir)
  out = capsys.readouterr().out
  assert f"resumed from {workdir}/checkpoints at step {fixture.STEP}" in out
  assert results["step"] == 2 * fixture.STEP
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [
      str(2 * fixture.STEP)]  # keep_checkpoints=1


def test_an_old_checkpoint_evaluates_and_decodes(old_run):
  workdir, files = old_run
  config = fixture.config(files, num_train_steps=fixture.STEP)
  results = inference.evaluate_checkpoint(config, workdir)
  assert set(results) == {"validation", "test"}
  assert len(inference.decode_lines(config, workdir, ["12", "7"])) == 2
