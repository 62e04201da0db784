"""Recurrent encoder-decoder (LSTM/GRU, Bahdanau attention or bottleneck).

The contract of EncoderDecoder, so training, decoding (encdec_jax.decoding via
init_cache / make_tokens_to_logits), encoder/decoder optimizer partitions and
encoder checkpoints work unchanged:

  model = RNNEncoderDecoder(RNNConfig(vocab_size=259))
  params = model.init({"params": rng}, inputs_BxS, shift_right(targets_BxT))
  logits_BxTxV = model.apply({"params": params}, inputs_BxS,
                             shift_right(targets_BxT), deterministic=False,
                             rngs={"dropout": rng})
  encoded = model.apply({"params": params}, inputs_BxS, method="encode")
  cache = init_cache(model, batch_size, max_decode_len, source_len)
  tokens_to_logits = make_tokens_to_logits(model, params, encoded)

Attention heatmaps (attention="additive"), weights_BxTxS over the source:

  logits_BxTxV, state = model.apply({"params": params}, inputs_BxS,
                                    targets_in_BxT, mutable=["intermediates"])
  weights_BxTxS = state["intermediates"]["decoder"]["attention_weights"][0]

Params (see encdec_jax.nn.recurrent): encoder/{token_embed, layers_{i}},
decoder/{bridge, attention, layers_{i}, logits_dense} (+ token_embed when
share_embeddings=False). Cache: decoder/{carry, cached_keys, is_filled}.
"""
import flax.linen as nn
import jax

from encdec_jax.models.contract import Encoded
from encdec_jax.nn.recurrent import PAD_ID, RNNConfig, RNNDecoder, RNNEncoder


class RNNEncoderDecoder(nn.Module):
  config: RNNConfig

  def setup(self):
    cfg = self.config
    self.encoder = RNNEncoder(cfg)
    # The decoder borrows the encoder's token table: its params stay under
    # encoder/, so the encoder subtree alone is a complete encoder.
    shared = self.encoder.token_embed if cfg.share_embeddings else None
    self.decoder = RNNDecoder(cfg, shared_token_embed=shared)

  def encode(self, inputs_BxS, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    if token_types_BxS is not None:
      raise ValueError("token_types are not supported by the RNN "
                       "encoder-decoder; pass token_types_BxS=None.")
    hidden_BxSxH = self.encoder(inputs_BxS, deterministic=deterministic)
    return Encoded(hidden_BxSxD=hidden_BxSxH, mask_BxS=inputs_BxS != PAD_ID,
                   ids_BxS=inputs_BxS if self.config.copy else None)

  def decode(self, targets_BxT, encoded: Encoded, *, decode: bool = False,
             deterministic: bool = True) -> jax.Array:
    """Logits BxTxV for shifted-right targets (config.copy: the copy
    mixture's log-probabilities); decode: Bx1, `cache` mutable."""
    return self.decoder(targets_BxT, encoded.hidden_BxSxD, encoded.mask_BxS,
                        decode=decode, deterministic=deterministic,
                        source_ids_BxS=encoded.ids_BxS)

  def __call__(self, inputs_BxS, targets_in_BxT, *, token_types_BxS=None,
               deterministic: bool = True) -> jax.Array:
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    return self.decode(targets_in_BxT, encoded, deterministic=deterministic)
