r"""Kill a real training run again and again; it must end as if never killed.

  python -m encdec_jax.bench.chaos --workdir=/tmp/chaos [--kills=10]
      [--seed=N] [--config=experiments/tiny.py] [--override=steps=40 ...]

Runs `python -m encdec_jax.main --config=... --workdir=...` (the README's
command on the main job's tiny config, default XLA settings: the compiler
the users run, not the tests' JAX_DISABLE_MOST_OPTIMIZATIONS) once without
interruption, then once more with `--kills` SIGKILLs at random moments —
each followed by a rerun of the same command — and compares the two:
final params and optimizer state bit for bit, the consumed-example log
(example_ids.tsv), results.json present, and metrics.jsonl holding each
step once (a resumed run cuts back the rows of steps it redoes).

The run is scaled to the machine first: a short probe measures the step
time, and the run gets checkpoints every ~1.5 s of training and enough of
them for every kill (unless --override sets the steps). Each kill is
planned in a phase, every phase at least once when --kills allows, the
final one last:
  compile   after the `model:` line, before the first progress line
  step      between two progress lines
  save      while a checkpoint is being written (*.orbax-checkpoint-tmp)
  eval      between the progress line of an eval step and its results
  final     between the last validation results and the test results
and lands only once the run has a committed checkpoint and (but in
compile, which has not started training) has committed a step beyond the
furthest one committed before it began: the run advances between kills,
and every kill tests a resume. The seed (printed; fresh unless --seed is
given) replays a failing run. One line per kill says where it landed and
what the rerun resumed from; then the coverage (kills per phase, how many
were followed by a resume from a committed checkpoint) and the verdict.
PASS needs the same result as the uninterrupted run AND the coverage: most
kills followed by a resume from a committed checkpoint, and every phase hit
once --kills reaches their number. The exit code is 0 only on PASS.
"""

import glob
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

from absl import app, flags, logging
import numpy as np
from encdec_jax.train import example_log

flags.DEFINE_string("workdir", None, "Scratch directory (two runs go in it).")
flags.DEFINE_integer("kills", 10, "SIGKILLs of the interrupted run.")
flags.DEFINE_integer("seed", None, "Replays the kill moments of a run.")
flags.DEFINE_string("config", "experiments/tiny.py", "The config to run.")
flags.DEFINE_multi_string("override", [], "Extra config overrides, as "
                          "FIELD=VALUE (passed as --config.FIELD=VALUE).")
flags.DEFINE_integer("timeout", 900, "Seconds one run may take.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

PHASES = ("compile", "step", "save", "eval", "final")
_PROGRESS = re.compile(r"^step (\d+)/(\d+) ")


class Run:
  """One `encdec_jax.main` process; its output lines with arrival times."""

  def __init__(self, command: list[str], log_path: str):
    self.lines: list[tuple[float, str]] = []
    self.start = time.time()
    env = dict(os.environ)
    env.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)  # the users' compiler
    self._log = open(log_path, "a", encoding="utf-8")
    self.proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append((time.time(), line.rstrip("\n")))
      self._log.write(line)
      self._log.flush()

  def first(self, predicate, after: float = 0.0):
    """(time, line) of the first line matching `predicate` after `after`."""
    for t, line in list(self.lines):
      if t >= after and predicate(line):
        return t, line
    return None

  def wait_for(self, predicate, timeout: float, after: float = 0.0,
               poll: float = 0.002):
    deadline = time.time() + timeout
    while time.time() < deadline:
      hit = predicate() if after is None else self.first(predicate, after)
      if hit:
        return hit
      if self.proc.poll() is not None:
        self._reader.join(5)
        return predicate() if after is None else self.first(predicate, after)
      time.sleep(poll)
    raise TimeoutError("the run did not get there in time")

  def finish(self, timeout: float) -> int:
    code = self.proc.wait(timeout=timeout)
    self._reader.join(10)
    self._log.close()
    return code

  def kill(self) -> None:
    self.proc.kill()
    self.finish(60)


def _progress_step(line: str) -> int | None:
  match = _PROGRESS.match(line)
  return int(match.group(1)) if match else None


def _command(config: str, workdir: str, overrides: list[str]) -> list[str]:
  return [sys.executable, "-m", "encdec_jax.main", f"--config={config}",
          f"--workdir={workdir}", "--config.record_example_ids=True",
          *(f"--config.{o}" for o in overrides)]


