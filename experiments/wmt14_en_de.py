r"""WMT14 English → German with a Transformer-base-like model (real data).

Needs a machine where TFDS can download and prepare `wmt14_translate/de-en`
(as array_record: no TensorFlow needed); nothing here downloads at run time,
so on the offline dev machines this config is exercised only under
`tfds.testing.mock_data` (tests/test_real_datasets.py).

  python -m encdec_jax.main --config=experiments/wmt14_en_de.py \
      --workdir=runs/wmt14 --config.data_dir=$TFDS_DATA_DIR

Result: not yet measured (needs an accelerator and the real data). For
WMT17 use --config.dataset=wmt17_translate/de-en.
"""

from experiments import number_translation


def get_config():
  c = number_translation.get_config()
  c.update(dataset="wmt14_translate/de-en", vocab_size=32_000,
           max_source_length=256, max_target_length=256,
           max_decode_length=256, bucket_boundaries=(32, 64, 96, 128, 192, 256),
           batch_size=256, bleu_tokenize="13a")
  c.model.update(emb_dim=512, qkv_dim=512, mlp_dim=2048, num_heads=8,
                 num_encoder_layers=6, num_decoder_layers=6, max_len=256,
                 dropout_rate=0.1, attention_dropout_rate=0.1)
  c.update(learning_rate=1e-3, warmup_steps=4000, schedule="rsqrt",
           num_train_steps=100_000)
  c.update(log_every=100, eval_every=5000, checkpoint_every=5000,
           num_eval_examples=-1, num_decode_examples=1000)
  return c
