"""The T5 v1.1-large work of bench/t5_large.py (the shapes and settings of
../shared/bench/peers/hf_t5_large.py): its config and its batch, without
flags, so that tests can import them beside other entry points."""

import ml_collections
import numpy as np

from encdec_jax.starts import t5_scratch

UNITS = ("lora_step", "full_step", "decode_greedy")
BATCH, SRC_LEN, TGT_LEN, VOCAB = 2, 64, 16, 32128
LARGE = dict(emb_dim=1024, qkv_dim=1024, num_heads=16, mlp_dim=2816,
             num_encoder_layers=24, num_decoder_layers=24)
# LoRA on q and v of every attention: encoder self, decoder self and cross.
LORA_TARGETS = (r"(encoder|decoder)/.*attention/(query|value)",)
NEVER = -1  # an EOS id no token equals: exactly TGT_LEN new tokens


def config(dtype: str = "float32", remat: str = "none",
           scan_layers: bool = True, **sizes) -> ml_collections.ConfigDict:
  """The train config of the T5 v1.1-large work (`sizes` shrink it: tests)."""
  c = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=0, schedule="constant",
      num_train_steps=1000, adam_b1=0.9, adam_b2=0.999, weight_decay=0.01,
      grad_clip_norm=0.0, max_source_length=SRC_LEN,
      max_target_length=TGT_LEN, task="translation", frozen_groups=(),
      label_smoothing=0.0, seed=0, remat=remat))
  c.model = ml_collections.ConfigDict(dict(
      t5_scratch.T5_FIELDS, relative_position_buckets=32,
      relative_position_max_distance=128, max_len=SRC_LEN,
      dropout_rate=0.0, attention_dropout_rate=0.0, dtype=dtype,
      scan_layers=scan_layers, remat=remat, **dict(LARGE, **sizes)))
  return c


def batch(vocab: int = VOCAB, seed: int = 1234) -> dict:
  rng = np.random.default_rng(seed)
  return {"inputs": rng.integers(4, vocab, (BATCH, SRC_LEN), dtype=np.int32),
          "targets": rng.integers(4, vocab, (BATCH, TGT_LEN), dtype=np.int32),
          "example_weight": np.ones((BATCH,), np.float32),
          "overlong": np.zeros((BATCH,), np.int32)}
