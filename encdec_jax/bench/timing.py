"""What the benchmarks share: timing train steps, printing a JSON line."""

import json
import time

import jax


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


def emit(record: dict, out: str | None = None) -> None:
  """One JSON line on stdout (the peers' format), appended to `out` too."""
  line = json.dumps(record)
  print(line, flush=True)
  if out:
    with open(out, "a") as f:
      f.write(line + "\n")
