"""A trained model served without its Python code (encdec_jax/serving.py):
the served outputs are --mode=decode's (inference.decode_lines) token for
token, greedy, beam and sampling, at batch sizes 1, 7 and 32 from one
artifact; loading and translating imports no flax, no ml_collections and no
other encdec_jax module; the command line keeps one output line per input
line; --mode=export_serving lowers for other platforms without their
devices. One tiny main-job-like run, trained and exported once for the
module."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from encdec_jax import serving, serving_export
from encdec_jax.data import pipeline
from encdec_jax.decoding.config import make_decode_fn
from encdec_jax.train import inference, trainer
from experiments import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
# Seen and unseen numbers, blank and whitespace-only lines among them: 37
# to decode, so batch 32 decodes a full batch and a padded one.
LINES = ([str(n) for n in range(232, 250)] + ["", "7", "  "]
         + [str(n) for n in (1000, 45, 999, 12, 3, 100, 77, 808, 61, 5, 250,
                             31, 9000, 404, 18, 26, 222, 73)])


def config_overrides(files) -> dict:
  """The fixture run's fields over experiments/tiny.py (also as flags)."""
  return {"dataset": "text_files", "text_files.train": files["train"],
          "text_files.validation": files["validation"],
          "text_files.test": files["test"], "tokenizer": "sentencepiece",
          "vocab_size": 64, "num_train_steps": STEPS,
          "checkpoint_every": STEPS, "log_every": STEPS, "eval_every": 10_000,
          "test_at_end": False, "num_decode_examples": 0,
          "num_eval_examples": 32, "eval_batch_size": 8}


def make_config(files, algorithm: str = "greedy"):
  c = tiny.get_config()
  for field, value in config_overrides(files).items():
    owner, _, name = field.rpartition(".")
    setattr(c.get(owner) if owner else c, name, value)
  c.decode.algorithm = algorithm
  return c


@pytest.fixture(scope="module")
def run(small_text_files, tmp_path_factory):
  """(files, workdir) of a tiny Transformer trained STEPS steps."""
  workdir = str(tmp_path_factory.mktemp("serving") / "run")
  trainer.train_and_evaluate(make_config(small_text_files), workdir)
  return small_text_files, workdir


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
  files, workdir = run
  out = str(tmp_path_factory.mktemp("served") / "en")
  serving_export.export_serving(make_config(files), workdir, out)
  return out


@pytest.fixture(scope="module")
def served(exported):
  return serving.load(exported)


def test_the_directory_says_what_it_holds(exported):
  with open(os.path.join(exported, serving.MANIFEST)) as f:
    manifest = json.load(f)
  assert manifest["format_version"] == serving.FORMAT_VERSION
  assert manifest["jax_version"] == jax.__version__
  assert manifest["platforms"] == ["cpu"]
  assert manifest["special_ids"] == {
      "pad": 0, "eos": 1, "decoder_start": 0, "unk": 2, "bos": None,
      "forced_bos": None, "forced_eos": None, "after_eos": 0}
  assert manifest["source_prefix"] == ""
  assert list(manifest["tokenizer"]["files"]) == ["tokenizer.model"]
  assert manifest["limits"]["source_buckets"] == [16, 32, 64]
  greedy = manifest["artifacts"]["greedy"]
  assert greedy["inputs"][1] == {"name": "inputs", "dtype": "int32",
                                 "shape": ["b", "s"]}
  assert greedy["outputs"] == [{"name": "tokens", "dtype": "int32",
                                "shape": ["b", 64]}]
  assert manifest["artifacts"]["beam"]["beam_size"] == 4
  assert [i["name"] for i in manifest["artifacts"]["sample"]["inputs"]] == [
      "params", "inputs", "seed", "batch_index"]
  assert sorted(os.listdir(exported)) == [
      "beam.jax_export", "encode.jax_export", "greedy.jax_export",
      "params.safetensors", "sample.jax_export", "serving.json",
      "tokenizer.model"]
  modes = {os.stat(os.path.join(exported, f)).st_mode
           for f in os.listdir(exported)}
  assert len(modes) == 1  # params.safetensors too: readable as the others
  with open(os.path.join(run_workdir(exported), "tokenizer.model"),
            "rb") as f, open(os.path.join(exported, "tokenizer.model"),
                             "rb") as g:
    assert f.read() == g.read()


def run_workdir(exported: str) -> str:
  with open(os.path.join(exported, serving.MANIFEST)) as f:
    return json.load(f)["source"]["workdir"]


