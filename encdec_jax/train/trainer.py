"""The training loop: jitted steps, periodic eval and decoding, checkpoints.

Rerunning the same command with the same workdir resumes from the last
committed checkpoint: params, optimizer state, step, and the position in the
data stream (the dropout RNG is folded from the step, so it resumes too).
SIGINT/SIGTERM (Ctrl-C, a preemption notice) finish the current step, save,
and exit cleanly.
"""

import os
import signal
import time

import jax

from encdec_jax import checkpoint, parallel
from encdec_jax.tasks import evaluation
from encdec_jax.train import evaluators, example_log, experiment
from encdec_jax.train import metrics_writer as mw
from encdec_jax.train import param_groups
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


NAN_POLICIES = ("stop", "skip")


def nan_policy(config) -> str:
  """What a non-finite loss/gradient does (train_step always skips its
  update): "stop" the run, or "skip" the step, count it and go on."""
  policy = config.get("nan_policy", "stop")
  if policy not in NAN_POLICIES:
    raise ValueError(f"config.nan_policy={policy!r} is not known; use one of "
                     f"{NAN_POLICIES}.")
  return policy


def _nonfinite_steps(step_metrics: list[dict], last_step: int) -> list[int]:
  """The steps (1-based, as logged) among `step_metrics` that were skipped."""
  flags = jax.device_get([m["nonfinite"] for m in step_metrics])
  first = last_step - len(step_metrics) + 1
  return [first + i for i, bad in enumerate(flags) if bad]


def _summarize_steps(step_metrics: list[dict]) -> tuple[dict, int]:
  """Per-token means over the steps since the last log, and overlong count.

  Fetching only here keeps the device busy between logs (async dispatch).
  """
  fetched = jax.device_get(step_metrics)
  totals = {k: sum(m[k] for m in fetched)
            for k in ("loss", "nll", "correct", "tokens") if k in fetched[0]}
  latest = {k: v for k, v in fetched[-1].items()
            if k.startswith(("grad_norm", "learning_rate"))}
  return (evaluation.summarize(dict(totals, **latest)),
          int(sum(m["overlong"] for m in fetched)))


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


PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def dropout_key(config) -> jax.Array:
  """The base key of dropout (folded with the step in train_step).

  `config.dropout_prng` picks the generator: dropout masks are a large share
  of a CPU training step, and "rbg" makes them ~1.5x cheaper than the default
  threefry (MaxText uses it too); parameters are initialised with threefry
  either way.
  """
  impl = config.get("dropout_prng", "threefry2x32")
  if impl not in PRNG_IMPLS:
    raise ValueError(f"config.dropout_prng={impl!r} is not known; use one of "
                     f"{PRNG_IMPLS}.")
  return jax.random.key(config.seed + 1, impl=impl)


def request_determinism(config) -> None:
  """config.deterministic (default True): bit-identical reruns and resumes.

  XLA on CPU and TPU is deterministic already, so this costs nothing there
  (the resume tests check bit-equality on CPU). On GPU it adds
  --xla_gpu_deterministic_ops (deterministic scatter-adds and reductions,
  slower: embedding gradients are scatter-adds). XLA reads the flag when the
  backend starts, so call this before the first JAX computation.
  """
  flag = "--xla_gpu_deterministic_ops=true"
  flags = os.environ.get("XLA_FLAGS", "")
  if config.get("deterministic", True) and flag not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


CORRUPT_POLICIES = ("fallback", "error")


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return (text[0] if text else type(error).__name__)[:300]


