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

from experiments import number_translation

ARMS = ("transformer", "rnn", "rnn_bottleneck", "lm", "embedding",
        "autoencoder", "captioning")


def get_config(arm: str = "transformer"):
  if arm not in ARMS:
    raise ValueError(f"unknown arm {arm!r}; use one of {ARMS} "
                     "(--config=experiments/tiny.py:ARM).")
  c = number_translation.get_config()
  c.dataset = "number_translation/digits_en_small"
  c.tokenizer = "bytes"
  c.max_source_length = 64
  c.max_target_length = 64
  c.bucket_boundaries = (16, 32, 64)
  c.batch_size = 16
  c.eval_batch_size = 32
  c.model.update(emb_dim=32, qkv_dim=32, mlp_dim=64, num_heads=2,
                 num_encoder_layers=1, num_decoder_layers=1, max_len=64)
  c.num_train_steps = 20
  c.warmup_steps = 5
  c.log_every = 5
  c.eval_every = 10
  c.checkpoint_every = 10
  c.num_eval_examples = 64
  c.num_decode_examples = 32
  c.max_decode_length = 64
  if arm in ("rnn", "rnn_bottleneck"):
    c.model = ml_collections.ConfigDict(dict(
        family="rnn", cell="lstm" if arm == "rnn" else "gru",
        bidirectional=True, emb_dim=32, hidden_dim=32, num_encoder_layers=1,
        num_decoder_layers=1,
        attention="additive" if arm == "rnn" else "none", attention_dim=32,
        dropout_rate=0.0, share_embeddings=True, dtype="float32"))
  elif arm == "lm":
    c.task = "lm"
    c.lm_field = "target"  # the English words
    c.lm_prompts = ("", "twenty")
    c.label_smoothing = 0.0
    c.max_source_length = 16
    c.bucket_boundaries = (16, 32, 64)
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
    c.vocab_size = 32
    c.max_target_length = 8
    c.max_decode_length = 8
    c.bleu_tokenize = "13a"
    c.model = ml_collections.ConfigDict(dict(
        family="rnn", cell="lstm", bidirectional=False, emb_dim=16,
        hidden_dim=32, num_encoder_layers=1, num_decoder_layers=1,
        attention="additive", attention_dim=16, dropout_rate=0.0,
        share_embeddings=False, dtype="float32", image_shape=(10, 36, 1),
        conv_features=(4, 8)))
    c.param_groups = (("encoder/.*", "encoder"), ("decoder/.*", "decoder"))
  return c
