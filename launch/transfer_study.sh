#!/usr/bin/env bash
# The transfer experiment (experiments/number_classification.py): pretrain the
# number-translation model if its workdir has no checkpoint yet, then train the
# scratch / frozen / ulmfit classifiers on 100, 300 and 1,000 labels, and print
# the table and draw the plot (OUT/transfer.png).
#
# Edit nothing; set the environment instead:
#   PRETRAINED=runs/en_de OUT=runs/classify LABELS="100 300 1000" SEEDS="0" \
#     launch/transfer_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PRETRAINED=${PRETRAINED:-runs/en_de}
OUT=${OUT:-runs/classify}
LABELS=${LABELS:-100 300 1000}
SEEDS=${SEEDS:-0}
PY=${PY:-.venv/bin/python}
if [ ! -d "$PRETRAINED/checkpoints" ]; then
  "$PY" -m encdec_jax.main --config=experiments/number_translation.py \
      --workdir="$PRETRAINED"
fi
for seed in $SEEDS; do
  for n in $LABELS; do
    for arm in scratch frozen ulmfit; do
      init=()
      [ "$arm" != scratch ] && init=(--config.init_encoder="$PRETRAINED")
      "$PY" -m encdec_jax.main \
          --config=experiments/number_classification.py:"$arm" \
          --workdir="$OUT/${arm}_${n}_seed${seed}" \
          --config.num_train_examples="$n" --config.seed="$seed" "${init[@]}"
    done
  done
done
"$PY" -m encdec_jax.reports.transfer --runs="$OUT"
