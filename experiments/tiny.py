r"""Tiny runs of every model family, used by the tests and for smoke checks.

  python -m encdec_jax.main --config=experiments/tiny.py --workdir=/tmp/tiny
  python -m encdec_jax.main --config=experiments/tiny.py:rnn --workdir=/tmp/r

Arms: transformer (default), rnn (LSTM + attention), rnn_bottleneck (GRU, no
attention), lm (decoder-only), embedding (contrastive sentence embedder),
autoencoder (conv, digits images), captioning (LSTM + attention over the
regions of small captioned-digit canvases). Each takes well under a minute on a
2-core CPU; they check plumbing, not quality.
"""

import ml_collections

from experiments import number_translation, rnn_translation

ARMS = ("transformer", "rnn", "rnn_bottleneck", "lm", "embedding",
        "autoencoder", "captioning")


def get_config(arm: str = "transformer"):
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()
  c.update(dataset="number_translation/digits_en_small", tokenizer="bytes",
           max_source_length=64, max_target_length=64, max_decode_length=64,
           bucket_boundaries=(16, 32, 64), batch_size=16, eval_batch_size=32)
  c.model.update(emb_dim=32, qkv_dim=32, mlp_dim=64, num_heads=2,
                 num_encoder_layers=1, num_decoder_layers=1)
  c.update(num_train_steps=20, warmup_steps=5, log_every=5, eval_every=10,
           checkpoint_every=10, num_eval_examples=64, num_decode_examples=32)
  if arm == "rnn":
    c.model = rnn_translation.rnn_model(emb_dim=32, hidden_dim=32,
                                        attention_dim=32)
  elif arm == "rnn_bottleneck":
    c.model = rnn_translation.rnn_model("bottleneck", cell="gru", emb_dim=32,
                                        hidden_dim=32, attention_dim=32)
  elif arm == "lm":
    c.task = "lm"
    c.lm_field = "target"  # the English words
    c.lm_prompts = ("", "twenty")
    c.label_smoothing = 0.0
    c.max_source_length = 16
  elif arm == "embedding":
    c.task = "embedding"
    c.pooling = "attention"
    c.contrastive_temperature = 0.1
    c.label_smoothing = 0.0
  elif arm == "autoencoder":
    c.task = "autoencoder"
    c.dataset = "sklearn_digits"
    c.anomaly_class = 3
    c.model = ml_collections.ConfigDict(dict(
        family="conv", image_shape=(8, 8, 1), hidden_dims=(32,),
        conv_features=(4, 8), bottleneck_dim=4, dtype="float32"))
    c.param_groups = (("encoder/.*", "encoder"), ("decoder/.*", "decoder"))
    c.num_eval_examples = -1
  elif arm == "captioning":
    c.task = "captioning"
    c.dataset = "captioned_digits"
    c.captions = ml_collections.ConfigDict(dict(
        height=10, width=36, min_digits=1, max_digits=4, min_gap=1,
        noise=0.1, num_train=256, num_validation=32, num_test=32, seed=0))
    c.tokenizer = "sentencepiece"  # one piece per digit word
    c.update(vocab_size=32, max_target_length=8, max_decode_length=8,
             bleu_tokenize="13a")
    c.model = rnn_translation.rnn_model(
        bidirectional=False, emb_dim=16, hidden_dim=32, attention_dim=16,
        share_embeddings=False, image_shape=(10, 36, 1), conv_features=(4, 8))
    c.param_groups = (("encoder/.*", "encoder"), ("decoder/.*", "decoder"))
  return c
