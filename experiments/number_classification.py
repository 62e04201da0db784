r"""Does a transferred encoder help? ULMFiT's question on number words.

Classify an English number ("three hundred and forty-two") by its last digit
(`label = "mod10"`, 10 balanced classes) from few labelled examples, with the
encoder of the English→German number-translation model as the pretrained
part. Three arms with the same model, data, steps and batch size:

  scratch  random encoder, everything trains;
  frozen   translation encoder loaded and frozen (fastai's load_encoder),
           only the head trains;
  ulmfit   translation encoder, gradual unfreezing (head first, then one more
           layer group every `unfreeze_every` steps) with discriminative
           learning rates (÷2.6 per group going down).

Pretrain first (the README's main job), then one command per arm:
  python -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir=runs/en_de
  python -m encdec_jax.main --config=experiments/number_classification.py:ulmfit \
      --workdir=runs/classify/ulmfit_300 --config.num_train_examples=300

`launch/transfer_study.sh` runs all arms for 100, 300 and 1,000 labels and
`python -m encdec_jax.reports.transfer --runs=runs/classify` prints the table
and draws the plot.

Result (2026-11-21, 2-core AMD EPYC CPU, float32; test accuracy, mean of
seeds 0-2): 100 labels: scratch 85.8 %, frozen 57.3 %, ulmfit 94.9 %; 300:
97.2 / 70.9 / 98.9 %; 1,000: 99.6 / 73.6 / 99.8 %. Each run takes 15-40 s
after the 7.4-min pretraining. Details: experiments/README.md ("Transfer").
"""

import ml_collections

from experiments import number_translation

ARMS = ("scratch", "frozen", "ulmfit")
PRETRAINED = "runs/en_de"  # the main job's workdir


def get_config(arm: str = "ulmfit") -> ml_collections.ConfigDict:
  if arm not in ARMS:
    raise ValueError(f"unknown arm {arm!r}; use one of {ARMS} "
                     "(--config=experiments/number_classification.py:ARM).")
  base = number_translation.get_config()
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = "classification"
  c.dataset = "number_translation/en_de"
  c.data_dir = base.data_dir
  c.source_lang = "source"  # the English words
  c.label = "mod10"  # or "magnitude" (unbalanced: most numbers have 6 digits)
  c.classes = ()
  c.text_files = ml_collections.ConfigDict(
      {"train": "", "validation": "", "test": ""})
  c.num_train_examples = 300  # the few labels; -1 = the whole train split
  c.tokenizer = "sentencepiece"  # trained on all (unlabelled) train texts
  c.vocab_size = base.vocab_size
  c.max_source_length = base.max_source_length
  c.max_target_length = base.max_target_length
  c.overlong = "truncate"
  c.bucket_boundaries = base.bucket_boundaries
  c.batch_size = 32
  c.eval_batch_size = 256

  # The translation model's encoder, so its weights fit.
  c.model = base.model
  c.pooling = "mean"

  c.learning_rate = 1e-3
  c.warmup_steps = 50
  c.schedule = "cosine"
  c.num_train_steps = 600
  c.adam_b1 = 0.9
  c.adam_b2 = 0.98
  c.weight_decay = 0.01
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0

  # Parameter groups (see encdec_jax/train/param_groups.py): one per encoder
  # layer, the embeddings, and the head, so layers can thaw one by one.
  c.param_groups = (
      ("encoder/embedder/.*", "embeddings"),
      (r"encoder/layers_(\d+)/.*", r"encoder_\1"),
      ("encoder/encoder_norm/.*", "encoder_1"),  # belongs to the top layer
      (".*", "head"))
  c.frozen_groups = ()
  c.group_optim = ml_collections.ConfigDict()
  c.layer_groups = ()
  c.lr_decay_per_group = 1.0
  c.unfreeze_every = 0

  c.init_encoder = ""
  c.init_encoder_trainable = False
  c.init_encoder_strict = True
  if arm in ("frozen", "ulmfit"):
    c.init_encoder = PRETRAINED
  if arm == "frozen":
    # Only the linear head trains (zero-initialised, on fixed features): at
    # 1e-3 it is still far from converged after 600 steps.
    c.learning_rate = 1e-2
  if arm == "ulmfit":
    c.layer_groups = ("head", "encoder_1", "encoder_0", "embeddings")
    c.lr_decay_per_group = 2.6
    c.unfreeze_every = 100

  c.nan_policy = "stop"  # see number_translation.py
  c.corrupt_checkpoint = "fallback"  # see number_translation.py
  c.deterministic = True  # see number_translation.py
  c.record_example_ids = False  # see number_translation.py
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 600
  c.keep_checkpoints = 1
  c.num_eval_examples = -1  # all 2,000 validation examples
  c.num_decode_examples = 0
  c.test_at_end = True
  return c
