"""--mode=decode's output: one line per input line, written as each batch is
decoded (in input order), so a decode that is interrupted or fails keeps
every line done so far, and says how many.

The output path is checked before the model is restored: a missing
directory fails in a second, not after the last line is decoded, and an
output that is the input file is refused (it would be emptied before it is
read). The lines go to a hidden sibling (`.<name>.partial-<pid>`) renamed
over --output when the decode ends, fails or is interrupted: an existing
output stays whole until then, two decodes into one output each leave a
whole file, and a kill -9 leaves the output as it was.
"""

import os
import sys
import time

from encdec_jax.data.text_lines import one_line


class Interrupted(KeyboardInterrupt):
  """Ctrl-C, saying what was kept; main.py prints it as one line and exits
  130."""


def check_output_file(path: str, input_path: str | None = None) -> None:
  """Raises OSError (one line) if `path` cannot be written, ValueError if
  it is `input_path`; leaves an existing file as it is (it is replaced only
  once the command ends) and creates nothing."""
  if (input_path not in (None, "-") and os.path.exists(path)
      and os.path.exists(input_path) and os.path.samefile(path, input_path)):
    raise ValueError(f"--output={path} is the --input file; writing it would "
                     "destroy the lines being read: give another output path.")
  if os.path.isdir(path):
    raise IsADirectoryError(f"--output={path} is a directory; give a file "
                            "path.")
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"--output={path}: there is no directory "
                            f"{directory}; create it, or give another path.")
  existed = os.path.exists(path)
  try:
    open(path, "a", encoding="utf-8").close()
  except OSError as e:
    raise type(e)(f"--output={path} cannot be written ({e.strerror}); give "
                  "a file you can write to.") from None
  if not existed:
    os.remove(path)


class LineWriter:
  """Writes lines to --output ('-' is stdout), flushing each batch."""

  def __init__(self, path: str, total: int, input_path: str | None = None):
    self.path, self.total, self.written = path, total, 0
    self.where = "stdout" if path == "-" else path
    self._file = sys.stdout if path == "-" else None
    self._failed = False
    self._partial = None  # the sibling being written, renamed at finish
    if path != "-":
      check_output_file(path, input_path)

  def _open(self):
    """The sibling of a regular (or new) file; a device (/dev/full, a
    pipe) is written as it is. Created with the umask's permissions."""
    if os.path.exists(self.path) and not os.path.isfile(self.path):
      return open(self.path, "w", encoding="utf-8")
    directory, name = os.path.split(os.path.abspath(self.path))
    self._partial = os.path.join(directory, f".{name}.partial-{os.getpid()}")
    return open(self._partial, "w", encoding="utf-8")

  def finish(self) -> None:
    """Puts the lines written so far at --output (at the end, on an error
    and on Ctrl-C)."""
    if self._file is not None and self._file is not sys.stdout:
      try:
        self._file.close()
      except OSError:
        if not self._failed:
          raise
    if self._partial and os.path.exists(self._partial):
      os.replace(self._partial, self.path)

  def write(self, lines: list[str]) -> None:
    """Appends `lines` (each made one line: text_lines.one_line)."""
    try:
      if self._file is None:
        self._file = self._open()
      self._file.write("".join(one_line(line) + "\n" for line in lines))
      self._file.flush()
    except OSError as e:
      self._failed = True
      raise OSError(f"could not write --output={self.where} "
                    f"({e.strerror or e}); {self.written} of {self.total} "
                    "lines were written before it.") from None
    self.written += len(lines)

  def interrupted(self) -> Interrupted:
    self.finish()
    return Interrupted(f"interrupted after {self.written} of {self.total} "
                       f"lines; {self.written} written to {self.where}")

  def close(self) -> None:
    if self._file is None:
      self.write([])  # an input without lines: an empty output file
    self.finish()


class Progress:
  """'decoded N/M lines (R/s)' on stderr: updated in place on a terminal;
  elsewhere (a log file, a pipe) a plain line every `every` seconds and at
  the end."""

  def __init__(self, total: int, stream=None, every: float = 10.0):
    self.total, self.every = total, every
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.start = self.last = time.time()

  def __call__(self, done: int) -> None:
    now = time.time()
    text = (f"decoded {done}/{self.total} lines "
            f"({done / max(now - self.start, 1e-9):.0f}/s)")
    if self.tty:
      print(f"\r{text}", end="\n" if done >= self.total else "",
            file=self.stream, flush=True)
    elif done >= self.total or now - self.last >= self.every:
      print(text, file=self.stream, flush=True)
      self.last = now
