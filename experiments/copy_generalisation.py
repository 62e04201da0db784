r"""Copying values the model never saw: commands -> canonical calls, with and
without the pointer-generator copy head.

  "remind me to call kesibi at 14:18 on thursday"
      -> "remind | who kesibi | time 14:18 | day thursday"

The data (`command_calls/default`, encdec_jax/data/command_calls.py): 50,000
training commands; validation in range (training names, numbers < 5000,
hours 0-11), test out of range (unseen names, numbers 5000-9999, hours
12-23), so validation vs test exact match is the in-range vs out-of-range
gap. The model is the main job's Transformer (2+2 layers, width 128, its
SentencePiece tokenizer of 256 pieces), 1,000 steps of batch 64; the RNN arm
a bi-LSTM with additive attention at half rnn_translation.py's width.

Arms (`--config=experiments/copy_generalisation.py:ARM`):
  transformer   the main job's Transformer on command_calls (default)
  rnn           the bi-LSTM + additive attention encoder-decoder on it
  en_de         the main job itself (number_translation/en_de), unchanged
                but for the copy fields, to check copy where nothing needs
                copying
Each declares config.model.copy (False) and, for the Transformer,
copy_layer (-1) and copy_heads (1), so the remedies are overrides:

  python -m encdec_jax.main --config=experiments/copy_generalisation.py \
      --workdir=runs/copy/transformer_copy --config.model.copy=true
  # the same without copy; more dropout and label smoothing; bytes;
  # relative positions (T5 buckets, no absolute positions):
  ... --workdir=runs/copy/transformer
  ... --config.model.dropout_rate=0.3 --config.label_smoothing=0.2
  ... --config.tokenizer=bytes
  ... --config.model.position_embedding=none \
      --config.model.relative_position_buckets=32
  python -m encdec_jax.reports.copy --runs=runs/copy --out=docs/figures
  # Values past the edge (the test_novel_prefix split, docs/copy.md):
  # value substitution, supervised copy (each with copy), both:
  ... --config.model.copy=true --config.substitute_values=0.5
  ... --config.model.copy=true --config.copy_supervision=1.0
  python -m encdec_jax.reports.copy_edge --runs=runs/copy --out=docs/figures

launch/copy_study.sh runs them all (docs/copy.md, "Copying values never seen in
training", has the whole table). Result (2026-11-29, 2-core CPUs,
float32, exact match in range / out of range, wall time):
  transformer        99.75 / 80.45 %   5.4 min
  transformer_copy   99.95 / 98.25 %   6.3 min
  rnn                 2.20 /  1.75 %   1.9 min (resumed from step 500)
  rnn_copy          100.00 / 100.00 %  3.2 min
  en_de_copy         99.95 % test exact match on number_translation/en_de,
                     5.4 min
"""

import ml_collections

from experiments import number_translation, rnn_translation

ARMS = ("transformer", "rnn", "en_de")


def copy_fields(model: ml_collections.ConfigDict, family: str) -> None:
  """Declares the copy head's fields (off) so the command line can set
  them."""
  model.copy = False
  if family == "transformer":
    model.copy_layer = -1  # the pointer: this decoder layer's cross-attention
    model.copy_heads = 1  # mean of its first k heads (0: all)
    # T5's relative position buckets (0: none), for the remedy that swaps
    # them for the absolute positions (position_embedding="none").
    model.relative_position_buckets = 0


def get_config(arm: str = "transformer") -> ml_collections.ConfigDict:
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()
  if arm == "en_de":
    copy_fields(c.model, "transformer")
    return c
  c.dataset = "command_calls/default"
  if arm == "rnn":
    c.model = rnn_translation.rnn_model("attention")
  copy_fields(c.model, "rnn" if arm == "rnn" else "transformer")
  # Bytes make sources and targets up to ~60 tokens (SentencePiece: ~30).
  c.max_source_length = c.max_target_length = c.max_decode_length = 64
  c.bucket_boundaries = (16, 24, 32, 40, 48, 64)
  # Sized for a shared 2-core CPU (one run: minutes): the main job's
  # Transformer, the RNN at half rnn_translation's width, half the batch.
  if arm == "rnn":
    c.model.update(emb_dim=64, hidden_dim=128, attention_dim=128)
  c.batch_size = 64
  c.num_train_steps = 1000
  c.warmup_steps = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  # All 2,000 validation commands decoded: results.json holds the in-range
  # exact match over the whole split, and test (decoded whole at the end)
  # the out-of-range one.
  c.num_eval_examples = 2000
  c.num_decode_examples = 2000
  return c
