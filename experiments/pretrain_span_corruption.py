r"""Pretrain a small T5 (v1.1) from raw text: span corruption, packed.

The offline corpus is the Python Language Reference's prose that ships with
Python (data/python_docs.py: 1,400 training paragraphs, ~300 KB); any
text, one document a line: --config.dataset=text_files
--config.text_files.train=FILE (and .validation=, .test=). Arms:
  span_corruption  (default) T5: 15 % noise in spans of mean length 3, each
                   span one sentinel; 64-token inputs come from 70 raw
                   tokens and give 14-token targets (random_spans_helper),
                   packed into rows of 64 x 14
  text_infilling   BART: 30 % of the words masked in Poisson(3) spans, one
                   mask (<extra_id_0>) a span, sentences permuted; the
                   target is the whole 63-token chunk
  prefix_lm        T5's prefix LM: a random prefix in, the rest out

  python -m encdec_jax.main --config=experiments/pretrain_span_corruption.py \
      --workdir=runs/pretrain
  python -m encdec_jax.pretrained.export_hf runs/pretrain runs/pretrain_hf

The model is Hugging Face's T5 v1.1 (config.hf_export="t5",
starts/t5_scratch.py): the workdir exports with export_hf and is the
starting point of a fine-tuning run (--config.init_from=runs/pretrain).
Result and wall time: docs/pretraining.md.
"""

import ml_collections

from experiments import number_translation

ARMS = ("span_corruption", "text_infilling", "prefix_lm")


def get_config(arm: str = "span_corruption") -> ml_collections.ConfigDict:
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()
  c.task = "pretraining"
  c.dataset = "python_docs"
  c.hf_export = "t5"
  c.vocab_size = 2000
  c.extra_ids = 100  # T5's <extra_id_0..99>, after the pieces
  c.pretraining = ml_collections.ConfigDict(dict(
      objective=arm, noise_density=0.15, mean_noise_span_length=3.0,
      mask_ratio=0.3, poisson_lambda=3.0, permute_sentences=True))
  c.max_source_length = 64
  # span corruption: random_spans_helper(64, 0.15, 3) = (70 raw, 14 out).
  c.max_target_length = 14 if arm == "span_corruption" else 64
  c.bucket_boundaries = (c.max_target_length, c.max_source_length)
  c.pack_examples = True
  c.batch_size = 32  # packed rows
  c.eval_batch_size = 64
  # T5 v1.1 sizes scaled down; the rest of the architecture is imposed by
  # config.hf_export (starts/t5_scratch.py).
  c.model = ml_collections.ConfigDict(dict(
      emb_dim=128, qkv_dim=128, num_heads=4, mlp_dim=256,
      num_encoder_layers=2, num_decoder_layers=2, max_len=512,
      relative_position_buckets=32, relative_position_max_distance=128,
      layernorm_epsilon=1e-6, dropout_rate=0.0, attention_dropout_rate=0.0,
      dtype="float32", scan_layers=False))
  c.learning_rate = 3e-3
  c.warmup_steps = 100
  c.num_train_steps = 1000
  c.label_smoothing = 0.0
  c.weight_decay = 0.0
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.num_eval_examples = -1  # the whole validation split
  c.num_decode_examples = 0
  c.test_at_end = True
  return c
