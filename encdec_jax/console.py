"""The command line's console: one `error:` line per failure, nothing lost.

Without --verbosity, main.py turns bad flags, config files and config
fields into one line each, shortens library log records to their first
line, and keeps background-thread and unraisable errors off the console;
everything left out goes in full to <workdir>/errors.log (ERRORS_LOG), and
the error line says so.
"""

import importlib.util
import logging as pylogging
import os
import re
import sys
import threading
import time
import traceback

from absl import flags, logging
import ml_collections
from ml_collections import config_flags


def stderr_line(text: str) -> None:
  """`text` and its newline in one write: print() writes them apart, and a
  background thread's line written in between would glue two lines."""
  sys.stderr.write(text + "\n")
  sys.stderr.flush()


def quiet(workdir: str) -> None:
  """The one-line console, with what it leaves out in workdir/errors.log."""
  # Library INFO logs (orbax, TFDS) bury the progress lines; -v 0 shows them.
  ERRORS_LOG.path = os.path.join(workdir, "errors.log")
  logging.set_verbosity(logging.WARNING)
  threading.excepthook = one_line_thread_error
  logging.get_absl_handler().addFilter(one_line_library_logs)
  # Errors Python ignores anyway ("Exception ignored in ..."): after a
  # failed async save, tensorstore's late callbacks print dozens of them.
  sys.unraisablehook = log_unraisable


class ErrorsLog:
  """What the one-line console leaves out, in full: <workdir>/errors.log
  (appended to, one entry per record, each headed by time, pid and kind)."""

  def __init__(self):
    self.path, self.count = None, 0
    self._lock = threading.Lock()
    self._unwritten = set()  # lines printed instead of written

  def write(self, kind: str, text: str) -> None:
    if self.path is None:
      return
    header = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: "
    try:
      with self._lock:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)),
                    exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
          f.write(f"{header}{kind}\n{text.rstrip()}\n")
        self.count += 1
    except Exception as e:  # noqa: BLE001  a full disk, shutdown
      # The console is then the only trace: each distinct last line (the
      # exception of a traceback) once.
      last = (text.strip().splitlines() or [""])[-1][:300]
      if last not in self._unwritten:
        self._unwritten.add(last)
        stderr_line(f"{kind} (could not be written to {self.path}: "
                    f"{type(e).__name__}): {last}")

  def note(self) -> str:
    """'; N ... in full in <path>' once something was written, else ''."""
    if not self.count:
      return ""
    return (f"; {self.count} library message(s) cut or left off the "
            f"console are in full in {self.path}")


ERRORS_LOG = ErrorsLog()


def log_unraisable(unraisable) -> None:
  """sys.unraisablehook: to errors.log, not the console."""
  try:
    where = repr(unraisable.object)
  except Exception:  # noqa: BLE001  a half-destroyed object
    where = object.__repr__(unraisable.object)
  ERRORS_LOG.write(
      f"{unraisable.err_msg or 'Exception ignored in'}: {where}",
      "".join(traceback.format_exception(unraisable.exc_type,
                                         unraisable.exc_value,
                                         unraisable.exc_traceback)))


def one_line_library_logs(record) -> bool:
  """Library log records as one line each, without tracebacks. orbax's
  errors from its async save threads (and asyncio's echo of them) are
  dropped: the failed save surfaces in the main thread as a
  checkpoint.CheckpointWriteError, whose one line says what to do. What is
  dropped or cut goes to errors.log in full."""
  message = record.getMessage()
  full = message
  if record.exc_info:
    full += "\n" + "".join(traceback.format_exception(*record.exc_info))
  elif record.exc_text:
    full += "\n" + record.exc_text
  background_save = ("/orbax/" in record.pathname or
                     message.startswith("Task exception was"))
  dropped = record.levelno >= pylogging.ERROR and background_save
  if dropped or len(full.strip().splitlines()) > 1:
    ERRORS_LOG.write(f"{record.levelname} from {record.name} "
                     f"({record.pathname}:{record.lineno}), "
                     f"{'dropped' if dropped else 'cut to its first line'} "
                     "on the console", full)
  if dropped:
    return False
  record.msg = (message.splitlines() or [""])[0]
  record.args, record.exc_info, record.exc_text = (), None, None
  return True


