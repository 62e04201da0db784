"""Encoder-only classifier: Transformer encoder, pooling, a linear head.

  params = {"encoder": <same tree as EncoderDecoder's encoder>,
            "pooler": ... (attention pooling only), "head": ...}

The encoder subtree has exactly the layout of the encoder–decoder's, so an
encoder trained for translation loads into it unchanged (checkpoint.load_encoder).

  logits_BxC = model.apply({"params": params}, inputs_BxS)
  vectors_BxD = model.apply({"params": params}, inputs_BxS, method="embed")
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.models import pooling as pooling_lib
from encdec_jax.models.contract import Encoded
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.dropout import Dropout
from encdec_jax.nn.transformer import PAD_ID, TransformerEncoder

POOLINGS = pooling_lib.POOLINGS


class EncoderClassifier(nn.Module):
  config: TransformerConfig
  num_classes: int
  pooling: str = "mean"  # "mean" (over real tokens) | "first" | "attention"

  def setup(self):
    if self.num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {self.num_classes}.")
    cfg = self.config
    self.encoder = TransformerEncoder(cfg)
    self.pooler = pooling_lib.make_pooler(self.pooling, cfg.dtype,
                                          cfg.param_dtype)
    self.dropout = Dropout(rate=cfg.dropout_rate)
    self.head = nn.Dense(self.num_classes, dtype=cfg.dtype,
                         param_dtype=cfg.param_dtype,
                         kernel_init=nn.initializers.zeros_init())

  def encode(self, inputs_BxS, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    hidden_BxSxD = self.encoder(inputs_BxS, token_types_BxS,
                                deterministic=deterministic)
    return Encoded(hidden_BxSxD=hidden_BxSxD, mask_BxS=inputs_BxS != PAD_ID)

  def embed(self, inputs_BxS, *, token_types_BxS=None) -> jax.Array:
    """L2-normalised pooled encoder output BxD (the sentence vector)."""
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS)
    return pooling_lib.l2_normalize(
        pooling_lib.pool(encoded, self.pooling, self.pooler))

  def __call__(self, inputs_BxS, *, token_types_BxS=None,
               deterministic: bool = True) -> jax.Array:
    """float32 logits BxC."""
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    pooled_BxD = self.dropout(
        pooling_lib.pool(encoded, self.pooling, self.pooler),
        deterministic=deterministic)
    return self.head(pooled_BxD).astype(jnp.float32)
