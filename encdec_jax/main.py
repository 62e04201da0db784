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

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from encdec_jax import console

config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/*.py); override "
    "fields with --config.<field>=<value>.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, tokenizer, "
                    "TensorBoard events and results.")
flags.DEFINE_enum("mode", "train",
                  ["train", "eval", "decode", "embed", "export_encoder",
                   "export_adapter", "merge_adapter", "export_serving"],
                  "train (resumes if the workdir has a checkpoint), eval (the "
                  "latest checkpoint on validation and test), decode (--input "
                  "to --output; an LM continues each line), embed (unit "
                  "sentence vectors of the --input lines to the .npy "
                  "--output), export_encoder (the latest checkpoint's "
                  "encoder, with its config and tokenizer, to the directory "
                  "--output, for --config.init_encoder), export_adapter (a "
                  "LoRA run's adapters and their settings to the directory "
                  "--output, for --config.lora.adapter), merge_adapter (the "
                  "adapters folded into the base: a plain workdir --output), "
                  "export_serving (encode and the greedy, beam and sampling "
                  "decoders as jax.export artifacts, with the params and "
                  "tokenizer, to the directory --output: served by jax alone "
                  "with python -m encdec_jax.serving).")
flags.DEFINE_string("input", "-", "--mode=decode: source file, one a line; "
                    "'-' reads stdin.")
flags.DEFINE_string("output", "-", "--mode=decode: output file ('-' is "
                    "stdout); --mode=embed: a .npy file; "
                    "--mode=export_encoder: a new directory.")
flags.DEFINE_list("platforms", ["cpu"], "--mode=export_serving: the "
                  "platforms to lower for besides cpu (cuda, rocm, tpu); no "
                  "such device is needed to export.")
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
    console.quiet(FLAGS.workdir)  # what it leaves out goes to errors.log
  if not FLAGS.workdir.strip():
    sys.exit("error: --workdir is empty; give the directory for checkpoints, "
             "the tokenizer and results (e.g. --workdir=runs/my_run).")
  config, workdir = console.load_config(FLAGS), FLAGS.workdir
  # Flags a mode would silently ignore: refused for the modes in
  # unread_by (with what each of those reads instead).
  flag_readers = {"input": ("decode", "embed"),
                  "output": ("decode", "embed", "export_encoder",
                             "export_adapter", "merge_adapter"),
                  "neighbours": ("embed",)}
  unread_by = {
      "train": "training reads the config's dataset; drop the flag.",
      "eval": "--mode=eval scores the config's validation and test splits "
              "and appends to <workdir>/eval_results.json; drop the flag, "
              "or use --mode=decode to translate a file.",
      "decode": "drop the flag.", "export_encoder": "drop the flag.",
      "export_adapter": "drop the flag.", "merge_adapter": "drop the flag."}
  for flag, readers in flag_readers.items():
    if FLAGS[flag].present and FLAGS.mode in unread_by and (
        FLAGS.mode not in readers):
      sys.exit(f"error: --{flag} is not read by --mode={FLAGS.mode} (only "
               f"by --mode={' / --mode='.join(readers)}); "
               f"{unread_by[FLAGS.mode]}")
  # Imported after flag parsing so --help stays fast.
  from encdec_jax import parallel  # before any JAX computation
  from encdec_jax.data.tokenizer import MissingPackageError
  from encdec_jax import exports, serving_export
  from encdec_jax.train import inference, trainer
  modes = {
      "train": lambda: trainer.train_and_evaluate(config, workdir),
      "eval": lambda: inference.evaluate_checkpoint(config, workdir),
      "decode": lambda: inference.decode_file(config, workdir, FLAGS.input,
                                              FLAGS.output),
      "embed": lambda: inference.embed_file(config, workdir, FLAGS.input,
                                            FLAGS.output, FLAGS.neighbours),
      "export_encoder": lambda: exports.export_encoder(config, workdir,
                                                       FLAGS.output),
      "export_adapter": lambda: exports.export_adapter(config, workdir,
                                                       FLAGS.output),
      "merge_adapter": lambda: exports.merge_adapter(config, workdir,
                                                     FLAGS.output),
      "export_serving": lambda: serving_export.export_serving(
          config, workdir, FLAGS.output, FLAGS.platforms),
  }
  try:
    parallel.initialize_distributed(FLAGS.coordinator_address,
                                    FLAGS.num_processes, FLAGS.process_id,
                                    auto=FLAGS.distributed,
                                    heartbeat_timeout=FLAGS.heartbeat_timeout)
    modes[FLAGS.mode]()
  except Exception as e:  # noqa: BLE001
    lost = parallel.lost_peer(e)
    known = isinstance(e, (ValueError, OSError, FloatingPointError,
                           MissingPackageError))
    if FLAGS["verbosity"].present or not (known or lost):
      raise
    # Bad input (config value, data file, checkpoint), a full disk, a NaN,
    # another process of a multi-host run gone: one line, no traceback.
    message = f"error: {lost or e}{console.ERRORS_LOG.note()}\n(rerun with " \
              "--verbosity=0 for the traceback)"
    console.stderr_line(message)
    if lost:  # jax.distributed's exit would wait ~100 s for the dead peer
      os._exit(1)
    sys.exit(1)
  except KeyboardInterrupt as e:  # Ctrl-C: one line, exit 130
    if FLAGS["verbosity"].present:
      raise
    console.stderr_line(console.interrupted(FLAGS.mode, e))
    sys.exit(130)
  if console.ERRORS_LOG.count:
    console.stderr_line(f"note:{console.ERRORS_LOG.note()[1:]}")


if __name__ == "__main__":
  sys.path[:0] = console.config_import_paths(sys.argv)
  app.run(main, flags_parser=console.parse_flags)
