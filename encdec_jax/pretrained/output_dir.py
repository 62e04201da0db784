"""The output directory of import_hf and export_hf: written whole or not at
all, readable by others, and never left half-made without a word.

`new_directory(out_dir, tool)` refuses an out_dir that is a file, is not
empty, or is being written by another live process; builds the directory
in a hidden sibling `.<name>.<tool>-<pid>` (so the final rename never
crosses a filesystem); gives it the modes of an ordinary `mkdir` / `open`
under the caller's umask (tempfile would leave 0700); and renames it into
place. A sibling left by a killed run (its pid no longer alive) is removed
first, with a note; an OSError while writing (a full disk, no permission)
is one line naming out_dir, not the hidden directory.
"""

import contextlib
import os
import re
import shutil
import sys


class OutputError(OSError):
  """out_dir cannot be written; the message is one line in the user's
  terms (out_dir, not the hidden temp directory) and says what to do."""


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's live process
    return True
  return True


def temp_name(out_dir: str, tool: str, pid: int | None = None) -> str:
  """The hidden sibling `tool` builds out_dir in."""
  parent, name = os.path.split(os.path.abspath(out_dir))
  pid = os.getpid() if pid is None else pid
  return os.path.join(parent, f".{name}.{tool}-{pid}")


def leftovers(out_dir: str) -> list[tuple[str, str, int]]:
  """[(path, tool, pid)] of hidden siblings of out_dir that a run of import_hf or
  export_hf is building (or was, when it was killed)."""
  parent, name = os.path.split(os.path.abspath(out_dir))
  pattern = re.compile(re.escape(f".{name}.") + r"(import_hf|export_hf)-(\d+)")
  try:
    entries = os.listdir(parent)
  except OSError:
    return []
  return [(os.path.join(parent, e), m.group(1), int(m.group(2)))
          for e in sorted(entries)
          if (m := re.fullmatch(pattern, e))]


def check_target(out_dir: str, tool: str, log=None) -> None:
  """Refuses an out_dir that cannot become the output; removes what a
  killed run left beside it (with a note on stderr)."""
  log = log or (lambda line: print(line, file=sys.stderr, flush=True))
  for path, other_tool, pid in leftovers(out_dir):
    if pid != os.getpid() and _alive(pid):
      raise OutputError(
          f"{out_dir} is being written by process {pid} ({other_tool}; "
          f"{path} exists); wait for it to finish, or choose another output "
          "directory")
    shutil.rmtree(path, ignore_errors=True)
    log(f"note: removed {path}: an unfinished {other_tool} output for "
        f"{out_dir} (its run was killed before it finished)")
  if os.path.isfile(out_dir) or (os.path.exists(out_dir)
                                 and not os.path.isdir(out_dir)):
    raise OutputError(f"{out_dir} is a file; give {tool} a new directory "
                      "to write")
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise OutputError(f"{out_dir} exists and is not empty; give {tool} a new "
                      f"directory (or remove {out_dir} first)")


def _set_modes(root: str) -> None:
  """The modes mkdir and open would have given: 0777 / 0666 less umask."""
  mask = _umask()
  for folder, _, files in os.walk(root):
    os.chmod(folder, 0o777 & ~mask)
    for name in files:
      os.chmod(os.path.join(folder, name), 0o666 & ~mask)


@contextlib.contextmanager
def new_directory(out_dir: str, tool: str, log=None):
  """Yields the hidden directory to fill; on leaving, it becomes out_dir.
  On an error nothing is left: neither out_dir nor the hidden directory."""
  check_target(out_dir, tool, log)
  tmp = temp_name(out_dir, tool)
  try:
    try:
      os.makedirs(os.path.dirname(tmp), exist_ok=True)
      os.mkdir(tmp)
    except OSError as e:
      raise OutputError(f"{out_dir} cannot be created ({e.strerror}); "
                        "choose a directory you can write to") from e
    try:
      yield tmp
      _set_modes(tmp)
      if os.path.isdir(out_dir):
        os.rmdir(out_dir)  # empty (checked); fails if it filled since
      os.replace(tmp, out_dir)
    except OutputError:
      raise
    except OSError as e:
      written = (e.filename is None or str(e.filename).startswith(tmp)
                 or str(e.filename) == out_dir)
      if not written:
        raise  # not a write of the output (e.g. reading the input)
      raise OutputError(
          f"{out_dir} could not be written ({e.strerror}); nothing was "
          "written: free space or fix permissions, and rerun") from e
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
