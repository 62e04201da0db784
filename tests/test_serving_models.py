"""Every text model with a decoder serves as --mode=decode decodes it
(slow: a training run each): the RNN, the decoder-only LM (its prompts
continued) and the copy head. Imported T5, BART and Marian:
tests/test_serving_imported.py."""

import pytest

from encdec_jax import serving, serving_export
from encdec_jax.train import inference, trainer
from experiments import tiny


def _decodes_alike(config, workdir, served, lines, batch_sizes):
  for algorithm in ("greedy", "beam"):
    config.decode.algorithm = algorithm
    expected = inference.decode_lines(config, workdir, lines)
    assert len(set(expected)) > 2, expected
    for batch_size in batch_sizes:
      assert served.translate(lines, algorithm, batch_size=batch_size) == \
          expected, (algorithm, batch_size)


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
