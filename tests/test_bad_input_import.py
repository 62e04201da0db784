"""Bad input to `python -m encdec_jax.pretrained.import_hf` and `export_hf`:
one `error:` line naming the file and what is wrong, nothing written; the
output directory is made whole, with ordinary modes, and a killed run's
leftover is cleaned by the rerun. Uses the tiny T5 v1.1 of
tests/data/hf_tiny (no torch)."""

import json
import re
import os
import shlex
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("safetensors", reason="safetensors is not installed: "
                    "pip install -e '.[pretrained]'")

from encdec_jax.pretrained import export_hf, import_hf  # noqa: E402
from encdec_jax.pretrained import hf as hf_lib  # noqa: E402

T5 = os.path.join(os.path.dirname(__file__), "data", "hf_tiny", "t5_v11")


def _model_dir(tmp_path, name="model"):
  path = str(tmp_path / name)
  shutil.copytree(T5, path)
  return path


def _edit_config(model_dir, edit):
  path = os.path.join(model_dir, "config.json")
  with open(path) as f:
    config = json.load(f)
  config = edit(config)
  with open(path, "w") as f:
    json.dump(config, f)


def _one_error_line(capsys, argv, main=import_hf.main) -> str:
  assert main(argv) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: "), err
  return err


def _truncate(path, keep):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:keep])


@pytest.mark.parametrize("case, message", [
    ("list", "config.json holds a JSON list, not an object"),
    ("string_size", "config.json: 'd_model' is \"16\", which must be an "
                    "integer >= 1; write 16 without quotes"),
    ("bool_size", "config.json: 'num_heads' is true, which must be an "
                  "integer >= 1"),
    ("not_json", "config.json is not valid JSON"),
    ("bad_flag", "config.json: 'is_encoder_decoder' is \"yes\", which must "
                 "be true or false"),
])
def test_a_config_json_of_the_wrong_shape_is_one_line(case, message, tmp_path,
                                                      capsys):
  model_dir, out = _model_dir(tmp_path), str(tmp_path / "out")
  if case == "list":
    _edit_config(model_dir, lambda c: [c])
  elif case == "string_size":
    _edit_config(model_dir, lambda c: dict(c, d_model="16"))
  elif case == "bool_size":
    _edit_config(model_dir, lambda c: dict(c, num_heads=True))
  elif case == "bad_flag":
    _edit_config(model_dir, lambda c: dict(c, is_encoder_decoder="yes"))
  else:
    with open(os.path.join(model_dir, "config.json"), "w") as f:
      f.write('{"model_type": "t5",')
  assert message in _one_error_line(capsys, ["import_hf", model_dir, out])
  assert not os.path.exists(out)


@pytest.mark.parametrize("keep", [5, 200, -100])
def test_a_truncated_model_safetensors_is_one_line(keep, tmp_path, capsys):
  model_dir, out = _model_dir(tmp_path), str(tmp_path / "out")
  _truncate(os.path.join(model_dir, "model.safetensors"), keep)
  err = _one_error_line(capsys, ["import_hf", model_dir, out])
  assert "model.safetensors: not a complete safetensors file" in err
  assert not os.path.exists(out)


def test_a_corrupt_spiece_model_is_refused_at_import(tmp_path, capsys):
  model_dir, out = _model_dir(tmp_path), str(tmp_path / "out")
  with open(os.path.join(model_dir, "spiece.model"), "wb") as f:
    f.write(b"<html>404 Not Found</html>")
  err = _one_error_line(capsys, ["import_hf", model_dir, out])
  assert "spiece.model cannot be read as a SentencePiece model" in err
  assert not os.path.exists(out)


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(tmp_path,
                                                                capsys):
  """spiece.model has 60 pieces; cut the model to 50 embedding rows: ids
  50..59 would index past the table (JAX clamps them, silently)."""
  model_dir, out = _model_dir(tmp_path), str(tmp_path / "out")
  _edit_config(model_dir, lambda c: dict(c, vocab_size=50))
  path = os.path.join(model_dir, "model.safetensors")
  tensors = hf_lib.read_tensors(path)
  tensors = {k: (v[:50] if v.shape[0] == 70 else v)
             for k, v in tensors.items()}
  hf_lib.write_tensors(path, tensors)
  err = _one_error_line(capsys, ["import_hf", model_dir, out])
  assert ("spiece.model has 60 tokens but the model's embedding has 50 rows "
          "(config.json vocab_size)") in err
  assert not os.path.exists(out)


