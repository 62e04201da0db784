"""--mode=eval / decode / embed on a trained workdir, as a new user would run
them: odd input lines, outputs that cannot be written, Ctrl-C halfway, a
config or a checkpoint that does not fit, a deleted tokenizer.model (issue
17). One tiny run, trained once for the module; tests that change the
workdir work on a copy."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from encdec_jax import checkpoint
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.tasks import evaluation
from encdec_jax.train import experiment, inference, trainer
from experiments import tiny

STEPS = 4


def _config(files, **overrides):
  c = tiny.get_config()
  c.dataset = "text_files"
  c.text_files.update(files)
  # SentencePiece (not bytes): the workdir then has a tokenizer.model.
  c.update(tokenizer="sentencepiece", vocab_size=64, num_train_steps=STEPS,
           checkpoint_every=2, log_every=2, eval_every=1000,
           test_at_end=False, num_decode_examples=0, num_eval_examples=32,
           eval_batch_size=2)
  c.update(overrides)
  return c


@pytest.fixture(scope="module")
def files(small_text_files, tmp_path_factory):
  """small_text_files, with a header row and two empty pairs in train."""
  path = str(tmp_path_factory.mktemp("with_empty") / "train.tsv")
  with open(small_text_files["train"], encoding="utf-8") as f:
    pairs = f.read()
  with open(path, "w", encoding="utf-8") as f:
    f.write("source\ttarget\n7\t\n\tseven\n" + pairs)
  return dict(small_text_files, train=path)


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
  """A workdir trained for STEPS steps (checkpoints at 2 and 4)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  trainer.train_and_evaluate(_config(files), workdir)
  return workdir


