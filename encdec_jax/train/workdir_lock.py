"""One training run per workdir: an exclusive lock on `<workdir>/.lock`.

Two runs on one workdir would both resume from and save into the same
checkpoints, and the final checkpoint and results.json would be a mix of
the two. The trainer holds this lock for the whole run, so a second run
stops at once with `<workdir> is in use by pid N on HOST`.

The lock is a POSIX record lock (`fcntl.lockf`; it works on NFS too), which
the kernel drops when its process ends however it ends, so a crashed or
SIGKILLed run leaves no stale lock: the file stays, holding the old pid and
host, but the next run takes the lock and rewrites it. POSIX locks belong to
a process, so holders are also tracked within the process (two runs on one
workdir from two threads are refused too). Multi-host: process 0 holds it.
"""

import errno
import fcntl
import os
import socket
import threading

import jax

LOCK_FILE = ".lock"

_held: set[str] = set()  # realpaths of the lock files this process holds
_held_guard = threading.Lock()


class WorkdirInUseError(OSError):
  """Another run holds the workdir."""


def _holder(fd: int) -> str:
  """'pid N on HOST' as the holder wrote it (or what is known)."""
  try:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
  except OSError:
    text = []
  if len(text) >= 2 and text[0].isdigit():
    return f"pid {text[0]} on {text[1]}"
  return "another process"


class WorkdirLock:
  """Context manager: holds `<workdir>/.lock` exclusively, or raises
  WorkdirInUseError naming the holder. The workdir must exist."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self) -> "WorkdirLock":
    if jax.process_index() != 0:
      return self
    key = os.path.realpath(self.path)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      with _held_guard:
        if key in _held:
          raise WorkdirInUseError(self._in_use(f"pid {os.getpid()} on "
                                               f"{socket.gethostname()}"))
        try:
          fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
          if e.errno not in (errno.EACCES, errno.EAGAIN):
            raise
          raise WorkdirInUseError(self._in_use(_holder(fd))) from None
        _held.add(key)
    except BaseException:
      os.close(fd)
      raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    self._fd, self._key = fd, key
    return self

  def _in_use(self, holder: str) -> str:
    return (f"{self.workdir} is in use by {holder} (it holds {self.path}); "
            "wait for that run to end or stop it, or use another --workdir.")

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)
      fcntl.lockf(self._fd, fcntl.LOCK_UN)
    finally:
      os.close(self._fd)
      with _held_guard:
        _held.discard(self._key)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
