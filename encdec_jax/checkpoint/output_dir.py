"""A directory a command writes (--output of export_encoder, export_adapter,
merge_adapter; save_encoder): never into a non-empty one, never half-done.

  with output_dir.new_directory(path, "the merged model") as partial:
    ...write everything under `partial`...
  # now at `path`, whole

Everything is written in the sibling `<path>.partial` and renamed to `path`
at the end, so `path` is either absent (or the empty directory it was) or
complete. The sibling is flock'ed while it is written: a second command
writing the same `path` at the same time is refused (only one reports
success), and one left by a killed command (kill -9: the lock went with
it) is cleared by the rerun, which then works. Files get the usual
permissions (umask), as os.makedirs gives them.
"""

import contextlib
import fcntl
import os
import shutil

import jax

from encdec_jax import parallel

PARTIAL_SUFFIX = ".partial"


def check_new(path: str, what: str) -> str:
  """`path` (absolute) if it is absent or an empty directory, else a
  one-line ValueError; nothing is written."""
  path = os.path.abspath(path)
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    raise ValueError(f"{path} exists and is not empty; refusing to "
                     f"overwrite it: give a new directory for {what} "
                     "(nothing was written).")
  return path


def _lock(partial: str, path: str) -> int:
  """An exclusive flock on `partial` (created if needed); its fd."""
  os.makedirs(partial, exist_ok=True)
  fd = os.open(partial, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise ValueError(f"another command is writing {path} now (it "
                     f"holds {partial}); wait for it to finish, or give "
                     "another directory.") from None
  return fd


@contextlib.contextmanager
def new_directory(path: str, what: str):
  """Yields the sibling to write in; renames it to `path` on success and
  removes it on an error or Ctrl-C (see the module docstring)."""
  path = check_new(path, what)
  partial = path + PARTIAL_SUFFIX
  fd = None
  if jax.process_index() == 0:
    fd = _lock(partial, path)
    if os.listdir(partial):  # left by a command that was killed
      shutil.rmtree(partial)
      os.makedirs(partial)
      print(f"removed the unfinished {partial} of a command that was "
            "killed; writing it again", flush=True)
  parallel.sync(f"output_dir_{path}")
  try:
    yield partial
    parallel.sync(f"output_dir_written_{path}")
    if fd is not None:
      check_new(path, what)  # (filled while this command ran)
      if os.path.isdir(path):
        os.rmdir(path)  # the empty directory the user made
      os.rename(partial, path)
  except BaseException:
    if fd is not None and os.path.isdir(partial):
      shutil.rmtree(partial, ignore_errors=True)
    raise
  finally:
    if fd is not None:
      os.close(fd)  # releases the flock
