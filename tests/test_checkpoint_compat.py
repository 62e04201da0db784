"""Workdirs saved by an earlier version of the code still resume, evaluate,
decode and export (tests/data/old_checkpoint, README.md there):

  workdir/        step 4 of a tiny run (regenerate.py, written before the
                  checkpoint package was reorganised)
  lora_base/, lora_run/, t5_import/, t5_finetuned/
                  a LoRA run on its base, and a run fine-tuned from an
                  imported Hugging Face model (config.init_from), step 4
                  each, with what the code of their day decoded, evaluated
                  and exported from them in expected.json
                  (regenerate_lora_and_import.py)

Every test works on a copy in tmp_path and passes the copies' paths in the
config (config.lora.base, config.init_from), as a user who moved the
directories would.
"""

import importlib.util
import json
import os
import shutil

import pytest

from encdec_jax import exports
from encdec_jax.train import inference, trainer

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                       "old_checkpoint")


def _load_fixture_module(name: str):
  spec = importlib.util.spec_from_file_location(
      f"old_checkpoint_{name}", os.path.join(FIXTURE, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


fixture = _load_fixture_module("regenerate")
saved = _load_fixture_module("regenerate_lora_and_import")
with open(os.path.join(FIXTURE, saved.EXPECTED), encoding="utf-8") as _f:
  EXPECTED = json.load(_f)
LINES = EXPECTED["decode_lines"]


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


# --- a LoRA run (adapter-only checkpoints) on its base ---


def _copy_saved(tmp_path, *names) -> list[str]:
  copies = [str(tmp_path / "moved" / name) for name in names]
  for name, copy in zip(names, copies):
    shutil.copytree(os.path.join(FIXTURE, name), copy)
  return copies


@pytest.fixture
def lora_run(tmp_path):
  """(text files, LoRA workdir copy, base workdir copy) of the saved run,
  both moved: config.lora.base names the base's new place (its content
  hash, not its path, says it is the same base)."""
  base, workdir = _copy_saved(tmp_path, saved.LORA_BASE, saved.LORA_RUN)
  return saved.write_text_files(str(tmp_path)), workdir, base


def _eval_losses(results: dict, expected: dict, rel: float = 1e-5) -> None:
  assert saved.eval_losses(results) == pytest.approx(expected, rel=rel)


def test_a_saved_lora_run_resumes_and_trains_on(lora_run, capsys):
  files, workdir, base = lora_run
  expected = EXPECTED[saved.LORA_RUN]
  results = trainer.train_and_evaluate(
      saved.lora_config(files, base, 2 * saved.STEP), workdir)
  out = capsys.readouterr().out
  assert f"resumed from {workdir}/checkpoints at step {saved.STEP}" in out
  assert results["step"] == 2 * saved.STEP
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [
      str(2 * saved.STEP)]  # keep_checkpoints=1
  # The base's content hash is the one today's code gave it.
  meta = saved.read_checkpoint_meta(workdir, 2 * saved.STEP)
  assert meta["lora"]["base_hash"] == expected["base_hash"]


def test_a_saved_lora_run_evaluates_and_decodes_as_when_saved(lora_run):
  files, workdir, base = lora_run
  expected = EXPECTED[saved.LORA_RUN]
  config = saved.lora_config(files, base, saved.STEP)
  _eval_losses(inference.evaluate_checkpoint(config, workdir),
               expected["eval_loss"])
  assert inference.decode_lines(config, workdir, LINES) == expected["decoded"]
  assert expected["decoded"] != expected["base_decoded"]  # adapters applied


def test_a_saved_lora_run_exports_its_adapter_and_merges(lora_run, tmp_path):
  files, workdir, base = lora_run
  expected = EXPECTED[saved.LORA_RUN]
  config = saved.lora_config(files, base, saved.STEP)
  # --mode=export_adapter: the checkpoint's adapters, bit for bit, which
  # decode on the base (--config.lora.adapter) as the run does.
  adapter = str(tmp_path / "adapter")
  exports.export_adapter(config, workdir, adapter)
  with open(os.path.join(adapter, "adapter.json"), encoding="utf-8") as f:
    spec = json.load(f)
  assert (spec["step"], spec["base_hash"], spec["targets"]) == (
      saved.STEP, expected["base_hash"], list(saved.QV))
  on_base = saved.lora_base_config(files, saved.STEP)
  on_base.lora.adapter = adapter
  _, params, step = inference.restore_latest(on_base, base)
  assert step == saved.STEP
  assert saved.tree_sha256(params["lora"]) == expected["adapter_sha256"]
  assert inference.decode_lines(on_base, base, LINES) == expected["decoded"]
  # --mode=merge_adapter: a plain workdir that decodes as the run does.
  merged = str(tmp_path / "merged")
  exports.merge_adapter(config, workdir, merged)
  plain = saved.lora_base_config(files, saved.STEP)
  assert inference.decode_lines(plain, merged, LINES) == expected["decoded"]
  _eval_losses(inference.evaluate_checkpoint(plain, merged),
               expected["eval_loss"], rel=1e-4)  # folded: float rounding


def test_a_lora_run_whose_base_moved_resumes(tmp_path):
  """meta["lora"]["base"] still holds the path the base had when the run
  was saved; a moved base with the same hash is accepted."""
  base, workdir = _copy_saved(tmp_path, saved.LORA_BASE, saved.LORA_RUN)
  files = saved.write_text_files(str(tmp_path))
  _, _, step = inference.restore_latest(
      saved.lora_config(files, base, saved.STEP), workdir)
  assert step == saved.STEP


# --- a run fine-tuned from an imported Hugging Face model ---


@pytest.fixture
def finetuned_run(tmp_path):
  """(text files, workdir copy, import_hf directory copy) of the saved
  fine-tuning run."""
  pytest.importorskip("safetensors", reason="needs the `pretrained` extra")
  imported, workdir = _copy_saved(tmp_path, saved.T5_IMPORT,
                                  saved.T5_FINETUNED)
  return saved.write_text_files(str(tmp_path)), workdir, imported


def test_a_saved_fine_tuned_run_resumes_and_trains_on(finetuned_run, capsys):
  files, workdir, imported = finetuned_run
  results = trainer.train_and_evaluate(
      saved.finetune_config(files, imported, 2 * saved.STEP), workdir)
  out = capsys.readouterr().out
  assert f"resumed from {workdir}/checkpoints at step {saved.STEP}" in out
  assert results["step"] == 2 * saved.STEP
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [
      str(2 * saved.STEP)]


def test_a_saved_fine_tuned_run_evaluates_decodes_and_exports(
    finetuned_run, tmp_path):
  from flax import traverse_util
  from safetensors.numpy import load_file

  from encdec_jax.pretrained import export_hf, import_hf
  files, workdir, imported = finetuned_run
  expected = EXPECTED[saved.T5_FINETUNED]
  config = saved.finetune_config(files, imported, saved.STEP)
  _eval_losses(inference.evaluate_checkpoint(config, workdir),
               expected["eval_loss"])
  assert inference.decode_lines(config, workdir, LINES) == expected["decoded"]
  # Exported to Hugging Face format: the tensors today's code exported.
  out = str(tmp_path / "exported")
  export_hf.export_hf(workdir, out)
  tensors = load_file(os.path.join(out, "model.safetensors"))
  assert {k: saved.sha256(v) for k, v in tensors.items()} == (
      expected["export_sha256"])
  # ... which are the checkpoint's params (read back by the importer), not
  # the imported ones.
  _, params, _ = inference.restore_latest(config, workdir)
  tuned = traverse_util.flatten_dict(params)
  again = traverse_util.flatten_dict(import_hf.convert(out)[2])
  start = traverse_util.flatten_dict(import_hf.load(imported)[1])
  assert again.keys() == tuned.keys() == start.keys()
  for key, value in again.items():
    assert saved.sha256(value) == saved.sha256(tuned[key]), key
  assert any(saved.sha256(tuned[k]) != saved.sha256(start[k]) for k in start)
