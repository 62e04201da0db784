"""Losses the text tasks share: label-smoothed cross-entropy, summed.

Every loss returns (mean loss, sums), the sums being "loss", "nll",
"correct" (optional) and "tokens", so train_step, eval_step and `summarize`
(tasks/evaluation.py) work for every task; a "token" is whatever the task
averages over (target tokens, examples, pixels).
"""

import jax
import jax.numpy as jnp

from encdec_jax.data import packing
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


def seq2seq_loss(model, label_smoothing: float):
  """(params, batch, rng) -> (mean loss, sums) of a model that reads
  `inputs` and predicts `targets` (teacher-forced): an encoder–decoder, a
  decoder-only LM (its inputs are empty) or a captioner (inputs are images).

  rng=None evaluates deterministically (no dropout). A packed batch
  (data/packing.py: several pairs per row, with segment ids and positions)
  is shifted per segment and masked by segment; its sums are per real token
  like an unpacked batch's. The decoder inputs start with the model's start
  id and padding is the model's pad id (contract.special_ids: an imported
  BART's or Marian's own; HF's labels and shift_tokens_right).
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
    logits_BxTxV = model.apply(
        {"params": params}, batch["inputs"], decoder_in_BxT,
        deterministic=rng is None,
        rngs=None if rng is None else {"dropout": rng}, **kwargs)
    sums = cross_entropy_sums(logits_BxTxV, batch["targets"],
                              token_weights(batch, pad_id), label_smoothing)
    return sums["loss"] / jnp.maximum(sums["tokens"], 1.0), sums

  return loss_fn