def test_the_output_has_ordinary_modes_under_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    out = str(tmp_path / "out")
    import_hf.import_hf(T5, out)
  finally:
    os.umask(old)
  for folder, _, files in os.walk(out):
    assert os.stat(folder).st_mode & 0o777 == 0o755, folder
    for name in files:
      assert os.stat(os.path.join(folder, name)).st_mode & 0o777 == 0o644
  assert [e for e in os.listdir(tmp_path) if e.startswith(".")] == []


def test_a_killed_import_is_cleaned_up_by_the_rerun(tmp_path, capsys):
  out = str(tmp_path / "out")
  # What a kill -9 leaves: the unlocked sibling, half written.
  leftover = out + ".partial"
  os.makedirs(os.path.join(leftover, "hf"))
  with open(os.path.join(leftover, "params.safetensors"), "wb") as f:
    f.write(b"\0" * 1000)
  assert import_hf.main(["import_hf", T5, out]) == 0
  err = capsys.readouterr().err
  assert (f"note: removed the unfinished {leftover} of a command that was "
          "killed; writing it again") in err
  assert not os.path.exists(leftover)
  assert sorted(os.listdir(tmp_path)) == ["out"]


def test_an_output_another_run_is_writing_is_refused(tmp_path, capsys):
  out = str(tmp_path / "out")
  busy = out + ".partial"
  os.makedirs(busy)
  # Another command writing `out`: it holds the sibling's flock.
  sleeper = subprocess.Popen(
      [sys.executable, "-c", "import fcntl, os, sys, time; "
       "fd = os.open(sys.argv[1], os.O_RDONLY); "
       "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); "
       "time.sleep(60)", busy], stdout=subprocess.PIPE, text=True)
  try:
    assert sleeper.stdout.readline() == "locked\n"
    err = _one_error_line(capsys, ["import_hf", T5, out])
    assert f"another command is writing {out} now" in err
    assert os.path.isdir(busy) and not os.path.exists(out)
  finally:
    sleeper.kill()
    sleeper.wait()


@pytest.mark.parametrize("case, message", [
    ("not_empty", "exists and is not empty; refusing to overwrite it: give "
                  "a new directory for the imported model"),
    ("file", "is a file; give a new directory for the imported model"),
])
def test_an_output_that_is_taken_is_refused(case, message, tmp_path, capsys):
  out = str(tmp_path / "out")
  if case == "not_empty":
    os.makedirs(out)
    open(os.path.join(out, "keep.txt"), "w").close()
  else:
    open(out, "w").close()
  assert message in _one_error_line(capsys, ["import_hf", T5, out])


def test_an_unwritable_output_names_it_not_the_hidden_directory(tmp_path,
                                                                capsys):
  if os.geteuid() == 0:
    pytest.skip("root writes anywhere")
  parent = tmp_path / "locked"
  parent.mkdir()
  os.chmod(parent, 0o555)
  try:
    out = str(parent / "out")
    err = _one_error_line(capsys, ["import_hf", T5, out])
  finally:
    os.chmod(parent, 0o755)
  assert f"error: {out} cannot be created (Permission denied)" in err
  assert ".partial" not in err and "[Errno" not in err


