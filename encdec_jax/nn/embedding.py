"""Input embeddings: tokens (+ tied logits), positions, token types."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.dropout import Dropout
from encdec_jax.nn.norms import make_norm
from encdec_jax.nn import precision


def sinusoidal_table(max_len: int, dim: int) -> np.ndarray:
  """max_len x dim: sin in the first half of features, cos in the second."""
  positions_Lx1 = np.arange(max_len)[:, None]
  inv_timescales = 1.0 / 10_000 ** (np.arange(dim // 2) / (dim // 2 - 1 or 1))
  angles_LxH = positions_Lx1 * inv_timescales[None, :]
  return np.concatenate([np.sin(angles_LxH), np.cos(angles_LxH)], axis=1)


def marian_sinusoidal_table(max_len: int, dim: int) -> np.ndarray:
  """max_len x dim float32 in Hugging Face Marian's layout (its
  MarianSinusoidalPositionalEmbedding, computed the same way in float64, so
  bit-identical): column j < dim/2 is sin(p / 10000^(2j/dim)), column
  dim/2 + j the cos of the same angle."""
  angles = np.array([[pos / np.power(10000, 2 * (j // 2) / dim)
                      for j in range(dim)] for pos in range(max_len)])
  out = np.empty((max_len, dim), np.float32)
  sentinel = dim // 2 if dim % 2 == 0 else dim // 2 + 1
  out[:, :sentinel] = np.sin(angles[:, 0::2]).astype(np.float32)
  out[:, sentinel:] = np.cos(angles[:, 1::2]).astype(np.float32)
  return out


def make_token_embed(config: TransformerConfig, vocab_size: int) -> nn.Embed:
  """Token table; init scale matches `config.scale_embeddings` (see config)."""
  stddev = config.emb_dim ** -0.5 if config.scale_embeddings else 1.0
  return nn.Embed(
      num_embeddings=vocab_size, features=config.emb_dim, dtype=config.dtype,
      param_dtype=config.param_dtype,
      embedding_init=nn.initializers.normal(stddev=stddev))


class PositionEmbedding(nn.Module):
  """1xLxD position embeddings, sinusoidal (no params, either layout) or
  learned (max_len + config.position_offset rows; position p reads row
  p + position_offset, as BART's offset of 2).

  With decode=True the single step's position is read from (and advanced in)
  `cache/cache_index`, as the Flax WMT example's AddPositionEmbs does.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, length: int, *, decode: bool = False,
               positions_BxL=None) -> jax.Array:
    """1xLxD; with positions_BxL (packed rows: each segment counts from 0)
    BxLxD, the rows of those positions."""
    cfg = self.config
    if length > cfg.max_len:
      raise ValueError(f"Sequence length {length} > max_len={cfg.max_len}.")
    offset = 0
    if cfg.position_embedding == "learned":
      offset = cfg.position_offset
      table_LxD = self.param("pos_embedding",
                             nn.initializers.normal(stddev=0.02),
                             (cfg.max_len + offset, cfg.emb_dim),
                             cfg.param_dtype)
    elif cfg.position_embedding == "sinusoidal_marian":
      table_LxD = jnp.asarray(
          marian_sinusoidal_table(cfg.max_len, cfg.emb_dim), cfg.param_dtype)
    else:
      table_LxD = jnp.asarray(sinusoidal_table(cfg.max_len, cfg.emb_dim),
                              cfg.param_dtype)
    table_LxD = table_LxD.astype(cfg.dtype)
    if decode:
      is_initialized = self.has_variable("cache", "cache_index")
      cache_index = self.variable("cache", "cache_index",
                                  lambda: jnp.array(0, jnp.int32))
      if is_initialized:  # Real steps (1, or k at once) from the index on.
        index = cache_index.value
        cache_index.value = index + length
        return lax.dynamic_slice_in_dim(table_LxD, index + offset,
                                        length)[None]
    if positions_BxL is not None:
      return jnp.take(table_LxD, positions_BxL + offset, axis=0)
    return table_LxD[None, offset:offset + length]


class Embedder(nn.Module):
  """Token + position (+ token type) embedding, optional LayerNorm, dropout.

  `shared_token_embed`: an nn.Embed owned by another module (the encoder's),
  used instead of creating `token_embed` here, so tied params live in one place.
  """
  config: TransformerConfig
  vocab_size: int
  num_token_types: int = 0
  shared_token_embed: nn.Embed | None = None

  def setup(self):
    cfg = self.config
    if self.shared_token_embed is None:
      self.token_embed = make_token_embed(cfg, self.vocab_size)
    if cfg.position_embedding != "none":
      self.position_embed = PositionEmbedding(cfg)
    if self.num_token_types > 0:
      self.token_type_embed = nn.Embed(
          num_embeddings=self.num_token_types, features=cfg.emb_dim,
          dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          embedding_init=nn.initializers.normal(stddev=0.02))
    if cfg.embedding_layernorm:
      self.embedding_norm = make_norm(cfg)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def _token_table(self) -> nn.Embed:
    if self.shared_token_embed is not None:
      return self.shared_token_embed
    return self.token_embed

  def __call__(self, tokens_BxL, token_types_BxL=None, *, decode: bool = False,
               deterministic: bool = True, positions_BxL=None) -> jax.Array:
    cfg = self.config
    x_BxLxD = self._token_table()(tokens_BxL)
    if cfg.scale_embeddings:
      x_BxLxD = x_BxLxD * cfg.emb_dim ** 0.5
    if cfg.position_embedding != "none":
      x_BxLxD = x_BxLxD + self.position_embed(tokens_BxL.shape[1],
                                              decode=decode,
                                              positions_BxL=positions_BxL)
    if self.num_token_types > 0:
      if token_types_BxL is None:
        token_types_BxL = jnp.zeros_like(tokens_BxL)
      x_BxLxD = x_BxLxD + self.token_type_embed(token_types_BxL)
    elif token_types_BxL is not None:
      raise ValueError("token_types given but config.num_token_types == 0.")
    if cfg.embedding_layernorm:
      x_BxLxD = self.embedding_norm(x_BxLxD)
    return self.dropout(x_BxLxD, deterministic=deterministic)

  def attend(self, x_BxLxD) -> jax.Array:
    """Tied logits BxLxV: dot products with every token embedding.

    Rescaled by emb_dim^-0.5 iff config.scale_decoder_outputs is None and
    not scale_embeddings (the table is ~N(0, 1)); with scale_decoder_outputs
    set, the decoder scales its output itself (or not) before this."""
    cfg = self.config
    table = self._token_table()
    if precision.is_low(cfg.dtype):  # float32 accumulation (nn/precision.py)
      logits_BxLxV = precision.einsum("bld,vd->blv", x_BxLxD,
                                      table.embedding, cfg.dtype)
    else:
      logits_BxLxV = table.attend(x_BxLxD)
    if cfg.scale_decoder_outputs is None and not cfg.scale_embeddings:
      logits_BxLxV = logits_BxLxV * cfg.emb_dim ** -0.5
    return logits_BxLxV
