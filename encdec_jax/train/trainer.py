"""The training loop: jitted steps, periodic eval and decoding, checkpoints.

Rerunning the same command with the same workdir resumes from the last
committed checkpoint: params, optimizer state, step, and the position in the
data stream (the dropout RNG is folded from the step, so it resumes too).
SIGINT/SIGTERM (Ctrl-C, a preemption notice) finish the current step, save,
and exit cleanly.
"""

import dataclasses
import os
import time
from typing import Any

import jax

from encdec_jax import checkpoint, parallel, starts
from encdec_jax.train import evaluators, example_log, experiment
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import param_groups
from encdec_jax.train import step as step_lib
from encdec_jax.train import stop_request
from encdec_jax.train import workdir_lock
from encdec_jax.train import tally as tally_lib


def _describe_groups(plan, params, step: int) -> str:
  counts = param_groups.count_by_group(plan, params)
  training = plan.training(step)
  parts = []
  for g in plan.groups:
    start = plan.start_steps[g]
    when = ("frozen" if start is None else
            f"lr {plan.settings[g]['learning_rate']:.2g}" +
            ("" if g in training else f" from step {start}"))
    parts.append(f"{g} {counts[g]:,} ({when})")
  return "parameter groups: " + ", ".join(parts)


def jit_train_step(exp, plan, loss_fn, tx, state, step: int):
  """The train step of `step`'s stage, jitted as the trainer runs it: params
  sharded by their logical axes, optimizer state like its params, batches
  over the data axes, the state donated. (state, batch, rng) -> (state,
  metrics)."""
  replicated = parallel.replicated(exp.mesh)
  shardings = parallel.state_shardings(state, exp.mesh,
                                       parallel.axis_rules(exp.config))
  return jax.jit(
      step_lib.bind_train_step(loss_fn, tx, plan, exp.config, step),
      in_shardings=(shardings, parallel.batch_sharding(exp.mesh), replicated),
      out_shardings=(shardings, replicated),
      donate_argnums=0)


class _Stepper:
  """The jitted train step of the current unfreezing stage.

  Which parameters train (and so the optimizer and the differentiated
  subtree) changes only at the plan's stage boundaries; there the optimizer is
  rebuilt, the state of groups already training is carried over, and the step
  is compiled again.
  """

  def __init__(self, exp, plan, loss_fn, rng):
    self.exp, self.plan, self.loss_fn, self.rng = exp, plan, loss_fn, rng
    self.training = None

  def optimizer(self, step: int, params):
    return param_groups.make_optimizer(self.plan, self.exp.config, step, params)

  def enter(self, step: int, state):
    """Switches to the stage of `step`; returns the (migrated) state."""
    training = self.plan.training(step)
    if training == self.training:
      return state
    tx = self.optimizer(step, state.params)
    rules = parallel.axis_rules(self.exp.config)
    if self.training is not None:
      opt_state = param_groups.migrate_opt_state(state.opt_state, tx,
                                              state.params, self.training)
      state = state.replace(opt_state=opt_state)
      state = jax.device_put(state, parallel.state_shardings(
          state, self.exp.mesh, rules))
      mw.log(f"step {step}: now training {sorted(training)}")
    self.training = training
    self.step_fn = jit_train_step(self.exp, self.plan, self.loss_fn, tx,
                                  state, step)
    return state

  def __call__(self, state, batch):
    return self.step_fn(state, batch, self.rng)


