"""--config files that are not valid configs: one `error:` line naming the
file and what is wrong, the traceback (where there is one) in
<workdir>/errors.log, no training started."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "empty": "",
    "syntax": "def get_config(:\n  pass\n",
    "import_error": "import no_such_module_here\n\n\ndef get_config():\n"
                    "  return None\n",
    "dict": "def get_config():\n  return {'batch_size': 8}\n",
    "missing_fields": "import ml_collections\n\n\ndef get_config():\n"
                      "  c = ml_collections.ConfigDict()\n"
                      "  c.model = ml_collections.ConfigDict()\n"
                      "  c.batch_size = 8\n  return c\n",
}


def _main(config_path, workdir):
  return subprocess.run(
      [sys.executable, "-m", "encdec_jax.main", f"--config={config_path}",
       f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)


@pytest.mark.parametrize("case, message, traceback", [
    ("empty", "the file defines no get_config(); a config file defines "
              "get_config() returning an ml_collections.ConfigDict (see "
              "experiments/*.py)", False),
    ("syntax", "line 1: invalid syntax; fix the file", True),
    ("import_error", "ModuleNotFoundError: No module named "
                     "'no_such_module_here'", True),
    ("dict", "get_config() returned a dict, not an ml_collections.ConfigDict;"
             " build it as experiments/*.py do", False),
    ("missing_fields", "of the fields every experiment has (decode, "
                       "group_optim, lora, mesh, ...); build it on "
                       "experiments/number_translation.py's get_config()",
     False),
])
def test_a_config_file_that_is_not_a_config_is_one_line(case, message,
                                                         traceback, tmp_path):
  path = tmp_path / f"{case}.py"
  path.write_text(CONFIGS[case])
  workdir = tmp_path / "run"
  run = _main(path, workdir)
  assert run.returncode == 1, run.stderr[-3000:]
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1, run.stderr[-3000:]
  assert lines[0].startswith(f"error: --config={path}: ")
  assert message in lines[0]
  log = workdir / "errors.log"
  if traceback:
    assert f"the traceback is in {log}" in lines[0]
    assert "Traceback (most recent call last)" in log.read_text()
  else:
    assert not workdir.exists()
