"""T5 (v1.0, v1.1, Flan-T5, mT5, ByT5) from Hugging Face files, as our
EncoderDecoder configured as T5 (no torch).

Architecture (TransformerConfig knobs): pre-RMSNorm sublayers and a final
RMSNorm per stack, no biases, no absolute positions but one bucketed relative
position table per stack (bidirectional in the encoder, causal in the
decoder, none in cross-attention), unscaled attention logits, inner width
num_heads * d_kv (need not be d_model), ReLU (v1.0) or gated-GELU (tanh;
v1.1, Flan-T5, mT5) MLP, one token table shared by encoder and decoder, and
either tied logits with the decoder output scaled by d_model^-0.5 (v1.0) or
an untied lm_head without scaling (v1.1). Pad (0) is the decoder's start
token, EOS is 1.

Name map (decoder layer l: layer.0 self-attention, layer.1 cross-attention,
layer.2 MLP; the encoder has no layer.1 cross-attention, its MLP is layer.1):
  shared                                   encoder/embedder/token_embed
  {stack}.block.0.layer.0.SelfAttention.relative_attention_bias
                                           {stack}/relative_position_bias
  {stack}.block.{l}.layer.0.SelfAttention.{q,k,v,o}
                                           {stack}/layers_{l}/(self_)attention
  {stack}.block.{l}.layer.0.layer_norm     .../(self_)attention_norm
  decoder.block.{l}.layer.1.EncDecAttention.{q,k,v,o}   .../cross_attention
  decoder.block.{l}.layer.1.layer_norm     .../cross_attention_norm
  {stack}.block.{l}.layer.{1|2}.DenseReluDense.{wi | wi_0, wi_1}, wo
                                           .../mlp/{intermediate |
                                           intermediate, intermediate_linear},
                                           output
  {stack}.block.{l}.layer.{1|2}.layer_norm .../mlp_norm
  {stack}.final_layer_norm                 {stack}/{encoder|decoder}_norm
  lm_head (untied only)                    decoder/logits_dense
Known and not imported: encoder.embed_tokens / decoder.embed_tokens (and a
tied lm_head) when they are copies of shared, and
decoder.block.0.layer.1.EncDecAttention.relative_attention_bias, which
Hugging Face itself ignores.
"""

from encdec_jax.nn.config import TransformerConfig
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained.hf import Weight

NAME = "t5"
MODEL_TYPES = ("t5", "mt5")
EOS_ID = 1
IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias"
           ".weight",)
ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
T5_NAMES = {"query": "q", "key": "k", "value": "v", "out": "o"}


def untied_lm_head(tensors: dict) -> bool:
  """Hugging Face unties lm_head when the file holds one that differs from
  shared (T5 v1.1, Flan-T5, mT5); otherwise it is the shared table."""
  return not hf_lib.same_tensor(tensors, "lm_head.weight", "shared.weight")


def config_from_hf(hf: dict, tensors: dict) -> TransformerConfig:
  family = hf.get("model_type", NAME)
  get = lambda key: hf_lib.need(hf, key, family)
  projection = hf.get("feed_forward_proj", "relu")
  parts = projection.split("-")
  if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
    raise hf_lib.PretrainedError(
        f"config.json: feed_forward_proj={projection!r} is not supported "
        "('relu', 'gated-gelu', 'gated-silu', ...)")
  gated = len(parts) == 2
  act = "gelu_new" if projection == "gated-gelu" else parts[-1]
  heads, d_kv = get("num_heads"), get("d_kv")
  # transformers >= 5 writes scale_decoder_outputs; older files only
  # tie_word_embeddings (False for v1.1: no scaling).
  scale = hf.get("scale_decoder_outputs",
                 hf.get("tie_word_embeddings", True) is not False)
  untied = untied_lm_head(tensors)
  dropout = hf.get("dropout_rate", 0.1)
  return TransformerConfig(
      vocab_size=get("vocab_size"), share_embeddings=True,
      logits_via_embedding=not untied, logits_dense_bias=False,
      scale_decoder_outputs=bool(scale), emb_dim=get("d_model"),
      num_heads=heads, qkv_dim=heads * d_kv, mlp_dim=get("d_ff"),
      num_encoder_layers=get("num_layers"),
      num_decoder_layers=hf.get("num_decoder_layers") or get("num_layers"),
      max_len=hf.get("n_positions", 512), position_embedding="none",
      pre_layernorm=True, norm="rmsnorm",
      activation=hf_lib.activation(act, family), mlp_gated=gated,
      mlp_bias=False, use_bias=False, scale_attention=False,
      relative_position_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_position_max_distance=hf.get(
          "relative_attention_max_distance", 128),
      layernorm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
      dropout_rate=dropout, attention_dropout_rate=dropout,
      scale_embeddings=False, pad_id=hf.get("pad_token_id", 0),
      decoder_start_id=hf.get("decoder_start_token_id",
                              hf.get("pad_token_id", 0)))


