"""Recurrent (LSTM/GRU) encoder, additive attention and decoder.

Param layout:
  encoder/token_embed
  encoder/layers_{i}/{forward_rnn,backward_rnn}/cell/...   (bidirectional)
  encoder/layers_{i}/cell/...                              (unidirectional)
  decoder/token_embed                 (absent when embeddings are shared)
  decoder/bridge                      encoder summary -> initial carries
  decoder/attention/{query,key,energy}                     (additive only)
  decoder/layers_{i}/...              cells
  decoder/logits_dense

Sources must be right-padded (pad id 0): lengths are the count of real tokens.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec_jax.nn import copy_head
from encdec_jax.nn.dropout import Dropout

PAD_ID = 0  # Also the decoder start token.
CELLS = ("lstm", "gru")
ATTENTIONS = ("additive", "none")
# The fields that determine the encoder's params and function (see
# nn/config.py ENCODER_FIELDS); "family" keeps Transformer specs apart.
RNN_ENCODER_FIELDS = ("vocab_size", "emb_dim", "hidden_dim", "cell",
                      "bidirectional", "num_encoder_layers", "param_dtype")


@dataclasses.dataclass(frozen=True)
class RNNConfig:
  """Recurrent encoder-decoder; `deterministic`/`decode` are call args."""
  vocab_size: int
  output_vocab_size: int | None = None  # None: same as vocab_size.
  share_embeddings: bool = True  # Decoder reads the encoder's token table.
  emb_dim: int = 128
  hidden_dim: int = 256  # Per direction.
  cell: str = "lstm"  # "lstm" | "gru"
  bidirectional: bool = True  # Encoder only.
  num_encoder_layers: int = 1
  num_decoder_layers: int = 1
  attention: str = "additive"  # "additive" (Bahdanau) | "none" (bottleneck)
  attention_dim: int = 256
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32  # Compute dtype.
  param_dtype: Any = jnp.float32
  # Pointer-generator copy head over the additive attention (see
  # nn/copy_head.py): the decoder returns the log-probabilities of the
  # mixture. Needs attention="additive" and one vocabulary.
  copy: bool = False

  def __post_init__(self):
    if self.vocab_size <= 0:
      raise ValueError(f"vocab_size must be positive, got {self.vocab_size}.")
    if self.output_vocab_size is not None and self.output_vocab_size <= 0:
      raise ValueError(
          f"output_vocab_size must be positive, got {self.output_vocab_size}.")
    if self.share_embeddings and self.decoder_vocab_size != self.vocab_size:
      raise ValueError(
          "share_embeddings needs output_vocab_size == vocab_size, got "
          f"{self.output_vocab_size} != {self.vocab_size}; set "
          "share_embeddings=False.")
    if self.cell not in CELLS:
      raise ValueError(f"cell={self.cell!r} is not one of {CELLS}.")
    if self.attention not in ATTENTIONS:
      raise ValueError(
          f"attention={self.attention!r} is not one of {ATTENTIONS}.")
    for name in ("emb_dim", "hidden_dim", "attention_dim",
                 "num_encoder_layers", "num_decoder_layers"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(
          f"dropout_rate must be in [0, 1), got {self.dropout_rate}.")
    if self.copy and self.attention != "additive":
      raise ValueError("copy needs attention='additive' (the pointer is the "
                       f"attention), got attention={self.attention!r}.")
    copy_head.check_copy_config(self)

  @property
  def decoder_vocab_size(self) -> int:
    """Size of the target vocabulary (decoder inputs and logits)."""
    if self.output_vocab_size is None:
      return self.vocab_size
    return self.output_vocab_size

  @property
  def memory_dim(self) -> int:
    """Width of the encoder output: both directions concatenated."""
    return self.hidden_dim * (2 if self.bidirectional else 1)

  def encoder_fields(self) -> dict:
    """The encoder's architecture as a JSON-able dict (RNN_ENCODER_FIELDS)."""
    out = {"family": "rnn"}
    out.update({k: getattr(self, k) for k in RNN_ENCODER_FIELDS})
    out["param_dtype"] = jnp.dtype(self.param_dtype).name
    return out

  def replace(self, **changes) -> "RNNConfig":
    return dataclasses.replace(self, **changes)


