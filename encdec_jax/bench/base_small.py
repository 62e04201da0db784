"""The `base-small` work of ../shared/bench: model, synthetic data, FLOPs.

3+3 layers, d_model 256, 4 heads, FFN 1024, ReLU, post-LN, dropout 0.1,
shared vocabulary 8000 with tied output projection, scaled embeddings,
sinusoidal positions, float32; batch 32, source and target length 64, no
padding; AdamW lr 1e-4 (0.9, 0.98, eps 1e-9, wd 0.01), label smoothing 0.1.
The FLOP model is the peers' (common.py there), so MFU compares like for like.
"""

import ml_collections
import numpy as np

BATCH, SRC_LEN, TGT_LEN, VOCAB = 32, 64, 64, 8000
LAYERS, D_MODEL, FFN, BEAMS = 3, 256, 1024, 4
FIRST_REAL_ID = 4  # synthetic tokens avoid pad (0), EOS (1) and UNK (2)


def config(**model_overrides) -> ml_collections.ConfigDict:
  """A train config for encdec_jax's partition/step code."""
  c = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=0, schedule="constant",
      num_train_steps=1000, adam_b1=0.9, adam_b2=0.98, weight_decay=0.01,
      grad_clip_norm=0.0, max_source_length=SRC_LEN,
      max_target_length=TGT_LEN, task="translation", frozen_groups=(),
      label_smoothing=0.1, seed=0, dropout_prng="threefry2x32"))
  c.model = ml_collections.ConfigDict(dict(
      emb_dim=D_MODEL, qkv_dim=D_MODEL, mlp_dim=FFN, num_heads=4,
      num_encoder_layers=LAYERS, num_decoder_layers=LAYERS,
      max_len=max(SRC_LEN, TGT_LEN), position_embedding="sinusoidal",
      pre_layernorm=False, activation="relu", scale_embeddings=True,
      dropout_rate=0.1, attention_dropout_rate=0.1, share_embeddings=True,
      logits_via_embedding=True, dtype="float32"))
  c.model.update(model_overrides)
  return c


def batches(seed: int = 0, n: int = 4) -> list[dict]:
  """n fixed random batches (the timing loop cycles them)."""
  rng = np.random.default_rng(seed + 1234)
  out = []
  for _ in range(n):
    out.append({
        "inputs": rng.integers(FIRST_REAL_ID, VOCAB, (BATCH, SRC_LEN),
                               dtype=np.int32),
        "targets": rng.integers(FIRST_REAL_ID, VOCAB, (BATCH, TGT_LEN),
                                dtype=np.int32),
        "example_weight": np.ones((BATCH,), np.float32),
        "overlong": np.zeros((BATCH,), np.int32)})
  return out


def _matmul_params():
  d, f = D_MODEL, FFN
  return (LAYERS * (4 * d * d + 2 * d * f), LAYERS * (8 * d * d + 2 * d * f),
          d * VOCAB)


def flops_per_token(unit: str) -> float:
  """Model FLOPs per target (train) or output (decode) token."""
  n_enc, n_dec, n_out = _matmul_params()
  d, s, t = D_MODEL, SRC_LEN, TGT_LEN
  if unit == "train":
    r = s / t
    fwd = 2 * (n_enc * r + n_dec + n_out)
    fwd += 4 * d * s * LAYERS * r + 4 * d * (t + s) * LAYERS
    return 3 * fwd
  beams = 1 if unit == "decode_greedy" else BEAMS
  new = TGT_LEN
  enc = s * (2 * n_enc + 4 * d * s * LAYERS)
  per_tok_layer = 2 * (4 * d * d + 2 * d * d + 2 * d * FFN)
  dec = sum(LAYERS * (per_tok_layer + 4 * d * (i + s)) + 2 * d * VOCAB
            for i in range(1, new + 1))
  cross_kv = LAYERS * s * 2 * (2 * d * d)
  return (enc + beams * (dec + cross_kv)) / new