def dropout_key(config) -> jax.Array:
  """The base key of dropout (folded with the step in train_step).

  `config.dropout_prng` picks the generator: dropout masks are a large share
  of a CPU training step, and "rbg" makes them ~1.5x cheaper than the default
  threefry (MaxText uses it too); parameters are initialised with threefry
  either way.
  """
  impl = config.get("dropout_prng", "threefry2x32")  # see config_checks
  return jax.random.key(config.seed + 1, impl=impl)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it has a checkpoint).

  SIGINT/SIGTERM are caught from the very start: one that arrives while the
  run is still setting up (a preemption notice during compilation) stops it
  at the first step boundary like any other.
  """
  stop = stop_request.StopRequest()
  try:
    # Before check_config starts the backend.
    experiment.request_determinism(config)
    # Checked before the lock file is written: a bad value writes nothing.
    experiment.check_config(config)
    start = starts.get(config)
    if not start.trains:  # an exported adapter is applied, not trained
      raise ValueError(start.train_refusal)
    experiment.check_writable(workdir)
    with workdir_lock.WorkdirLock(workdir):  # one run per workdir
      return _train(config, workdir, stop)
  finally:
    stop.restore()


@dataclasses.dataclass
class _Run:
  """What _set_up builds for a run, and the outputs the loop writes to."""
  config: Any
  workdir: str
  exp: Any  # experiment.Experiment
  manager: Any  # its checkpoint manager
  meta: dict  # saved with every checkpoint
  plan: Any  # param_groups.Plan
  stepper: _Stepper
  init_rng: jax.Array
  start: float  # time.time() at the start
  train_iter: Any = None
  evaluate_fn: Any = None
  writer: Any = None
  examples: Any = None  # example_log.ExampleLog, if recorded
  saved_step: int | None = None
  stop: stop_request.StopRequest | None = None


def _train(config, workdir: str, stop: stop_request.StopRequest) -> dict:
  """Set up, resume (or start afresh), loop, then finish or stop."""
  run = _set_up(config, workdir)
  run.stop = stop
  state, resume_step = _resume_or_start(run)
  _open_outputs(run, resume_step)
  try:
    _evaluate_resumed_step(run, state, resume_step)
    state, step = _loop(run, state, stop)
    if stop.signal is not None:
      return _stop(run, state, step, stop.signal)
    return _finish(run, state, step)
  finally:
    checkpoint.wait_until_committed(run.manager)
    run.writer.close()
    if run.examples:
      run.examples.close()


def _set_up(config, workdir: str) -> _Run:
  """Checks the config, opens the data, builds the model and the step."""
  start = time.time()
  experiment.request_determinism(config)
  exp = experiment.setup(config, workdir, train_tokenizer=True)
  # The parameter groups are checked before config.json and checkpoints/
  # are written.
  plan = param_groups.make_plan(config, experiment.abstract_params(exp))
  manager = checkpoint.make_manager(workdir,
                                    max_to_keep=config.keep_checkpoints)
  stepper = _Stepper(exp, plan, exp.task.make_loss(exp.model, exp.config),
                     dropout_key(config))
  run = _Run(config, workdir, exp, manager, experiment.resume_meta(exp),
             plan, stepper, jax.random.key(config.seed), start)
  _check_newest_fits(run)  # before config.json is rewritten
  experiment.save_config(config, workdir)
  return run


def _check_newest_fits(run: _Run) -> None:
  """A newest checkpoint that is readable but of another configuration (a
  LoRA run without its flags) is refused before anything is written;
  checkpoint.resume checks each step it tries again."""
  step = run.manager.latest_step()
  if step is None:
    return
  run.exp.start.check_resume(run.manager, run.meta)  # e.g. the same base
  try:
    saved_meta = checkpoint.read_meta(run.manager, step)
  except Exception:  # unreadable: checkpoint.resume's policy decides
    return
  checkpoint.check_compatible(saved_meta, run.meta, str(run.manager.directory),
                              experiment.unchecked_meta(run.exp))
  checkpoint.check_fits(run.manager, step, _abstract_state(run, step),
                        saved_meta, run.meta, run.config)


def _optimizer_for(run: _Run, step: int):
  """make_tx of a state saved at `step`: a checkpoint of step s holds the
  optimizer state of the stage of s - 1."""
  first = max(step - 1, 0)
  return lambda params: run.stepper.optimizer(first, params)


def _abstract_state(run: _Run, step: int):
  """Shapes, dtypes and shardings of the state a checkpoint of `step`
  restores into; nothing is initialised (a resume holds one state only)."""
  abstract = jax.eval_shape(
      lambda rng: experiment.create_state(
          run.exp, _optimizer_for(run, step), rng)[0], run.init_rng)
  return run.exp.start.saved(run.config, parallel.abstract(
      abstract, parallel.state_shardings(abstract, run.exp.mesh,
                                         parallel.axis_rules(run.config))))


def _fresh_state(run: _Run):
  """A new state whose params the start gives: initialised, an encoder
  transferred, an import, a LoRA base beside fresh adapters."""
  state = experiment.create_state(run.exp, _optimizer_for(run, 0),
                                  run.init_rng)[0]
  return state.replace(params=run.exp.start.initial_params(
      run.config, state.params, lambda: experiment.encoder_spec(run.exp),
      mw.log))


def _resume_or_start(run: _Run):
  """(state, resume step): the newest readable checkpoint's, with the data
  stream at its position, or a fresh state at step 0."""
  run.train_iter = iter(run.exp.task.train_dataset(run.exp))
  checkpoint.remove_unfinished(run.manager)
  resume_step = 0
  if run.manager.latest_step() is not None:
    run.exp.start.check_resume(run.manager, run.meta)  # e.g. the same base
    state, data_state, resume_step = checkpoint.resume(
        run.manager, lambda step: _abstract_state(run, step), run.meta,
        policy=run.config.get("corrupt_checkpoint", "fallback"), log=mw.log,
        unchecked=experiment.unchecked_meta(run.exp), config=run.config)
    run.train_iter.set_state(data_state)
    state = run.exp.start.completed(
        run.config, state, lambda: experiment.abstract_params(run.exp))
    mw.log(f"resumed from {run.manager.directory} at step {int(state.step)}")
  else:
    state = _fresh_state(run)
  first = max(resume_step - 1, 0)
  state = run.stepper.enter(first, state)
  exp = run.exp
  vocab = f"vocab {exp.tokenizer.vocab_size}, " if exp.tokenizer else ""
  mw.log(f"model: {experiment.count_params(state.params):,} params, "
         f"{vocab}{len(exp.sources['train']):,} "
         f"training examples, {jax.device_count()} device(s), mesh "
         + " ".join(f"{a}={n}" for a, n in exp.mesh.shape.items()))
  mw.log(_describe_groups(run.plan, state.params, first))
  return state, resume_step


def _open_outputs(run: _Run, resume_step: int) -> None:
  run.evaluate_fn = evaluators.make_evaluator(run.exp)
  # Cut back to resume_step, like the example log: the steps after it are
  # trained again and would otherwise show twice.
  run.writer = mw.MetricsWriter(run.workdir, resume_step)
  run.saved_step = run.manager.latest_step()
  if run.config.get("record_example_ids", False):
    run.examples = example_log.ExampleLog(run.workdir, resume_step)


def _evaluate_resumed_step(run: _Run, state, resume_step: int) -> None:
  """Evaluates again at a resumed eval step: a kill between its checkpoint
  and the end of its evaluation would otherwise leave no row for it (the
  writer dropped any partial one)."""
  config = run.config
  if (0 < resume_step < config.num_train_steps and
      resume_step % config.eval_every == 0):
    _evaluate(run, state, resume_step)


def _loop(run: _Run, state, stop: stop_request.StopRequest):
  """Trains to config.num_train_steps, or to the first step boundary after
  a stop signal; (state, step)."""
  config = run.config
  step = int(state.step)
  tally = tally_lib.Tally(config, step, time.time())
  while step < config.num_train_steps and stop.signal is None:
    batch = next(run.train_iter)
    example_ids = batch.pop("example_id")
    batch = parallel.global_batch(batch, run.exp.mesh)
    state = run.stepper.enter(step, state)
    state, metrics = run.stepper(state, batch)
    step += 1
    if run.examples:
      run.examples.record(step, example_ids)
    tally.add(metrics)
    _report(run, tally, step, stopping=stop.signal is not None)
    _save_and_evaluate(run, state, step)
  return state, step


def _report(run: _Run, tally, step: int, stopping: bool) -> None:
  """Checks for skipped steps before any save (a NaN run writes nothing),
  and logs the train metrics every config.log_every steps."""
  config = run.config
  last = step == config.num_train_steps
  log_due = step % config.log_every == 0 or last
  save_due = step % config.checkpoint_every == 0 or last or stopping
  if log_due or save_due:
    tally.check_finite(step, run.manager)
  if log_due:
    now = time.time()
    summary = tally.summary(step, now)
    run.writer.write(step, "train", summary)
    mw.log(mw.progress_line(step, config.num_train_steps, summary,
                            summary["steps_per_sec"], now - run.start))


def _save_and_evaluate(run: _Run, state, step: int) -> None:
  config = run.config
  if step % config.checkpoint_every == 0 or step == config.num_train_steps:
    _save(run, state, step)
  if step % config.eval_every == 0 and step < config.num_train_steps:
    _evaluate(run, state, step)


def _evaluate(run: _Run, state, step: int, split: str = "validation",
              **sizes) -> dict | None:
  """The evaluation of `split` at `step`, or None if a stop request cut it
  short (the caller then stops: its checkpoint is saved or due)."""
  config = run.config
  if split == "validation":
    sizes = dict(num_loss=config.num_eval_examples,
                 num_decode=config.num_decode_examples)
  try:
    with run.stop.evaluation():
      return run.evaluate_fn(state.params, run.writer, step,
                             time.time() - run.start, split=split, **sizes)
  except stop_request.EvaluationStopped:
    mw.log(f"the {split} evaluation at step {step} was cut short by signal "
           f"{run.stop.signal}; the rerun evaluates again.")
    return None


def _save(run: _Run, state, step: int) -> None:
  if run.saved_step != step:  # a stop right after a periodic save saves once
    if run.examples:
      run.examples.flush()  # the log must cover every step a checkpoint holds
    checkpoint.save(run.manager, run.exp.start.saved(run.config, state),
                    run.train_iter.get_state(), run.meta)
    run.saved_step = step


def _stop(run: _Run, state, step: int, signum: int) -> dict:
  """Saves, waits for the commit and says how to resume."""
  _save(run, state, step)
  checkpoint.wait_until_committed(run.manager)
  mw.log(f"stopped by signal {signum} at step {step}; checkpoint saved in "
         f"{run.manager.directory}. Rerun the same command to resume.")
  return {"stopped_at_step": step}


def _finish(run: _Run, state, step: int) -> dict:
  """The last save, validation (and test) metrics, results.json."""
  config, workdir = run.config, run.workdir
  _save(run, state, step)  # no-op unless the run ended off a checkpoint step
  results = {"step": step}
  for split in ("validation", "test") if config.test_at_end else (
      "validation",):
    results[split] = _evaluate(run, state, step, split)
    if results[split] is None:  # stopped: no results.json until all ran
      return _stop(run, state, step, run.stop.signal)
  results["wall_time_s"] = time.time() - run.start
  experiment.write_json(os.path.join(workdir, "results.json"), results)
  mw.log(f"done in {results['wall_time_s'] / 60:.1f} min; results in "
         f"{os.path.join(workdir, 'results.json')}")
  return results