def make_cell(cfg: RNNConfig) -> nn.RNNCellBase:
  cell = nn.OptimizedLSTMCell if cfg.cell == "lstm" else nn.GRUCell
  return cell(cfg.hidden_dim, dtype=cfg.dtype, param_dtype=cfg.param_dtype)


def make_embed(cfg: RNNConfig, vocab_size: int) -> nn.Embed:
  return nn.Embed(num_embeddings=vocab_size, features=cfg.emb_dim,
                  dtype=cfg.dtype, param_dtype=cfg.param_dtype)


def encoder_summary(hidden_BxSxH, valid_BxS, bidirectional: bool):
  """BxH: the forward state at the last real position, concatenated with
  the backward state at position 0 (which has read the whole source)."""
  last_B = jnp.maximum(valid_BxS.sum(-1) - 1, 0)
  at_last_BxH = jnp.take_along_axis(hidden_BxSxH, last_B[:, None, None],
                                    axis=1)[:, 0]
  if not bidirectional:
    return at_last_BxH
  half = hidden_BxSxH.shape[-1] // 2
  return jnp.concatenate([at_last_BxH[:, :half], hidden_BxSxH[:, 0, half:]],
                         axis=-1)


class RNNEncoder(nn.Module):
  """Token ids -> hidden_BxSxH' (H' = 2 * hidden_dim if bidirectional), zero
  at pads; owns its embeddings (self-contained params)."""
  config: RNNConfig

  def setup(self):
    cfg = self.config
    self.token_embed = make_embed(cfg, cfg.vocab_size)
    rnn = lambda: nn.RNN(make_cell(cfg))
    self.layers = [nn.Bidirectional(rnn(), rnn()) if cfg.bidirectional
                   else rnn() for _ in range(cfg.num_encoder_layers)]
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def __call__(self, inputs_BxS, *, deterministic: bool = True) -> jax.Array:
    valid_BxS = inputs_BxS != PAD_ID
    # seq_lengths: the backward direction starts at the last real token and
    # final carries ignore pads (needs right padding).
    lengths_B = valid_BxS.sum(-1)
    x_BxSxD = self.dropout(self.token_embed(inputs_BxS),
                           deterministic=deterministic)
    for i, layer in enumerate(self.layers):
      if i:
        x_BxSxD = self.dropout(x_BxSxD, deterministic=deterministic)
      x_BxSxD = layer(x_BxSxD, seq_lengths=lengths_B)
    # Pad outputs are junk computed after the sequence ended: zero them.
    return jnp.where(valid_BxS[..., None], x_BxSxD, 0).astype(self.config.dtype)


class BahdanauAttention(nn.Module):
  """Additive attention: score_j = v^T tanh(W_q s + W_k h_j)."""
  config: RNNConfig

  def setup(self):
    cfg = self.config
    dense = lambda features, use_bias: nn.Dense(
        features, use_bias=use_bias, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype)
    self.query = dense(cfg.attention_dim, False)
    self.key = dense(cfg.attention_dim, True)
    self.energy = dense(1, False)

  def project_keys(self, memory_BxSxM) -> jax.Array:
    """W_k h_BxSxA: depends only on the source, so computed once per source."""
    return self.key(memory_BxSxM)

  def __call__(self, query_BxQ, keys_BxSxA, memory_BxSxM, valid_BxS):
    """(context_BxM, weights_BxS); weights are 0 at pads, sum to 1."""
    hidden_BxSxA = jnp.tanh(keys_BxSxA + self.query(query_BxQ)[:, None, :])
    scores_BxS = self.energy(hidden_BxSxA)[..., 0].astype(jnp.float32)
    scores_BxS = jnp.where(valid_BxS, scores_BxS, jnp.finfo(jnp.float32).min)
    weights_BxS = jax.nn.softmax(scores_BxS, axis=-1)
    context_BxM = jnp.einsum("bs,bsm->bm",
                             weights_BxS.astype(memory_BxSxM.dtype),
                             memory_BxSxM)
    return context_BxM, weights_BxS


