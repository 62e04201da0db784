"""Hyperparameters of the Transformer encoder-decoder (all nn modules)."""
import dataclasses
from typing import Any

import jax.numpy as jnp

ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
POSITION_EMBEDDINGS = ("sinusoidal", "learned")
REMAT_POLICIES = ("none", "full", "dots", "dots_all")
# The fields that determine the encoder's parameters and its function: an
# encoder checkpoint is only valid for a model that agrees on all of them
# (dropout rates and compute dtype are free to differ).
ENCODER_FIELDS = ("vocab_size", "emb_dim", "num_heads", "qkv_dim", "mlp_dim",
                  "num_encoder_layers", "max_len", "position_embedding",
                  "num_token_types", "embedding_layernorm", "pre_layernorm",
                  "activation", "layernorm_epsilon", "use_bias",
                  "scale_embeddings", "param_dtype", "causal")


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
    if self.qkv_dim % self.num_heads:
      raise ValueError(f"qkv_dim={self.qkv_dim} is not divisible by "
                       f"num_heads={self.num_heads}.")
    if self.activation not in ACTIVATIONS:
      raise ValueError(
          f"activation={self.activation!r} is not one of {ACTIVATIONS}.")
    if self.position_embedding not in POSITION_EMBEDDINGS:
      raise ValueError(f"position_embedding={self.position_embedding!r} is "
                       f"not one of {POSITION_EMBEDDINGS}.")
    if self.position_embedding == "sinusoidal" and self.emb_dim % 2:
      raise ValueError(
          f"sinusoidal positions need an even emb_dim, got {self.emb_dim}.")
    if self.num_token_types < 0:
      raise ValueError(
          f"num_token_types must be >= 0, got {self.num_token_types}.")
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

  def encoder_fields(self) -> dict:
    """The encoder's architecture as a JSON-able dict (see ENCODER_FIELDS)."""
    out = {k: getattr(self, k) for k in ENCODER_FIELDS}
    out["param_dtype"] = jnp.dtype(self.param_dtype).name
    return out

  def replace(self, **changes) -> "TransformerConfig":
    return dataclasses.replace(self, **changes)
