r"""Where a base-small training step's time goes, and what XLA's matmuls reach.

  python -m encdec_jax.bench.breakdown

Times (median of 5, after compiling) the forward pass, forward + loss, the
gradient, the full train step with and without dropout, and the matmul shapes
the model is made of next to a 2048x2048 matmul (this CPU's practical peak).
The explanation of the train MFU in docs/speed.md comes from this command.
"""

import statistics
import time

from absl import app
import jax
import jax.numpy as jnp

from encdec_jax.bench import base_small
from encdec_jax.bench.__main__ import train_fn
from encdec_jax.models import registry
from encdec_jax.models.contract import shift_right
from encdec_jax.tasks import losses
from encdec_jax.train import experiment


def _time(fn, *args, reps: int = 5) -> float:
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _train_step_s(dropout: float) -> float:
  config = base_small.config(dropout_rate=dropout,
                             attention_dropout_rate=dropout)
  config.dropout_prng = "rbg"
  run, _ = train_fn(config, registry.build_model(config.model,
                                                 base_small.VOCAB))
  for i in range(2):
    jax.block_until_ready(run(i))
  times = []
  for i in range(5):
    start = time.perf_counter()
    jax.block_until_ready(run(i))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  config = base_small.config(dropout_rate=0.0, attention_dropout_rate=0.0)
  model = registry.build_model(config.model, base_small.VOCAB)
  params = jax.jit(lambda r: experiment.init_params(model, r, config))(
      jax.random.key(0))
  batch = base_small.batches()[0]
  loss_fn = losses.seq2seq_loss(model, 0.1)
  logits = lambda p: model.apply({"params": p}, batch["inputs"],
                                 shift_right(batch["targets"]))
  rows = [
      ("forward (logits)", _time(logits, params)),
      ("forward + loss", _time(lambda p: loss_fn(p, batch)[0], params)),
      ("gradient (fwd + bwd)",
       _time(jax.grad(lambda p: loss_fn(p, batch)[0]), params)),
      ("train step, no dropout", _train_step_s(0.0)),
      ("train step, dropout 0.1", _train_step_s(0.1)),
  ]
  flops = base_small.flops_per_token("train") * base_small.BATCH * \
      base_small.TGT_LEN
  print(f"base-small: {flops / 1e9:.1f} model GFLOP per train step\n")
  print("| part | ms |\n|---|---:|")
  for name, seconds in rows:
    print(f"| {name} | {1e3 * seconds:.0f} |")

  key = jax.random.key(0)
  tokens = base_small.BATCH * base_small.TGT_LEN
  d, f, v = base_small.D_MODEL, base_small.FFN, base_small.VOCAB
  shapes = [("tokens x d @ d x d (q, k, v, out)", tokens, d, d),
            ("tokens x d @ d x ffn (MLP in)", tokens, d, f),
            ("tokens x ffn @ ffn x d (MLP out)", tokens, f, d),
            ("tokens x d @ d x vocab (logits)", tokens, d, v),
            ("2048 x 2048 @ 2048 x 2048 (peak)", 2048, 2048, 2048)]
  print("\n| matmul | GFLOP/s |\n|---|---:|")
  for name, m, k, n in shapes:
    a = jax.random.normal(key, (m, k))
    b = jax.random.normal(key, (k, n))
    seconds = _time(jnp.dot, a, b, reps=10)
    print(f"| {name} | {2 * m * k * n / seconds / 1e9:.0f} |")


if __name__ == "__main__":
  app.run(main)