def test_params_are_a_file_not_constants_in_the_artifacts(run, exported):
  from safetensors.numpy import load_file
  stored = load_file(os.path.join(exported, serving.PARAMS_FILE))
  ours = serving.read_safetensors(os.path.join(exported, serving.PARAMS_FILE))
  _, params, _ = inference.restore_latest(make_config(run[0]), run[1])
  flat = serving_export.flat_params(params)
  assert stored.keys() == ours.keys() == flat.keys()
  for name, value in flat.items():
    np.testing.assert_array_equal(stored[name], value)
    np.testing.assert_array_equal(ours[name], value)
  # No artifact holds the params (as constants): not even the largest.
  largest = max(flat.values(), key=lambda v: v.nbytes).tobytes()
  for name in ("encode", "greedy", "beam", "sample"):
    with open(os.path.join(exported, f"{name}.jax_export"), "rb") as f:
      assert largest[:256] not in f.read(), name


@pytest.mark.parametrize("algorithm", ["greedy", "beam"])
def test_served_equals_decode_lines_at_batch_1_7_32(run, served, algorithm):
  files, workdir = run
  expected = inference.decode_lines(make_config(files, algorithm), workdir,
                                    LINES)
  assert len(set(expected)) > 3  # a model that says something
  for batch_size in (1, 7, 32):
    assert served.translate(LINES, algorithm, batch_size=batch_size) == \
        expected, batch_size


def test_sampling_takes_the_seed_as_decode_does(run, served):
  files, workdir = run
  config = make_config(files, "sample")
  config.decode.seed = 5
  expected = inference.decode_lines(config, workdir, LINES)
  assert served.translate(LINES, "sample", seed=5) == expected
  assert served.translate(LINES, "sample", seed=6) != expected


def test_the_decode_settings_are_baked_in_as_decode_applies_them(
    run, tmp_path):
  """Hugging Face's num_beams picks the beam size; a token rule and a
  shorter decoding length apply in every artifact, and the sources are read
  with the task prefix (not twice: '12' starts with it), as in
  decode_lines."""
  files, workdir = run
  config = make_config(files)
  config.decode.update(num_beams=3, no_repeat_ngram_size=2,
                       max_new_tokens=12, source_prefix="1")
  out = str(tmp_path / "served")
  manifest = serving_export.export_serving(config, workdir, out)
  assert manifest["source_prefix"] == "1"
  beam = manifest["artifacts"]["beam"]
  assert (beam["beam_size"], beam["no_repeat_ngram_size"],
          beam["max_new_tokens"]) == (3, 2, 12)
  assert manifest["artifacts"]["greedy"]["outputs"][0]["shape"] == ["b", 12]
  served = serving.load(out)
  assert served.translate(LINES, "beam") == inference.decode_lines(
      config, workdir, LINES)


def test_served_tokens_are_the_in_process_tokens(run, served):
  """The raw ids of one padded batch, pad after EOS included."""
  files, workdir = run
  config = make_config(files)
  exp, params, _ = inference.restore_latest(config, workdir)
  source = [{"source": line, "target": ""} for line in LINES if line.strip()]
  batch = pipeline.eval_batches(source, exp.tokenizer, config, 8)[0]
  decode_fn = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)
  expected = np.asarray(decode_fn(params, batch["inputs"],
                                  jax.random.key(0)))
  rows = [served.encode_line(e["source"]) for e in source[:8]]
  got = served.decode_ids(served.pad(rows, 8), "greedy")
  np.testing.assert_array_equal(got, expected)
  encoded = served.encode(LINES[:3])
  assert encoded["hidden"].shape == (3, 16, 32)
  assert encoded["mask"].sum() == sum(len(served.encode_line(line))
                                      for line in LINES[:3])


# What a service imports: jax, numpy, sentencepiece, the standard library.
SERVICE = """
import json, sys
from encdec_jax import serving
served = serving.load(sys.argv[1])
out = served.translate(["12", "", "345"]) + served.translate(["7"], "beam")
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("flax", "ml_collections", "optax",
                                      "orbax", "grain", "tensorflow")
               or (m.startswith("encdec_jax") and
                   m not in ("encdec_jax", "encdec_jax.serving")))
print(json.dumps({"out": out, "heavy": heavy}))
"""