class RNNDecoder(nn.Module):
  """Shifted target ids + encoder output -> float32 logits BxTxV.

  One step: context from attention(previous top state, memory), cell input
  [embed(y_{t-1}); context], stacked cells, logits from [top state; context].
  attention="none" is the Cho et al. (2014) bottleneck: the context is the
  fixed encoder summary, seen through the initial state and fed at every step.
  The full pass scans the same step over time; with decode=True targets is
  Bx1 and the `cache` collection holds `carry` (per layer), `cached_keys`
  (W_k h, additive only) and the 0-d `is_filled`, all rows-first.
  Attention weights are sown as intermediates/decoder/attention_weights:
  BxTxS from the full pass, BxS per cached step.
  """
  config: RNNConfig
  shared_token_embed: nn.Embed | None = None

  def setup(self):
    cfg = self.config
    if self.shared_token_embed is None:
      self.token_embed = make_embed(cfg, cfg.decoder_vocab_size)
    carry_parts = 2 if cfg.cell == "lstm" else 1  # LSTM carries (c, h).
    self.bridge = nn.Dense(  # Initial carries of every layer at once.
        cfg.num_decoder_layers * carry_parts * cfg.hidden_dim,
        dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    if cfg.attention == "additive":
      self.attention = BahdanauAttention(cfg)
    self.layers = [make_cell(cfg) for _ in range(cfg.num_decoder_layers)]
    self.logits_dense = nn.Dense(cfg.decoder_vocab_size, dtype=cfg.dtype,
                                 param_dtype=cfg.param_dtype)
    if cfg.copy:
      self.copy_head = copy_head.CopyHead(dtype=cfg.dtype,
                                          param_dtype=cfg.param_dtype)
    self.dropout = Dropout(rate=cfg.dropout_rate)

  def _start(self, memory_BxSxM, summary_BxM):
    """Initial carries (tanh bridge of the summary) and W_k h, if any."""
    cfg = self.config
    lstm = cfg.cell == "lstm"
    parts = jnp.split(jnp.tanh(self.bridge(summary_BxM)),
                      cfg.num_decoder_layers * (2 if lstm else 1), axis=-1)
    carry = tuple(zip(parts[::2], parts[1::2])) if lstm else tuple(parts)
    keys_BxSxA = None
    if cfg.attention == "additive":
      keys_BxSxA = self.attention.project_keys(memory_BxSxM)
    return carry, keys_BxSxA

  def _step(self, carry, y_BxE, memory_BxSxM, keys_BxSxA, summary_BxM,
            valid_BxS, deterministic: bool, source_ids_BxS=None):
    """One target position: (new carry, logits_BxV); with config.copy the
    log-probabilities of the copy mixture instead (source_ids_BxS needed)."""
    if self.config.attention == "additive":
      top = carry[-1]
      state_BxH = top[1] if self.config.cell == "lstm" else top
      context_BxM, weights_BxS = self.attention(state_BxH, keys_BxSxA,
                                                memory_BxSxM, valid_BxS)
      self.sow("intermediates", "attention_weights", weights_BxS)
    else:
      context_BxM = summary_BxM
    x_BxD = jnp.concatenate([y_BxE, context_BxM.astype(y_BxE.dtype)], -1)
    new_carry = []
    for i, cell in enumerate(self.layers):
      if i:
        x_BxD = self.dropout(x_BxD, deterministic=deterministic)
      layer_carry, x_BxD = cell(carry[i], x_BxD)
      new_carry.append(layer_carry)
    out_BxD = self.dropout(jnp.concatenate([x_BxD, context_BxM], -1),
                           deterministic=deterministic)
    # float32 so the softmax / cross-entropy downstream is full precision.
    logits_BxV = self.logits_dense(out_BxD).astype(jnp.float32)
    if self.config.copy:  # p_gen from the new state, context and input
      logits_BxV = self.copy_head(
          logits_BxV[:, None], x_BxD[:, None], y_BxE[:, None], memory_BxSxM,
          weights_BxS[:, None], source_ids_BxS)[:, 0]
    return tuple(new_carry), logits_BxV

  def __call__(self, targets_BxT, memory_BxSxM, memory_valid_BxS, *,
               decode: bool = False, deterministic: bool = True,
               summary_BxM=None, source_ids_BxS=None) -> jax.Array:
    """summary_BxM: what the bridge (and attention="none") reads; None: the
    text encoder's encoder_summary (an image captioner passes the mean
    region, as Xu et al. 2015 initialise their LSTM). source_ids_BxS: the
    encoder's input ids, which config.copy copies."""
    cfg = self.config
    if cfg.copy and source_ids_BxS is None:
      raise ValueError("config.copy needs source_ids_BxS (Encoded.ids_BxS).")
    table = (self.token_embed if self.shared_token_embed is None
             else self.shared_token_embed)
    y_BxTxE = self.dropout(table(targets_BxT), deterministic=deterministic)
    if summary_BxM is None:
      summary_BxM = encoder_summary(memory_BxSxM, memory_valid_BxS,
                                    cfg.bidirectional)
    if decode and self.has_variable("cache", "is_filled"):
      return self._cached_step(y_BxTxE, memory_BxSxM, summary_BxM,
                               memory_valid_BxS, deterministic,
                               source_ids_BxS)
    carry, keys_BxSxA = self._start(memory_BxSxM, summary_BxM)
    if decode:  # Shape-creating init call: declare the cache.
      zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)
      self.put_variable("cache", "carry", zeros(carry))
      if keys_BxSxA is not None:
        self.put_variable("cache", "cached_keys", zeros(keys_BxSxA))
      self.put_variable("cache", "is_filled", jnp.array(False))

    def body(module, carry, y_BxE, memory, keys, summary, valid, ids):
      return module._step(carry, y_BxE, memory, keys, summary, valid,
                          deterministic, ids)

    scan = nn.scan(
        body, variable_broadcast="params", variable_axes={"intermediates": 1},
        split_rngs={"params": False, "dropout": True},
        in_axes=(1,) + (nn.broadcast,) * 5, out_axes=1)
    _, logits_BxTxV = scan(self, carry, y_BxTxE, memory_BxSxM, keys_BxSxA,
                           summary_BxM, memory_valid_BxS, source_ids_BxS)
    return logits_BxTxV

  def _cached_step(self, y_Bx1xE, memory_BxSxM, summary_BxM, valid_BxS,
                   deterministic: bool, source_ids_BxS=None):
    if y_Bx1xE.shape[1] != 1:
      raise ValueError(f"decode=True expects one step per call, got targets "
                       f"of length {y_Bx1xE.shape[1]}.")
    additive = self.config.attention == "additive"
    cached = (self.get_variable("cache", "carry"),
              self.get_variable("cache", "cached_keys") if additive else None)
    # First step: bridge + key projection (reads params, hence nn.cond).
    carry, keys_BxSxA = nn.cond(
        self.get_variable("cache", "is_filled"),
        lambda module, memory, summary: cached,
        lambda module, memory, summary: module._start(memory, summary),
        self, memory_BxSxM, summary_BxM)
    carry, logits_BxV = self._step(carry, y_Bx1xE[:, 0], memory_BxSxM,
                                   keys_BxSxA, summary_BxM, valid_BxS,
                                   deterministic, source_ids_BxS)
    self.put_variable("cache", "carry", carry)
    if additive:
      self.put_variable("cache", "cached_keys", keys_BxSxA)
    self.put_variable("cache", "is_filled", jnp.array(True))
    return logits_BxV[:, None]
