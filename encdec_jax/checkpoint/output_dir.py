"""A directory a command writes (--output of export_encoder, export_adapter,
merge_adapter and export_serving; save_encoder; import_hf and export_hf's
OUT): never into a non-empty one, never half-done, readable by others.

  with output_dir.new_directory(path, "the merged model") as partial:
    ...write everything under `partial`...
  # now at `path`, whole

Everything is written in the sibling `<path>.partial` and renamed to `path`
at the end, so `path` is either absent (or the empty directory it was) or
complete. The sibling is flock'ed while it is written: a second command
writing the same `path` at the same time is refused (only one reports
success), and one left by a killed command (kill -9: the lock went with
it) is cleared by the rerun, which then works. Files and folders get the
modes mkdir and open give under the umask (safetensors writes 0600,
tempfile 0700: a model directory is made to be handed on). A write that
fails (a full disk, no permission) is one line naming `path`, not the
sibling.
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
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{path} is a file; give a new directory for {what} "
                     "(nothing was written).")
  if os.path.isdir(path) and os.listdir(path):
    raise ValueError(f"{path} exists and is not empty; refusing to "
                     f"overwrite it: give a new directory for {what} "
                     "(nothing was written).")
  return path


def _lock(partial: str, path: str) -> int:
  """An exclusive flock on `partial` (created if needed); its fd."""
  try:
    os.makedirs(partial, exist_ok=True)
  except OSError as e:
    raise OSError(f"{path} cannot be created ({e.strerror}); choose a "
                  "directory you can write to.") from None
  fd = os.open(partial, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise ValueError(f"another command is writing {path} now (it "
                     f"holds {partial}); wait for it to finish, or give "
                     "another directory.") from None
  return fd


def _set_modes(root: str) -> None:
  """The modes mkdir and open would have given: 0777 / 0666 less umask."""
  mask = os.umask(0)
  os.umask(mask)
  for folder, _, files in os.walk(root):
    os.chmod(folder, 0o777 & ~mask)
    for name in files:
      os.chmod(os.path.join(folder, name), 0o666 & ~mask)


def _written_there(error: OSError, partial: str) -> bool:
  """Whether an OSError is a failed write of the output (not, say, a
  missing input file read while writing it)."""
  return error.filename is None or str(error.filename).startswith(partial)


@contextlib.contextmanager
def new_directory(path: str, what: str, log=print):
  """Yields the sibling to write in; renames it to `path` on success and
  removes it on an error or Ctrl-C (see the module docstring). `log`
  prints the note about a killed command's leftovers."""
  path = check_new(path, what)
  partial = path + PARTIAL_SUFFIX
  fd = None
  if jax.process_index() == 0:
    fd = _lock(partial, path)
    if os.listdir(partial):  # left by a command that was killed
      shutil.rmtree(partial)
      os.makedirs(partial)
      log(f"note: removed the unfinished {partial} of a command that was "
          "killed; writing it again")
  parallel.sync(f"output_dir_{path}")
  try:
    try:
      yield partial
    except OSError as e:
      if not _written_there(e, partial):
        raise
      raise OSError(f"{path} could not be written ({e.strerror}); nothing "
                    "was written: free space or fix permissions, and "
                    "rerun.") from e
    parallel.sync(f"output_dir_written_{path}")
    if fd is not None:
      check_new(path, what)  # (filled while this command ran)
      _set_modes(partial)
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
