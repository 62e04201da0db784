"""The chaos command under the compiler users run (slow: default XLA
optimisations, a fresh seed each time; `python -m encdec_jax.bench.chaos`
is the full 10-kill version, quoted in docs/reliability.md)."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  assert kills and all("killed" in l or "missed" in l for l in kills)
  assert "PASS: bit-identical params and optimizer state" in lines[-1]