def test_a_failed_write_names_the_output_not_the_hidden_directory(tmp_path):
  """params.safetensors (~70 kB) cannot be written past 20 kB: safetensors
  raises its own error type; the line names OUT and the system's reason."""
  out = str(tmp_path / "out")
  # ulimit -f (in kB): writes past it fail with EFBIG, as on a full disk;
  # SIGXFSZ ignored, so the write returns the error instead of killing.
  command = (f"ulimit -f 20 && trap '' XFSZ && exec {shlex.quote(sys.executable)}"
             f" -m encdec_jax.pretrained.import_hf {shlex.quote(T5)} "
             f"{shlex.quote(out)}")
  result = subprocess.run(["bash", "-c", command], capture_output=True,
                          text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 1, result.stderr
  assert result.stderr == (f"error: {out} could not be written (File too "
                           "large); nothing was written: free space or fix "
                           "permissions, and rerun.\n")
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist; import a Hugging Face model there with: "
                "python -m encdec_jax.pretrained.import_hf HF_MODEL_DIR"),
    ("hf_dir", "is a Hugging Face model directory, not an import; import it "
               "once with: python -m encdec_jax.pretrained.import_hf"),
    ("other", "is not an import_hf directory (no pretrained.json); import "
              "into a new directory: python -m "
              "encdec_jax.pretrained.import_hf HF_MODEL_DIR NEW_DIR"),
])
def test_a_wrong_import_directory_gets_advice_that_works(case, message,
                                                         tmp_path):
  path = str(tmp_path / "pre")
  if case == "hf_dir":
    path = T5
  elif case == "other":
    os.makedirs(path)
    open(os.path.join(path, "notes.txt"), "w").close()
  with pytest.raises(FileNotFoundError, match=re.escape(message)) as info:
    import_hf.read_meta(path)
  if case != "missing":  # never: import into the directory that holds it
    assert f"import_hf HF_MODEL_DIR {path}" not in str(info.value)


def test_export_hf_output_is_whole_with_ordinary_modes(tmp_path, capsys):
  pre, out = str(tmp_path / "pre"), str(tmp_path / "exported")
  import_hf.import_hf(T5, pre)
  os.makedirs(out)
  open(os.path.join(out, "x"), "w").close()
  err = _one_error_line(capsys, ["export_hf", pre, out], export_hf.main)
  assert ("exists and is not empty; refusing to overwrite it: give a new "
          "directory for the Hugging Face export") in err
  os.remove(os.path.join(out, "x"))
  old = os.umask(0o022)
  try:
    assert export_hf.main(["export_hf", pre, out]) == 0
  finally:
    os.umask(old)
  assert os.stat(out).st_mode & 0o777 == 0o755
  assert os.stat(os.path.join(out, "model.safetensors")).st_mode & 0o777 \
      == 0o644
  assert sorted(e for e in os.listdir(tmp_path) if e.startswith(".")) == []


def test_missing_tokenizer_files_and_a_wrong_export_source_say_what_to_do(
    tmp_path, capsys):
  model_dir, out = _model_dir(tmp_path), str(tmp_path / "out")
  os.remove(os.path.join(model_dir, "spiece.model"))
  err = _one_error_line(capsys, ["import_hf", model_dir, out])
  assert ("lacks the tokenizer file(s) spiece.model of a t5 model; download "
          "them with the weights") in err
  err = _one_error_line(capsys, ["export_hf", model_dir, out], export_hf.main)
  assert ("is neither an import_hf directory nor a workdir fine-tuned from "
          "one (no pretrained.json, no pretrained/pretrained.json); give the "
          "directory import_hf wrote") in err
  assert not os.path.exists(out)


@pytest.mark.parametrize("family, file, content, message", [
    ("bart", "tokenizer.json", '{"version": "1.0", "model": ',
     "tokenizer.json cannot be read as a tokenizers tokenizer.json (EOF "
     "while parsing"),
    ("marian", "vocab.json", "[1, 2]",
     "cannot be read as Marian's SentencePiece models and vocabulary"),
])
def test_corrupt_tokenizer_files_of_other_families_are_one_line(
    family, file, content, message, tmp_path, capsys):
  pytest.importorskip("tokenizers")
  model_dir, out = str(tmp_path / family), str(tmp_path / "out")
  shutil.copytree(os.path.join(os.path.dirname(T5), family), model_dir)
  with open(os.path.join(model_dir, file), "w") as f:
    f.write(content)
  assert message in _one_error_line(capsys, ["import_hf", model_dir, out])
  assert not os.path.exists(out)
