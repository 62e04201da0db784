"""The command line, as a user runs it: train, decode, and bad flags."""

import json
import os
import subprocess
import sys

from num2words import num2words

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
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  test = results["test"]
  assert results["step"] == 20 and test["num_decoded"] == 200
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10",
                                                                      "20"]
  # It learned: the train loss fell from its first logged value (5.15 at
  # step 5; ln 259 = 5.56 at init) and metrics.jsonl holds every log.
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  train = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train] == [5, 10, 15, 20]
  assert train[-1]["loss"] < 0.85 * train[0]["loss"]
  assert [r for r in rows if r["split"] == "test"][-1]["loss"] == test["loss"]
  # The printed test line is results.json's, and its samples pair each
  # number with its English words.
  line = next(l for l in run.stdout.splitlines()
              if l.startswith("[test @ step 20"))
  assert (f"loss {test['loss']:.4f}  token acc {test['accuracy']:.4f}  "
          f"exact match {test['exact_match']:.2f}%") in line
  assert "(200 examples, greedy)" in line
  samples = run.stdout.split(line + "\n", 1)[1].splitlines()[:9]
  sources = [l.split()[1] for l in samples[0::3]]
  hypotheses = [l.strip().removeprefix("→ ") for l in samples[1::3]]
  for mark_and_source, hypothesis, ref in zip(samples[0::3], samples[1::3],
                                              samples[2::3]):
    number = int(mark_and_source.split()[1])
    assert ref.strip() == f"ref {num2words(number)}"
    assert mark_and_source.split()[0] == (
        "✓" if hypothesis.strip() == f"→ {num2words(number)}" else "✗")

  # --mode=decode on those sources prints what the test decoded for them.
  decoded = _main("--config=experiments/tiny.py", f"--workdir={workdir}",
                  f"--config.data_dir={data_dir}", "--mode=decode",
                  stdin="".join(f"{s}\n" for s in sources))
  assert decoded.returncode == 0, decoded.stderr[-2000:]
  assert decoded.stdout.splitlines() == hypotheses


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
from encdec_jax import console
console.ERRORS_LOG.path = sys.argv[1]
sys.unraisablehook = console.log_unraisable
threading.excepthook = console.one_line_thread_error

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
print(console.one_line_library_logs(dropped), console.one_line_library_logs(cut),
      cut.getMessage(), console.one_line_library_logs(one))
print(console.ERRORS_LOG.note())
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
