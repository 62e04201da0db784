"""The real-dataset path (WMT through TFDS data_source + grain), mocked offline."""

import os

import pytest
import tensorflow_datasets as tfds
import tensorflow_datasets.translate  # noqa: F401  registers wmt14/wmt17

from encdec_jax.train import example_log, trainer
from experiments import wmt14_en_de


@pytest.mark.parametrize("dataset", [
    "wmt14_translate/de-en",
    pytest.param("wmt17_translate/de-en", marks=pytest.mark.slow)])
def test_wmt_config_trains_under_mock_data(dataset, tmp_path, capsys):
  c = wmt14_en_de.get_config()
  c.dataset = dataset
  c.tokenizer = "bytes"  # mock text is random; a SentencePiece model adds nothing
  c.max_source_length = c.max_target_length = 64
  c.bucket_boundaries = (32, 64)
  c.batch_size = c.eval_batch_size = 4
  c.model.update(emb_dim=16, qkv_dim=16, mlp_dim=32, num_heads=2,
                 num_encoder_layers=1, num_decoder_layers=1, max_len=64)
  c.num_train_steps, c.warmup_steps, c.log_every = 3, 1, 1
  c.checkpoint_every = c.eval_every = 3
  c.num_eval_examples = c.num_decode_examples = 8
  c.max_decode_length = 8
  c.test_at_end = False
  c.record_example_ids = True
  with tfds.testing.mock_data(num_examples=16):
    results = trainer.train_and_evaluate(c, str(tmp_path))
    # What TFDS serves for the validation split, read here directly.
    raw = tfds.data_source(dataset, split="validation")
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    pairs = [(text(raw[i][c.source_lang]), text(raw[i][c.target_lang]))
             for i in range(c.num_samples_to_print)]
  assert results["step"] == 3 and results["validation"]["num_decoded"] == 8
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
  # The printed samples are the split's first pairs, English -> German.
  printed = capsys.readouterr().out
  for source, target in pairs:
    assert source != target
    assert f" {source}\n      → " in printed and f"ref {target}\n" in printed
  # Training read the mocked train split: 3 steps of 4 of its 16 examples.
  steps = example_log.read(example_log.path(str(tmp_path), 0))
  assert [step for step, _ in steps] == [1, 2, 3]
  ids = [i for _, batch in steps for i in batch]
  assert len(ids) == 12 and set(ids) <= set(range(16))