def _committed(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if (
      os.path.isdir(d)) else []


def _saving(workdir: str) -> bool:
  return bool(glob.glob(os.path.join(workdir, "checkpoints",
                                     "*.orbax-checkpoint-tmp*")))


def timeline(run: Run) -> dict:
  """Durations of each phase in the uninterrupted run (seconds)."""
  model = run.first(lambda l: l.startswith("model: "))
  progress = [(t, _progress_step(l)) for t, l in run.lines
              if _progress_step(l) is not None]
  validations = [(t, l) for t, l in run.lines if l.startswith("[validation")]
  test = run.first(lambda l: l.startswith("[test"))
  gaps = np.diff([t for t, _ in progress]) if len(progress) > 1 else [1.0]
  # Each evaluation, from the progress line of its step to its results.
  evals = [tv - max(t for t, _ in progress if t <= tv)
           for tv, _ in validations[:-1] if any(t <= tv for t, _ in progress)]
  return {"compile": progress[0][0] - model[0],
          "step": float(np.median(gaps)),
          "eval": float(np.median(evals)) if evals else 1.0,
          "final": (test[0] - validations[-1][0]) if test else 1.0}


def _feasible(workdir: str, total: int, eval_every: int) -> list[str]:
  if os.path.exists(os.path.join(workdir, "results.json")):
    return []
  done = (_committed(workdir) or [0])[-1]
  phases = ["compile"]
  if done < total:
    phases += ["step", "save"]
    if any(s % eval_every == 0 for s in range(done + 1, total)):
      phases.append("eval")
  else:  # trained: what is left is the final validation and test
    phases.append("final")
  return [p for p in PHASES if p in phases]


# Training time between two checkpoints of the scaled run (seconds): long
# enough for an async save to commit and for a kill to land after it.
CHECKPOINT_SECONDS = 1.5
PROBE_STEPS, PROBE_LOG_EVERY = 60, 10


def probe(config: str, workdir: str, overrides: list[str], log: str,
          timeout: float) -> float:
  """Seconds per training step of `config` on this machine (a short run
  without evaluation)."""
  run = Run(_command(config, workdir, overrides + [
      f"num_train_steps={PROBE_STEPS}", f"log_every={PROBE_LOG_EVERY}",
      "eval_every=100000", "checkpoint_every=100000", "test_at_end=False",
      "num_decode_examples=0", "num_eval_examples=8"]), log)
  if run.finish(timeout) != 0:
    sys.exit(f"error: the probe run failed; see {log}")
  times = [t for t, l in run.lines if _progress_step(l) is not None]
  return float(np.median(np.diff(times[1:]))) / PROBE_LOG_EVERY


def scaled(step_seconds: float, kills: int) -> list[str]:
  """Overrides giving checkpoints every ~CHECKPOINT_SECONDS and room for
  `kills` kills, each after a new commit (a save or eval kill waits up to
  three checkpoint intervals)."""
  every = max(5, round(CHECKPOINT_SECONDS / max(step_seconds, 1e-4)))
  every -= every % 5  # whole progress-line gaps
  total = every * (3 * kills + 4)
  return [f"num_train_steps={total}", f"checkpoint_every={every}",
          f"eval_every={2 * every}", f"log_every={every // 5}",
          "num_eval_examples=32", "num_decode_examples=8"]


def plan(kills: int, rng: random.Random) -> list[str]:
  """The phase of each kill: every phase once when there are enough kills,
  the rest drawn at random; never compile first (no checkpoint to resume
  yet), final last (nothing trains after it)."""
  middle = ["compile", "step", "save", "eval"]
  if kills >= len(PHASES):
    phases = middle + [rng.choice(middle) for _ in range(kills - 5)]
  else:
    phases = [rng.choice(middle) for _ in range(kills)]
  rng.shuffle(phases)
  if phases and phases[0] == "compile":
    later = [i for i, p in enumerate(phases) if p != "compile"]
    if later:
      phases[0], phases[later[0]] = phases[later[0]], phases[0]
    else:
      phases[0] = "step"
  if kills >= len(PHASES):
    phases.append("final")
  return phases


def _advanced(workdir: str, furthest: int):
  """(time, step) once the run has committed a step beyond `furthest`."""
  steps = _committed(workdir)
  return (time.time(), steps[-1]) if steps and steps[-1] > furthest else None


def kill_once(run: Run, phase: str, times: dict, rng: random.Random,
              workdir: str, total: int, eval_every: int,
              timeout: float, furthest: int = 0) -> str:
  """Kills `run` inside `phase`, after it has committed a step beyond
  `furthest` (the furthest committed when it began; a compile kill only
  needs a checkpoint to resume from); returns where it landed."""
  started = run.wait_for(lambda l: l.startswith("model: "), timeout)
  if started is None:
    return "missed: the run ended before its model: line"
  after = started[0]
  if phase not in ("compile", "final"):
    advanced = run.wait_for(lambda: _advanced(workdir, furthest), timeout,
                            after=None, poll=0.001)
    if advanced is None:
      run.finish(timeout)
      return f"missed: the run ended before committing past step {furthest}"
    after = advanced[0]
  if phase == "save":
    hit = run.wait_for(lambda: _saving(workdir), timeout, after=None,
                       poll=0.0005)
    trigger, delay = "a checkpoint write began", 0.0
  else:
    if phase == "compile":
      predicate, window = (lambda l: l.startswith("model: ")), "compile"
    elif phase == "step":
      predicate, window = (lambda l: _progress_step(l) is not None), "step"
    elif phase == "eval":
      predicate = lambda l: (_progress_step(l) or 1) % eval_every == 0
      window = "eval"
    else:  # the validation of the final step, then the test split
      predicate = lambda l: l.startswith(f"[validation @ step {total},")
      window = "final"
    hit = run.wait_for(predicate, timeout, after=after)
    # Inside the phase: at most half its length in the uninterrupted run.
    delay = rng.uniform(0.0, max(times[window] / 2, 0.02))
    trigger = f"'{hit[1][:40]}'" if hit else ""
  if not hit or run.proc.poll() is not None:
    run.finish(timeout)
    return f"missed: the run ended first (waiting for {phase})"
  time.sleep(delay)
  if run.proc.poll() is not None:
    run.finish(timeout)
    return f"missed: the run ended {delay:.2f} s after {trigger}"
  saving = _saving(workdir)
  last = run.lines[-1][1][:50] if run.lines else ""
  run.kill()
  return (f"killed {delay:.2f} s after {trigger}"
          f"{' (mid-save)' if saving else ''}; last line: '{last}'")


def _flat(tree) -> dict:
  import jax  # noqa: PLC0415 (only the comparison needs JAX)
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def final_state(workdir: str, step: int) -> dict:
  # Only the comparison needs orbax (and JAX): the driver that kills and
  # restarts runs starts fast without them.
  import warnings  # noqa: PLC0415
  import orbax.checkpoint as ocp  # noqa: PLC0415
  warnings.filterwarnings("ignore", message="Sharding info not provided")
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  item_names=("state",))
  return _flat(manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore()))["state"])


