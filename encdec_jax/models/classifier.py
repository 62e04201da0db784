"""Encoder-only classifier: Transformer encoder, pooling, a linear head.

  params = {"encoder": <same tree as EncoderDecoder's encoder>, "head": ...}

The encoder subtree has exactly the layout of the encoder–decoder's, so an
encoder trained for translation loads into it unchanged (encoder_checkpoint.load_encoder).

  logits_BxC = model.apply({"params": params}, inputs_BxS)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.models.encoder_decoder import Encoded
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.dropout import Dropout
from encdec_jax.nn.transformer import PAD_ID, TransformerEncoder

POOLINGS = ("mean", "first")


def pool(encoded: Encoded, pooling: str) -> jax.Array:
  """BxSxD -> BxD: the mean over real tokens, or the first token's state."""
  if pooling == "first":
    return encoded.hidden_BxSxD[:, 0]
  mask_BxSx1 = encoded.mask_BxS[..., None].astype(encoded.hidden_BxSxD.dtype)
  total_BxD = jnp.sum(encoded.hidden_BxSxD * mask_BxSx1, axis=1)
  return total_BxD / jnp.maximum(jnp.sum(mask_BxSx1, axis=1), 1.0)


class EncoderClassifier(nn.Module):
  config: TransformerConfig
  num_classes: int
  pooling: str = "mean"  # "mean" (over real tokens) | "first"

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r} is not known; use one of "
                       f"{POOLINGS}.")
    if self.num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {self.num_classes}.")
    cfg = self.config
    self.encoder = TransformerEncoder(cfg)
    self.dropout = Dropout(rate=cfg.dropout_rate)
    self.head = nn.Dense(self.num_classes, dtype=cfg.dtype,
                         param_dtype=cfg.param_dtype,
                         kernel_init=nn.initializers.zeros_init())

  def encode(self, inputs_BxS, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    hidden_BxSxD = self.encoder(inputs_BxS, token_types_BxS,
                                deterministic=deterministic)
    return Encoded(hidden_BxSxD=hidden_BxSxD, mask_BxS=inputs_BxS != PAD_ID)

  def __call__(self, inputs_BxS, *, token_types_BxS=None,
               deterministic: bool = True) -> jax.Array:
    """float32 logits BxC."""
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    pooled_BxD = self.dropout(pool(encoded, self.pooling),
                              deterministic=deterministic)
    return self.head(pooled_BxD).astype(jnp.float32)
