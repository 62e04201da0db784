r"""Image → text: captions of real handwritten digits, Show-Attend-Tell style.

Each image is a 16x40 canvas holding 1-4 of scikit-learn's 8x8 digits at
random places (data/captioned_digits.py); the caption names them left to
right ("seven zero four"). A conv encoder (autoencoder.ConvEncoder, 3 levels)
turns the canvas into a 4x10 grid of 64-d region vectors; the decoder attends
to them for every word:

  :attention    LSTM decoder with additive attention (Xu et al. 2015)
  :transformer  Transformer decoder, cross-attention over the regions

Train / validation / test canvases are drawn from disjoint digit images
(sklearn_digits' split), so the test split is read from unseen handwriting.

  python -m encdec_jax.main --config=experiments/captioning_digits.py:attention \
      --workdir=runs/captions/attention
  python -m encdec_jax.reports.captions --workdirs=runs/captions/attention

Encoder from a conv autoencoder (same conv_features; its bottleneck is
ignored, its convs load bit-exactly and stay frozen unless
--config.init_encoder_trainable=true):

  python -m encdec_jax.main --config=experiments/autoencoder_digits.py:conv \
      --workdir=runs/ae/conv3 --config.model.conv_features='(32, 64, 64)'
  python -m encdec_jax.main --config=experiments/captioning_digits.py:attention \
      --workdir=runs/captions/ae_init --config.init_encoder=runs/ae/conv3

Result (2026-11-21, 2-core AMD EPYC CPU shared with another engineer's
jobs, float32, 1,500 steps of 64, greedy, the 1,000 test canvases):
  :attention    98.80 % caption exact match, BLEU 98.08, chrF 99.01
                (0.88M params), 11.1 min wall time
  :transformer  97.50 % exact match, BLEU 96.79, chrF 98.09 (0.47M params),
                7.8 min wall time
(wall time includes generating the data on first use and compilation; the
shared CPU made both slower than they would be alone). With 1,000 training
captions and 600 steps (launch/captioning_study.sh), the LSTM arm from
scratch reaches 86.80 %; with the autoencoder's encoder 15.70 % frozen and
36.20 % fine-tuned: that encoder hurts (experiments/README.md, "Image
captioning").
"""

import ml_collections

from experiments import number_translation, rnn_translation

ARMS = ("attention", "transformer")
CANVAS = (16, 40)


def get_config(arm: str = "attention") -> ml_collections.ConfigDict:
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()
  c.task = "captioning"
  c.dataset = "captioned_digits"
  c.captions = ml_collections.ConfigDict(dict(
      height=CANVAS[0], width=CANVAS[1], min_digits=1, max_digits=4,
      min_gap=1, noise=0.1, num_train=20_000, num_validation=1_000,
      num_test=1_000, seed=0))
  c.vocab_size = 32  # SentencePiece: one piece per digit word
  c.max_target_length = 8  # 4 words + EOS fit; longer captions are cut
  c.max_source_length = 8  # unused (the inputs are images); <= model.max_len
  c.max_decode_length = 8
  image = dict(image_shape=(*CANVAS, 1), conv_features=(32, 64, 64))
  if arm == "attention":
    c.model = rnn_translation.rnn_model(
        bidirectional=False, emb_dim=64, attention_dim=128,
        share_embeddings=False, **image)
  else:  # the main job's decoder stack, narrower, with dropout
    c.model.update(family="transformer", mlp_dim=256, num_encoder_layers=0,
                   max_len=16, dropout_rate=0.1, share_embeddings=False,
                   **image)
  c.update(batch_size=64, eval_batch_size=500, log_every=100, eval_every=500,
           checkpoint_every=500, num_eval_examples=-1)
  c.num_decode_examples = -1  # the whole validation split (1,000 images)
  c.bleu_tokenize = "13a"  # words: a caption is a sequence of digit words
  return c
