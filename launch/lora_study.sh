#!/usr/bin/env bash
# The LoRA experiment (experiments/number_translation_lora_en_fr.py): train the
# main job (en->de) if BASE has no checkpoint yet, adapt it to en->fr numbers
# five ways (LoRA rank 2/8/32, full fine-tuning, frozen encoder), then print
# the accuracy-vs-trainable-parameters table and draw OUT/lora.png.
#
#   BASE=runs/en_de OUT=runs/lora_en_fr SEEDS="0" launch/lora_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-runs/en_de}
OUT=${OUT:-runs/lora_en_fr}
SEEDS=${SEEDS:-0}
PY=${PY:-.venv/bin/python}
if [ ! -d "$BASE/checkpoints" ]; then
  "$PY" -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir="$BASE"
fi
for seed in $SEEDS; do
  for arm in lora_r2 lora_r8 lora_r32 full frozen_encoder; do
    "$PY" -m encdec_jax.main \
        --config=experiments/number_translation_lora_en_fr.py:"$arm" \
        --workdir="$OUT/${arm}_seed${seed}" --config.lora.base="$BASE" \
        --config.seed="$seed"
  done
done
"$PY" -m encdec_jax.reports.lora --runs="$OUT"
