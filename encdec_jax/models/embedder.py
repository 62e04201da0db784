"""Sentence embedder: a bidirectional Transformer encoder, pooling, L2 norm.

  params = {"encoder": <same tree as EncoderDecoder's encoder>,
            "pooler": ... (attention pooling only)}

  vectors_BxD = model.apply({"params": params}, inputs_BxS)  # unit norm
  cosine_BxB = vectors_BxD @ vectors_BxD.T

Trained contrastively (encdec_jax.train.step.contrastive_loss: in-batch
negatives, as in sentence-transformers' MultipleNegativesRankingLoss) on text
pairs that mean the same, e.g. a number in English and in German; any encoder
(a translation model's, an imported BERT) can start it via load_encoder.
"""

import flax.linen as nn
import jax

from encdec_jax.models import pooling as pooling_lib
from encdec_jax.models.contract import Encoded
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.transformer import PAD_ID, TransformerEncoder


class SentenceEmbedder(nn.Module):
  config: TransformerConfig
  pooling: str = "mean"  # "mean" | "first" | "attention"

  def setup(self):
    cfg = self.config
    self.encoder = TransformerEncoder(cfg)
    self.pooler = pooling_lib.make_pooler(self.pooling, cfg.dtype,
                                          cfg.param_dtype)

  def encode(self, inputs_BxS, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    hidden_BxSxD = self.encoder(inputs_BxS, token_types_BxS,
                                deterministic=deterministic)
    return Encoded(hidden_BxSxD=hidden_BxSxD, mask_BxS=inputs_BxS != PAD_ID)

  def embed(self, inputs_BxS, *, token_types_BxS=None,
            deterministic: bool = True) -> jax.Array:
    """Unit-norm float32 sentence vectors BxD."""
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    return pooling_lib.l2_normalize(
        pooling_lib.pool(encoded, self.pooling, self.pooler))

  def __call__(self, inputs_BxS, *, token_types_BxS=None,
               deterministic: bool = True) -> jax.Array:
    return self.embed(inputs_BxS, token_types_BxS=token_types_BxS,
                      deterministic=deterministic)