@pytest.fixture
def copy_of(trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  return workdir


def _records(workdir, name="metrics.jsonl"):
  with open(os.path.join(workdir, name), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


# Case 5: a header row and empty pairs are not trained on without a word.
def test_empty_pairs_are_counted_in_the_training_log(trained):
  train = [r for r in _records(trained) if r["split"] == "train"]
  assert train and train[-1]["empty_examples"] > 0


# Case 1: a form feed, a vertical tab, U+0085/2028/2029 stay inside their
# line; CRLF is one line end.
def test_decode_keeps_one_output_line_per_input_line(files, trained,
                                                     tmp_path, capsys):
  lines = ["12", "3\f4", "5\v6", "7\x858", "9\u20281", "2\u20293"]
  source = tmp_path / "in.txt"
  source.write_bytes(("\r\n".join(lines) + "\n").encode("utf-8"))
  out = tmp_path / "out.txt"
  inference.decode_file(_config(files), trained, str(source), str(out))
  written = out.read_bytes().decode("utf-8").split("\n")
  assert written[-1] == "" and len(written) - 1 == len(lines)
  # stderr is not a terminal here: plain progress lines, no '\r'.
  err = capsys.readouterr().err
  assert "\r" not in err and "decoded 6/6 lines" in err
  alone = inference.decode_lines(_config(files), trained, ["5\v6"])
  assert written[2] == alone[0]


# Case 2: an empty or whitespace-only line gives an empty output line.
def test_blank_input_lines_give_blank_output_lines(files, trained,
                                                  monkeypatch, capsys):
  # A word for every input, as a trained model would give.
  monkeypatch.setattr(tokenizer_lib.SentencePieceTokenizer, "decode",
                      lambda self, ids: "eins")
  outputs = inference.decode_lines(_config(files), trained,
                                   ["12", "", "   ", "\t", "1 " * 60])
  assert outputs == ["eins", "", "", "", "eins"]
  # Parity with training, which counts over-long lines: a warning.
  assert ("1 of 5 input lines are longer than config.max_source_length=64 "
          "tokens and are cut to it (line 5)") in capsys.readouterr().err


def test_a_generated_line_break_stays_in_its_line(tmp_path):
  from encdec_jax.train import line_output
  out = tmp_path / "out.txt"
  writer = line_output.LineWriter(str(out), 2)
  writer.write(["one\ntwo\rthree\u2028four", "five"])
  writer.close()
  assert out.read_text(encoding="utf-8") == "one two three four\nfive\n"


# Case 7: the output is checked before the model is restored.
def test_an_output_that_cannot_be_written_fails_before_decoding(
    files, trained, tmp_path, monkeypatch):
  source = tmp_path / "in.txt"
  source.write_text("12\n7\n", encoding="utf-8")

  def never(*args):
    raise AssertionError("the model was restored")

  monkeypatch.setattr(inference, "restore_latest", never)
  with pytest.raises(FileNotFoundError, match=r"--output=.*/nodir/out.txt: "
                     "there is no directory .*/nodir; create it"):
    inference.decode_file(_config(files), trained, str(source),
                          str(tmp_path / "nodir" / "out.txt"))
  with pytest.raises(FileNotFoundError, match="create it"):
    inference.embed_file(_config(files), trained, str(source),
                         str(tmp_path / "nodir" / "v.npy"))
  existing = tmp_path / "kept.txt"
  existing.write_text("earlier work\n", encoding="utf-8")
  with pytest.raises(AssertionError):
    inference.decode_file(_config(files), trained, str(source),
                          str(existing))
  # A failed start leaves an existing output as it was.
  assert existing.read_text(encoding="utf-8") == "earlier work\n"


def test_a_full_output_device_is_one_line_after_the_first_batch(
    files, trained, tmp_path):
  if not os.path.exists("/dev/full"):
    pytest.skip("no /dev/full")
  source = tmp_path / "in.txt"
  source.write_text("12\n7\n", encoding="utf-8")
  with pytest.raises(OSError, match=r"could not write --output=/dev/full "
                     r"\(No space left on device\); 0 of 2 lines were "
                     "written before it"):
    inference.decode_file(_config(files), trained, str(source), "/dev/full")


# Case 7: each batch is written as it is decoded; Ctrl-C keeps them.
def test_ctrl_c_keeps_the_lines_decoded_so_far(files, trained, tmp_path,
                                               monkeypatch, capsys):
  from encdec_jax.train import line_output
  source = tmp_path / "in.txt"
  source.write_text("1\n2\n\n3\n4\n5\n6\n", encoding="utf-8")
  out = tmp_path / "out.txt"
  real = evaluation.translate_batches

  def two_batches_then_ctrl_c(*args, **kwargs):
    for i, batch in enumerate(real(*args, **kwargs)):
      if i == 2:
        raise KeyboardInterrupt
      yield batch

  monkeypatch.setattr(evaluation, "translate_batches",
                      two_batches_then_ctrl_c)
  with pytest.raises(line_output.Interrupted) as stopped:
    inference.decode_file(_config(files), trained, str(source), str(out))
  # eval_batch_size=2: lines 1-2, then the blank line with 3-4.
  assert str(stopped.value) == (f"interrupted after 5 of 7 lines; 5 written "
                                f"to {out}")
  written = out.read_text(encoding="utf-8").split("\n")
  assert len(written) == 6 and written[2] == "" and written[-1] == ""
  # stderr is not a terminal here: plain progress lines, no '\r'.
  err = capsys.readouterr().err
  assert "\r" not in err


# Case 6: --mode=eval writes eval_results.json, not the training curves.
def test_eval_mode_keeps_out_of_the_training_curves(files, copy_of):
  curves = _records(copy_of)
  events = sorted(os.listdir(os.path.join(copy_of, "tensorboard")))
  inference.evaluate_checkpoint(_config(files), copy_of)
  assert _records(copy_of) == curves
  assert sorted(os.listdir(os.path.join(copy_of, "tensorboard"))) == events
  with open(os.path.join(copy_of, "eval_results.json")) as f:
    records = json.load(f)
  assert [(r["step"], r["decoding"]) for r in records] == [(STEPS, "greedy")]
  assert records[0]["test"]["num_decoded"] == 32


# Case 11: eval/decode make the checks a training resume makes.
@pytest.mark.parametrize("change, message", [
    ({"model.mlp_dim": 48}, r"different experiment \(.*model\.mlp_dim: "
     r"checkpoint 64 vs config 48"),
    ({"task": "lm", "lm_field": "target"}, r"different experiment \(task: "
     r"checkpoint 'translation' vs config 'lm'"),
], ids=["mlp_dim", "lm_config_on_a_translation_run"])
def test_eval_and_decode_refuse_another_experiment(files, trained, change,
                                                   message):
  config = _config(files)
  for field, value in change.items():
    node = config
    for part in field.split(".")[:-1]:
      node = node[part]
    node[field.split(".")[-1]] = value
  with pytest.raises(ValueError, match=message) as error:
    inference.evaluate_checkpoint(config, trained)
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=message):
    inference.decode_lines(config, trained, ["12"])


def _truncate_state(workdir, step):
  state_dir = os.path.join(workdir, "checkpoints", str(step), "state")
  files = [os.path.join(root, f) for root, _, names in os.walk(state_dir)
           for f in names]
  # Every file: the params may sit in any of the step's data files (one
  # truncated file alone may hold only optimizer state, which eval skips).
  for path in files:
    if os.path.getsize(path) > 100:
      with open(path, "r+b") as f:
        f.truncate(100)


def test_eval_and_decode_fall_back_past_a_truncated_checkpoint(
    files, copy_of, capsys):
  _truncate_state(copy_of, STEPS)
  with pytest.raises(ValueError, match=rf"checkpoints/{STEPS} cannot be read "
                     r".*corrupt_checkpoint=fallback") as error:
    inference.restore_latest(_config(files, corrupt_checkpoint="error"),
                             copy_of)
  assert "\n" not in str(error.value)
  _, params, step = inference.restore_latest(_config(files), copy_of)
  assert step == 2
  assert f"checkpoints/{STEPS} cannot be read" in capsys.readouterr().err
  assert jax.tree.leaves(params)
  # A reader leaves the checkpoints as they are (a training run sets an
  # unreadable one aside: tests/test_corrupt_checkpoint.py).
  assert checkpoint.make_manager(copy_of).all_steps() == [2, STEPS]


# Case 9: a deleted tokenizer.model is named, and training remakes it.
def test_a_deleted_tokenizer_is_named_and_training_remakes_it(files, copy_of,
                                                               capsys):
  os.remove(os.path.join(copy_of, "tokenizer.model"))
  with pytest.raises(FileNotFoundError, match="tokenizer.model is missing "
                     "from a trained workdir"):
    inference.evaluate_checkpoint(_config(files), copy_of)
  results = trainer.train_and_evaluate(
      _config(files, num_train_steps=STEPS + 2), copy_of)
  assert results["step"] == STEPS + 2
  out = capsys.readouterr().out
  assert f"at step {STEPS}" in out and "tokenizer.model is missing" in out


def test_embed_keeps_one_row_per_line_and_writes_whole_files(
    files, trained, tmp_path):
  source = tmp_path / "in.txt"
  source.write_bytes("12\n\n7\f7\n".encode("utf-8"))
  out = tmp_path / "v.npy"
  vectors = inference.embed_file(_config(files), trained, str(source),
                                 str(out))
  assert vectors.shape[0] == 3
  np.testing.assert_array_equal(vectors[1], 0)
  np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1,
                             rtol=1e-5)
  np.testing.assert_array_equal(np.load(out), vectors)
  assert not os.path.exists(f"{out}.tmp")



