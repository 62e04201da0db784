"""Hyperparameters of the Transformer encoder-decoder (all nn modules)."""
import dataclasses
from typing import Any

import jax.numpy as jnp

from encdec_jax.nn import copy_head

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")
# sinusoidal: Flax WMT / tensor2tensor layout; sinusoidal_marian: Hugging
# Face Marian's (see embedding.marian_sinusoidal_table); none: no absolute
# positions (T5, which has relative_position_buckets instead).
POSITION_EMBEDDINGS = ("sinusoidal", "learned", "sinusoidal_marian", "none")
NORMS = ("layernorm", "rmsnorm")
REMAT_POLICIES = ("none", "full", "dots", "dots_all")
# The fields that determine the encoder's parameters and its function: an
# encoder checkpoint is only valid for a model that agrees on all of them
# (dropout rates and compute dtype are free to differ).
ENCODER_FIELDS = ("vocab_size", "emb_dim", "num_heads", "qkv_dim", "mlp_dim",
                  "num_encoder_layers", "max_len", "position_embedding",
                  "num_token_types", "embedding_layernorm", "pre_layernorm",
                  "activation", "layernorm_epsilon", "use_bias",
                  "scale_embeddings", "param_dtype", "causal",
                  # Added for pretrained encoder-decoders; specs
                  # saved before them have their defaults.
                  "norm", "mlp_bias", "mlp_gated", "scale_attention",
                  "relative_position_buckets",
                  "relative_position_max_distance", "position_offset",
                  "pad_id")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Encoder-decoder architecture; `deterministic`/`decode` are call args.

  Embedding scale conventions (`scale_embeddings`):
    False: token table ~ N(0, 1), tied logits divided by sqrt(emb_dim)
           (Flax WMT).
    True:  token table ~ N(0, 1/emb_dim), inputs multiplied by sqrt(emb_dim),
           tied logits unscaled (Vaswani et al.).
  Both keep embedding inputs and tied logits at unit scale at initialisation.
  """
  vocab_size: int
  output_vocab_size: int | None = None  # None: same as vocab_size.
  share_embeddings: bool = True  # Decoder reads the encoder's token table.
  logits_via_embedding: bool = True  # Tied output projection.
  emb_dim: int = 256
  num_heads: int = 4
  qkv_dim: int = 256
  mlp_dim: int = 1024
  num_encoder_layers: int = 3
  num_decoder_layers: int = 3
  max_len: int = 256
  position_embedding: str = "sinusoidal"  # "sinusoidal" | "learned"
  num_token_types: int = 0  # >0 adds BERT-style segment embeddings (encoder).
  embedding_layernorm: bool = False  # LayerNorm after the embedding sum (BERT).
  pre_layernorm: bool = True  # False: post-LN (original Transformer, BERT).
  activation: str = "relu"  # "relu" | "gelu" (exact erf) | "gelu_tanh"
  layernorm_epsilon: float = 1e-6
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  use_bias: bool = True  # Biases of the q/k/v/out projections.
  dtype: Any = jnp.float32  # Compute dtype.
  param_dtype: Any = jnp.float32
  scale_embeddings: bool = False
  # Encoder self-attention is causal (decoder-only LM, its ULMFiT classifier).
  causal: bool = False
  # Rematerialisation of each block in the backward pass: "none", "full"
  # (save nothing), "dots" (save matmul outputs without batch dims,
  # jax.checkpoint_policies.dots_with_no_batch_dims_saveable), "dots_all"
  # (save every matmul output). Changes memory and time, not the values.
  remat: str = "none"
  # The layers of each stack as one nn.scan over stacked params (compiles
  # one layer instead of N). Its param tree differs: encoder/layers/<block>/
  # ... with a leading num_layers axis instead of layers_{i}/..., so its
  # checkpoints and encoders do not load into an unscanned model (and back).
  scan_layers: bool = False
  # Pointer-generator copy head (nn/copy_head.py): the decoder returns the
  # log-probabilities of p_gen * vocabulary + (1 - p_gen) * the pointer's
  # attention scattered onto the source ids (shared vocabulary needed). The
  # pointer is decoder layer copy_layer's cross-attention, mean of its first
  # copy_heads heads (0: all). Off: the model is exactly the one without.
  copy: bool = False
  copy_layer: int = -1
  copy_heads: int = 1

  # Knobs of pretrained encoder-decoders (T5 / Flan-T5, BART, Marian; see
  # encdec_jax/pretrained/). Their defaults are the architecture above.
  # "layernorm" (mean and variance, scale and bias) or "rmsnorm" (T5: scale
  # only, no mean subtraction, statistics in float32).
  norm: str = "layernorm"
  mlp_bias: bool = True  # Biases of the MLP's dense layers.
  # Gated MLP (T5 v1.1, Flan-T5, mT5): act(intermediate(x)) *
  # intermediate_linear(x) -> output.
  mlp_gated: bool = False
  # Queries times head_dim^-0.5; False: unscaled dot products (T5).
  scale_attention: bool = True
  # > 0: T5's bucketed relative position bias in self-attention, this many
  # buckets (bidirectional in the encoder, causal in the decoder), one
  # (buckets x heads) table per stack shared by all its layers, none in
  # cross-attention. Distances >= relative_position_max_distance share the
  # last bucket.
  relative_position_buckets: int = 0
  relative_position_max_distance: int = 128
  # Learned position tables have max_len + position_offset rows and position
  # p reads row p + position_offset (BART: 2).
  position_offset: int = 0
  # The decoder's head count and MLP width, when they differ from the
  # encoder's (BART, Marian); None: num_heads / mlp_dim.
  num_decoder_heads: int | None = None
  decoder_mlp_dim: int | None = None
  # Decoder output times emb_dim^-0.5 before the logits (T5 with tied
  # embeddings). None: the scale_embeddings convention above (tied logits
  # rescaled iff not scale_embeddings); True/False: always / never, tied or
  # not.
  scale_decoder_outputs: bool | None = None
  logits_dense_bias: bool = True  # Bias of logits_dense (untied logits).
  # A learned bias added to the logits, tied or not (BART, Marian).
  final_logits_bias: bool = False
  # The padding id (masked in the encoder) and the decoder's start id
  # (None: pad_id). BART: 1 and 2 (EOS); Marian: the last id for both.
  pad_id: int = 0
  decoder_start_id: int | None = None

  def __post_init__(self):
    if self.vocab_size <= 0:
      raise ValueError(f"vocab_size must be positive, got {self.vocab_size}.")
    if self.output_vocab_size is not None and self.output_vocab_size <= 0:
      raise ValueError(
          f"output_vocab_size must be positive, got {self.output_vocab_size}.")
    if self.share_embeddings and self.decoder_vocab_size != self.vocab_size:
      raise ValueError(
          "share_embeddings needs output_vocab_size == vocab_size, got "
          f"{self.output_vocab_size} != {self.vocab_size}.")
    for name in ("num_heads", "num_decoder_heads"):
      heads = getattr(self, name)
      if heads is not None and self.qkv_dim % heads:
        raise ValueError(f"qkv_dim={self.qkv_dim} is not divisible by "
                         f"{name}={heads}.")
    if self.norm not in NORMS:
      raise ValueError(f"norm={self.norm!r} is not one of {NORMS}.")
    if self.relative_position_buckets < 0 or (
        self.relative_position_buckets
        and self.relative_position_max_distance < 1):
      raise ValueError(
          "relative_position_buckets must be >= 0 and "
          "relative_position_max_distance >= 1, got "
          f"{self.relative_position_buckets} and "
          f"{self.relative_position_max_distance}.")
    if self.position_offset < 0:
      raise ValueError(
          f"position_offset must be >= 0, got {self.position_offset}.")
    for name, size in (("pad_id", self.vocab_size),
                       ("decoder_start_id", self.decoder_vocab_size)):
      value = getattr(self, name)
      if value is not None and not 0 <= value < size:
        raise ValueError(
            f"{name}={value} is not an id of the {size}-token vocabulary.")
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"activation={self.activation!r} is not one of {ACTIVATIONS}.")
    if self.position_embedding not in POSITION_EMBEDDINGS:
      raise ValueError(f"position_embedding={self.position_embedding!r} is "
                       f"not one of {POSITION_EMBEDDINGS}.")
    if self.position_embedding.startswith("sinusoidal") and self.emb_dim % 2:
      raise ValueError(
          f"sinusoidal positions need an even emb_dim, got {self.emb_dim}.")
    if self.num_token_types < 0:
      raise ValueError(
          f"num_token_types must be >= 0, got {self.num_token_types}.")
    copy_head.check_copy_config(
        self, self.num_decoder_layers,
        getattr(self, "num_decoder_heads", None) or self.num_heads)
    if self.remat not in REMAT_POLICIES:
      raise ValueError(
          f"remat={self.remat!r} is not one of {REMAT_POLICIES}.")
    for name in ("dropout_rate", "attention_dropout_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(
            f"{name} must be in [0, 1), got {getattr(self, name)}.")

  @property
  def decoder_vocab_size(self) -> int:
    """Size of the target vocabulary (decoder inputs and logits)."""
    if self.output_vocab_size is None:
      return self.vocab_size
    return self.output_vocab_size

  @property
  def head_dim(self) -> int:
    return self.qkv_dim // self.num_heads

  @property
  def start_id(self) -> int:
    """The decoder's first input token (decoder_start_id, else pad_id)."""
    return self.pad_id if self.decoder_start_id is None else (
        self.decoder_start_id)

  def decoder_config(self) -> "TransformerConfig":
    """The config the decoder's blocks see: num_decoder_heads and
    decoder_mlp_dim in place of num_heads and mlp_dim."""
    if self.num_decoder_heads is None and self.decoder_mlp_dim is None:
      return self
    return self.replace(
        num_heads=self.num_decoder_heads or self.num_heads,
        mlp_dim=self.decoder_mlp_dim or self.mlp_dim,
        num_decoder_heads=None, decoder_mlp_dim=None)

  def encoder_fields(self) -> dict:
    """The encoder's architecture as a JSON-able dict (see ENCODER_FIELDS)."""
    out = {k: getattr(self, k) for k in ENCODER_FIELDS}
    out["param_dtype"] = jnp.dtype(self.param_dtype).name
    return out

  def replace(self, **changes) -> "TransformerConfig":
    return dataclasses.replace(self, **changes)
