r"""What LoRA buys: the main job's en→de model adapted to en→fr numbers.

Arms (`--config=experiments/number_translation_lora_en_fr.py:<arm>`), all
from the same base (the main job's workdir, config.lora.base, default
runs/en_de) with its tokenizer and architecture, on en→fr numbers below 10^12
(experiments/number_translation_en_fr.py's data):

  lora_r2, lora_r8, lora_r32   LoRA of every attention projection (query,
                               key, value, out) and MLP of both stacks, rank
                               2 / 8 / 32, alpha = 2 * rank; the base frozen;
  full                         every base parameter trains (full fine-tuning);
  frozen_encoder               the encoder frozen, the decoder (with the
                               embeddings and head) trained.

The three LoRA arms train at lr 1e-3, the others at the main job's lr; same
steps and batch. launch/lora_study.sh runs them all and
`python -m encdec_jax.reports.lora --runs=runs/lora_en_fr` prints accuracy
vs trainable parameters (Markdown) and writes lora.png.

Result: not run yet (needs the main job's checkpoint in runs/en_de).
"""

from experiments import number_translation, number_translation_en_fr

ARMS = ("lora_r2", "lora_r8", "lora_r32", "full", "frozen_encoder")
ALL_PROJECTIONS = (r"(encoder|decoder)/.*attention/(query|key|value|out)",
                   r"(encoder|decoder)/.*/mlp/(intermediate|output)")


def get_config(arm: str = "lora_r8"):
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()  # the base's model and tokenizer
  fr = number_translation_en_fr.get_config()
  c.update(dataset=fr.dataset, target_lang=fr.target_lang,
           max_source_length=64, max_target_length=64, max_decode_length=64,
           bucket_boundaries=fr.bucket_boundaries, bleu_tokenize="13a",
           num_train_steps=1000, warmup_steps=100, eval_every=250,
           checkpoint_every=250)
  c.lora.base = "runs/en_de"
  c.lora.targets = ALL_PROJECTIONS
  if arm.startswith("lora_r"):
    rank = int(arm[len("lora_r"):])
    c.lora.update(rank=rank, alpha=2.0 * rank)
    c.learning_rate = 1e-3
  else:  # the base trains through the same {base, lora} tree
    c.lora.train_base = True
    if arm == "frozen_encoder":
      c.lora.param_groups = (("base/encoder/.*", "frozen"),
                             ("base/.*", "decoder"), ("lora/.*", "frozen"))
  return c
