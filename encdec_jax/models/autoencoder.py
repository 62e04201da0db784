"""Image autoencoders: an encoder to a bottleneck vector, a decoder back.

  params = {"encoder": ..., "decoder": ...}
  z_BxZ = model.apply({"params": params}, images_BxHxWxC, method="encode")
  logits_BxHxWxC = model.apply({"params": params}, z_BxZ, method="decode")

Two families:
  "mlp":  flatten -> (Dense + relu) per hidden_dims -> Dense bottleneck; the
          decoder mirrors it and ends in a Dense to H*W*C logits.
  "conv": Conv 3x3 + relu per conv_features, the first at stride 1 and each
          later one at stride 2 (SAME padding, so a side n becomes ceil(n/2)),
          giving a grid of region vectors BxH'xW'xC' (ConvEncoder.features,
          for attention over image regions); flatten -> Dense bottleneck. The
          decoder: Dense -> reshape to the grid -> ConvTranspose stride 2 +
          relu per level -> crop to HxW (upsampling ceil'ed sides overshoots
          odd sizes, e.g. 7 -> 4 -> 8) -> Conv 3x3 to C channels.
The decoder gives float32 logits: sigmoid(logits) is the image in [0, 1].
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

FAMILIES = ("mlp", "conv")


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  family: str = "mlp"  # "mlp" | "conv"
  image_shape: tuple[int, int, int] = (8, 8, 1)  # (H, W, C)
  hidden_dims: tuple[int, ...] = (256, 128)  # mlp: encoder widths, in order
  conv_features: tuple[int, ...] = (16, 32)  # conv: channels per level
  bottleneck_dim: int = 32
  dtype: Any = jnp.float32  # computation
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    # Lists from JSON/ConfigDicts become tuples: the config stays hashable.
    for name in ("image_shape", "hidden_dims", "conv_features"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    if self.family not in FAMILIES:
      raise ValueError(f"family={self.family!r} is not known; use one of "
                       f"{FAMILIES}.")
    if len(self.image_shape) != 3 or min(self.image_shape) <= 0:
      raise ValueError(f"image_shape={self.image_shape} must be 3 positive "
                       "sizes (H, W, C), e.g. (8, 8, 1).")
    if self.bottleneck_dim <= 0:
      raise ValueError(f"bottleneck_dim must be positive, got "
                       f"{self.bottleneck_dim}; use e.g. 16 or 32.")
    widths = self.hidden_dims if self.family == "mlp" else self.conv_features
    name = "hidden_dims" if self.family == "mlp" else "conv_features"
    if not widths or min(widths) <= 0:
      raise ValueError(f"{name}={widths} must be one or more positive sizes "
                       f"for family {self.family!r}, e.g. (256, 128) or "
                       "(16, 32).")

  def grid_shape(self) -> tuple[int, int, int]:
    """(H', W', C') of the conv encoder's region grid."""
    h, w, _ = self.image_shape
    for _ in self.conv_features[1:]:
      h, w = -(-h // 2), -(-w // 2)
    return h, w, self.conv_features[-1]

  def encoder_fields(self) -> dict:
    """What fixes the encoder's params, as a JSON-able dict (its spec)."""
    out = {"family": f"autoencoder_{self.family}",
           "image_shape": list(self.image_shape),
           "bottleneck_dim": self.bottleneck_dim,
           "param_dtype": jnp.dtype(self.param_dtype).name}
    if self.family == "mlp":
      out["hidden_dims"] = list(self.hidden_dims)
    else:
      out["conv_features"] = list(self.conv_features)
    return out

  def replace(self, **changes) -> "AutoencoderConfig":
    return dataclasses.replace(self, **changes)


def _dense(cfg: AutoencoderConfig, features: int,
           name: str | None = None) -> nn.Dense:
  return nn.Dense(features, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                  name=name)


class MLPEncoder(nn.Module):
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, images_BxHxWxC) -> jax.Array:
    cfg = self.config
    x_BxD = images_BxHxWxC.reshape(images_BxHxWxC.shape[0], -1)
    for i, width in enumerate(cfg.hidden_dims):
      x_BxD = nn.relu(_dense(cfg, width, f"hidden_{i}")(x_BxD))
    return _dense(cfg, cfg.bottleneck_dim, "bottleneck")(x_BxD)


