"""One training run per workdir: a second run on a workdir in
use is refused, naming the run that holds it; a crashed run leaves no stale
lock."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from encdec_jax.train import trainer
from experiments import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Holds <workdir>/.lock as a training run does (encdec_jax/train/
# workdir_lock.py), until killed.
_HOLD = r"""
import fcntl, os, socket, sys, time
fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
print("held", flush=True)
time.sleep(300)
"""


@pytest.fixture
def holder(tmp_path):
  """(workdir, process) of another process that holds the workdir."""
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  process = subprocess.Popen(
      [sys.executable, "-c", _HOLD, workdir], cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), stdout=subprocess.PIPE,
      text=True)
  assert process.stdout.readline().strip() == "held"
  yield workdir, process
  process.kill()
  process.wait()


def test_a_second_run_on_a_workdir_in_use_is_refused(holder,
                                                     small_text_files):
  workdir, process = holder
  before = sorted(os.listdir(workdir))
  config = tiny.get_config()
  config.dataset = "text_files"
  config.text_files.update(small_text_files)
  config.update(num_train_steps=1, eval_every=1000, test_at_end=False,
                num_decode_examples=0)
  with pytest.raises(OSError) as error:
    trainer.train_and_evaluate(config, workdir)
  assert str(error.value).startswith(
      f"{workdir} is in use by pid {process.pid} on {socket.gethostname()}")
  assert "\n" not in str(error.value)
  assert sorted(os.listdir(workdir)) == before  # nothing was written


def test_a_killed_holder_leaves_no_stale_lock(holder):
  from encdec_jax.train import workdir_lock
  workdir, process = holder
  process.send_signal(signal.SIGKILL)
  process.wait()
  with workdir_lock.WorkdirLock(workdir):  # taken at once
    with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
      assert f.read().split()[0] == str(os.getpid())


def test_the_same_process_cannot_hold_a_workdir_twice(tmp_path):
  from encdec_jax.train import workdir_lock
  with workdir_lock.WorkdirLock(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirInUseError,
                       match=f"is in use by pid {os.getpid()}"):
      workdir_lock.WorkdirLock(str(tmp_path)).acquire()
  with workdir_lock.WorkdirLock(str(tmp_path)):  # released on exit
    pass


def test_a_dataset_prepared_by_another_run_at_once_is_used(monkeypatch):
  """Two runs sharing a data_dir both generate a missing dataset; TFDS's
  final rename fails for the second (FileExistsError), which then reads the
  first one's files."""
  from encdec_jax.data import prepare_once
  made = []

  class Builder:
    def __init__(self):
      made.append(self)

    def is_prepared(self):
      return len(made) > 1  # the other run has finished by now

    def download_and_prepare(self, **kwargs):
      raise FileExistsError("Cannot rename .../incomplete.X_1.0.0. "
                            "Destination .../1.0.0 already exists.")

  assert prepare_once.prepare(Builder) is made[1]


def test_concurrent_evals_keep_every_record(tmp_path):
  import threading
  from encdec_jax.train import inference
  path = str(tmp_path / "eval_results.json")

  def append(k):
    for i in range(10):
      inference._append_eval_record(path, {"step": k * 100 + i})

  threads = [threading.Thread(target=append, args=(k,)) for k in range(6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  import json
  with open(path) as f:
    assert len(json.load(f)) == 60
