"""BART from Hugging Face files, as our EncoderDecoder configured as BART (no
torch); the layer layout is shared with Marian (marian.py).

Architecture (TransformerConfig knobs): learned absolute positions with
BART's offset of 2 (max_position_embeddings + 2 rows, position p reads row
p + 2), a LayerNorm after the embedding sum (layernorm_embedding) in both
stacks, post-LayerNorm sublayers without a final norm, exact-erf GELU,
biases everywhere, encoder and decoder with their own head counts and FFN
widths, token embeddings scaled by sqrt(d_model) or not (scale_embedding),
one token table for both stacks and the (tied, unscaled) logits, plus
final_logits_bias. Pad is 1, the decoder starts with EOS (2).

Name map ("model." prefixes optional; {stack} encoder or decoder):
  model.shared                              encoder/embedder/token_embed
  model.{stack}.embed_positions             {stack}/embedder/position_embed
  model.{stack}.layernorm_embedding         {stack}/embedder/embedding_norm
  model.{stack}.layers.{l}.self_attn.{q,k,v,out}_proj
                                            {stack}/layers_{l}/(self_)attention
  model.{stack}.layers.{l}.self_attn_layer_norm   .../(self_)attention_norm
  model.decoder.layers.{l}.encoder_attn.*         .../cross_attention
  model.decoder.layers.{l}.encoder_attn_layer_norm  .../cross_attention_norm
  model.{stack}.layers.{l}.fc1, fc2         .../mlp/intermediate, output
  model.{stack}.layers.{l}.final_layer_norm .../mlp_norm
  final_logits_bias                         decoder/final_logits_bias
  lm_head (only when untied)                decoder/logits_dense (no bias)
Known and not imported: model.encoder.embed_tokens, model.decoder.embed_tokens
and a tied lm_head, when they are copies of model.shared.
"""

from encdec_jax.nn.config import TransformerConfig
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained.hf import Weight

NAME = "bart"
MODEL_TYPES = ("bart",)
BART_NAMES = {"query": "q_proj", "key": "k_proj", "value": "v_proj",
              "out": "out_proj"}
PREFIX = "model."


def strip_prefix(tensors: dict) -> dict:
  """Names as BartForConditionalGeneration writes them ("model." before
  everything but final_logits_bias and lm_head); a BartModel file lacks
  the prefix."""
  if any(k.startswith(PREFIX) for k in tensors):
    return tensors
  rename = lambda k: (k if k in ("final_logits_bias", "lm_head.weight")
                      else PREFIX + k)
  if hasattr(tensors, "renamed"):  # weight_files.LazyTensors: none read
    return tensors.renamed(rename)
  return {rename(k): v for k, v in tensors.items()}


def untied_lm_head(tensors: dict) -> bool:
  return not hf_lib.same_tensor(tensors, "lm_head.weight",
                                "model.shared.weight")


def common_fields(hf: dict, tensors: dict, family: str) -> dict:
  """TransformerConfig fields BART and Marian read the same way."""
  get = lambda key: hf_lib.need(hf, key, family)
  d_model = get("d_model")
  untied = untied_lm_head(tensors)
  return dict(
      vocab_size=get("vocab_size"), emb_dim=d_model, qkv_dim=d_model,
      num_heads=get("encoder_attention_heads"),
      num_decoder_heads=get("decoder_attention_heads"),
      mlp_dim=get("encoder_ffn_dim"), decoder_mlp_dim=get("decoder_ffn_dim"),
      num_encoder_layers=get("encoder_layers"),
      num_decoder_layers=get("decoder_layers"),
      max_len=get("max_position_embeddings"), pre_layernorm=False,
      activation=hf_lib.activation(hf.get("activation_function", "gelu"),
                                   family),
      layernorm_epsilon=1e-5, use_bias=True, mlp_bias=True,
      scale_embeddings=bool(hf.get("scale_embedding", False)),
      logits_via_embedding=not untied, logits_dense_bias=False,
      scale_decoder_outputs=False, final_logits_bias=True,
      dropout_rate=hf.get("dropout", 0.1),
      attention_dropout_rate=hf.get("attention_dropout", 0.0),
      pad_id=get("pad_token_id"),
      decoder_start_id=get("decoder_start_token_id"))


def config_from_hf(hf: dict, tensors: dict) -> TransformerConfig:
  tensors = strip_prefix(tensors)
  return TransformerConfig(
      share_embeddings=True, position_embedding="learned", position_offset=2,
      embedding_layernorm=True, **common_fields(hf, tensors, NAME))


def layer_table(cfg: TransformerConfig) -> list[Weight]:
  """The layers (and logits) of a BART-layout model: BART and Marian."""
  table = []
  heads = {"encoder": cfg.num_heads,
           "decoder": cfg.decoder_config().num_heads}
  for stack, layers in (("encoder", cfg.num_encoder_layers),
                        ("decoder", cfg.num_decoder_layers)):
    self_name = "attention" if stack == "encoder" else "self_attention"
    for i in range(layers):
      ours, hf = f"{stack}/layers_{i}", f"model.{stack}.layers.{i}"
      table += hf_lib.attention_weights(f"{ours}/{self_name}",
                                        f"{hf}.self_attn", heads[stack],
                                        BART_NAMES, bias=True)
      table += hf_lib.norm_weights(f"{ours}/{self_name}_norm",
                                   f"{hf}.self_attn_layer_norm")
      if stack == "decoder":
        table += hf_lib.attention_weights(f"{ours}/cross_attention",
                                          f"{hf}.encoder_attn", heads[stack],
                                          BART_NAMES, bias=True)
        table += hf_lib.norm_weights(f"{ours}/cross_attention_norm",
                                     f"{hf}.encoder_attn_layer_norm")
      table += hf_lib.dense_weights(f"{ours}/mlp/intermediate", f"{hf}.fc1",
                                    True)
      table += hf_lib.dense_weights(f"{ours}/mlp/output", f"{hf}.fc2", True)
      table += hf_lib.norm_weights(f"{ours}/mlp_norm",
                                   f"{hf}.final_layer_norm")
  table.append(Weight("decoder/final_logits_bias", "final_logits_bias",
                      "row"))
  if not cfg.logits_via_embedding:
    table += hf_lib.dense_weights("decoder/logits_dense", "lm_head", False)
  return table


def weight_table(cfg: TransformerConfig) -> list[Weight]:
  table = [Weight("encoder/embedder/token_embed/embedding",
                  "model.shared.weight", "copy")]
  for stack in ("encoder", "decoder"):
    table.append(Weight(f"{stack}/embedder/position_embed/pos_embedding",
                        f"model.{stack}.embed_positions.weight", "copy"))
    table += hf_lib.norm_weights(f"{stack}/embedder/embedding_norm",
                                 f"model.{stack}.layernorm_embedding")
  return table + layer_table(cfg)


ALIASES = ("model.encoder.embed_tokens.weight",
           "model.decoder.embed_tokens.weight")


def ignored(tensors: dict, cfg: TransformerConfig):
  tensors = strip_prefix(tensors)
  hf_lib.check_aliases(tensors, "model.shared.weight", ALIASES)
  tied = ALIASES + (("lm_head.weight",) if cfg.logits_via_embedding else ())
  return lambda name: name in tied


def eos_id(hf: dict) -> int:
  return hf.get("eos_token_id", 2)