def duplicated_metric_rows(workdir: str) -> list:
  """(split, step) pairs of metrics.jsonl rows written more than once."""
  seen, twice = set(), []
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      key = (row["split"], row["step"])
      if key in seen:
        twice.append(key)
      seen.add(key)
  return twice


def compare(reference: str, chaos: str, total: int) -> list[str]:
  """What differs between the two workdirs (empty: nothing)."""
  problems = []
  if not os.path.exists(os.path.join(chaos, "results.json")):
    problems.append("no results.json")
  if (example_log.read(example_log.path(chaos, 0)) !=
      example_log.read(example_log.path(reference, 0))):
    problems.append("the example logs differ")
  want, got = final_state(reference, total), final_state(chaos, total)
  if want.keys() != got.keys():
    problems.append("the state trees differ")
  else:
    differ = [k for k in want if not np.array_equal(want[k], got[k])]
    if differ:
      problems.append(f"{len(differ)} state arrays differ, e.g. {differ[0]}")
  twice = duplicated_metric_rows(chaos)
  if twice:
    problems.append(f"metrics.jsonl repeats {len(twice)} rows, e.g. "
                    f"{twice[0]}")
  return problems


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax's INFO lines at restore
  seed = FLAGS.seed if FLAGS.seed is not None else random.randrange(2**31)
  print(f"chaos: seed {seed} (replay with --seed={seed})", flush=True)
  rng = random.Random(seed)
  overrides = list(FLAGS.override)
  reference = os.path.join(FLAGS.workdir, "uninterrupted")
  chaos = os.path.join(FLAGS.workdir, "killed")
  for d in (reference, chaos):
    if os.path.exists(d):
      sys.exit(f"error: {d} exists; give an empty --workdir.")
  os.makedirs(FLAGS.workdir, exist_ok=True)
  log = os.path.join(FLAGS.workdir, "stdout.txt")

  start = time.time()
  if not any(o.startswith("num_train_steps=") for o in overrides):
    step_seconds = probe(FLAGS.config, os.path.join(FLAGS.workdir, "probe"),
                         overrides, log, FLAGS.timeout)
    overrides = scaled(step_seconds, FLAGS.kills) + overrides
    print(f"scaled to this machine: {step_seconds * 1000:.1f} ms a step, so "
          + " ".join(f"--config.{o}" for o in overrides[:4]), flush=True)
  run = Run(_command(FLAGS.config, reference, overrides), log)
  if run.finish(FLAGS.timeout) != 0:
    sys.exit(f"error: the uninterrupted run failed; see {log}")
  times = timeline(run)
  with open(os.path.join(reference, "config.json"), encoding="utf-8") as f:
    config = json.load(f)  # as the run resolved it
  total, eval_every = config["num_train_steps"], config["eval_every"]
  print(f"uninterrupted: {time.time() - start:.0f} s (compile "
        f"{times['compile']:.1f} s, {times['step']:.2f} s between progress "
        f"lines, eval {times['eval']:.1f} s, final test "
        f"{times['final']:.1f} s)", flush=True)

  command = _command(FLAGS.config, chaos, overrides)
  coverage = Coverage()
  todo, retries = plan(FLAGS.kills, rng), FLAGS.kills
  while todo:
    phase = todo.pop(0)
    if phase not in _feasible(chaos, total, eval_every) + ["final"] or (
        os.path.exists(os.path.join(chaos, "results.json"))):
      print(f"skipped a {phase} kill: the run is past it", flush=True)
      continue
    furthest = (_committed(chaos) or [0])[-1]
    run = Run(command, log)
    landed = kill_once(run, phase, times, rng, chaos, total, eval_every,
                       FLAGS.timeout, furthest)
    began = coverage.began(run)
    if landed.startswith("killed"):
      coverage.killed(phase, (_committed(chaos) or [0])[-1])
    elif retries > 0:  # (a run that ended first: try the phase again)
      retries -= 1
      todo.insert(0, phase)
    print(f"kill {coverage.kills:2d} [{phase:7s}] run began at step "
          f"{began or 'start'}: {landed}", flush=True)
  run = Run(command, log)
  code = run.finish(FLAGS.timeout)
  coverage.began(run)
  problems = [] if code == 0 else [f"the last run exited {code}"]
  problems += compare(reference, chaos, total)
  problems += coverage.problems(FLAGS.kills)
  verdict = ("PASS: bit-identical params and optimizer state, same examples "
             "in the same order, each metrics row once, every kill "
             "covered" if not problems else "FAIL: " + "; ".join(problems))
  print(coverage.summary(), flush=True)
  print(f"chaos: {coverage.kills} kills, {time.time() - start:.0f} s, seed "
        f"{seed}. {verdict}", flush=True)
  sys.exit(0 if not problems else 1)


