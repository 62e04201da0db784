r"""Does pretraining on raw text help a downstream task with few labels?
The pretraining study (docs/pretraining.md, launch/pretrain_study.sh).

The downstream task: English commands -> canonical calls
(`command_calls/default`, data/command_calls.py; 50,000 training pairs,
validation in range, test with names, numbers and hours never seen in
training), of which a run keeps the first config.num_train_examples
(500, 5,000 or all: 1 %, 10 %, 100 %). Arms
(--config=experiments/pretrain_study.py:ARM):

  pretrained  (default) the T5 of experiments/pretrain_span_corruption.py
              after its 1,000 steps on the Python documentation's prose
              (config.init_from, starts/pretrained_workdir.py): its params,
              architecture and tokenizer
  scratch     the same architecture (config.hf_export="t5") from random
              params, with the same tokenizer: launch/pretrain_study.sh
              copies the pretrained workdir's tokenizer.model into the
              scratch workdir before the run, which then reads it instead
              of training one

Both arms train every parameter with the same optimizer, schedule, batch
and steps; only the starting params differ.

  python -m encdec_jax.main --config=experiments/pretrain_span_corruption.py \
      --workdir=runs/pretrain_study/pretrain
  python -m encdec_jax.main --config=experiments/pretrain_study.py \
      --config.num_train_examples=500 --config.seed=0 \
      --workdir=runs/pretrain_study/pretrained_500_seed0

Result (docs/pretraining.md, 2 seeds, 600 steps): pretraining did not help
at any size: test BLEU 4-6 pretrained vs 17-19 scratch, exact match 0 % in
every arm.
"""

import ml_collections

from experiments import (copy_generalisation, number_translation,
                         pretrain_span_corruption)

ARMS = ("pretrained", "scratch")
PRETRAINED_WORKDIR = "runs/pretrain_study/pretrain"


def get_config(arm: str = "pretrained") -> ml_collections.ConfigDict:
  number_translation.check_arm(arm, ARMS, __file__)
  c = copy_generalisation.get_config()  # command_calls/default
  c.num_train_examples = -1  # the train split's first N pairs; -1: all
  c.tokenizer = "sentencepiece"
  # The pretrained tokenizer (2,000 pieces of Python-docs prose) splits the
  # unseen names into letters: sources up to 30 pieces, targets up to 34.
  c.max_source_length = c.max_target_length = c.max_decode_length = 40
  c.bucket_boundaries = (24, 32, 40)
  pretrained = pretrain_span_corruption.get_config()
  run_fields = dict(dropout_rate=0.1, attention_dropout_rate=0.1,
                    dtype="float32", scan_layers=False)
  if arm == "pretrained":
    c.init_from = PRETRAINED_WORKDIR
    c.model = ml_collections.ConfigDict(run_fields)  # the rest: init_from's
  else:
    c.hf_export = "t5"
    c.vocab_size, c.extra_ids = pretrained.vocab_size, pretrained.extra_ids
    c.model = pretrained.model
    c.model.update(run_fields)
  # Sized for a shared 2-core CPU: 12 runs of a few minutes, two at a time.
  c.batch_size = 32
  c.learning_rate = 2e-3  # the main job's (number_translation.py)
  c.warmup_steps = 50
  c.num_train_steps = 600
  c.log_every = 50
  c.eval_every = 150  # the learning curves: 200 validation commands decoded
  c.checkpoint_every = 600
  c.num_eval_examples = 200
  c.num_decode_examples = 200
  c.bleu_tokenize = "13a"
  return c
