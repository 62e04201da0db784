"""Bad input gets one clear line that says what is wrong and what to do, and
loses nothing already saved (the table in docs/errors.md lists every case
and its test)."""

import os
import resource
import subprocess
import sys

import ml_collections
import pytest

from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.train import config_checks, experiment
from experiments import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, preexec_fn=None):
  return subprocess.run(
      [sys.executable, "-m", "encdec_jax.main", *args], cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
      text=True, timeout=600, preexec_fn=preexec_fn)


def _one_error_line(run) -> str:
  """The `error: ...` line; asserts a non-zero exit and no traceback."""
  assert run.returncode != 0, run.stdout[-2000:]
  assert "Traceback" not in run.stderr, run.stderr[-3000:]
  errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, run.stderr[-3000:]
  return errors[0]


@pytest.mark.parametrize("field, value, message", [
    ("num_train_steps", -5, "config.num_train_steps=-5 must be >= 0"),
    ("batch_size", 0, "config.batch_size=0 must be >= 1"),
    ("warmup_steps", -1, "config.warmup_steps=-1 must be >= 0"),
    ("checkpoint_every", 0, "config.checkpoint_every=0 must be >= 1"),
    ("keep_checkpoints", 0, "config.keep_checkpoints=0 must be >= 1"),
    ("max_source_length", 1, "config.max_source_length=1 must be >= 2"),
    ("learning_rate", 0.0, "config.learning_rate=0.0 is out of range; use a "
     "value in (0, inf)"),
    ("learning_rate", float("nan"), "config.learning_rate=nan is out of range"),
    ("label_smoothing", 1.0, "config.label_smoothing=1.0 is out of range; use "
     "a value in [0, 1)"),
    ("adam_b2", 1.0, "config.adam_b2=1.0 is out of range"),
    ("bucket_boundaries", (0, 64), "config.bucket_boundaries=(0, 64) must be "
     "positive lengths"),
    ("model.num_heads", 5, "config.model.qkv_dim=32 is not divisible by "
     "config.model.num_heads=5; pick a number of heads that divides it (e.g. "
     "4)"),
    ("model.emb_dim", 0, "config.model.emb_dim=0 must be >= 1"),
    ("model.num_encoder_layers", -1, "config.model.num_encoder_layers=-1 must "
     "be >= 0"),
    ("model.dropout_rate", 1.0, "config.model.dropout_rate=1.0 is out of "
     "range; use a value in [0, 1)"),
    ("grad_accum_steps", 0, "config.grad_accum_steps=0 must be >= 1"),
], ids=["num_train_steps", "batch_size", "warmup_steps", "checkpoint_every",
        "keep_checkpoints", "max_source_length", "learning_rate_zero",
        "learning_rate_nan", "label_smoothing", "adam_b2", "bucket_boundaries",
        "model.num_heads", "model.emb_dim", "model.num_encoder_layers",
        "model.dropout_rate", "grad_accum_steps"])
def test_values_that_make_no_sense_are_named(field, value, message):
  config = tiny.get_config()
  node = config
  for part in field.split(".")[:-1]:
    node = node[part]
  node[field.split(".")[-1]] = value
  with pytest.raises(ValueError) as error:
    config_checks.check(config)
  assert str(error.value).startswith(message)
  assert "\n" not in str(error.value)


def test_group_learning_rate_is_checked():
  config = tiny.get_config()
  config.group_optim = ml_collections.ConfigDict(
      {"encoder": {"learning_rate": -1e-3}})
  with pytest.raises(ValueError, match=r"config.group_optim.encoder."
                     r"learning_rate=-0.001 is out of range"):
    config_checks.check(config)


def test_every_shipped_config_passes_the_checks():
  import importlib
  for name in sorted(os.listdir(os.path.join(REPO, "experiments"))):
    if name.endswith(".py") and not name.startswith("_"):
      module = importlib.import_module(f"experiments.{name[:-3]}")
      config = module.get_config()
      if config.get("required_fields"):  # e.g. t5_finetune's init_from
        with pytest.raises(ValueError, match="is not set, and "
                           f"experiments/{name} needs it"):
          config_checks.check(config)
        continue
      config_checks.check(config)


@pytest.mark.parametrize("policy, value, message", [
    ("nan_policy", "ignore", "config.nan_policy='ignore' is not known"),
    ("dropout_prng", "mt19937", "config.dropout_prng='mt19937' is not known"),
    ("corrupt_checkpoint", "skip",
     "config.corrupt_checkpoint='skip' is not known"),
], ids=["nan_policy", "dropout_prng", "corrupt_checkpoint"])
def test_unknown_policy_names(policy, value, message):
  config = tiny.get_config()
  config[policy] = value
  with pytest.raises(ValueError, match=message):
    config_checks.check(config)  # before anything is read or written


