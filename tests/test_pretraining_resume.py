"""A pretraining run killed (SIGKILL) at random moments and rerun ends bit
for bit where an uninterrupted run ends: params, optimizer state, the
examples consumed in order (the packed stream's grain state and the noise
drawn by stream position), each metrics row once. Runs the chaos bench
(encdec_jax/bench/chaos.py) on experiments/pretrain_span_corruption.py,
made tiny; slow (2.5-7.5 min on 2 shared cores)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The model made tiny; the bench scales the steps and saves to the machine.
TINY = ("vocab_size=300", "batch_size=8", "eval_batch_size=16",
        "num_eval_examples=32", "model.emb_dim=32", "model.qkv_dim=32",
        "model.num_heads=2", "model.mlp_dim=64", "model.num_encoder_layers=1",
        "model.num_decoder_layers=1", "model.relative_position_buckets=8")


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["span_corruption", "text_infilling"])
def test_a_killed_pretraining_run_ends_bit_identical(tmp_path, arm):
  command = [sys.executable, "-m", "encdec_jax.bench.chaos",
             f"--workdir={tmp_path}", "--kills=3", "--seed=7",
             f"--config=experiments/pretrain_span_corruption.py:{arm}",
             *(f"--override={o}" for o in TINY)]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          timeout=900)
  assert result.returncode == 0 and "PASS" in result.stdout, (
      result.stdout[-3000:] + result.stderr[-3000:])