def test_serving_imports_neither_flax_nor_the_package(exported):
  result = subprocess.run(
      [sys.executable, "-c", SERVICE, exported], cwd=REPO,
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout.splitlines()[-1])
  assert report["heavy"] == []
  assert report["out"][1] == "" and len(report["out"]) == 4
  with open(os.path.join(REPO, "encdec_jax", "__init__.py")) as f:
    assert "import" not in f.read()  # the package itself stays light


def _python(*args, stdin=None):
  return subprocess.run([sys.executable, *args], cwd=REPO, input=stdin,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"),
                        capture_output=True, text=True, timeout=600)


def test_main_exports_and_the_cli_serves_line_for_line(run, tmp_path):
  """--mode=export_serving as a user runs it (lowered for cuda too, with no
  GPU here), then python -m encdec_jax.serving, stdin (blank lines, CRLF)
  to a file: one output line per input line, as --mode=decode writes
  them."""
  files, workdir = run
  out = str(tmp_path / "served")
  flags = [f"--config.{k}={v}" for k, v in config_overrides(files).items()]
  export = _python("-m", "encdec_jax.main", "--config=experiments/tiny.py",
                   *flags, f"--workdir={workdir}", "--mode=export_serving",
                   f"--output={out}", "--platforms=cuda")
  assert export.returncode == 0, export.stderr[-2000:]
  with open(os.path.join(out, serving.MANIFEST)) as f:
    assert json.load(f)["platforms"] == ["cpu", "cuda"]
  target = tmp_path / "out.txt"
  cli = _python("-m", "encdec_jax.serving", f"--export={out}",
                f"--output={target}", "--batch_size=7", "--algorithm=beam",
                stdin="\r\n".join(LINES[:25]) + "\r\n")
  assert cli.returncode == 0, cli.stderr[-2000:]
  assert "wrote 25 lines" in cli.stderr
  expected = inference.decode_lines(make_config(files, "beam"), workdir,
                                    LINES[:25])
  assert target.read_text(encoding="utf-8").split("\n") == expected + [""]


# Bad input: each a one-line error saying what to do.
@pytest.fixture
def copy_of(exported, tmp_path):
  out = str(tmp_path / "copy")
  shutil.copytree(exported, out)
  return out


def _edit_manifest(directory, **changes):
  path = os.path.join(directory, serving.MANIFEST)
  with open(path) as f:
    manifest = json.load(f)
  manifest.update(changes)
  with open(path, "w") as f:
    json.dump(manifest, f)


def _refused(directory, match):
  with pytest.raises(serving.ServingError, match=match) as e:
    serving.load(directory)
  assert "\n" not in str(e.value)


def test_another_format_version_or_platform_is_refused(copy_of):
  version = serving.FORMAT_VERSION
  _edit_manifest(copy_of, format_version=version + 1)
  _refused(copy_of, rf"written in serving format version {version + 1} \(by "
           rf"jax .*\); this loader reads version {version}: export it again")
  _edit_manifest(copy_of, format_version=version, platforms=["tpu"])
  _refused(copy_of, r"was lowered for tpu; this machine runs jax on cpu: "
           r"export it again with --platforms=cpu,cpu|lowered for tpu")
  _edit_manifest(copy_of, format="something.else", platforms=["cpu"])
  _refused(copy_of, "is not an encdec_jax.serving manifest")


def test_missing_or_damaged_files_are_refused(copy_of, tmp_path):
  _refused(str(tmp_path / "nowhere"), "is not a directory")
  os.remove(os.path.join(copy_of, "greedy.jax_export"))
  os.remove(os.path.join(copy_of, "tokenizer.model"))
  _refused(copy_of, "lacks greedy.jax_export, tokenizer.model: the export "
           "is incomplete")
  shutil.copy(os.path.join(tmp_path / "copy", "beam.jax_export"),
              os.path.join(copy_of, "greedy.jax_export"))
  with open(os.path.join(copy_of, "tokenizer.model"), "wb") as f:
    f.write(b"another vocabulary")
  _refused(copy_of, r"tokenizer.model is not the tokenizer file that was "
           r"exported \(its sha256 differs from serving.json's\)")
  with open(os.path.join(copy_of, "sample.jax_export"), "r+b") as f:
    f.truncate(100)
  shutil.copy(os.path.join(run_workdir(copy_of), "tokenizer.model"),
              copy_of)
  _refused(copy_of, r"sample.jax_export cannot be read by jax")
  with open(os.path.join(copy_of, serving.PARAMS_FILE), "wb") as f:
    f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
  os.remove(os.path.join(copy_of, "sample.jax_export"))
  _edit_manifest(copy_of, artifacts={
      k: v for k, v in _manifest(copy_of)["artifacts"].items()
      if k != "sample"})
  _refused(copy_of, "params.safetensors is not a readable safetensors file")
  os.remove(os.path.join(copy_of, serving.MANIFEST))
  _refused(copy_of, "serving.json is missing: .* is not a served model")


