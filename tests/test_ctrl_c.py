"""Ctrl-C on the command line is one line and exit 130, in every mode
tested here: --mode=eval, a second Ctrl-C in training (the first saves and
exits 0: tests/test_kill_and_resume.py), --mode=decode (which says how many
lines it kept: tests/test_inference.py).

The signal is real (SIGINT to the process itself, through Python's own
handlers and the trainer's), sent at a known point: the mode's function is
replaced by one that signals and waits, so the test needs no training and no
race with a fast evaluation.
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs encdec_jax.main as `python -m encdec_jax.main` would, with one
# function replaced by WAIT (which sends SIGINT COUNT times, then waits).
_RUN = r"""
import os, signal, sys, time
# Ctrl-C as a terminal's foreground job gets it: a suite started in the
# background (nohup ... &) hands its children SIGINT ignored, and Python
# then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = ["encdec_jax.main"] + sys.argv[1:]
from absl import app
from encdec_jax import console, main
from encdec_jax.train import inference, trainer

def wait(*args, **kwargs):
  for _ in range({count}):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
  time.sleep(30)
  raise SystemExit("the signal was not delivered")

{target} = wait
app.run(main.main, flags_parser=console.parse_flags)
"""


def _run(tmp_path, mode: str, target: str, count: int):
  code = _RUN.format(count=count, target=target)
  return subprocess.run(
      [sys.executable, "-c", code, "--config=experiments/tiny.py",
       f"--workdir={tmp_path / 'w'}", f"--mode={mode}"], cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
      text=True, timeout=300)


def _one_line(run) -> str:
  assert run.returncode == 130, (run.returncode, run.stderr[-3000:])
  assert "Traceback" not in run.stderr, run.stderr[-3000:]
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1, run.stderr[-3000:]
  return lines[0]


def test_ctrl_c_in_eval_mode_is_one_line(tmp_path):
  line = _one_line(_run(tmp_path, "eval", "inference.evaluate_checkpoint", 1))
  assert line == ("interrupted: --mode=eval stopped before writing "
                  "eval_results.json.")


def test_a_second_ctrl_c_in_training_is_one_line(tmp_path):
  # The trainer's own handler sees both: the first asks for a stop at the
  # next step, the second stops at once.
  line = _one_line(_run(tmp_path, "train", "trainer._train", 2))
  assert line.startswith("interrupted by a second Ctrl-C: stopped at once, "
                         "without saving; rerun the same command to resume")
