r"""The one entry point: train, evaluate or decode an experiment.

  python -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir=runs/en_de [--config.batch_size=64 ...] [--mode=train]

  python -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir=runs/en_de --mode=decode --input=numbers.txt --output=-

  python -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir=runs/en_de --mode=export_encoder --output=encoders/en_de

  python -m encdec_jax.main --config=experiments/sentence_embedding.py \
      --workdir=runs/embed --mode=embed --input=lines.txt \
      --output=vectors.npy --neighbours=3
"""

import logging as pylogging
import os
import re
import sys
import threading
import time
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/*.py); override "
    "fields with --config.<field>=<value>.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, tokenizer, "
                    "TensorBoard events and results.")
flags.DEFINE_enum("mode", "train",
                  ["train", "eval", "decode", "embed", "export_encoder",
                   "export_adapter", "merge_adapter"],
                  "train (resumes if the workdir has a checkpoint), eval (the "
                  "latest checkpoint on validation and test), decode (--input "
                  "to --output; an LM continues each line), embed (unit "
                  "sentence vectors of the --input lines to the .npy "
                  "--output), export_encoder (the latest checkpoint's "
                  "encoder, with its config and tokenizer, to the directory "
                  "--output, for --config.init_encoder), export_adapter (a "
                  "LoRA run's adapters and their settings to the directory "
                  "--output, for --config.lora.adapter), merge_adapter (the "
                  "adapters folded into the base: a plain workdir --output).")
flags.DEFINE_string("input", "-", "--mode=decode: source file, one a line; "
                    "'-' reads stdin.")
flags.DEFINE_string("output", "-", "--mode=decode: output file ('-' is "
                    "stdout); --mode=embed: a .npy file; "
                    "--mode=export_encoder: a new directory.")
flags.DEFINE_integer("neighbours", 0, "--mode=embed: also print each input "
                     "line's N most similar other lines (cosine).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of "
                    "process 0's coordinator (with --num_processes and "
                    "--process_id); unset on a TPU VM pod or under SLURM, "
                    "where JAX finds them itself.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index, "
                     "0 .. num_processes-1.")
flags.DEFINE_integer("heartbeat_timeout", 100, "Multi-host: seconds without "
                     "a heartbeat after which the other processes stop with "
                     "an error instead of waiting for a dead one (JAX's "
                     "default is 100).")
flags.DEFINE_bool("distributed", False, "Multi-host without the three flags "
                  "above: jax.distributed.initialize() detects the cluster "
                  "(TPU VM pod, SLURM, Open MPI). A SLURM job with more than "
                  "one task turns this on by itself.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}; flags are "
             "written --name=value (see --helpshort).")
  if not FLAGS["verbosity"].present:
    # Library INFO logs (orbax, TFDS) bury the progress lines; -v 0 shows them.
    # What the console leaves out goes in full to <workdir>/errors.log.
    ERRORS_LOG.path = os.path.join(FLAGS.workdir, "errors.log")
    logging.set_verbosity(logging.WARNING)
    threading.excepthook = _one_line_thread_error
    logging.get_absl_handler().addFilter(_one_line_library_logs)
    # Errors Python ignores anyway ("Exception ignored in ..."): after a
    # failed async save, tensorstore's late callbacks print dozens of them.
    sys.unraisablehook = _log_unraisable
  # Imported after flag parsing so --help stays fast.
  from encdec_jax import checkpoint
  from encdec_jax.data.tokenizer import MissingPackageError
  from encdec_jax.train import inference, trainer
  if not FLAGS.workdir.strip():
    sys.exit("error: --workdir is empty; give the directory for checkpoints, "
             "the tokenizer and results (e.g. --workdir=runs/my_run).")
  config, workdir = _load_config(), FLAGS.workdir
  from encdec_jax import parallel  # before any JAX computation
  try:
    parallel.initialize_distributed(FLAGS.coordinator_address,
                                    FLAGS.num_processes, FLAGS.process_id,
                                    auto=FLAGS.distributed,
                                    heartbeat_timeout=FLAGS.heartbeat_timeout)
    if FLAGS.mode == "train":
      trainer.train_and_evaluate(config, workdir)
    elif FLAGS.mode == "eval":
      inference.evaluate_checkpoint(config, workdir)
    elif FLAGS.mode == "export_encoder":
      if FLAGS.output == "-":
        raise ValueError("--mode=export_encoder needs --output=DIR, a new "
                         "directory for the encoder.")
      step = checkpoint.export_encoder(workdir, FLAGS.output)
      print(f"saved the encoder of step {step} in {FLAGS.output}; fine-tune "
            f"from it with --config.init_encoder={FLAGS.output}")
    elif FLAGS.mode in ("export_adapter", "merge_adapter"):
      if FLAGS.output == "-":
        raise ValueError(f"--mode={FLAGS.mode} needs --output=DIR, a new "
                         "directory.")
      from encdec_jax.lora import store  # pylint: disable=g-import-not-at-top
      if FLAGS.mode == "export_adapter":
        spec = store.export_adapter(config, workdir, FLAGS.output)
        print(f"saved the adapters of step {spec['step']} "
              f"({spec['num_params']:,} params) in {FLAGS.output}; apply "
              f"them with --config.lora.adapter={FLAGS.output} and "
              f"--workdir=<the base run, {spec['base']}>")
      else:
        step = store.merge_adapter(config, workdir, FLAGS.output)
        print(f"merged the adapters of step {step} into the base: a plain "
              f"workdir in {FLAGS.output}; decode it with the same flags "
              f"and --workdir={FLAGS.output}")
    elif FLAGS.mode == "embed":
      inference.embed_file(config, workdir, FLAGS.input, FLAGS.output,
                           FLAGS.neighbours)
    else:
      inference.decode_file(config, workdir, FLAGS.input, FLAGS.output)
  except Exception as e:  # noqa: BLE001
    lost = parallel.lost_peer(e)
    known = isinstance(e, (ValueError, OSError, FloatingPointError,
                           MissingPackageError))
    if FLAGS["verbosity"].present or not (known or lost):
      raise
    # Bad input (config value, data file, checkpoint), a full disk, a NaN,
    # another process of a multi-host run gone: one line, no traceback.
    message = f"error: {lost or e}{ERRORS_LOG.note()}\n(rerun with " \
              "--verbosity=0 for the traceback)"
    if lost:  # jax.distributed's exit would wait ~100 s for the dead peer
      print(message, file=sys.stderr, flush=True)
      os._exit(1)
    sys.exit(message)
  except KeyboardInterrupt as e:  # Ctrl-C: one line, exit 130
    if FLAGS["verbosity"].present:
      raise
    print(_interrupted(FLAGS.mode, e), file=sys.stderr, flush=True)
    sys.exit(130)
  if ERRORS_LOG.count:
    print(f"note:{ERRORS_LOG.note()[1:]}", file=sys.stderr)


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


def _interrupted(mode: str, error: KeyboardInterrupt) -> str:
  """The line a Ctrl-C prints (--mode=decode's says how many lines it
  kept)."""
  return str(error) or _INTERRUPTED.get(mode, f"interrupted: --mode={mode} "
                                        "stopped.")


def _load_config():
  """FLAGS.config, with a one-line error if the file is missing or its
  get_config() fails (ml_collections only says that loading failed)."""
  path = config_flags.get_config_filename(FLAGS["config"])
  if not os.path.isfile(path.split(":", 1)[0]):  # file.py:ARM names an arm
    sys.exit(f"error: --config={FLAGS['config'].serialize().split('=', 1)[1]}"
             f": no such file ({path}); the configs are experiments/*.py.")
  try:
    return FLAGS.config
  except Exception as e:  # noqa: BLE001  the cause is what the user needs
    if FLAGS["verbosity"].present:
      raise
    cause = e.__cause__ or e.__context__ or e
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    sys.exit(f"error: --config={path}: {lines[0]}")


class _ErrorsLog:
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
        print(f"{kind} (could not be written to {self.path}: "
              f"{type(e).__name__}): {last}", file=sys.stderr, flush=True)

  def note(self) -> str:
    """'; N ... in full in <path>' once something was written, else ''."""
    if not self.count:
      return ""
    return (f"; {self.count} library message(s) cut or left off the "
            f"console are in full in {self.path}")


ERRORS_LOG = _ErrorsLog()


def _log_unraisable(unraisable) -> None:
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


def _one_line_library_logs(record) -> bool:
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


def _one_line_thread_error(args) -> None:
  """A background thread's error in one line: orbax's async save threads
  fail there first, and the main thread then stops with the message that
  says what to do (checkpoint.CheckpointWriteError). The traceback goes to
  errors.log."""
  ERRORS_LOG.write(
      f"exception in thread {args.thread.name if args.thread else ''}",
      "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                         args.exc_traceback)))
  lines = str(args.exc_value).strip().splitlines() or [""]
  print(f"background thread {args.thread.name if args.thread else ''}: "
        f"{args.exc_type.__name__}: {lines[0][:300]}", file=sys.stderr,
        flush=True)


def _config_field_error(argv: list[str], error: Exception) -> str | None:
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
  config field or a value of the wrong type."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    text = str(e)
    if "Traceback (most recent call last)" in text:  # get_config() raised
      last = [l for l in text.strip().splitlines() if l.strip()][-1]
      text = f"{text.split(': ', 1)[0]}: {last}"
    sys.exit(f"error: {text} (see --helpshort)")
  except (AttributeError, KeyError) as e:
    message = _config_field_error(argv, e)
    if message is None:
      raise
    sys.exit(f"error: {message}")


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


if __name__ == "__main__":
  sys.path[:0] = config_import_paths(sys.argv)
  app.run(main, flags_parser=parse_flags)
