r"""Fine-tune an imported T5 / Flan-T5 / mT5 on your own text-to-text pairs.

Your data: one `source<TAB>target` pair a line, one file per split (e.g.
"summarize: <article>\t<summary>"). The model: a Hugging Face directory
(config.json, model.safetensors, spiece.model), downloaded wherever you can
download, imported once without torch:

  python -m encdec_jax.pretrained.import_hf ~/hf/flan-t5-small pretrained/flan
  python -m encdec_jax.main --config=experiments/t5_finetune.py \
      --config.init_from=pretrained/flan \
      --config.text_files.train=data/train.tsv \
      --config.text_files.validation=data/validation.tsv \
      --config.text_files.test=data/test.tsv --workdir=runs/flan
  # back to Hugging Face format (AutoModelForSeq2SeqLM.from_pretrained):
  python -m encdec_jax.pretrained.export_hf runs/flan exported/flan

The architecture and the tokenizer come from init_from (pretrained/
finetune.py): the model block below holds only run-level fields. Arms
(--config=experiments/t5_finetune.py:ARM):

  finetune        (default) encoder and decoder with their own AdamW: the
                  pretrained encoder at a third of the decoder's rate
  frozen_encoder  the encoder (with the token table it shares with the
                  decoder's inputs) frozen: no gradient, no optimizer state;
                  the decoder and T5 v1.1's separate lm_head train
  ulmfit          gradual unfreezing top down (decoder, then encoder layers
                  from the top, the embeddings last) with discriminative
                  learning rates, every `unfreeze_every` steps
  tiny            finetune's groups for a smoke run of the tiny test model
                  (tests/data/hf_tiny/t5_v11): short texts, 30 steps, no
                  dropout (docs/pretrained.md)
  lora            LoRA (rank 8) on query/value of every attention, the base
                  frozen; the base is config.lora.base, a workdir
                  fine-tuned 0 steps from init_from (the imported model):
    F="--config.init_from=pretrained/flan --config.text_files.train=..."
    python -m encdec_jax.main --config=experiments/t5_finetune.py $F \
        --config.num_train_steps=0 --workdir=runs/flan_base
    python -m encdec_jax.main --config=experiments/t5_finetune.py:lora $F \
        --config.lora.base=runs/flan_base --workdir=runs/flan_lora
    ... the same + --mode=merge_adapter --output=runs/flan_merged
    python -m encdec_jax.pretrained.export_hf runs/flan_merged exported/lora
  tiny_lora       lora for the tiny test model (tests/test_lora_export_hf.py)

T5 reads its inputs as text-to-text: put the task prefix ("summarize: ",
"translate English to German: ") into your source column.
"""

import ml_collections
from ml_collections import config_dict

from experiments import number_translation

ARMS = ("finetune", "frozen_encoder", "ulmfit", "tiny", "lora", "tiny_lora")


def get_config(arm: str = "finetune") -> ml_collections.ConfigDict:
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()
  c.dataset = "text_files"
  c.text_files.update({"train": "data/train.tsv",
                       "validation": "data/validation.tsv",
                       "test": "data/test.tsv"})
  # The import_hf directory (required): architecture, params, tokenizer.
  c.init_from = ""
  # Without it the run would train a default model from scratch: refused.
  c.required_fields = ml_collections.ConfigDict({"init_from": (
      "experiments/t5_finetune.py needs it: the architecture, weights and "
      "tokenizer come from an imported Hugging Face model; import one with "
      "python -m encdec_jax.pretrained.import_hf HF_MODEL_DIR pretrained/NAME "
      "and add --config.init_from=pretrained/NAME.")})
  c.tokenizer = "sentencepiece"  # T5's spiece.model, installed by init_from
  c.max_source_length = 256
  c.max_target_length = 128
  c.max_decode_length = 128
  c.bucket_boundaries = (32, 64, 128, 256)
  c.batch_size = 16
  c.eval_batch_size = 32
  # Run-level model fields only: the rest is the imported model's.
  c.model = ml_collections.ConfigDict(dict(
      dropout_rate=0.1, attention_dropout_rate=0.1, dtype="float32",
      scan_layers=False))

  # T5 was pretrained with Adafactor at 1e-3; AdamW at 3e-4 with a short
  # warmup fine-tunes small models well.
  c.learning_rate = 3e-4
  c.warmup_steps = 100
  c.schedule = "linear"
  c.num_train_steps = 2000
  c.weight_decay = 0.0
  c.label_smoothing = 0.0
  c.eval_every = 500
  c.checkpoint_every = 500
  c.num_eval_examples = 500
  c.num_decode_examples = 200
  c.bleu_tokenize = "13a"
  # What the decoded examples are scored with (tasks/evaluation.py METRICS);
  # summaries: --config.eval_metrics="('rouge',)" (ROUGE-1/2/Lsum).
  c.eval_metrics = ("exact_match", "bleu", "chrf")
  # Hugging Face generate's keys (docs/pretrained.md), declared so the
  # command line can set them; None (a typed placeholder) or the built-in
  # default means "unset": the imported model's generation_config.json
  # fills it in. model_generation=False ignores that file; task picks a
  # task_specific_params entry of its config.json.
  c.decode.update(dict(
      num_beams=config_dict.placeholder(int),
      do_sample=config_dict.placeholder(bool),
      max_new_tokens=config_dict.placeholder(int),
      min_new_tokens=config_dict.placeholder(int),
      repetition_penalty=1.0, no_repeat_ngram_size=0,
      model_generation=True, task=""))
  c.param_groups = (("encoder/.*", "encoder"), ("decoder/.*", "decoder"))
  if arm in ("finetune", "tiny"):
    c.group_optim = ml_collections.ConfigDict(
        {"encoder": {"learning_rate": 1e-4}})
  if arm in ("tiny", "tiny_lora"):
    c.update(max_source_length=32, max_target_length=16, max_decode_length=16,
             bucket_boundaries=(16, 32), batch_size=16, eval_batch_size=16,
             num_train_steps=30, learning_rate=3e-3, warmup_steps=5,
             log_every=5, eval_every=20, checkpoint_every=10,
             num_eval_examples=16, num_decode_examples=8)
    c.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  if arm == "tiny":
    c.group_optim.encoder.learning_rate = 1e-3
  elif arm in ("lora", "tiny_lora"):
    # LoRA adapters on config.lora.base, a workdir fine-tuned from init_from
    # (0 steps: the imported model); init_from still gives the architecture,
    # the tokenizer and the origin export_hf needs after --mode=merge_adapter.
    c.lora.targets = (r"encoder/.*/attention/(query|value)",
                      r"decoder/.*/(self|cross)_attention/(query|value)")
    c.learning_rate = 1e-3 if arm == "lora" else 1e-2
  elif arm == "frozen_encoder":
    c.frozen_groups = ("encoder",)
  elif arm == "ulmfit":
    c.param_groups = (
        (r"encoder/embedder/.*", "embeddings"),
        (r"encoder/layers_(\d+)/.*", r"encoder_\1"),
        (r"encoder/.*", "encoder_top"),  # final norm, relative positions
        (r"decoder/.*", "decoder"))
    # Top first; the encoder layer groups are named after an 8-layer T5
    # (Flan-T5-small); list yours (encoder_0 .. encoder_{L-1}).
    c.layer_groups = ("decoder", "encoder_top", "encoder_7", "encoder_6",
                      "encoder_5", "encoder_4", "encoder_3", "encoder_2",
                      "encoder_1", "encoder_0", "embeddings")
    c.lr_decay_per_group = 1.3
    c.unfreeze_every = 100
  return c
