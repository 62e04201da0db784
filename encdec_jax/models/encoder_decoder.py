"""Encoder-decoder Transformer: params split at the top into encoder / decoder.

  params = model.init({"params": rng}, inputs_BxS, shift_right(targets_BxT))
  logits_BxTxV = model.apply({"params": params}, inputs_BxS,
                             shift_right(targets_BxT), deterministic=False,
                             rngs={"dropout": rng})

Incremental decoding (encdec_jax.models.contract, encdec_jax.decoding):

  encoded = model.apply({"params": params}, inputs_BxS,
                        method=EncoderDecoder.encode)
  cache = init_cache(model, batch_size, max_decode_len, source_len)
  tokens_to_logits = make_tokens_to_logits(model, params, encoded)
"""
import flax.linen as nn
import jax

from encdec_jax.models.contract import Encoded
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.transformer import TransformerDecoder, TransformerEncoder


class EncoderDecoder(nn.Module):
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.encoder = TransformerEncoder(cfg)
    # The decoder borrows the encoder's token table: its params stay under
    # encoder/, so the encoder subtree alone is a complete encoder.
    shared = self.encoder.embedder.token_embed if cfg.share_embeddings else None
    self.decoder = TransformerDecoder(cfg, shared_token_embed=shared)

  def encode(self, inputs_BxS, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    hidden_BxSxD = self.encoder(inputs_BxS, token_types_BxS,
                                deterministic=deterministic)
    return Encoded(hidden_BxSxD=hidden_BxSxD,
                   mask_BxS=inputs_BxS != self.config.pad_id,
                   ids_BxS=inputs_BxS if self.config.copy else None)

  def decode(self, targets_BxT, encoded: Encoded, *, decode: bool = False,
             deterministic: bool = True) -> jax.Array:
    """Logits BxTxV for shifted-right targets (config.copy: the copy
    mixture's log-probabilities); decode: Bx1, `cache` mutable."""
    return self.decoder(targets_BxT, encoded.hidden_BxSxD, encoded.mask_BxS,
                        decode=decode, deterministic=deterministic,
                        source_ids_BxS=encoded.ids_BxS)

  def __call__(self, inputs_BxS, targets_in_BxT, *, token_types_BxS=None,
               deterministic: bool = True, packing=None) -> jax.Array:
    """packing: None, or packed rows' {inputs,targets}_{segment_ids,positions}
    (data/packing.py): several pairs per row, each attending only to
    itself."""
    if packing is not None:
      return self._packed(inputs_BxS, targets_in_BxT, packing, token_types_BxS,
                          deterministic)
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    return self.decode(targets_in_BxT, encoded, deterministic=deterministic)

  def _packed(self, inputs_BxS, targets_in_BxT, packing, token_types_BxS,
              deterministic: bool) -> jax.Array:
    source_segments_BxS = packing["inputs_segment_ids"]
    hidden_BxSxD = self.encoder(
        inputs_BxS, token_types_BxS, deterministic=deterministic,
        segment_ids_BxS=source_segments_BxS,
        positions_BxS=packing["inputs_positions"])
    return self.decoder(
        targets_in_BxT, hidden_BxSxD, source_segments_BxS > 0,
        deterministic=deterministic,
        source_ids_BxS=inputs_BxS if self.config.copy else None,
        segment_ids_BxT=packing["targets_segment_ids"],
        positions_BxT=packing["targets_positions"],
        memory_segment_ids_BxS=source_segments_BxS)
