"""Decoder-only (causal) Transformer LM on the encoder stack (ULMFiT-style).

  params = {"encoder": <TransformerEncoder, as EncoderDecoder's encoder>,
            "lm_head": ...}                  (logits_via_embedding=False only)

The body is a TransformerEncoder with config.causal=True, so after LM training
params['encoder'] loads into an EncoderClassifier built with the same config
(causal=True) through checkpoint.save_encoder/load_encoder.

It keeps EncoderDecoder's encode/decode contract, so tasks.losses.seq2seq_loss
trains it
(`inputs` is any dummy array: an LM has no source) and init_cache,
make_tokens_to_logits and encdec_jax.decoding sample from it unchanged:

  logits_BxTxV = model.apply({"params": params}, dummy_Bx1,
                             shift_right(tokens_BxT))
  encoded = model.apply({"params": params}, dummy_Bx1, method="encode")
  cache = init_cache(model, batch_size, max_decode_len, source_len=1)
  tokens_to_logits = make_tokens_to_logits(model, params, encoded)

As in the encoder–decoder, the model reads shift_right(tokens): the start
token is the pad id 0, and inputs must be right-padded.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.models.contract import Encoded
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.transformer import TransformerEncoder


class DecoderOnlyLM(nn.Module):
  """Causal LM over config.vocab_size; num_decoder_layers is unused."""
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    if not cfg.causal:
      raise ValueError("DecoderOnlyLM needs config.causal=True (its encoder "
                       "stack must not see future tokens).")
    if cfg.decoder_vocab_size != cfg.vocab_size:
      raise ValueError(
          f"DecoderOnlyLM reads and predicts one vocabulary: set "
          f"output_vocab_size=None, got {cfg.output_vocab_size} != "
          f"vocab_size={cfg.vocab_size}.")
    self.encoder = TransformerEncoder(cfg)
    if not cfg.logits_via_embedding:
      self.lm_head = nn.Dense(
          cfg.vocab_size, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          kernel_init=nn.initializers.xavier_uniform())

  def encode(self, inputs_BxS, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    """An empty source: hidden_BxSxD is (B, 0, emb_dim), mask_BxS (B, 0).

    Only B of inputs_BxS is read. The empty arrays keep the encode/decode
    contract (and pass through expand_to_beams) at no cost.
    """
    del token_types_BxS, deterministic  # No source to embed.
    batch_size = inputs_BxS.shape[0]
    cfg = self.config
    return Encoded(
        hidden_BxSxD=jnp.zeros((batch_size, 0, cfg.emb_dim), cfg.dtype),
        mask_BxS=jnp.zeros((batch_size, 0), jnp.bool_))

  def decode(self, targets_BxT, encoded: Encoded, *, decode: bool = False,
             deterministic: bool = True) -> jax.Array:
    """float32 logits BxTxV for shifted-right targets; decode: Bx1 per call,
    `cache` mutable. `encoded` (empty) is not read.

    No padding mask: the start token is the pad id, so masking pad keys would
    hide position 0 (and leave its query with no key at all). With right-padded
    targets the causal mask alone keeps every real position from seeing
    padding, exactly as in TransformerDecoder; pad positions carry no loss.
    """
    del encoded
    hidden_BxTxD = self.encoder(targets_BxT, decode=decode, mask_padding=False,
                                deterministic=deterministic)
    if self.config.logits_via_embedding:
      logits_BxTxV = self.encoder.embedder.attend(hidden_BxTxD)
    else:
      logits_BxTxV = self.lm_head(hidden_BxTxD)
    # float32 so the softmax / cross-entropy downstream is full precision.
    return logits_BxTxV.astype(jnp.float32)

  def __call__(self, inputs_BxS, targets_in_BxT, *, token_types_BxS=None,
               deterministic: bool = True) -> jax.Array:
    """Logits BxTxV of shift_right(targets); inputs_BxS only gives B."""
    encoded = self.encode(inputs_BxS, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    return self.decode(targets_in_BxT, encoded, deterministic=deterministic)
