"""Every text model with a decoder serves as --mode=decode decodes it: an
imported Hugging Face T5 fine-tuned through config.init_from (batch sizes
1, 7 and 32, greedy and beam), and (slow: a training run each) the RNN, the
decoder-only LM (its prompts continued) and the copy head."""

import os

import pytest

from encdec_jax import serving, serving_export
from encdec_jax.train import inference, trainer
from experiments import t5_finetune, tiny

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")


def _decodes_alike(config, workdir, served, lines, batch_sizes):
  for algorithm in ("greedy", "beam"):
    config.decode.algorithm = algorithm
    expected = inference.decode_lines(config, workdir, lines)
    assert len(set(expected)) > 2, expected
    for batch_size in batch_sizes:
      assert served.translate(lines, algorithm, batch_size=batch_size) == \
          expected, (algorithm, batch_size)


# Slow (~26 s on 2 cores): the default suite keeps the main job's parity at
# batch 1, 7 and 32 (tests/test_serving.py); this is the same export path on
# an imported T5.
@pytest.mark.slow
def test_imported_t5_fine_tuned_serves_as_it_decodes(tmp_path,
                                                     write_copy_pairs):
  for module in ("safetensors", "tokenizers"):
    pytest.importorskip(module, reason=f"{module} is not installed: pip "
                        "install -e '.[pretrained]'")
  from encdec_jax.pretrained import import_hf
  pretrained = str(tmp_path / "pretrained")
  import_hf.import_hf(os.path.join(DATA, "t5_v11"), pretrained)
  config = t5_finetune.get_config("tiny")
  config.init_from = pretrained
  config.text_files.update(write_copy_pairs(tmp_path))
  config.update(num_train_steps=2, checkpoint_every=2, log_every=2,
                eval_every=1000, num_eval_examples=8, num_decode_examples=0,
                test_at_end=False, eval_batch_size=8, max_decode_length=8)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  out = str(tmp_path / "served")
  manifest = serving_export.export_serving(config, workdir, out)
  assert manifest["tokenizer"]["kind"] == "sentencepiece"
  with open(os.path.join(out, "tokenizer.model"), "rb") as f, open(
      os.path.join(DATA, "t5_v11", "spiece.model"), "rb") as g:
    assert f.read() == g.read()  # T5's own vocabulary
  words = ("the quick brown fox jumps over lazy dog a small model is easy "
           "to test").split()
  lines = [f"copy: {' '.join(words[i:i + 4])}" for i in range(12)] + [""]
  lines += [f"copy: {' '.join(words[i::3])}" for i in range(3)] * 7
  _decodes_alike(config, workdir, serving.load(out), lines, (1, 7, 32))


def _family_config(arm, files, **changes):
  c = tiny.get_config(arm)
  c.dataset = "text_files"
  c.text_files.update(files)
  c.update(tokenizer="sentencepiece", vocab_size=64, num_train_steps=100,
           checkpoint_every=100, log_every=100, eval_every=1000,
           test_at_end=False, num_decode_examples=0, num_eval_examples=16,
           eval_batch_size=8)
  c.model.update(changes)
  return c


@pytest.mark.slow  # suite time: test_serving.py keeps the Transformer
@pytest.mark.parametrize("arm,changes", [
    ("rnn", {}), ("lm", {}), ("transformer", {"copy": True})],
    ids=["rnn", "lm", "copy_head"])
def test_each_family_serves_as_it_decodes(arm, changes, small_text_files,
                                          tmp_path):
  config = _family_config(arm, small_text_files, **changes)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  out = str(tmp_path / "served")
  manifest = serving_export.export_serving(config, workdir, out)
  assert manifest["prompted"] == (arm == "lm")
  lines = ["12", "", "three", "4004", "twenty", "77", "1", "fifty five",
           "300", "19"]
  _decodes_alike(config, workdir, serving.load(out), lines, (7,))
