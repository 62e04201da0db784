r"""English → German number translation, numbers below 10^6: the main job.

"nine hundred and ninety-nine thousand, nine hundred and ninety-nine" →
"neunhundertneunundneunzigtausendneunhundertneunundneunzig": unaligned lengths,
reordering ("twenty-four" → "vierundzwanzig") and compounding, on test numbers
never seen in training.

Run (from the repo root; the first run also prepares the data, ~30 s):
  python -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir=runs/en_de

Result (2026-11-21, 2-core AMD EPYC CPU, float32, fresh clone): 99.80 % exact
match on the 2,000 test numbers (BLEU 99.95 on characters, chrF 99.95) after
1,500 steps, in 7.3 min wall time including data preparation and compilation;
97.2 % on validation after 1.6 min. Curve: docs/tasks.md.
"""

import os

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = "translation"

  # Data: any TFDS name with `source_lang`/`target_lang` features, our offline
  # `number_translation/<config>`, or "text_files" with `text_files` below.
  c.dataset = "number_translation/en_de"
  c.data_dir = ml_collections.config_dict.placeholder(str)  # None: TFDS default
  c.source_lang = "en"
  c.target_lang = "de"
  c.text_files = ml_collections.ConfigDict(
      {"train": "", "validation": "", "test": ""})
  c.tokenizer = "sentencepiece"  # or "bytes"
  c.vocab_size = 256
  c.max_source_length = 48
  c.max_target_length = 48
  c.overlong = "truncate"  # or "drop"; counted and logged either way
  # Training pairs with an empty source or target (a blank side, a stray
  # TAB): "skip" gives them weight 0, "keep" trains on them; counted and
  # logged (empty_examples) either way.
  c.empty_pairs = "skip"
  # Value substitution (data/value_substitution.py; docs/copy.md): in this
  # fraction of training pairs, each word found in both source and target
  # that holds a digit or is in at most substitute_max_frequency of the
  # training sources is redrawn as a random string of its shape, on both
  # sides; with the copy head it copies values past the training range.
  c.substitute_values = 0.0
  c.substitute_max_frequency = 0.01
  c.bucket_boundaries = (8, 12, 16, 20, 24, 32, 48)
  # Pack several pairs per row of max_source_length x max_target_length
  # (encdec_jax/data/packing.py; Transformer encoder-decoders): grain's
  # "first_fit" or "best_fit" packer over pack_bins rows (0: 4 x batch).
  # batch_size then counts rows. Off: batches as above, unchanged.
  c.pack_examples = False
  c.pack_algorithm = "first_fit"
  c.pack_bins = 0
  c.batch_size = 128
  c.eval_batch_size = 256

  # Model: fields of encdec_jax.nn.config.TransformerConfig.
  c.model = ml_collections.ConfigDict(dict(
      emb_dim=128, qkv_dim=128, mlp_dim=512, num_heads=4,
      num_encoder_layers=2, num_decoder_layers=2,
      max_len=64, position_embedding="sinusoidal",
      pre_layernorm=True, activation="relu", layernorm_epsilon=1e-6,
      dropout_rate=0.0, attention_dropout_rate=0.0,
      share_embeddings=True, logits_via_embedding=True,
      dtype="float32",
      # One nn.scan over each stack's layers (stacked params: another param
      # tree, see encdec_jax/nn/transformer.py); off by default.
      scan_layers=False,
      # Pointer-generator copy head (nn/copy_head.py; docs/copy.md, "Copying values
      # never seen in training"): --config.model.copy=true when outputs must
      # reproduce source values that training does not cover. The pointer:
      # decoder layer copy_layer's cross-attention, its first copy_heads
      # heads (0: all).
      copy=False, copy_layer=-1, copy_heads=1,
      # T5's bucketed relative position bias in every self-attention (0:
      # none); with position_embedding="none" it replaces the absolute
      # positions (the copy study's "relative positions" arm).
      relative_position_buckets=0, relative_position_max_distance=128))

  # Optimization.
  c.learning_rate = 2e-3
  c.warmup_steps = 100
  c.schedule = "cosine"
  c.num_train_steps = 1500
  c.adam_b1 = 0.9
  c.adam_b2 = 0.98
  c.weight_decay = 0.01
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.1
  # Supervised copy (tasks/losses.py copy_supervision_sums; needs
  # model.copy): this weight times -log(pointer on the source copy of the
  # target token) - log(1 - p_gen) wherever the target token is in the source.
  c.copy_supervision = 0.0
  # Generator of the dropout masks: "threefry2x32" (JAX's default), "rbg" or
  # "unsafe_rbg" (faster on CPU; see encdec_jax.train.trainer.dropout_key).
  c.dropout_prng = "threefry2x32"

  # Scale (docs/scaling.md): the device mesh, -1 = the devices left.
  # data=-1: data parallel; fsdp=-1: params and optimizer state sharded too
  # (FSDP); data=-1,tensor=2: data x tensor (Megatron) parallel.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  # Logical axis -> mesh axes; () = encdec_jax.parallel.DEFAULT_AXIS_RULES.
  c.logical_axis_rules = ()
  # Recompute each block in the backward pass: "none", "full", "dots",
  # "dots_all" (Transformer families).
  c.remat = "none"
  # Split each batch into k micro-batches inside the step, one update.
  c.grad_accum_steps = 1

  # Parameter groups, each with its own optimizer (encdec_jax/train/
  # param_groups.py): (regex over the param path, group) rules, first match wins.
  # The top-level optimizer fields above are every group's defaults;
  # group_optim.<group> overrides them (learning_rate, schedule, warmup_steps,
  # weight_decay, grad_clip_norm, adam_b1, adam_b2).
  c.param_groups = (("encoder/.*", "encoder"), ("decoder/.*", "decoder"),
                    (".*", "head"))
  c.frozen_groups = ()  # e.g. ("encoder",): no gradient, no optimizer state
  c.group_optim = ml_collections.ConfigDict()
  # ULMFiT: layer_groups top first; group i trains at lr / lr_decay**i and
  # from step i * unfreeze_every (0: all from the start).
  c.layer_groups = ()
  c.lr_decay_per_group = 1.0
  c.unfreeze_every = 0
  # Start from a saved encoder (a save_encoder directory or a training
  # workdir); it starts frozen unless init_encoder_trainable, and any
  # mismatch is an error unless init_encoder_strict=False.
  c.init_encoder = ""
  c.init_encoder_trainable = False
  c.init_encoder_strict = True
  # LoRA (encdec_jax/lora): train low-rank adapters of the projections whose
  # paths match `targets` (regexes, e.g. r"encoder/.*/attention/(query|value)"
  # or (regex, {"rank": 4, "alpha": 8}) pairs) on the frozen model trained in
  # the workdir `base`; groups lora_encoder / lora_decoder (group_optim).
  # adapter: an --mode=export_adapter directory applied to the base run in
  # --workdir (eval/decode/merge_adapter). train_base: the base trains too
  # (a full fine-tuning arm; param_groups: rules replacing the default ones).
  c.lora = ml_collections.ConfigDict(dict(
      base="", targets=(), rank=8, alpha=16.0, init_std=0.0, dropout=0.0,
      adapter="", train_base=False, param_groups=()))

  # A NaN/Inf loss or gradient never updates the params (so no checkpoint
  # holds one); "stop" ends the run naming the last good checkpoint, "skip"
  # counts the step (train/nonfinite_steps) and goes on.
  c.nan_policy = "stop"
  # An unreadable latest checkpoint (truncated, tampered): "fallback" moves it
  # to <workdir>/unreadable_checkpoints/ with a warning and resumes from the
  # one before; "error" stops with a message naming it.
  c.corrupt_checkpoint = "fallback"
  # Bit-identical reruns and resumes. CPU and TPU are deterministic anyway
  # (free); on GPU this sets XLA's --xla_gpu_deterministic_ops, which makes
  # scatter-adds (embedding gradients) and some reductions slower.
  c.deterministic = True
  # Append each step's example ids to <workdir>/example_ids.tsv (cut back to
  # the resumed step on a restart): which data a step saw, and the proof
  # that a resumed run saw the same (encdec_jax/train/example_log.py).
  c.record_example_ids = False

  # Loop.
  c.log_every = 50
  c.eval_every = 250
  c.checkpoint_every = 250
  c.keep_checkpoints = 3
  c.num_eval_examples = 1000  # validation examples for loss (-1: all)
  c.num_decode_examples = 500  # validation examples decoded at each eval
  c.max_decode_length = 48
  # Decoding for evaluation and --mode=decode: "greedy", "beam" (beam_size,
  # length_penalty = GNMT alpha), "sample" (temperature, top_k, top_p; the
  # key of batch i is fold_in(key(seed), i)) or "speculative" (k, draft,
  # sample; docs/running.md).
  # The draft ("self": the first half of the decoder's layers, "self:N":
  # the first N) proposes k tokens a round; sample=True: rejection sampling.
  c.decode = ml_collections.ConfigDict(dict(
      algorithm="greedy", beam_size=4, length_penalty=0.6, temperature=1.0,
      top_k=0, top_p=1.0, seed=0, k=4, draft="self", sample=False))
  c.num_samples_to_print = 3
  c.test_at_end = True
  # sacrebleu tokenizer for BLEU. German numbers are single words, so word
  # BLEU is 0 for any error; character BLEU grades near misses.
  c.bleu_tokenize = "char"  # decode the whole test split after the last step
  return c


def check_arm(arm: str, arms: tuple, config_file: str) -> None:
  """The error for an unknown arm in `--config=<config_file>:ARM`."""
  if arm not in arms:
    raise ValueError(f"unknown arm {arm!r}; use one of {arms} (--config="
                     f"experiments/{os.path.basename(config_file)}:ARM).")
