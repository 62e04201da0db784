"""Kill a real training run (SIGKILL, SIGTERM) at random moments, including
in the middle of an async checkpoint write; restart it with the same command
each time. It must end bit-identical (params and optimizer state) to an
uninterrupted run, having consumed the same examples in the same order (the
example log), with no partial checkpoint left behind. SIGTERM must save,
commit and exit 0.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from encdec_jax.train import example_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 16
SAVE_EVERY = 4  # each save costs ~1 s: fewer keep the test short


def _command(workdir: str, files: dict) -> list[str]:
  return [sys.executable, "-m", "encdec_jax.main",
          "--config=experiments/tiny.py", f"--workdir={workdir}",
          "--config.dataset=text_files",
          *(f"--config.text_files.{s}={p}" for s, p in files.items()),
          f"--config.num_train_steps={NUM_STEPS}",
          f"--config.checkpoint_every={SAVE_EVERY}",
          "--config.keep_checkpoints=2",
          f"--config.log_every={SAVE_EVERY}", "--config.eval_every=1000",
          "--config.num_eval_examples=32", "--config.num_decode_examples=0",
          "--config.test_at_end=False", "--config.record_example_ids=True"]


def _start(workdir: str, files: dict, log: str) -> subprocess.Popen:
  out = open(log, "a")
  return subprocess.Popen(_command(workdir, files), cwd=REPO, stdout=out,
                          stderr=subprocess.STDOUT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))


def _wait_for(condition, proc, timeout=300.0, poll=0.001) -> bool:
  """Polls `condition` until true; False if the process ended first."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(poll)
  raise TimeoutError("the training run did not get there in time")


def _partial(workdir: str) -> list[str]:
  return glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*"))


def _committed(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _final_params(workdir: str) -> dict:
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  item_names=("state",))
  assert manager.latest_step() == NUM_STEPS
  state = manager.restore(NUM_STEPS, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore()))["state"]
  return state


