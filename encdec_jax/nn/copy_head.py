"""Pointer-generator (copy) head: the decoder may copy source tokens.

See et al. (2017), "Get To The Point", with the Transformer variant of
fairseq's pointer_generator and OpenNMT-py's copy attention. At each target
position t the decoder's vocabulary distribution is mixed with a copy
distribution, the attention over source positions scattered onto the source
tokens' ids (a shared vocabulary):

  p(w) = p_gen * softmax(logits)(w) + (1 - p_gen) * sum_{s: x_s = w} a_ts
  p_gen = sigmoid(w . [decoder state; context; decoder input] + b)

where a_t is the pointer (a cross-attention distribution over the source) and
the context is sum_s a_ts h_s (h: encoder output). The decoder then returns
log p, the log-probabilities of the mixture, in place of logits: every
consumer that applies log_softmax (the loss, beam search) or softmax
(sampling) gets the mixture unchanged, since log_softmax of log-probabilities
is the identity (their logsumexp is 0), and argmax (greedy) is the mixture's
mode. A source token the vocabulary distribution never learned to emit (a
value unseen in training) is produced through the pointer alone.

Which attention is the pointer: the Transformer's cross-attention of decoder
layer `config.copy_layer` (default -1, the last), averaged over its first
`config.copy_heads` heads (default 1: one head serves as the pointer, as in
fairseq and OpenNMT-py; 0 averages all heads); the RNN's additive attention.

Params: decoder/copy_head/gate/{kernel, bias}; nothing else, so an encoder
checkpoint does not change. Sown intermediates (apply with
mutable=["intermediates"]): decoder/copy_head/{p_gen BxT, pointer BxTxS}.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def check_copy_config(cfg, num_layers: int | None = None,
                      num_heads: int | None = None) -> None:
  """ValueError naming the field unless copy fits the architecture."""
  if not getattr(cfg, "copy", False):
    return
  if cfg.vocab_size != cfg.decoder_vocab_size:
    raise ValueError(
        "copy needs one vocabulary for source and target (copied ids are "
        f"source ids), got vocab_size={cfg.vocab_size} and "
        f"output_vocab_size={cfg.decoder_vocab_size}.")
  if num_layers is not None and not -num_layers <= cfg.copy_layer < num_layers:
    raise ValueError(f"copy_layer={cfg.copy_layer} is not a decoder layer "
                     f"(there are {num_layers}; -1 is the last).")
  if num_heads is not None and not 0 <= cfg.copy_heads <= num_heads:
    raise ValueError(f"copy_heads={cfg.copy_heads} must be in [0, "
                     f"{num_heads}] (0: the mean of all heads).")


def pointer_from_cross_attention(weights_NxBxHxTxS: jax.Array, layer: int,
                                 heads: int) -> jax.Array:
  """BxTxS: layer `layer`'s cross-attention, mean of its first `heads` heads
  (0: all), in float32; each row sums to 1 over the real source tokens."""
  weights_BxHxTxS = weights_NxBxHxTxS[layer].astype(jnp.float32)
  if heads:
    weights_BxHxTxS = weights_BxHxTxS[:, :heads]
  return weights_BxHxTxS.mean(axis=1)


def scatter_to_vocab(pointer_BxTxS: jax.Array, ids_BxS: jax.Array,
                     vocab_size: int) -> jax.Array:
  """BxTxV: the pointer's mass added onto the ids it points at (repeated
  source tokens add up); 0 at ids absent from the source."""

  def one_row(pointer_TxS, ids_S):
    zeros_TxV = jnp.zeros((pointer_TxS.shape[0], vocab_size),
                          pointer_TxS.dtype)
    return zeros_TxV.at[:, ids_S].add(pointer_TxS)

  return jax.vmap(one_row)(pointer_BxTxS, ids_BxS)


def mixture_log_probs(logits_BxTxV: jax.Array, gate_BxT: jax.Array,
                      pointer_BxTxS: jax.Array,
                      ids_BxS: jax.Array) -> jax.Array:
  """log(p_gen * softmax(logits) + (1 - p_gen) * copy), p_gen =
  sigmoid(gate), in float32 and in log space: finite wherever
  softmax(logits) is, and no NaN gradient at ids the source lacks."""
  logits_BxTxV = logits_BxTxV.astype(jnp.float32)
  gate_BxTx1 = gate_BxT.astype(jnp.float32)[..., None]
  log_vocab_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
  copy_BxTxV = scatter_to_vocab(pointer_BxTxS.astype(jnp.float32), ids_BxS,
                                logits_BxTxV.shape[-1])
  present_BxTxV = copy_BxTxV > 0
  # The inner where keeps log's gradient finite where there is nothing to
  # copy (it is then multiplied by 0, and 0 * inf would be NaN).
  log_copy_BxTxV = jnp.where(
      present_BxTxV, jnp.log(jnp.where(present_BxTxV, copy_BxTxV, 1.0)),
      -jnp.inf)
  return jnp.logaddexp(jax.nn.log_sigmoid(gate_BxTx1) + log_vocab_BxTxV,
                       jax.nn.log_sigmoid(-gate_BxTx1) + log_copy_BxTxV)


class CopyHead(nn.Module):
  """The p_gen gate and the mixture; its output is log p, BxTxV float32."""
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, logits_BxTxV, state_BxTxD, inputs_BxTxE, memory_BxSxM,
               pointer_BxTxS, source_ids_BxS) -> jax.Array:
    """logits: the vocabulary logits; state: the decoder output they come
    from; inputs: the decoder's input embeddings; memory: the encoder
    output; pointer: attention over the source (rows sum to 1 over real
    tokens); source_ids: the encoder's input ids."""
    pointer_BxTxS = pointer_BxTxS.astype(jnp.float32)
    context_BxTxM = jnp.einsum("bts,bsm->btm",
                               pointer_BxTxS.astype(memory_BxSxM.dtype),
                               memory_BxSxM)
    features = jnp.concatenate(
        [state_BxTxD, context_BxTxM.astype(state_BxTxD.dtype),
         inputs_BxTxE.astype(state_BxTxD.dtype)], axis=-1)
    gate_BxT = nn.Dense(1, dtype=self.dtype, param_dtype=self.param_dtype,
                        name="gate")(features)[..., 0]
    self.sow("intermediates", "p_gen",
             jax.nn.sigmoid(gate_BxT.astype(jnp.float32)))
    self.sow("intermediates", "pointer", pointer_BxTxS)
    return mixture_log_probs(logits_BxTxV, gate_BxT, pointer_BxTxS,
                             source_ids_BxS)