def _mlp(cfg: TransformerConfig, ours: str, hf: str) -> list[Weight]:
  if cfg.mlp_gated:
    out = hf_lib.dense_weights(f"{ours}/intermediate", f"{hf}.wi_0", False)
    out += hf_lib.dense_weights(f"{ours}/intermediate_linear", f"{hf}.wi_1",
                                False)
  else:
    out = hf_lib.dense_weights(f"{ours}/intermediate", f"{hf}.wi", False)
  return out + hf_lib.dense_weights(f"{ours}/output", f"{hf}.wo", False)


def weight_table(cfg: TransformerConfig) -> list[Weight]:
  heads = cfg.num_heads
  table = [Weight("encoder/embedder/token_embed/embedding", "shared.weight",
                  "copy")]
  for stack, layers in (("encoder", cfg.num_encoder_layers),
                        ("decoder", cfg.num_decoder_layers)):
    table.append(Weight(
        f"{stack}/relative_position_bias/embedding",
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"
        ".weight", "copy"))
    for i in range(layers):
      ours, hf = f"{stack}/layers_{i}", f"{stack}.block.{i}"
      self_name = "attention" if stack == "encoder" else "self_attention"
      table += hf_lib.attention_weights(
          f"{ours}/{self_name}", f"{hf}.layer.0.SelfAttention", heads,
          T5_NAMES, bias=False)
      table += hf_lib.norm_weights(f"{ours}/{self_name}_norm",
                                   f"{hf}.layer.0.layer_norm", bias=False)
      mlp_layer = 1
      if stack == "decoder":
        table += hf_lib.attention_weights(
            f"{ours}/cross_attention", f"{hf}.layer.1.EncDecAttention", heads,
            T5_NAMES, bias=False)
        table += hf_lib.norm_weights(f"{ours}/cross_attention_norm",
                                     f"{hf}.layer.1.layer_norm", bias=False)
        mlp_layer = 2
      table += _mlp(cfg, f"{ours}/mlp",
                    f"{hf}.layer.{mlp_layer}.DenseReluDense")
      table += hf_lib.norm_weights(f"{ours}/mlp_norm",
                                   f"{hf}.layer.{mlp_layer}.layer_norm",
                                   bias=False)
    table += hf_lib.norm_weights(f"{stack}/{stack}_norm",
                                 f"{stack}.final_layer_norm", bias=False)
  if not cfg.logits_via_embedding:
    table += hf_lib.dense_weights("decoder/logits_dense", "lm_head", False)
  return table


def ignored(tensors: dict, cfg: TransformerConfig):
  """The names known but not imported (after checking the tied copies)."""
  hf_lib.check_aliases(tensors, "shared.weight", ALIASES)
  tied = ALIASES + (("lm_head.weight",) if cfg.logits_via_embedding else ())
  return lambda name: name in tied or name in IGNORED


def eos_id(hf: dict) -> int:
  return hf.get("eos_token_id", EOS_ID)
