"""Marian (opus-mt) from Hugging Face files, as our EncoderDecoder configured
as Marian (no torch). The layers are BART's (bart.layer_table).

Architecture (TransformerConfig knobs): sinusoidal positions in Marian's
layout (position_embedding="sinusoidal_marian": sin in the first half of
the features, cos in the second, no params), token embeddings scaled by
sqrt(d_model), no embedding LayerNorm, post-LayerNorm sublayers, swish
(SiLU), biases, final_logits_bias, the decoder's own head count / FFN width,
logits tied to the decoder's token table. Pad is the last id and also the
decoder's start token; EOS is 0.

With share_encoder_decoder_embeddings (the opus-mt default) one table
model.shared serves both stacks (encoder/embedder/token_embed); without it
the encoder reads model.encoder.embed_tokens (vocab_size rows) and the
decoder model.decoder.embed_tokens (decoder_vocab_size rows,
decoder/embedder/token_embed), which the logits also use.

Known and not imported: tied copies of the token tables (embed_tokens,
lm_head) and model.{encoder,decoder}.embed_positions, which older files
hold; they must equal the sinusoidal table computed here.
"""

import ml_dtypes
import numpy as np

from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.embedding import marian_sinusoidal_table
from encdec_jax.pretrained import bart
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained.hf import Weight

NAME = "marian"
MODEL_TYPES = ("marian",)


def shared(hf: dict) -> bool:
  return bool(hf.get("share_encoder_decoder_embeddings", True))


def config_from_hf(hf: dict, tensors: dict) -> TransformerConfig:
  tensors = bart.strip_prefix(tensors)
  fields = bart.common_fields(hf, tensors, NAME)
  canonical = ("model.shared.weight" if shared(hf)
               else "model.decoder.embed_tokens.weight")
  fields["logits_via_embedding"] = hf_lib.same_tensor(
      tensors, "lm_head.weight", canonical)
  vocab = fields["vocab_size"]
  decoder_vocab = hf.get("decoder_vocab_size") or vocab
  return TransformerConfig(
      share_embeddings=shared(hf),
      output_vocab_size=None if shared(hf) else decoder_vocab,
      position_embedding="sinusoidal_marian", embedding_layernorm=False,
      **fields)


def weight_table(cfg: TransformerConfig) -> list[Weight]:
  if cfg.share_embeddings:
    table = [Weight("encoder/embedder/token_embed/embedding",
                    "model.shared.weight", "copy")]
  else:
    table = [Weight(f"{s}/embedder/token_embed/embedding",
                    f"model.{s}.embed_tokens.weight", "copy")
             for s in ("encoder", "decoder")]
  return table + bart.layer_table(cfg)


def ignored(tensors: dict, cfg: TransformerConfig):
  tensors = bart.strip_prefix(tensors)
  if cfg.share_embeddings:
    hf_lib.check_aliases(tensors, "model.shared.weight", bart.ALIASES)
    tied = bart.ALIASES
    canonical = "model.shared.weight"
  else:
    tied = ()
    canonical = "model.decoder.embed_tokens.weight"
  if cfg.logits_via_embedding:
    hf_lib.check_aliases(tensors, canonical, ("lm_head.weight",))
    tied += ("lm_head.weight",)
  positions = tuple(f"model.{s}.embed_positions.weight"
                    for s in ("encoder", "decoder"))
  table = marian_sinusoidal_table(cfg.max_len, cfg.emb_dim)
  for name in positions:
    if name in tensors and not _is_table(tensors[name], table):
      raise hf_lib.PretrainedError(
          f"model.safetensors: {name} is not the sinusoidal table Marian "
          "computes; learned positions are not supported")
  return lambda name: name in tied or name in positions


def _is_table(stored: np.ndarray, table: np.ndarray) -> bool:
  """The table, or the table rounded as a float16 / bfloat16 file holds it
  (read back as float32 or kept)."""
  return any(np.array_equal(stored, table.astype(d).astype(stored.dtype))
             for d in (np.float32, np.float16, ml_dtypes.bfloat16))


def eos_id(hf: dict) -> int:
  return hf.get("eos_token_id", 0)
