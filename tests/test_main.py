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


ERRORS_LOG_SCRIPT = r"""
import logging, sys, threading
from encdec_jax import main
main.ERRORS_LOG.path = sys.argv[1]
sys.unraisablehook = main._log_unraisable
threading.excepthook = main._one_line_thread_error

class Late:
  def __del__(self):
    raise RuntimeError("late tensorstore callback")
Late()  # an unraisable exception, as Python ignores them

def fail():
  raise OSError("async save failed\nsecond line")
thread = threading.Thread(target=fail, name="save_thread")
thread.start(); thread.join()

def record(path, level, msg, exc_info=None):
  return logging.LogRecord("absl", level, path, 7, msg, (), exc_info)
try:
  raise ValueError("orbax commit failed")
except ValueError:
  dropped = record("/x/orbax/checkpoint/a.py", logging.ERROR,
                   "Background save failed", sys.exc_info())
cut = record("/x/tfds/b.py", logging.WARNING, "first line\nsecond line")
one = record("/x/tfds/b.py", logging.WARNING, "just one line")
print(main._one_line_library_logs(dropped), main._one_line_library_logs(cut),
      cut.getMessage(), main._one_line_library_logs(one))
print(main.ERRORS_LOG.note())
"""


def test_what_the_console_leaves_out_goes_to_errors_log(tmp_path):
  """Unraisable exceptions, background-thread tracebacks, orbax's dropped
  ERROR records and the cut lines of library logs: each in full in
  <workdir>/errors.log, and the one-line error says where."""
  path = str(tmp_path / "run" / "errors.log")
  run = subprocess.run([sys.executable, "-c", ERRORS_LOG_SCRIPT, path],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  # The console: the thread's error in one line, no unraisable, no traceback.
  assert run.stderr == ("background thread save_thread: OSError: async save "
                        "failed\n")
  filtered, note = run.stdout.splitlines()
  assert filtered == "False True first line True"
  assert note == (f"; 4 library message(s) cut or left off the console are in "
                  f"full in {path}")
  with open(path, encoding="utf-8") as f:
    log = f.read()
  entries = log.split("\n--- ")
  assert len(entries) == 4 and log.startswith("--- ")
  assert "Exception ignored" in entries[0] and "Late" in entries[0]
  assert "RuntimeError: late tensorstore callback" in entries[0]
  assert "exception in thread save_thread" in entries[1]
  assert "Traceback" in entries[1] and "second line" in entries[1]
  assert "ERROR from absl (/x/orbax/checkpoint/a.py:7), dropped" in entries[2]
  assert "ValueError: orbax commit failed" in entries[2]
  assert "cut to its first line" in entries[3]
  assert entries[3].endswith("first line\nsecond line\n")
