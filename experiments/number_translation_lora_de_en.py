r"""What LoRA buys: the main job's en→de model adapted to de→en numbers.

The same numbers (< 10^6, number_translation/en_de), the other way round:
the encoder that read English must now read German, the decoder that wrote
German must write English. The base's tokenizer (shared by both languages)
covers both, so every arm reads and writes the same pieces.

Arms (`--config=experiments/number_translation_lora_de_en.py:<arm>`), all
from the same base (the main job's workdir, config.lora.base, default
runs/en_de) with its tokenizer and architecture:

  lora_r2, lora_r8, lora_r32   LoRA of every attention projection (query,
                               key, value, out) and MLP of both stacks, rank
                               2 / 8 / 32, alpha = 2 * rank; the base frozen;
  full                         every base parameter trains (full fine-tuning);
  frozen_encoder               the encoder frozen, the decoder (with the
                               embeddings and head) trained.

The three LoRA arms train at lr 3e-3, the others at the main job's 2e-3;
all 600 steps of 128 (the main job: 1,500). launch/lora_study.sh runs them
all and `python -m encdec_jax.reports.lora --runs=runs/lora_de_en` prints
accuracy vs trainable parameters (Markdown) and writes lora.png.

Result (2026-11-29/30, 2-core Intel Xeon CPU, seeds 0 and 1, 1.5-2.2 min an
arm), test exact match, mean ± s.d.: lora_r2 0.08 ± 0.04 %, lora_r8
93.12 ± 0.60 %, lora_r32 99.85 ± 0.07 %, frozen_encoder 99.03 ± 0.25 %,
full 99.88 ± 0.04 % (docs/lora.md, "LoRA: low-rank adapters on a frozen
encoder–decoder", has the table).
"""

from experiments import number_translation

ARMS = ("lora_r2", "lora_r8", "lora_r32", "full", "frozen_encoder")
ALL_PROJECTIONS = (r"(encoder|decoder)/.*attention/(query|key|value|out)",
                   r"(encoder|decoder)/.*/mlp/(intermediate|output)")


def get_config(arm: str = "lora_r8"):
  number_translation.check_arm(arm, ARMS, __file__)
  c = number_translation.get_config()  # the base's model and tokenizer
  c.update(source_lang="de", target_lang="en", bleu_tokenize="13a",
           num_train_steps=600, warmup_steps=60, eval_every=300,
           checkpoint_every=300)
  c.lora.base = "runs/en_de"
  c.lora.targets = ALL_PROJECTIONS
  if arm.startswith("lora_r"):
    rank = int(arm[len("lora_r"):])
    c.lora.update(rank=rank, alpha=2.0 * rank)
    c.learning_rate = 3e-3
  else:  # the base trains through the same {base, lora} tree
    c.lora.train_base = True
    if arm == "frozen_encoder":
      c.lora.param_groups = (("base/encoder/.*", "frozen"),
                             ("base/.*", "decoder"), ("lora/.*", "frozen"))
  return c
