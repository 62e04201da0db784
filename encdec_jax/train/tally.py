"""What the training loop reports between logs: per-token means, the
overlong count, and the steps a NaN/Inf loss or gradient skipped.

Step metrics stay on the device until a log or a save needs them, so the
loop never waits for a step to finish (async dispatch).
"""

import jax

from encdec_jax.tasks import evaluation
from encdec_jax.train import metrics_writer as mw


def _nonfinite_steps(step_metrics: list[dict], last_step: int) -> list[int]:
  """The steps (1-based, as logged) among `step_metrics` that were skipped."""
  flags = jax.device_get([m["nonfinite"] for m in step_metrics])
  first = last_step - len(step_metrics) + 1
  return [first + i for i, bad in enumerate(flags) if bad]


def _summarize_steps(step_metrics: list[dict]) -> tuple[dict, int]:
  """Per-token means over the steps since the last log, and overlong count."""
  fetched = jax.device_get(step_metrics)
  totals = {k: sum(m[k] for m in fetched)
            for k in ("loss", "nll", "correct", "tokens") if k in fetched[0]}
  latest = {k: v for k, v in fetched[-1].items()
            if k.startswith(("grad_norm", "learning_rate"))}
  return (evaluation.summarize(dict(totals, **latest)),
          int(sum(m["overlong"] for m in fetched)))


class Tally:
  """Step metrics since the last log and since the last finiteness check.

  config.nan_policy (checked in config_checks) says what a skipped step
  does: train_step never applies its update; "stop" ends the run here,
  before anything is saved, "skip" counts it and goes on.
  """

  def __init__(self, config, step: int, now: float):
    self.policy = config.get("nan_policy", "stop")
    self.pending, self.unchecked = [], []
    self.overlong_total = self.skipped_total = 0
    self.empty_total = 0  # pairs with an empty side (config.empty_pairs)
    self.empty_policy = config.get("empty_pairs", "skip")
    self.empty_reported = False
    self.tick, self.tick_step = now, step

  def add(self, metrics: dict) -> None:
    self.pending.append(metrics)
    self.unchecked.append(metrics)

  def check_finite(self, step: int, manager) -> None:
    """Counts skipped steps; under "stop", ends the run without saving."""
    bad = _nonfinite_steps(self.unchecked, step)
    self.unchecked = []
    self.skipped_total += len(bad)
    if bad and self.policy == "stop":
      last = manager.latest_step()
      where = (f"the last checkpoint is step {last} in {manager.directory}"
               if last is not None else "no checkpoint was written")
      raise FloatingPointError(
          f"step {bad[0]}: the loss or gradient is NaN/Inf, so training "
          f"stopped without saving (config.nan_policy='stop'); {where}. "
          "Lower the learning rate (or raise warmup_steps) and rerun to "
          "resume, or set --config.nan_policy=skip to skip such steps.")
    if bad:
      mw.log(f"skipped {len(bad)} step(s) with a NaN/Inf loss or gradient "
             f"(first: step {bad[0]}; {self.skipped_total} in all)")

  def summary(self, step: int, now: float) -> dict:
    """The train metrics of the steps since the last summary."""
    summary, overlong = _summarize_steps(self.pending)
    self.overlong_total += overlong
    summary["steps_per_sec"] = (step - self.tick_step) / (now - self.tick)
    summary["overlong_examples"] = self.overlong_total
    self.empty_total += sum(int(m.get("empty", 0))
                            for m in jax.device_get(self.pending))
    summary["empty_examples"] = self.empty_total
    if self.empty_total and not self.empty_reported:
      self.empty_reported = True
      mw.log(f"warning: training pairs with an empty source or target "
             f"(by step {step}: {self.empty_total}) are "
             + ("trained on" if self.empty_policy == "keep" else
                "given weight 0") + f" (config.empty_pairs="
             f"{self.empty_policy!r}); counted as empty_examples")
    summary["nonfinite_steps"] = self.skipped_total
    self.pending, self.tick, self.tick_step = [], now, step
    return summary
