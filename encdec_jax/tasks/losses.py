"""Losses the text tasks share: label-smoothed cross-entropy, summed.

Every loss returns (mean loss, sums), the sums being "loss", "nll",
"correct" (optional) and "tokens", so train_step, eval_step and `summarize`
(tasks/evaluation.py) work for every task; a "token" is whatever the task
averages over (target tokens, examples, pixels).
"""

import jax
import jax.numpy as jnp

from encdec_jax.data import packing
from encdec_jax.data.tokenizer import EOS_ID, UNK_ID
from encdec_jax.models.contract import PAD_ID, shift_right, special_ids


def token_weights(batch, pad_id: int = PAD_ID) -> jax.Array:
  """1 at real target tokens of kept examples, 0 at padding (`pad_id`, the
  model's; in packed rows, outside every segment) and drops."""
  real_BxT = batch["targets"] != pad_id
  if packing.is_packed(batch):  # packed rows are padded with 0 (grain's)
    real_BxT &= batch["targets_segment_ids"] > 0
  return (real_BxT * batch["example_weight"][:, None]).astype(jnp.float32)


def cross_entropy_sums(logits_BxTxV, targets_BxT, weights_BxT,
                       label_smoothing: float):
  """Summed label-smoothed cross-entropy, exact NLL and correct tokens.

  The smoothed loss subtracts its minimum (the entropy of the smoothed target)
  so that a perfect model scores 0, as in the Flax WMT example.
  """
  vocab = logits_BxTxV.shape[-1]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  normalizer = -(confidence * jnp.log(confidence) +
                 (vocab - 1) * low * jnp.log(low + 1e-20))
  # The smoothed target is `confidence` at the target and `low` elsewhere, so
  # its cross-entropy needs only log p(target) and sum_v log p(v): no one-hot
  # BxTxV tensor is built (two fewer passes over the largest activation).
  logits_BxTxV = logits_BxTxV.astype(jnp.float32)
  lse_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
  target_logit_BxT = jnp.take_along_axis(
      logits_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
  target_logp_BxT = target_logit_BxT - lse_BxT
  sum_logp_BxT = jnp.sum(logits_BxTxV, axis=-1) - vocab * lse_BxT
  loss_BxT = -(confidence * target_logp_BxT +
               low * (sum_logp_BxT - target_logp_BxT)) - normalizer
  nll_BxT = -target_logp_BxT
  # The target is a best guess iff its logit is the maximum (an exact tie
  # counts as correct): XLA's CPU argmax over BxTxV, a variadic reduce, costs
  # ~15x this max (5 % of a base-small train step).
  correct_BxT = target_logit_BxT >= jnp.max(logits_BxTxV, axis=-1)
  return {"loss": jnp.sum(loss_BxT * weights_BxT),
          "nll": jnp.sum(nll_BxT * weights_BxT),
          "correct": jnp.sum(correct_BxT * weights_BxT),
          "tokens": jnp.sum(weights_BxT)}


def copy_supervision_sums(pointer_BxTxS, p_gen_BxT, inputs_BxS, targets_BxT,
                          weights_BxT, pad_id: int = PAD_ID,
                          same_segment_BxTxS=None) -> dict:
  """Supervised copy (OpenNMT-py's copy_attn_force): at each target token
  that also occurs in the source (not EOS, UNK or padding), -log of the
  pointer's mass on the source positions holding it, and -log(1 - p_gen),
  the gate's probability of copying; summed ("copy_loss") with the number
  of such tokens ("copy_tokens"). A model that learns the value only from
  the pointer copies values whose beginning training never showed
  (docs/copy.md). `same_segment_BxTxS`: packed rows' mask of the source
  positions each target token may point at."""
  match_BxTxS = ((inputs_BxS[:, None, :] == targets_BxT[:, :, None]) &
                 (inputs_BxS != pad_id)[:, None, :])
  if same_segment_BxTxS is not None:
    match_BxTxS &= same_segment_BxTxS
  special_BxT = (targets_BxT == EOS_ID) | (targets_BxT == UNK_ID)
  copyable_BxT = (match_BxTxS.any(-1) & ~special_BxT) * weights_BxT
  mass_BxT = jnp.sum(pointer_BxTxS.astype(jnp.float32) * match_BxTxS, -1)
  tiny = 1e-9  # the floor keeps log finite where the pointer misses wholly
  loss_BxT = (-jnp.log(jnp.maximum(mass_BxT, tiny)) -
              jnp.log(jnp.maximum(1.0 - p_gen_BxT.astype(jnp.float32), tiny)))
  return {"copy_loss": jnp.sum(loss_BxT * copyable_BxT),
          "copy_tokens": jnp.sum(copyable_BxT)}


def copy_intermediates(state) -> tuple:
  """(pointer BxTxS, p_gen BxT) the copy head sowed (the RNN's per step:
  Bx1xS stacked on axis 1)."""
  head = state["intermediates"]["decoder"]["copy_head"]
  pointer, p_gen = head["pointer"][0], head["p_gen"][0]
  if pointer.ndim == 4:
    pointer, p_gen = pointer[:, :, 0], p_gen[:, :, 0]
  return pointer, p_gen


def seq2seq_loss(model, label_smoothing: float,
                 copy_supervision: float = 0.0):
  """(params, batch, rng) -> (mean loss, sums) of a model that reads
  `inputs` and predicts `targets` (teacher-forced): an encoder–decoder, a
  decoder-only LM (its inputs are empty) or a captioner (inputs are images).

  rng=None evaluates deterministically (no dropout). A packed batch
  (data/packing.py: several pairs per row, with segment ids and positions)
  is shifted per segment and masked by segment; its sums are per real token
  like an unpacked batch's. The decoder inputs start with the model's start
  id and padding is the model's pad id (contract.special_ids: an imported
  BART's or Marian's own; HF's labels and shift_tokens_right).
  `copy_supervision` > 0 (a copy model) adds that times the summed
  `copy_supervision_sums` to the loss.
  """
  pad_id, start_id = special_ids(model)

  def loss_fn(params, batch, rng=None):
    kwargs = {}
    if packing.is_packed(batch):
      decoder_in_BxT = packing.shift_right_packed(
          batch["targets"], batch["targets_segment_ids"], start_id)
      kwargs["packing"] = packing.model_packing(batch)
    else:
      decoder_in_BxT = shift_right(batch["targets"], start_id)
    if copy_supervision:
      kwargs["mutable"] = ["intermediates"]
    out = model.apply(
        {"params": params}, batch["inputs"], decoder_in_BxT,
        deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng}, **kwargs)
    logits_BxTxV, state = out if copy_supervision else (out, None)
    weights_BxT = token_weights(batch, pad_id)
    sums = cross_entropy_sums(logits_BxTxV, batch["targets"], weights_BxT,
                              label_smoothing)
    if copy_supervision:
      same_segment_BxTxS = None
      if packing.is_packed(batch):
        same_segment_BxTxS = (batch["targets_segment_ids"][:, :, None] ==
                              batch["inputs_segment_ids"][:, None, :])
      copy_sums = copy_supervision_sums(
          *copy_intermediates(state), batch["inputs"], batch["targets"],
          weights_BxT, pad_id, same_segment_BxTxS)
      sums = dict(sums, loss=sums["loss"] +
                  copy_supervision * copy_sums["copy_loss"])
    return sums["loss"] / jnp.maximum(sums["tokens"], 1.0), sums

  return loss_fn