def _flat(tree) -> dict:
  """{path: numpy array} over params and optimizer state."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def uninterrupted(small_text_files, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  log = os.path.join(workdir, "stdout.txt")
  assert _start(workdir, small_text_files, log).wait(timeout=600) == 0, \
      open(log).read()[-3000:]
  return workdir


def _note(log: str, text: str) -> None:
  with open(log, "a") as f:
    f.write(f"== test: {text}\n")


def _started(log: str, before: int):
  """True once a run printed its `model:` line (so it has set up, resumed and
  removed any partial checkpoint), counting from `before` such lines."""
  return lambda: ("\n" + open(log).read()).count("\nmodel: ") > before


def test_killed_and_stopped_runs_resume_exactly(
    uninterrupted, small_text_files, tmp_path):
  seed = random.randrange(2**32)  # fresh each run; replay: set it here
  rng = random.Random(seed)
  print(f"kill moments: random.Random({seed})")
  workdir, log = str(tmp_path / "run"), str(tmp_path / "stdout.txt")
  open(log, "w").close()
  killed_mid_save = []

  # 1) a kill before any checkpoint exists: while compiling or in the
  #    first steps (the first save is at step SAVE_EVERY);
  proc = _start(workdir, small_text_files, log)
  _wait_for(_started(log, 0), proc)
  time.sleep(rng.uniform(0.0, 1.0))
  assert not _committed(workdir) and not _partial(workdir), seed
  proc.kill()
  proc.wait()
  _note(log, "SIGKILL before the first checkpoint")
  # 2) kills while an async save is being written, at a random save each;
  for run in range(1, 3):
    proc = _start(workdir, small_text_files, log)
    _wait_for(_started(log, run), proc)
    target = ((_committed(workdir) or [0])[-1] +
              SAVE_EVERY * (1 + rng.randrange(2)))
    tmp = os.path.join(workdir, "checkpoints", f"{target}.orbax-checkpoint-tmp")
    assert _wait_for(lambda: os.path.exists(tmp), proc, poll=0.0005), (
        target, open(log).read()[-3000:])
    proc.kill()
    proc.wait()
    if _partial(workdir):
      killed_mid_save.append(target)
    _note(log, f"SIGKILL while saving step {target}")
  # 3) SIGTERM (a preemption notice): finish the step, save, commit, exit 0;
  proc = _start(workdir, small_text_files, log)
  _wait_for(_started(log, 3), proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 0
  _note(log, "SIGTERM")
  stopped = open(log).read().rsplit("stopped by signal 15 at step ", 1)
  assert len(stopped) == 2, open(log).read()[-3000:]
  stopped_step = int(stopped[1].split(";")[0])
  assert "Rerun the same command to resume." in stopped[1]
  assert _committed(workdir)[-1] == stopped_step and not _partial(workdir)
  # 4) a kill at a random moment of training.
  proc = _start(workdir, small_text_files, log)
  _wait_for(_started(log, 4), proc)
  time.sleep(rng.uniform(0.0, 2.0))  # compiling, training or saving
  proc.kill()
  proc.wait()
  _note(log, "SIGKILL at a random moment")

  final = _start(workdir, small_text_files, log)
  assert final.wait(timeout=600) == 0, open(log).read()[-3000:]
  stdout = open(log).read()
  after_sigterm = stdout.split("== test: SIGTERM", 1)[1]
  assert f"at step {stopped_step}" in after_sigterm.split("\nmodel: ")[0]
  last_run = stdout.rsplit("== test: ", 1)[1]
  assert "resumed from" in last_run and \
      f"step {NUM_STEPS}/{NUM_STEPS}" in last_run, stdout
  assert killed_mid_save, "no kill landed inside a checkpoint write"
  for step in killed_mid_save:  # each partial save was removed on restart
    assert f"checkpoints/{step}.orbax-checkpoint-tmp: an unfinished" in stdout
  assert not _partial(workdir)

  expected = example_log.read(example_log.path(uninterrupted, 0))
  assert [s for s, _ in expected] == list(range(1, NUM_STEPS + 1))
  assert example_log.read(example_log.path(workdir, 0)) == expected
  want, got = _flat(_final_params(uninterrupted)), _flat(_final_params(workdir))
  assert want.keys() == got.keys()
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_ctrl_c_is_a_stop_request_and_a_second_one_stops_at_once():
  """SIGINT takes the same path as SIGTERM (checked end to end above): the
  first one only sets the flag the loop checks at the next step boundary;
  a second one is the usual KeyboardInterrupt."""
  from encdec_jax.train import stop_request
  # Python's own Ctrl-C handler, whatever this process inherited (a suite
  # run in the background, nohup ... &, has SIGINT ignored).
  inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    stop = stop_request.StopRequest()
    try:
      os.kill(os.getpid(), signal.SIGINT)
      assert stop.signal == signal.SIGINT
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    finally:
      stop.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, inherited)


def test_deterministic_setting_asks_xla_for_deterministic_gpu_ops(monkeypatch):
  from encdec_jax.train import experiment
  from experiments import tiny
  config = tiny.get_config()
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
  experiment.request_determinism(config)
  assert os.environ["XLA_FLAGS"] == ("--xla_dump_to=/tmp/x "
                                     "--xla_gpu_deterministic_ops=true")
  experiment.request_determinism(config)  # idempotent
  assert os.environ["XLA_FLAGS"].count("deterministic_ops") == 1
  monkeypatch.setenv("XLA_FLAGS", "")
  config.deterministic = False
  experiment.request_determinism(config)
  assert os.environ["XLA_FLAGS"] == ""


def _metric_rows(workdir: str) -> list[tuple[str, int]]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [(r["split"], r["step"]) for r in map(json.loads, f)]


def test_sigterm_during_evaluation_and_at_the_end_saves_and_the_rerun_evaluates(
    small_text_files, tmp_path):
  """A stop request cuts an evaluation short (it can outlast a preemption
  notice): the step's checkpoint is committed, the run exits 0, and the
  rerun evaluates that step again, so each evaluation is recorded once."""
  workdir, log = str(tmp_path / "run"), str(tmp_path / "stdout.txt")
  extra = ["--config.eval_every=8", "--config.num_decode_examples=32",
           "--config.test_at_end=True", "--config.log_every=1"]

  def start():
    out = open(log, "a")
    return subprocess.Popen(
        _command(workdir, small_text_files) + extra, cwd=REPO, stdout=out,
        stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS="cpu"))

  # 1) SIGTERM as the evaluation of step 8 begins (it compiles, then
  #    decodes: seconds).
  proc = start()
  _wait_for(lambda: "\nstep 8/16 " in open(log).read(), proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 0, open(log).read()[-3000:]
  text = open(log).read()
  assert ("the validation evaluation at step 8 was cut short by signal 15"
          in text and "stopped by signal 15 at step 8;" in text), text[-3000:]
  assert _committed(workdir)[-1] == 8 and not _partial(workdir)
  assert ("validation", 8) not in _metric_rows(workdir)
  # 2) the rerun evaluates step 8 first; SIGTERM after its last step.
  _note(log, "rerun")
  proc = start()
  _wait_for(lambda: "\nstep 16/16 " in open(log).read().rsplit(
      "== test: rerun", 1)[1], proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=300) == 0
  rerun = open(log).read().rsplit("== test: rerun", 1)[1]
  assert "at step 8" in rerun and "[validation @ step 8," in rerun
  assert "stopped by signal 15 at step 16;" in rerun, rerun[-3000:]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  # 3) the last rerun only evaluates: validation and test at step 16.
  _note(log, "last")
  proc = start()
  assert proc.wait(timeout=300) == 0
  last = open(log).read().rsplit("== test: last", 1)[1]
  assert "[test @ step 16," in last and "done in" in last, last[-3000:]
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert set(results) >= {"validation", "test"}
  rows = _metric_rows(workdir)
  for key in (("validation", 8), ("validation", 16), ("test", 16)):
    assert rows.count(key) == 1, (key, rows)
  assert [s for split, s in rows if split == "train"] == list(range(1, 17))
