"""The trainer's view of evaluation: the task's evaluator (tasks/<task>.py),
with its results written to TensorBoard/metrics.jsonl and logged."""

from encdec_jax.train import metrics_writer as mw


def make_evaluator(exp):
  """(params, writer, step, elapsed, split=, num_loss=, num_decode=) ->
  metrics of the experiment's task on `split`."""
  evaluate = exp.task.make_evaluator(exp)

  def evaluate_and_log(params, writer, step, elapsed, split="validation",
                       num_loss=None, num_decode=None) -> dict:
    result = evaluate(params, split, num_loss=num_loss, num_decode=num_decode)
    metrics = dict(result.metrics, wall_time_s=elapsed)
    writer.write(step, split, metrics)
    mw.log(f"[{split} @ step {step}, {elapsed / 60:.1f} min] "
           f"{result.summary}")
    if result.samples:
      mw.log("\n".join(result.samples))
      writer.text(step, f"{split}/samples", "\n\n".join(result.samples))
    return metrics

  return evaluate_and_log
