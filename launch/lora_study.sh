#!/usr/bin/env bash
# The LoRA experiment (experiments/number_translation_lora_de_en.py): train the
# main job (en->de) if BASE has no checkpoint yet, adapt it to de->en numbers (the reverse direction)
# five ways (LoRA rank 2/8/32, full fine-tuning, frozen encoder), then print
# the accuracy-vs-trainable-parameters table and draw OUT/lora.png.
#
#   BASE=runs/en_de OUT=runs/lora_de_en SEEDS="0" ARMS="lora_r8 full" \
#       launch/lora_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-runs/en_de}
OUT=${OUT:-runs/lora_de_en}
SEEDS=${SEEDS:-0}
PY=${PY:-.venv/bin/python}
if [ ! -d "$BASE/checkpoints" ]; then
  "$PY" -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir="$BASE"
fi
for seed in $SEEDS; do
  for arm in ${ARMS:-lora_r8 full frozen_encoder lora_r2 lora_r32}; do
    "$PY" -m encdec_jax.main \
        --config=experiments/number_translation_lora_de_en.py:"$arm" \
        --workdir="$OUT/${arm}_seed${seed}" --config.lora.base="$BASE" \
        --config.seed="$seed"
  done
done
"$PY" -m encdec_jax.reports.lora --runs="$OUT"
