"""The real-dataset path (WMT through TFDS data_source + grain), mocked offline."""

import os

import pytest
import tensorflow_datasets as tfds
import tensorflow_datasets.translate  # noqa: F401  registers wmt14/wmt17

from encdec_jax.train import trainer
from experiments import wmt14_en_de


@pytest.mark.parametrize("dataset", [
    "wmt14_translate/de-en",
    pytest.param("wmt17_translate/de-en", marks=pytest.mark.slow)])
def test_wmt_config_trains_under_mock_data(dataset, tmp_path):
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
  with tfds.testing.mock_data(num_examples=16):
    results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["step"] == 3 and results["validation"]["num_decoded"] == 8
  assert os.listdir(tmp_path / "checkpoints")
