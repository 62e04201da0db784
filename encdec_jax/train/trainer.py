"""The training loop: jitted steps, periodic eval and decoding, checkpoints.

Rerunning the same command with the same workdir resumes from the last
committed checkpoint: params, optimizer state, step, and the position in the
data stream (the dropout RNG is folded from the step, so it resumes too).
SIGINT/SIGTERM (Ctrl-C, a preemption notice) finish the current step, save,
and exit cleanly.
"""

import functools
import os
import signal
import time

import jax

from encdec_jax import checkpoint, parallel
from encdec_jax.data import pipeline
from encdec_jax.train import evaluate, experiment
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import optimizer as optimizer_lib
from encdec_jax.train import step as step_lib


class _StopRequest:
  """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.signal = None
    self._previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    if self.signal is not None:  # a second Ctrl-C: the usual behaviour, now
      self.restore()
      signal.raise_signal(signum)
    self.signal = signum

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _summarize_steps(step_metrics: list[dict]) -> tuple[dict, int]:
  """Per-token means over the steps since the last log, and overlong count.

  Fetching only here keeps the device busy between logs (async dispatch).
  """
  fetched = jax.device_get(step_metrics)
  totals = {k: sum(m[k] for m in fetched)
            for k in ("loss", "nll", "correct", "tokens")}
  latest = {k: fetched[-1][k] for k in ("grad_norm", "learning_rate")}
  return (step_lib.summarize(dict(totals, **latest)),
          int(sum(m["overlong"] for m in fetched)))


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it has a checkpoint)."""
  start = time.time()
  exp = experiment.setup(config, workdir, train_tokenizer=True)
  experiment.save_config(config, workdir)
  tx = optimizer_lib.make_optimizer(config)
  lr_fn = optimizer_lib.learning_rate_schedule(config)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
  state, state_shardings = experiment.create_state(exp, tx, init_rng)
  mw.log(f"model: {experiment.count_params(state.params):,} params, "
         f"vocab {exp.tokenizer.vocab_size}, {len(exp.sources['train']):,} "
         f"training examples, {jax.device_count()} device(s)")

  manager = checkpoint.make_manager(workdir,
                                    max_to_keep=config.keep_checkpoints)
  train_iter = iter(pipeline.train_dataset(exp.sources["train"], exp.tokenizer,
                                           config, seed=config.seed))
  meta = {"model": config.model.to_dict(), "dataset": config.dataset,
          "vocab_size": exp.tokenizer.vocab_size}
  if manager.latest_step() is not None:
    checkpoint.check_compatible(checkpoint.read_meta(manager), meta,
                                str(manager.directory))
    state, data_state, _ = checkpoint.restore(manager, state)
    train_iter.set_state(data_state)
    mw.log(f"resumed from {manager.directory} at step {int(state.step)}")

  replicated = parallel.replicated(exp.mesh)
  train_step = jax.jit(
      functools.partial(step_lib.train_step, model=exp.model, tx=tx,
                        label_smoothing=config.label_smoothing,
                        learning_rate_fn=lr_fn),
      in_shardings=(state_shardings, parallel.batch_sharding(exp.mesh),
                    replicated),
      out_shardings=(state_shardings, replicated),
      donate_argnums=0)
  eval_step_fn = evaluate.make_eval_step(exp.model, config.label_smoothing)
  greedy_fn = evaluate.make_greedy_fn(exp.model, config.max_decode_length)
  writer = mw.MetricsWriter(workdir)

  saved_step = manager.latest_step()

  def save():
    nonlocal saved_step
    if saved_step != step:  # a stop right after a periodic save saves once
      checkpoint.save(manager, state, train_iter.get_state(), meta)
      saved_step = step

  stop = _StopRequest()
  first_step = int(state.step)
  step = first_step
  pending, overlong_total = [], 0
  tick, tick_step = time.time(), first_step
  try:
    while step < config.num_train_steps:
      batch = parallel.global_batch(next(train_iter), exp.mesh)
      state, metrics = train_step(state, batch, train_rng)
      step += 1
      pending.append(metrics)
      if step % config.log_every == 0 or step == config.num_train_steps:
        summary, overlong = _summarize_steps(pending)
        overlong_total += overlong
        now = time.time()
        summary["steps_per_sec"] = (step - tick_step) / (now - tick)
        summary["overlong_examples"] = overlong_total
        writer.write(step, "train", summary)
        mw.log(mw.progress_line(step, config.num_train_steps, summary,
                                summary["steps_per_sec"], now - start))
        pending, tick, tick_step = [], now, step
      if step % config.checkpoint_every == 0 or step == config.num_train_steps:
        save()
      if step % config.eval_every == 0 and step < config.num_train_steps:
        evaluate.evaluate_and_report(
            exp, state.params, greedy_fn, eval_step_fn, writer, step,
            time.time() - start, num_loss=config.num_eval_examples,
            num_decode=config.num_decode_examples)
      if stop.signal is not None:
        save()
        manager.wait_until_finished()
        mw.log(f"stopped by signal {stop.signal} at step {step}; checkpoint "
               f"saved in {manager.directory}. Rerun the same command to "
               "resume.")
        return {"stopped_at_step": step}
    save()  # no-op unless the run ended off a checkpoint step (e.g. 0 steps)
    results = {"step": step}
    results["validation"] = evaluate.evaluate_and_report(
        exp, state.params, greedy_fn, eval_step_fn, writer, step,
        time.time() - start, num_loss=config.num_eval_examples,
        num_decode=config.num_decode_examples)
    if config.test_at_end:
      results["test"] = evaluate.evaluate_and_report(
          exp, state.params, greedy_fn, eval_step_fn, writer, step,
          time.time() - start, split="test")
    results["wall_time_s"] = time.time() - start
    experiment.write_json(os.path.join(workdir, "results.json"), results)
    mw.log(f"done in {results['wall_time_s'] / 60:.1f} min; results in "
           f"{os.path.join(workdir, 'results.json')}")
    return results
  finally:
    stop.restore()
    manager.wait_until_finished()
    writer.close()