class Coverage:
  """What the kills tested: kills per phase, and whether the run after
  each resumed from a committed checkpoint."""

  def __init__(self):
    self.phases = {p: 0 for p in PHASES}
    self.kills = 0
    self.pending = None  # the last kill's committed step, until a run began
    self.resumes: list[int] = []  # the step each resume began at

  def killed(self, phase: str, committed: int) -> None:
    self.phases[phase] += 1
    self.kills += 1
    self.pending = committed

  def began(self, run: Run) -> int | None:
    """The step `run` resumed from (None: it started afresh); counts it
    for the kill before it."""
    line = run.first(lambda l: l.startswith("resumed from"))
    step = int(line[1].rsplit(" ", 1)[-1]) if line else None
    if self.pending is not None and step:
      self.resumes.append(step)
    self.pending = None
    return step

  def problems(self, wanted: int) -> list[str]:
    out = []
    if self.kills < wanted:
      out.append(f"only {self.kills} of {wanted} kills landed")
    if 2 * len(self.resumes) <= self.kills:
      out.append(f"only {len(self.resumes)} of {self.kills} kills were "
                 "followed by a resume from a committed checkpoint")
    missing = [p for p, n in self.phases.items() if not n]
    if wanted >= len(PHASES) and missing:
      out.append(f"no kill in phase {', '.join(missing)}")
    return out

  def summary(self) -> str:
    return ("coverage: kills per phase " + ", ".join(
        f"{p} {n}" for p, n in self.phases.items()) + f"; {len(self.resumes)}"
        f" of {self.kills} kills followed by a resume from a committed "
        f"checkpoint (steps {', '.join(map(str, self.resumes)) or 'none'})")


if __name__ == "__main__":
  app.run(main)
