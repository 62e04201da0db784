"""The command line, as a user runs it: train, decode, and bad flags."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, stdin=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "encdec_jax.main", *args], cwd=REPO, env=env,
      input=stdin, capture_output=True, text=True, timeout=600)


def test_tiny_experiment_trains_from_one_command_then_decodes(tmp_path):
  workdir, data_dir = str(tmp_path / "run"), str(tmp_path / "tfds")
  run = _main("--config=experiments/tiny.py", f"--workdir={workdir}",
              f"--config.data_dir={data_dir}")
  assert run.returncode == 0, run.stderr[-2000:]
  assert "step 20/20" in run.stdout
  assert "[test @ step 20" in run.stdout and "→" in run.stdout
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["test"]["num_decoded"] == 200
  assert os.listdir(os.path.join(workdir, "checkpoints"))

  decoded = _main("--config=experiments/tiny.py", f"--workdir={workdir}",
                  f"--config.data_dir={data_dir}", "--mode=decode",
                  stdin="12\n345\n")
  assert decoded.returncode == 0, decoded.stderr[-2000:]
  assert len(decoded.stdout.splitlines()) == 2


def test_unknown_mode_and_config_field_are_rejected(tmp_path):
  bad_mode = _main("--config=experiments/tiny.py", f"--workdir={tmp_path}",
                   "--mode=serve")
  assert bad_mode.returncode != 0
  assert "--mode" in bad_mode.stderr and "train" in bad_mode.stderr
  bad_field = _main("--config=experiments/tiny.py", f"--workdir={tmp_path}",
                    "--config.batch_sise=8")
  assert bad_field.returncode != 0 and "batch_sise" in bad_field.stderr


def test_malformed_tsv_line_is_one_clear_line(tmp_path):
  bad = tmp_path / "train.tsv"
  bad.write_text("1\tone\n2 two\n", encoding="utf-8")
  run = _main("--config=experiments/tiny.py", f"--workdir={tmp_path / 'w'}",
              "--config.dataset=text_files",
              f"--config.text_files.train={bad}",
              f"--config.text_files.validation={bad}",
              f"--config.text_files.test={bad}")
  assert run.returncode == 1
  assert f"error: {bad}:2: expected 2 tab-separated fields" in run.stderr
  assert "Traceback" not in run.stderr
