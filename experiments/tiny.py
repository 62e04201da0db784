r"""A tiny number-translation run used by the tests and for smoke checks.

  python -m encdec_jax.main --config=experiments/tiny.py --workdir=/tmp/tiny

Takes about a minute on a 2-core CPU; it checks plumbing, not quality.
"""

from experiments import number_translation


def get_config():
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
  return c