def test_mistyped_config_field_suggests_the_closest(tmp_path):
  line = _one_error_line(_main("--config=experiments/tiny.py",
                               f"--workdir={tmp_path}",
                               "--config.model.num_head=2"))
  assert line == ("error: --config.model.num_head: config.model has no field "
                  "'num_head'; did you mean --config.model.num_heads?")
  assert not os.listdir(tmp_path)  # nothing was written


@pytest.mark.parametrize("args, line", [
    (["--config.batch_size=abc"], "error: flag --config.batch_size=abc: "
     "invalid literal for int() with base 10: 'abc' (see --helpshort)"),
    (["--mode=serve"], "error: flag --mode=serve: value should be one of "
     "<train|eval|decode|embed|export_encoder|export_adapter|merge_adapter|"
     "export_serving> "
     "(see --helpshort)"),
    (["--config=experiments/nope.py"], "error: --config=experiments/nope.py: "
     "no such file (experiments/nope.py); the configs are experiments/*.py."),
    (["--config=experiments/tiny.py:huge"], "error: flag --config=experiments/"
     "tiny.py:huge: ValueError: unknown arm 'huge'; use one of"),
    (["extra"], "error: unexpected arguments: extra; flags are written "
     "--name=value (see --helpshort)."),
    (["--workdir="], "error: --workdir is empty; give the directory for "
     "checkpoints"),
    (["--config.max_source_length=100"], "error: config.max_source_length=100 "
     "> config.model.max_len=64, the longest sequence the model has "
     "positions for; raise config.model.max_len or lower"),
], ids=["wrong_type", "unknown_mode", "no_config_file", "unknown_arm",
        "positional", "no_workdir", "longer_than_positions"])
def test_command_line_mistakes_are_one_line(tmp_path, args, line):
  defaults = ["--config=experiments/tiny.py", f"--workdir={tmp_path / 'w'}"]
  given = {a.split("=")[0] for a in args}
  run = _main(*[d for d in defaults if d.split("=")[0] not in given], *args)
  assert _one_error_line(run).startswith(line)
  assert not os.path.exists(tmp_path / "w")  # nothing was written


def test_workdir_that_cannot_be_written(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("")
  with pytest.raises(OSError, match=r"--workdir=.*file/run cannot be written "
                     r"\(Not a directory\); choose a directory you can write "
                     "to"):
    experiment.check_writable(str(a_file / "run"))
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  read_only.chmod(0o555)
  as_root = os.geteuid() == 0
  try:
    if as_root:  # root ignores permissions: check as an ordinary user
      os.seteuid(65534)
    with pytest.raises(PermissionError, match=r"cannot be written "
                       r"\(Permission denied\)"):
      experiment.check_writable(str(read_only / "run"))
  finally:
    if as_root:
      os.seteuid(0)
    read_only.chmod(0o755)


def test_full_disk_at_save_keeps_the_last_checkpoint(small_text_files,
                                                     tmp_path):
  """A save that cannot be written (a file-size limit stands in for a full
  disk: the same OS write error) ends the run with one line naming the last
  committed step; that step is intact and the rerun resumes from it."""
  workdir = str(tmp_path / "run")
  args = ["--config=experiments/tiny.py", f"--workdir={workdir}",
          "--config.dataset=text_files",
          *(f"--config.text_files.{s}={p}" for s, p in small_text_files.items()),
          "--config.checkpoint_every=2", "--config.eval_every=1000",
          "--config.test_at_end=False", "--config.num_decode_examples=0",
          "--config.num_eval_examples=32"]
  assert _main(*args, "--config.num_train_steps=4").returncode == 0

  def small_files_only():
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

  full = _main(*args, "--config.num_train_steps=8",
               preexec_fn=small_files_only)
  line = _one_error_line(full)
  assert line.startswith(f"error: could not write step 6 in {workdir}/"
                         "checkpoints (File too large); step 4 is the last "
                         "committed one and is intact. Free disk space")
  # orbax's background errors, kept off the console, are in errors.log.
  log_path = os.path.join(workdir, "errors.log")
  assert f"in full in {log_path}" in line
  with open(log_path, encoding="utf-8") as f:
    log = f.read()
  assert "Traceback" in log and "File too large" in log, log[-3000:]
  rerun = _main(*args, "--config.num_train_steps=8")
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert "resumed from" in rerun.stdout and "at step 4" in rerun.stdout
  assert "6.orbax-checkpoint-tmp: an unfinished checkpoint" in rerun.stdout


def test_unknown_characters_are_reported_once_with_line_numbers(capsys):
  tok = tokenizer_lib.train_sentencepiece(
      ["one two three"] * 50 + ["four five six"] * 50, 40)
  bad = tokenizer_lib.warn_unknown(tok, ["one two", "two ß", "€ and ß"])
  assert bad == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1
  assert ("2 of 3 input lines have characters the tokenizer does not know, "
          "read as unknown:") in err
  assert "'ß' (line 2)" in err and "'€' (line 3)" in err
  assert tokenizer_lib.warn_unknown(tokenizer_lib.ByteTokenizer(),
                                    ["ß €"]) == 0