def test_a_missing_flatbuffers_is_named(exported, monkeypatch):
  monkeypatch.setitem(sys.modules, "flatbuffers", None)  # import fails
  monkeypatch.delitem(sys.modules, "jax._src.export.serialization")
  _refused(exported, "needs the 'flatbuffers' package: pip install "
           "flatbuffers")


def _manifest(directory):
  with open(os.path.join(directory, serving.MANIFEST)) as f:
    return json.load(f)


def test_a_batch_or_line_past_the_bound_is_refused(served):
  with pytest.raises(serving.ServingError,
                     match=r"^line 2 is 7\d tokens long \(EOS included\); "
                     "this export reads at most 64"):
    served.translate(["12", "1" * 70])
  with pytest.raises(serving.ServingError,
                     match=r"^batch size 257 is outside 1..256"):
    served.translate(["12"], batch_size=257)
  with pytest.raises(serving.ServingError, match="'speculative' was not "
                     "exported; use one of greedy, beam, sample"):
    served.translate(["12"], "speculative")
  # The artifact holds the bound itself (b <= 256), whoever calls it.
  with pytest.raises(Exception, match="refining shapes|b <= 256"):
    served._calls["greedy"](served.params, np.zeros((257, 16), np.int32))


def test_the_cli_says_what_is_wrong_in_one_line(exported, served, tmp_path):
  missing = _python("-m", "encdec_jax.serving", f"--export={tmp_path}/none",
                    "--input=-")
  assert missing.returncode == 1
  assert missing.stderr.strip().splitlines() == [
      f"error: {tmp_path}/none is not a directory; give the --output of "
      "--mode=export_serving."]
  target = tmp_path / "out.txt"
  long = _python("-m", "encdec_jax.serving", f"--export={exported}",
                 f"--output={target}", "--batch_size=2",
                 stdin="12\n13\n\n" + "9" * 80 + "\n")
  assert long.returncode == 1
  assert long.stderr.strip().splitlines() == [
      "error: line 4 is 82 tokens long (EOS included); this export reads at "
      "most 64 (the model's max_source_length): shorten or split it. (2 "
      "lines written before it)"]
  assert target.read_text().split("\n") == served.translate(["12", "13"]) + [
      ""]  # the lines before it are kept


def test_export_refuses_a_used_output_and_unknown_platforms(run, exported,
                                                            tmp_path,
                                                            monkeypatch):
  files, workdir = run
  config = make_config(files)
  with pytest.raises(ValueError, match="exists and is not empty; refusing "
                     "to overwrite it: give a new directory for the serving "
                     "export"):
    serving_export.export_serving(config, workdir, exported)
  with pytest.raises(ValueError, match="needs --output=DIR"):
    serving_export.export_serving(config, workdir, "-")
  with pytest.raises(ValueError, match="gpu is not a jax platform; use some "
                     "of cpu, cuda, rocm, tpu"):
    serving_export.export_serving(config, workdir, str(tmp_path / "x"),
                                  ("gpu",))
  # A failed export leaves neither the directory nor its temporary sibling.
  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(serving_export, "save_file", full_disk)
  with pytest.raises(OSError, match="No space left"):
    serving_export.export_serving(config, workdir, str(tmp_path / "new"))
  assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.slow  # suite time: a benchmark, run as a user runs it
def test_the_bench_times_served_against_in_process(run):
  """python -m encdec_jax.bench.serving as a user runs it (a subprocess:
  its absl flags would clash with other benches' in a shared worker)."""
  _, workdir = run
  bench = _python("-m", "encdec_jax.bench.serving", f"--workdir={workdir}",
                  "--num_lines=12", "--batch_size=8", "--repeats=1")
  assert bench.returncode == 0, bench.stderr[-2000:]
  record = json.loads(bench.stdout.strip().splitlines()[-1])
  assert record["lines"] == 12 and record["generated_tokens"] >= 12
  for figure in ("load_s", "first_call_s", "tokens_per_s"):
    assert set(record[figure]) == {"in_process", "served"}
    assert min(record[figure].values()) > 0
  assert "served / in-process" in bench.stdout