def one_line_thread_error(args) -> None:
  """A background thread's error in one line: orbax's async save threads
  fail there first, and the main thread then stops with the message that
  says what to do (checkpoint.CheckpointWriteError). The traceback goes to
  errors.log."""
  ERRORS_LOG.write(
      f"exception in thread {args.thread.name if args.thread else ''}",
      "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                         args.exc_traceback)))
  lines = str(args.exc_value).strip().splitlines() or [""]
  stderr_line(f"background thread {args.thread.name if args.thread else ''}: "
              f"{args.exc_type.__name__}: {lines[0][:300]}")


def config_field_error(argv: list[str], error: Exception) -> str | None:
  """One line for a mistyped --config.<field> override (ml_collections raises
  a bare AttributeError/KeyError, with its suggestion, from flag parsing)."""
  text = str(error).replace("\\'", "'").replace('\\"', '"')
  for arg in argv[1:]:
    override = arg.split("=", 1)[0][2:]
    field = override.split(".")[-1]
    if arg.startswith("--config.") and f"'{field}'" in text:
      close = re.search(r'Did you mean "(\w+)"', text)
      parent = override.rsplit(".", 1)[0]
      hint = (f"did you mean --{parent}.{close.group(1)}?" if close else
              "see the fields in the --config file.")
      return f"--{override}: {parent} has no field {field!r}; {hint}"
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with one `error:` line for a bad flag, a mistyped
  config field, a value of the wrong type or a --config file that does not
  load (its traceback, if any, to <workdir>/errors.log)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    text = str(e)
    if "Traceback (most recent call last)" in text:  # get_config() raised
      last = [l for l in text.strip().splitlines() if l.strip()][-1]
      text = f"{text.split(': ', 1)[0]}: {last}"
    sys.exit(f"error: {text} (see --helpshort)")
  except Exception as e:  # noqa: BLE001  re-raised unless it is named
    message = (config_field_error(argv, e)
               if isinstance(e, (AttributeError, KeyError)) else None)
    message = message or config_file_error(argv, e)
    if message is None or _flag_value(argv, "verbosity") is not None:
      raise
    sys.exit(f"error: {message}")


def _flag_value(argv: list[str], name: str) -> str | None:
  """--name=value or --name value from argv, before absl has parsed it."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg in (f"--{name}", f"-{name[0]}") and name == "verbosity":
      return argv[i + 1] if i + 1 < len(argv) else ""
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def config_file_error(argv: list[str], error: Exception) -> str | None:
  """One line for a --config file that fails to load (no get_config, a
  syntax error, an import error), or None if `error` came from elsewhere.
  The traceback goes to <workdir>/errors.log."""
  value = _flag_value(argv, "config")
  if not value:
    return None
  path = os.path.abspath(value.split(":", 1)[0])
  if (isinstance(error, AttributeError)
      and "has no attribute 'get_config'" in str(error)):
    return (f"--config={value}: the file defines no get_config(); a config "
            "file defines get_config() returning an ml_collections.ConfigDict "
            "(see experiments/*.py)")
  frames = [f.filename for f in traceback.extract_tb(error.__traceback__)]
  if isinstance(error, SyntaxError) and os.path.abspath(
      error.filename or "") == path:
    what = f"line {error.lineno}: {error.msg}; fix the file"
  elif path in (os.path.abspath(f) for f in frames):
    lines = str(error).strip().splitlines() or [""]
    what = f"{type(error).__name__}: {lines[0]}"
  else:
    return None
  workdir = _flag_value(argv, "workdir")
  if workdir and workdir.strip():
    ERRORS_LOG.path = os.path.join(workdir, "errors.log")
    ERRORS_LOG.write(f"--config={value} did not load", "".join(
        traceback.format_exception(type(error), error, error.__traceback__)))
  where = (f" (the traceback is in {ERRORS_LOG.path})" if ERRORS_LOG.count
           else "")
  return f"--config={value}: {what}{where}"


def config_import_paths(argv: list[str]) -> list[str]:
  """Where the --config file's imports resolve, from any working directory:
  the folder above the file's package (experiments/x.py imports
  `experiments.number_translation`), then this checkout's root, which holds
  experiments/ (for configs kept elsewhere that build on those)."""
  value = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")),
               None)
  if value is None and "--config" in argv[:-1]:
    value = argv[argv.index("--config") + 1]
  paths = []
  if value:
    folder = os.path.dirname(os.path.abspath(value.split(":", 1)[0]))
    while os.path.isfile(os.path.join(folder, "__init__.py")):
      folder = os.path.dirname(folder)
    paths.append(folder)
  checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if os.path.isdir(os.path.join(checkout, "experiments")):
    paths.append(checkout)
  return paths


_INTERRUPTED = {
    # Training catches the first Ctrl-C (it saves and exits 0); a second
    # one stops at once.
    "train": "interrupted by a second Ctrl-C: stopped at once, without "
             "saving; rerun the same command to resume from the last "
             "checkpoint.",
    "eval": "interrupted: --mode=eval stopped before writing "
            "eval_results.json.",
    "embed": "interrupted: --mode=embed stopped; nothing was written to "
             "--output.",
}


def interrupted(mode: str, error: KeyboardInterrupt) -> str:
  """The line a Ctrl-C prints (--mode=decode's says how many lines it
  kept)."""
  return str(error) or _INTERRUPTED.get(mode, f"interrupted: --mode={mode} "
                                        "stopped.")


def load_config(flag_values):
  """flag_values.config, with a one-line error if the file is missing or its
  get_config() fails (ml_collections only says that loading failed)."""
  path = config_flags.get_config_filename(flag_values["config"])
  if not os.path.isfile(path.split(":", 1)[0]):  # file.py:ARM names an arm
    sys.exit(f"error: --config={flag_values['config'].serialize().split('=', 1)[1]}"
             f": no such file ({path}); the configs are experiments/*.py.")
  try:
    config = flag_values.config
  except Exception as e:  # noqa: BLE001  the cause is what the user needs
    if flag_values["verbosity"].present:
      raise
    cause = e.__cause__ or e.__context__ or e
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    sys.exit(f"error: --config={path}: {lines[0]}")
  problem = config_problem(config)
  if problem:
    sys.exit(f"error: --config={path}: {problem}")
  return config


# The config every shipped experiment builds on (read as a file: the
# package does not import experiments/).
BASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments", "number_translation.py")


def config_problem(config) -> str | None:
  """What makes `config` (a get_config() result) unusable: not a
  ConfigDict, or without fields every experiment has; None if fine."""
  if not isinstance(config, ml_collections.ConfigDict):
    return (f"get_config() returned a {type(config).__name__}, not an "
            "ml_collections.ConfigDict; build it as experiments/*.py do "
            "(c = number_translation.get_config(), then change fields)")
  if not os.path.isfile(BASE_CONFIG):  # an install without experiments/
    return None
  spec = importlib.util.spec_from_file_location("_base_config", BASE_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  base = module.get_config()
  missing = [k for k in base if k not in config]
  if not missing:
    return None
  # Blocks first: a missing block is the likelier cause.
  missing.sort(key=lambda k: (
      not isinstance(base[k], ml_collections.ConfigDict), k))
  return (f"the config lacks {len(missing)} of the fields every experiment "
          f"has ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
          "); build it on experiments/number_translation.py's get_config() "
          "as experiments/*.py do")
