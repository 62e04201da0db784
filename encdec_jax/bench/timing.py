"""What the benchmarks share: the machine's matmul peak, timing train steps,
printing a JSON line."""

import functools
import json
import time

import jax
import jax.numpy as jnp


def time_steps(step_fn, state, batch, key, steps: int, warmup: int):
  """(state, seconds of each of `steps` timed steps after `warmup`)."""
  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    state, metrics = step_fn(state, batch, key)
    jax.block_until_ready(metrics["loss"])
    if i >= warmup:
      times.append(time.perf_counter() - start)
  return state, times


def time_runs(run, warmup: int, steps: int) -> tuple[float, list[float]]:
  """(seconds of the `warmup` untimed calls, seconds of each timed call) of
  `run(i)`, blocking on what each call returns."""
  start = time.perf_counter()
  for i in range(warmup):
    jax.block_until_ready(run(i))
  warm_s = time.perf_counter() - start
  times = []
  for i in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(run(warmup + i))
    times.append(time.perf_counter() - start)
  return warm_s, times


def emit(record: dict, out: str | None = None) -> None:
  """One JSON line on stdout (the peers' format), appended to `out` too."""
  line = json.dumps(record)
  print(line, flush=True)
  if out:
    with open(out, "a") as f:
      f.write(line + "\n")


def measure_peak_gflops(n: int = 2048, reps: int = 10,
                        dtype: str = "float32") -> float:
  """GFLOP/s of jnp.dot on n x n matrices of `dtype` (bfloat16: accumulated
  in float32, as the models' dots are), best of `reps` (the MFU
  denominator)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  dot = jax.jit(functools.partial(jnp.dot, preferred_element_type=jnp.float32))
  dot(a, a).block_until_ready()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    dot(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * n**3 / min(times) / 1e9
