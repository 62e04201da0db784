"""Input embeddings: tokens (+ tied logits), positions, token types."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.dropout import Dropout


def sinusoidal_table(max_len: int, dim: int) -> np.ndarray:
  """max_len x dim: sin in the first half of features, cos in the second."""
  positions_Lx1 = np.arange(max_len)[:, None]
  inv_timescales = 1.0 / 10_000 ** (np.arange(dim // 2) / (dim // 2 - 1 or 1))
  angles_LxH = positions_Lx1 * inv_timescales[None, :]
  return np.concatenate([np.sin(angles_LxH), np.cos(angles_LxH)], axis=1)


def make_token_embed(config: TransformerConfig, vocab_size: int) -> nn.Embed:
  """Token table; init scale matches `config.scale_embeddings` (see config)."""
  stddev = config.emb_dim ** -0.5 if config.scale_embeddings else 1.0
  return nn.Embed(
      num_embeddings=vocab_size, features=config.emb_dim, dtype=config.dtype,
      param_dtype=config.param_dtype,
      embedding_init=nn.initializers.normal(stddev=stddev))


class PositionEmbedding(nn.Module):
  """1xLxD position embeddings, sinusoidal (no params) or learned.

  With decode=True the single step's position is read from (and advanced in)
  `cache/cache_index`, as the Flax WMT example's AddPositionEmbs does.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, length: int, *, decode: bool = False) -> jax.Array:
    cfg = self.config
    if length > cfg.max_len:
      raise ValueError(f"Sequence length {length} > max_len={cfg.max_len}.")
    if cfg.position_embedding == "learned":
      table_LxD = self.param("pos_embedding",
                             nn.initializers.normal(stddev=0.02),
                             (cfg.max_len, cfg.emb_dim), cfg.param_dtype)
    else:
      table_LxD = jnp.asarray(sinusoidal_table(cfg.max_len, cfg.emb_dim),
                              cfg.param_dtype)
    table_LxD = table_LxD.astype(cfg.dtype)
    if decode:
      is_initialized = self.has_variable("cache", "cache_index")
      cache_index = self.variable("cache", "cache_index",
                                  lambda: jnp.array(0, jnp.int32))
      if is_initialized:  # One real step: the position is the step index.
        index = cache_index.value
        cache_index.value = index + 1
        return lax.dynamic_slice_in_dim(table_LxD, index, 1)[None]
    return table_LxD[None, :length]


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
    self.position_embed = PositionEmbedding(cfg)
    if self.num_token_types > 0:
      self.token_type_embed = nn.Embed(
          num_embeddings=self.num_token_types, features=cfg.emb_dim,
          dtype=cfg.dtype, param_dtype=cfg.param_dtype,
          embedding_init=nn.initializers.normal(stddev=0.02))
    if cfg.embedding_layernorm:
      self.embedding_norm = nn.LayerNorm(
          epsilon=cfg.layernorm_epsilon, dtype=cfg.dtype,
          param_dtype=cfg.param_dtype)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def _token_table(self) -> nn.Embed:
    if self.shared_token_embed is not None:
      return self.shared_token_embed
    return self.token_embed

  def __call__(self, tokens_BxL, token_types_BxL=None, *, decode: bool = False,
               deterministic: bool = True) -> jax.Array:
    cfg = self.config
    x_BxLxD = self._token_table()(tokens_BxL)
    if cfg.scale_embeddings:
      x_BxLxD = x_BxLxD * cfg.emb_dim ** 0.5
    x_BxLxD = x_BxLxD + self.position_embed(tokens_BxL.shape[1], decode=decode)
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
    """Tied logits BxLxV: dot products with every token embedding."""
    logits_BxLxV = self._token_table().attend(x_BxLxD)
    if not self.config.scale_embeddings:  # Table is ~N(0, 1): rescale to O(1).
      logits_BxLxV = logits_BxLxV * self.config.emb_dim ** -0.5
    return logits_BxLxV
