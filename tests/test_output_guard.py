"""Every command that writes a directory or file refuses a non-empty or busy
target and is whole or absent after a kill. They used to write into a
non-empty --output (merge_adapter overwrote a user's config.json), let two
merges into one output both report success, destroy the input of a decode
whose --output was its --input, and leave a killed export's directory for
the rerun to refuse as "not empty"."""

import fcntl
import json
import os
import stat
import subprocess
import sys

import pytest

from encdec_jax import exports
from encdec_jax.lora import store
from encdec_jax.train import inference, trainer
from conftest import tiny_run_config, train_base_and_lora

TESTS = os.path.dirname(os.path.abspath(__file__))


_config = tiny_run_config


@pytest.fixture(scope="module")
def runs(small_text_files, tmp_path_factory):
  """A plain base run and a LoRA run on it (one step each)."""
  return train_base_and_lora(small_text_files,
                             tmp_path_factory.mktemp("runs"), 1)


def _export(mode, files, runs, output):
  base, lora = runs
  if mode == "export_encoder":
    return exports.export_encoder(_config(files, 1), base, output)
  return getattr(exports, mode)(_config(files, 1, base), lora, output)


MODES = ("merge_adapter", "export_adapter", "export_encoder")


@pytest.mark.parametrize("mode", MODES)
def test_a_non_empty_output_is_refused_and_left_alone(small_text_files, runs,
                                                      tmp_path, mode):
  output = tmp_path / "out"
  output.mkdir()
  (output / "config.json").write_text("the user's own\n")
  with pytest.raises(ValueError, match=r"/out exists and is not empty; "
                     "refusing to overwrite it: give a new directory for the "
                     ".*nothing was written"):
    _export(mode, small_text_files, runs, str(output))
  assert os.listdir(output) == ["config.json"]
  assert (output / "config.json").read_text() == "the user's own\n"


def test_a_second_merge_into_a_busy_output_is_refused(small_text_files, runs,
                                                      tmp_path):
  """While a merge writes `out` (it holds out.partial's lock) another merge
  into `out` fails instead of both reporting success."""
  output = str(tmp_path / "out")
  os.makedirs(output + ".partial")
  fd = os.open(output + ".partial", os.O_RDONLY)
  fcntl.flock(fd, fcntl.LOCK_EX)
  try:
    with pytest.raises(ValueError, match="another command is writing "
                       r".*/out now"):
      _export("merge_adapter", small_text_files, runs, output)
  finally:
    os.close(fd)
  assert not os.path.exists(output)


def _modes_of(root):
  for directory, dirs, names in os.walk(root):
    yield directory, stat.S_IMODE(os.stat(directory).st_mode)
    for name in names:
      yield (os.path.join(directory, name),
             stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode))


_KILLED = """
import os, sys
sys.path[:0] = [{tests!r}, {repo!r}]
import conftest  # noqa: F401 (JAX on the CPU, as in the tests)
from encdec_jax import io_utils
import test_output_guard as t
real = io_utils.write_atomically
def killed(path, data):  # kill -9 after the arrays, before the last file
  if {last!r} in path:
    os._exit(9)
  real(path, data)
io_utils.write_atomically = killed
t._export({mode!r}, {files!r}, {runs!r}, {output!r})
"""


@pytest.mark.parametrize("mode, last", [
    ("merge_adapter", "config.json"), ("export_adapter", "adapter.json"),
    ("export_encoder", "encoder.json")])
def test_a_killed_export_leaves_no_output_and_the_rerun_works(
    small_text_files, runs, tmp_path, mode, last):
  output = str(tmp_path / "out")
  script = _KILLED.format(tests=TESTS, repo=os.path.dirname(TESTS),
                          last=last, mode=mode, files=small_text_files,
                          runs=runs, output=output)
  killed = subprocess.run([sys.executable, "-c", script], cwd=TESTS,
                          capture_output=True, text=True, timeout=300)
  assert killed.returncode == 9, killed.stderr[-2000:]
  assert not os.path.exists(output) or not os.listdir(output)
  old_umask = os.umask(0o022)
  try:
    _export(mode, small_text_files, runs, output)
  finally:
    os.umask(old_umask)
  assert not os.path.exists(output + ".partial")
  assert last in os.listdir(output)
  for path, mode_bits in _modes_of(output):
    assert mode_bits in (0o755, 0o644), (path, oct(mode_bits))
  if mode == "export_adapter":
    assert store.read_spec(output)["step"] == 1
  if mode == "merge_adapter":
    with open(os.path.join(output, "config.json")) as f:
      assert json.load(f)["lora"]["targets"] == []
    # The renamed directory is a workdir like any other.
    assert inference.restore_latest(_config(small_text_files, 1),
                                    output)[2] == 1


def test_a_decode_onto_its_own_input_is_refused(small_text_files, runs,
                                                tmp_path):
  base, _ = runs
  source = tmp_path / "in.txt"
  source.write_text("12\n7\n", encoding="utf-8")
  for output in (str(source), str(tmp_path / "link.txt")):
    if output != str(source):
      os.symlink(source, output)
    with pytest.raises(ValueError, match=r"--output=.* is the --input file; "
                       "writing it would destroy the lines being read"):
      inference.decode_file(_config(small_text_files, 1), base, str(source),
                            output)
    assert source.read_text(encoding="utf-8") == "12\n7\n"


def test_a_decode_writes_a_sibling_and_renames_it(small_text_files, runs,
                                                  tmp_path):
  """The earlier output stays whole until the new one is done, and the new
  file gets the umask's permissions."""
  base, _ = runs
  source = tmp_path / "in.txt"
  source.write_text("12\n7\n", encoding="utf-8")
  output = tmp_path / "out.txt"
  output.write_text("earlier\n", encoding="utf-8")
  old_umask = os.umask(0o022)
  try:
    inference.decode_file(_config(small_text_files, 1), base, str(source),
                          str(output))
  finally:
    os.umask(old_umask)
  assert len(output.read_text(encoding="utf-8").split("\n")) == 3
  assert stat.S_IMODE(os.stat(output).st_mode) == 0o644
  assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.txt"]


def test_exporting_the_encoder_of_a_lora_run_says_to_merge_first(
    small_text_files, runs, tmp_path):
  """(Was orbax's 'Metadata file (named _METADATA) does not exist'.)"""
  _, lora = runs
  with pytest.raises(ValueError, match=r"checkpoints/1 holds no encoder: it "
                     "is a LoRA run's, which saves only the adapters; merge "
                     r"them into a whole model first \(--mode=merge_adapter"):
    exports.export_encoder(_config(small_text_files, 1), lora,
                           str(tmp_path / "enc"))
  assert not os.path.exists(tmp_path / "enc")