class MLPDecoder(nn.Module):
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, z_BxZ) -> jax.Array:
    cfg = self.config
    x_BxD = z_BxZ
    for i, width in enumerate(reversed(cfg.hidden_dims)):
      x_BxD = nn.relu(_dense(cfg, width, f"hidden_{i}")(x_BxD))
    pixels = math.prod(cfg.image_shape)
    logits_BxP = _dense(cfg, pixels, "pixels")(x_BxD)
    return logits_BxP.reshape((z_BxZ.shape[0],) + cfg.image_shape)


class ConvEncoder(nn.Module):
  config: AutoencoderConfig

  def setup(self):
    cfg = self.config
    self.convs = [nn.Conv(f, (3, 3), strides=1 if i == 0 else 2,
                          padding="SAME", dtype=cfg.dtype,
                          param_dtype=cfg.param_dtype)
                  for i, f in enumerate(cfg.conv_features)]
    self.bottleneck = _dense(cfg, cfg.bottleneck_dim)

  def features(self, images_BxHxWxC) -> jax.Array:
    """The grid of region vectors BxH'xW'xC' (config.grid_shape())."""
    x = images_BxHxWxC.astype(self.config.dtype)
    for conv in self.convs:
      x = nn.relu(conv(x))
    return x

  def __call__(self, images_BxHxWxC) -> jax.Array:
    grid_BxGhxGwxF = self.features(images_BxHxWxC)
    return self.bottleneck(
        grid_BxGhxGwxF.reshape(grid_BxGhxGwxF.shape[0], -1))


class ConvDecoder(nn.Module):
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, z_BxZ) -> jax.Array:
    cfg = self.config
    grid = cfg.grid_shape()
    x = _dense(cfg, math.prod(grid), "grid")(z_BxZ)
    x = nn.relu(x).reshape((z_BxZ.shape[0],) + grid)
    for i, f in enumerate(reversed(cfg.conv_features[:-1])):
      x = nn.relu(nn.ConvTranspose(
          f, (3, 3), strides=(2, 2), padding="SAME", dtype=cfg.dtype,
          param_dtype=cfg.param_dtype, name=f"up_{i}")(x))
    h, w, c = cfg.image_shape
    x = x[:, :h, :w]
    return nn.Conv(c, (3, 3), padding="SAME", dtype=cfg.dtype,
                   param_dtype=cfg.param_dtype, name="pixels")(x)


class Autoencoder(nn.Module):
  config: AutoencoderConfig

  def setup(self):
    cfg = self.config
    mlp = cfg.family == "mlp"
    self.encoder = MLPEncoder(cfg) if mlp else ConvEncoder(cfg)
    self.decoder = MLPDecoder(cfg) if mlp else ConvDecoder(cfg)

  def encode(self, images_BxHxWxC, *, deterministic: bool = True) -> jax.Array:
    """images (in [0, 1]) -> z_BxZ."""
    del deterministic  # No dropout; kept for the codebase's model contract.
    return self.encoder(images_BxHxWxC.astype(self.config.dtype))

  def features(self, images_BxHxWxC) -> jax.Array:
    """conv only: the encoder's grid of region vectors BxH'xW'xC'."""
    if self.config.family != "conv":
      raise ValueError("features needs family='conv'; an MLP encoder has no "
                       "region grid.")
    return self.encoder.features(images_BxHxWxC)

  def decode(self, z_BxZ, *, deterministic: bool = True) -> jax.Array:
    """z_BxZ -> float32 reconstruction logits BxHxWxC."""
    del deterministic
    return self.decoder(z_BxZ.astype(self.config.dtype)).astype(jnp.float32)

  def __call__(self, images_BxHxWxC, *,
               deterministic: bool = True) -> jax.Array:
    """float32 reconstruction logits BxHxWxC."""
    return self.decode(self.encode(images_BxHxWxC, deterministic=deterministic),
                       deterministic=deterministic)
