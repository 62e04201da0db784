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
  assert manifest["special_ids"] == {"pad": 0, "eos": 1,
                                     "decoder_start": 0, "unk": 2}
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