def test_speculative_benchmark_of_a_trained_run(files, tmp_path):
  # python -m encdec_jax.bench.decode_latency --workdir: the run's own model,
  # params, test sources and EOS; tokens are counted up to each row's EOS
  # (greedy's output, which speculative must equal), and units that assume
  # full-length rows are refused. Two decoder layers: self:1 is a real
  # draft. Run as a user runs it (its absl flags stay out of this process).
  import subprocess
  import sys
  from encdec_jax.data import pipeline, sources
  from encdec_jax.decoding.config import make_decode_fn
  workdir, out = str(tmp_path / "run"), str(tmp_path / "bench.jsonl")
  config = _config(files)
  config.model.num_decoder_layers = 2
  trainer.train_and_evaluate(config, workdir)
  bench = [sys.executable, "-m", "encdec_jax.bench.decode_latency",
           f"--workdir={workdir}", "--k=2", "--draft=self:1",
           "--batch_steps=2", "--warmup=0", f"--out={out}"]
  done = subprocess.run(bench + ["--units=decode_speculative"],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(out, encoding="utf-8") as f:
    (line,) = [json.loads(row) for row in f]
  # The same rows, decoded greedily here: the tokens the bench must count.
  config = checkpoint.load_config(workdir)
  exp, params, _ = inference.restore_latest(config, workdir)
  config.decode = {"algorithm": "greedy"}
  test = sources.make_source(config, "test")
  rows = min(32, len(test))
  batch = next(iter(pipeline.eval_batches([test[i] for i in range(rows)],
                                          exp.tokenizer, config, rows)))
  decode = make_decode_fn(exp.model, config, exp.tokenizer.eos_id)
  tokens_BxT = np.asarray(decode(params, batch["inputs"], jax.random.key(0)))
  real = int((tokens_BxT != 0).sum())
  assert line["batch"] == rows and line["config"] == "run"
  assert line["tokens_per_s"] == pytest.approx(
      real / (line["step_ms_median"] / 1e3), rel=1e-2)
  refused = subprocess.run(bench + ["--units=latency_greedy"],
                           capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0
  assert "speculative units only" in refused.stderr
