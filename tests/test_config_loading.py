"""Configs load from any working directory: a shipped config importing its
siblings, and a user's config kept outside the repo that builds on ours."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main_elsewhere(cwd, *args):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  return subprocess.run(
      [sys.executable, "-m", "encdec_jax.main", *args], cwd=cwd,
      env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=300)


def test_configs_load_outside_the_repo(tmp_path):
  # A bad step count stops the run at the config checks, before any data or
  # model: the config got that far only if it loaded.
  mine = tmp_path / "my_configs" / "short_lm.py"
  mine.parent.mkdir()
  mine.write_text("from experiments import number_lm\n\n\n"
                  "def get_config():\n"
                  "  c = number_lm.get_config()\n"
                  "  c.num_train_steps = -5\n"
                  "  return c\n")
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  for args in ([f"--config={REPO}/experiments/minilm_classification.py:"
                "frozen", "--config.num_train_steps=-5"],
               [f"--config={mine}"]):
    run = _main_elsewhere(cwd, *args, f"--workdir={tmp_path / 'run'}")
    assert run.returncode != 0
    assert ("error: config.num_train_steps=-5 must be >= 0." in
            run.stderr.splitlines()), run.stderr[-2000:]
