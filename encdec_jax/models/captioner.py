"""Image captioning with soft attention over image regions (Show, Attend and
Tell; Xu et al. 2015): a conv encoder's grid of region vectors is the memory
that an LSTM (additive attention) or a Transformer decoder (cross-attention)
attends to while it writes the caption.

The contract of EncoderDecoder, with images as inputs, so training, greedy /
beam / sampling decoding (init_cache and make_tokens_to_logits), optimizer
partitions and encoder checkpoints work unchanged:

  model = Captioner(CaptionerConfig(decoder=RNNConfig(vocab_size=32,
                                    share_embeddings=False)))
  encoded = model.apply({"params": p}, images_BxHxWxC, method="encode")
  # encoded.hidden_BxSxD: the BxNxC' annotation vectors (N = H' * W' regions,
  # row-major), encoded.mask_BxS: all True.
  logits_BxTxV = model.apply({"params": p}, images_BxHxWxC, targets_in_BxT)

Params:
  encoder/convs_{i}/{kernel,bias}   autoencoder.ConvEncoder, features only:
      its `bottleneck` is never called, so it has no params here, and the
      tree is exactly a conv autoencoder's encoder without its bottleneck:
      `load_encoder` reads an autoencoder's encoder bit for bit (and ignores
      the bottleneck; checkpoint/encoder_spec.py).
  decoder/regions/{project,row_embed,col_embed}   (nn/regions.py) the
      annotation vectors projected to the decoder's width, plus where each
      region is. In the decoder, so a frozen pretrained encoder still gets a
      trainable adapter, and the encoder's params do not depend on the canvas.
  decoder/...                        RNNDecoder or TransformerDecoder (own
      token table: there is no encoder token table to share).

Attention weights are sown where the text models sow them
(reports/attention.py's cross_attention reads both): intermediates/decoder/
attention_weights (RNN, BxTxN) or intermediates/decoder/layers_{i}/
cross_attention/attention_weights (Transformer, BxHxTxN).
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.models.autoencoder import AutoencoderConfig, ConvEncoder
from encdec_jax.models.contract import Encoded
from encdec_jax.nn.config import TransformerConfig
from encdec_jax.nn.recurrent import RNNConfig, RNNDecoder
from encdec_jax.nn.regions import RegionEmbedding
from encdec_jax.nn.transformer import TransformerDecoder

ENCODER_FAMILY = "conv_features"  # The spec family of a captioner's encoder.


@dataclasses.dataclass(frozen=True)
class CaptionerConfig:
  decoder: RNNConfig | TransformerConfig  # Its vocab is the caption vocab.
  image_shape: tuple[int, int, int] = (16, 40, 1)  # (H, W, C) of the canvas
  conv_features: tuple[int, ...] = (32, 64, 64)  # As AutoencoderConfig's.

  def __post_init__(self):
    for name in ("image_shape", "conv_features"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    if self.decoder.share_embeddings:
      raise ValueError("a captioner's encoder reads pixels and has no token "
                       "table to share; set "
                       "--config.model.share_embeddings=False.")
    self.conv_config()  # Checks image_shape and conv_features.

  @property
  def family(self) -> str:
    return "rnn" if isinstance(self.decoder, RNNConfig) else "transformer"

  def conv_config(self) -> AutoencoderConfig:
    """The conv autoencoder whose encoder this is (its bottleneck unused)."""
    return AutoencoderConfig(
        family="conv", image_shape=self.image_shape,
        conv_features=self.conv_features, dtype=self.decoder.dtype,
        param_dtype=self.decoder.param_dtype)

  def grid_shape(self) -> tuple[int, int]:
    """(H', W'): the region grid, H' * W' annotation vectors per image."""
    return self.conv_config().grid_shape()[:2]

  def encoder_fields(self) -> dict:
    """The encoder's spec: what fixes its params. The canvas size does not
    (convolutions), so an encoder moves between canvas sizes."""
    return {"family": ENCODER_FAMILY, "conv_features": list(self.conv_features),
            "channels": self.image_shape[2],
            "param_dtype": jnp.dtype(self.decoder.param_dtype).name}


class RegionRNNDecoder(RNNDecoder):
  """RNNDecoder over region vectors: its bridge starts from the mean region."""
  grid_shape: tuple[int, int] = (1, 1)

  def setup(self):
    super().setup()
    cfg = self.config
    self.regions = RegionEmbedding(cfg.hidden_dim, self.grid_shape,
                                   cfg.dtype, cfg.param_dtype)

  def __call__(self, targets_BxT, regions_BxNxC, valid_BxN, *,
               decode: bool = False, deterministic: bool = True) -> jax.Array:
    memory_BxNxM = self.regions(regions_BxNxC)
    return super().__call__(targets_BxT, memory_BxNxM, valid_BxN,
                            decode=decode, deterministic=deterministic,
                            summary_BxM=memory_BxNxM.mean(axis=1))


class RegionTransformerDecoder(TransformerDecoder):
  """TransformerDecoder whose cross-attention reads region vectors."""
  grid_shape: tuple[int, int] = (1, 1)

  def setup(self):
    super().setup()
    cfg = self.config
    self.regions = RegionEmbedding(cfg.emb_dim, self.grid_shape, cfg.dtype,
                                   cfg.param_dtype)

  def __call__(self, targets_BxT, regions_BxNxC, valid_BxN, *,
               decode: bool = False, deterministic: bool = True) -> jax.Array:
    return super().__call__(targets_BxT, self.regions(regions_BxNxC),
                            valid_BxN, decode=decode,
                            deterministic=deterministic)


class Captioner(nn.Module):
  config: CaptionerConfig

  def setup(self):
    cfg = self.config
    self.encoder = ConvEncoder(cfg.conv_config())
    decoder = (RegionRNNDecoder if cfg.family == "rnn"
               else RegionTransformerDecoder)
    self.decoder = decoder(cfg.decoder, grid_shape=cfg.grid_shape())

  def encode(self, images_BxHxWxC, *, token_types_BxS=None,
             deterministic: bool = True) -> Encoded:
    """images in [0, 1] -> the BxNxC' annotation vectors, all valid."""
    del deterministic  # The conv encoder has no dropout.
    if token_types_BxS is not None:
      raise ValueError("a captioner reads images; pass token_types_BxS=None.")
    if images_BxHxWxC.shape[1:] != self.config.image_shape:
      raise ValueError(f"images are {images_BxHxWxC.shape[1:]}, the model "
                       f"was built for {self.config.image_shape}.")
    grid_BxGhxGwxC = self.encoder.features(images_BxHxWxC)
    b, gh, gw, c = grid_BxGhxGwxC.shape
    return Encoded(hidden_BxSxD=grid_BxGhxGwxC.reshape(b, gh * gw, c),
                   mask_BxS=jnp.ones((b, gh * gw), bool))

  def decode(self, targets_BxT, encoded: Encoded, *, decode: bool = False,
             deterministic: bool = True) -> jax.Array:
    """Logits BxTxV for shifted-right captions; decode: Bx1, `cache` mutable."""
    return self.decoder(targets_BxT, encoded.hidden_BxSxD, encoded.mask_BxS,
                        decode=decode, deterministic=deterministic)

  def __call__(self, images_BxHxWxC, targets_in_BxT, *, token_types_BxS=None,
               deterministic: bool = True) -> jax.Array:
    encoded = self.encode(images_BxHxWxC, token_types_BxS=token_types_BxS,
                          deterministic=deterministic)
    return self.decode(targets_in_BxT, encoded, deterministic=deterministic)