def _resume(exp, manager, make_state, meta):
  """(state, data_state, step) of the newest readable checkpoint.

  An unreadable step (truncated or tampered files) is an error under
  config.corrupt_checkpoint="error"; under "fallback" it is moved to
  <workdir>/unreadable_checkpoints/ with a warning and the next older step is
  tried. A checkpoint of another experiment is always an error.
  """
  policy = exp.config.get("corrupt_checkpoint", "fallback")
  if policy not in CORRUPT_POLICIES:
    raise ValueError(f"config.corrupt_checkpoint={policy!r} is not known; "
                     f"use one of {CORRUPT_POLICIES}.")
  steps = sorted(manager.all_steps(), reverse=True)
  for i, step in enumerate(steps):
    where = os.path.join(str(manager.directory), str(step))
    try:
      saved_meta = checkpoint.read_meta(manager, step)
    except Exception as e:  # orbax raises plain Exceptions for bad files
      problem = e
    else:
      checkpoint.check_compatible(saved_meta, meta, str(manager.directory))
      try:
        state, data_state, _ = checkpoint.restore(manager, make_state(step),
                                                  step)
        return state, data_state, step
      except Exception as e:
        problem = e
    older = steps[i + 1] if i + 1 < len(steps) else None
    if policy == "error" or older is None:
      raise ValueError(
          f"checkpoint {where} cannot be read ({_first_line(problem)}); "
          + ("move it away to resume from the one before, or set "
             "--config.corrupt_checkpoint=fallback" if older is not None else
             "no older checkpoint to fall back to: use a new --workdir"))
    moved = checkpoint.set_aside(manager, step)
    mw.log(f"WARNING: checkpoint {where} cannot be read "
           f"({_first_line(problem)}); moved it to {moved} and resuming "
           f"from step {older}")


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it has a checkpoint).

  SIGINT/SIGTERM are caught from the very start: one that arrives while the
  run is still setting up (a preemption notice during compilation) stops it
  at the first step boundary like any other.
  """
  stop = _StopRequest()
  try:
    return _train(config, workdir, stop)
  finally:
    stop.restore()


def _train(config, workdir: str, stop: _StopRequest) -> dict:
  start = time.time()
  request_determinism(config)
  exp = experiment.setup(config, workdir, train_tokenizer=True)
  experiment.save_config(config, workdir)
  init_rng = jax.random.key(config.seed)
  train_rng = dropout_key(config)
  manager = checkpoint.make_manager(workdir,
                                    max_to_keep=config.keep_checkpoints)
  meta = experiment.checkpoint_meta(exp)

  plan = param_groups.make_plan(config, experiment.abstract_params(exp))
  stepper = _Stepper(exp, plan, exp.task.make_loss(exp.model, exp.config),
                     train_rng)

  def make_state(step):
    # A checkpoint of step s holds the optimizer state of the stage of s-1.
    first = max(step - 1, 0)
    return experiment.create_state(
        exp, lambda params: stepper.optimizer(first, params), init_rng)[0]

  train_iter = iter(exp.task.train_dataset(exp))
  resume_step = None
  checkpoint.remove_unfinished(manager)
  if manager.latest_step() is not None:
    state, data_state, resume_step = _resume(exp, manager, make_state, meta)
    train_iter.set_state(data_state)
    mw.log(f"resumed from {manager.directory} at step {int(state.step)}")
  else:
    state = make_state(0)
    if config.get("init_encoder"):
      state = state.replace(params=experiment.load_encoder(exp,
                                                           state.params))
  first = max((resume_step or 0) - 1, 0)
  state = stepper.enter(first, state)
  vocab = f"vocab {exp.tokenizer.vocab_size}, " if exp.tokenizer else ""
  mw.log(f"model: {experiment.count_params(state.params):,} params, "
         f"{vocab}{len(exp.sources['train']):,} "
         f"training examples, {jax.device_count()} device(s), mesh "
         + " ".join(f"{a}={n}" for a, n in exp.mesh.shape.items()))
  mw.log(_describe_groups(plan, state.params, first))

  evaluate_fn = evaluators.make_evaluator(exp)
  writer = mw.MetricsWriter(workdir)
  saved_step = manager.latest_step()
  examples = (example_log.ExampleLog(workdir, resume_step or 0)
              if config.get("record_example_ids", False) else None)

  def save():
    nonlocal saved_step
    if saved_step != step:  # a stop right after a periodic save saves once
      if examples:
        examples.flush()  # the log must cover every step a checkpoint holds
      checkpoint.save(manager, state, train_iter.get_state(), meta)
      saved_step = step

  policy = nan_policy(config)
  skipped_total = 0

  def check_finite(step_metrics):
    """Counts skipped steps; under "stop", ends the run without saving."""
    nonlocal skipped_total
    bad = _nonfinite_steps(step_metrics, step)
    skipped_total += len(bad)
    if bad and policy == "stop":
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
             f"(first: step {bad[0]}; {skipped_total} in all)")

  first_step = int(state.step)
  step = first_step
  pending, unchecked, overlong_total = [], [], 0
  tick, tick_step = time.time(), first_step
  try:
    while step < config.num_train_steps:
      batch = next(train_iter)
      example_ids = batch.pop("example_id")
      batch = parallel.global_batch(batch, exp.mesh)
      state = stepper.enter(step, state)
      state, metrics = stepper(state, batch)
      step += 1
      if examples:
        examples.record(step, example_ids)
      pending.append(metrics)
      unchecked.append(metrics)
      log_due = step % config.log_every == 0 or step == config.num_train_steps
      save_due = (step % config.checkpoint_every == 0 or
                  step == config.num_train_steps or stop.signal is not None)
      if log_due or save_due:  # before any save: a NaN run writes nothing
        check_finite(unchecked)
        unchecked = []
      if log_due:
        summary, overlong = _summarize_steps(pending)
        overlong_total += overlong
        now = time.time()
        summary["steps_per_sec"] = (step - tick_step) / (now - tick)
        summary["overlong_examples"] = overlong_total
        summary["nonfinite_steps"] = skipped_total
        writer.write(step, "train", summary)
        mw.log(mw.progress_line(step, config.num_train_steps, summary,
                                summary["steps_per_sec"], now - start))
        pending, tick, tick_step = [], now, step
      if step % config.checkpoint_every == 0 or step == config.num_train_steps:
        save()
      if step % config.eval_every == 0 and step < config.num_train_steps:
        evaluate_fn(state.params, writer, step, time.time() - start,
                    num_loss=config.num_eval_examples,
                    num_decode=config.num_decode_examples)
      if stop.signal is not None:
        save()
        checkpoint.wait_until_committed(manager)
        mw.log(f"stopped by signal {stop.signal} at step {step}; checkpoint "
               f"saved in {manager.directory}. Rerun the same command to "
               "resume.")
        return {"stopped_at_step": step}
    save()  # no-op unless the run ended off a checkpoint step (e.g. 0 steps)
    results = {"step": step}
    results["validation"] = evaluate_fn(
        state.params, writer, step, time.time() - start,
        num_loss=config.num_eval_examples,
        num_decode=config.num_decode_examples)
    if config.test_at_end:
      results["test"] = evaluate_fn(state.params, writer, step,
                                    time.time() - start, split="test")
    results["wall_time_s"] = time.time() - start
    experiment.write_json(os.path.join(workdir, "results.json"), results)
    mw.log(f"done in {results['wall_time_s'] / 60:.1f} min; results in "
           f"{os.path.join(workdir, 'results.json')}")
    return results
  finally:
    checkpoint.wait_until_committed(manager)
    writer.close()
    if examples:
      examples.close()
