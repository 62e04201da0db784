"""The chaos command: its verdict counts only kills that test a resume.

The slow test runs it under the compiler users run (default XLA
optimisations, a fresh seed each time; `python -m encdec_jax.bench.chaos
--kills=10` is the full version, quoted in docs/reliability.md). The fast
ones check its plan and its coverage verdict: a run whose kills all land
before the first committed checkpoint used to PASS.
"""

import os
import random
import re
import subprocess
import sys

import pytest

from encdec_jax.bench import chaos

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_plan_hits_every_phase_and_never_starts_with_compile():
  for seed in range(50):
    phases = chaos.plan(10, random.Random(seed))
    assert len(phases) == 10 and set(phases) == set(chaos.PHASES)
    assert phases[0] != "compile" and phases[-1] == "final"
    assert phases.count("final") == 1
  for kills in (1, 2, 3, 4):
    assert chaos.plan(kills, random.Random(kills))[0] != "compile"


def test_the_run_is_scaled_to_the_step_time():
  """Checkpoints every ~1.5 s of training, room for three checkpoint
  intervals a kill."""
  fast = dict(o.split("=") for o in chaos.scaled(0.001, 10))
  slow = dict(o.split("=") for o in chaos.scaled(0.1, 10))
  assert int(fast["checkpoint_every"]) == 1500
  assert int(slow["checkpoint_every"]) == 15
  for flags in (fast, slow):
    every = int(flags["checkpoint_every"])
    assert int(flags["num_train_steps"]) == every * 34
    assert int(flags["eval_every"]) % every == 0
    assert every % int(flags["log_every"]) == 0


class _Lines:
  def __init__(self, *lines):
    self.lines = [(0.0, line) for line in lines]

  first = chaos.Run.first


def test_kills_before_the_first_checkpoint_fail_the_verdict():
  coverage = chaos.Coverage()
  for phase in ("compile", "step", "save", "eval", "final"):
    coverage.began(_Lines("model: 1 params"))  # started afresh each time
    coverage.killed(phase, 0)
  coverage.began(_Lines("model: 1 params"))
  problems = coverage.problems(5)
  assert problems == ["only 0 of 5 kills were followed by a resume from a "
                      "committed checkpoint"]
  assert "0 of 5 kills followed by a resume" in coverage.summary()


def test_resumed_kills_in_every_phase_pass_the_verdict():
  coverage = chaos.Coverage()
  coverage.began(_Lines("model: 1 params"))
  for step, phase in zip((10, 20, 30, 40, 50), chaos.PHASES):
    coverage.killed(phase, step)
    coverage.began(_Lines(f"resumed from /w/checkpoints at step {step}"))
  assert coverage.problems(5) == []
  assert coverage.summary() == (
      "coverage: kills per phase compile 1, step 1, save 1, eval 1, final 1; "
      "5 of 5 kills followed by a resume from a committed checkpoint (steps "
      "10, 20, 30, 40, 50)")
  short = chaos.Coverage()
  short.killed("step", 10)
  short.began(_Lines("resumed from /w/checkpoints at step 10"))
  assert short.problems(5) == ["only 1 of 5 kills landed",
                               "no kill in phase compile, save, eval, final"]


@pytest.mark.slow
def test_chaos_kills_resume_bit_identically(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)  # the chaos tool drops it
  out = subprocess.run(
      [sys.executable, "-m", "encdec_jax.bench.chaos",
       f"--workdir={tmp_path / 'chaos'}", "--kills=4"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
  lines = out.stdout.splitlines()
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert re.match(r"chaos: seed \d+ \(replay with --seed=\d+\)", lines[0])
  kills = [l for l in lines if re.match(r"kill +\d+ \[", l)]
  assert len(kills) == 4 and all("killed" in l for l in kills)
  assert re.match(r"coverage: kills per phase .*; [34] of 4 kills followed "
                  r"by a resume from a committed checkpoint", lines[-2])
  assert "PASS: bit-identical params and optimizer state" in lines[-1]


def test_the_timeline_times_each_evaluation_from_its_own_step():
  """(It paired the i-th progress line with the i-th evaluation.)"""
  run = _Lines()
  run.lines = [(0.0, "model: 1 params"), (10.0, "step 5/20  loss 1"),
               (11.0, "step 10/20  loss 1"), (13.0, "[validation @ step 10,"),
               (14.0, "step 15/20  loss 1"), (15.0, "step 20/20  loss 1"),
               (17.0, "[validation @ step 20,"), (17.5, "[test @ step 20,")]
  times = chaos.timeline(run)
  assert times["eval"] == 2.0 and times["compile"] == 10.0
  assert times["final"] == 0.5
