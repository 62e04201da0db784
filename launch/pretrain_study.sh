#!/usr/bin/env bash
# The pretraining study (experiments/pretrain_study.py, docs/pretraining.md):
# pretrain the T5 of experiments/pretrain_span_corruption.py on the Python
# documentation's prose if PRETRAINED has no results.json yet, then fine-tune
# it ("pretrained") and the same model from random params ("scratch", with
# the pretrained tokenizer copied into its workdir) on the first 500, 5,000
# and 50,000 pairs (1 %, 10 %, 100 %) of command_calls, for each seed; JOBS
# runs at a time, niced. A finished run (its results.json exists) is
# skipped, so rerunning resumes the study. Ends with the table, the learning
# curves and the figure (reports/pretrain.py).
#
# Edit nothing; set the environment instead:
#   OUT=runs/pretrain_study ARMS="scratch" PAIRS="500" SEEDS="0" JOBS=1 \
#     launch/pretrain_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/pretrain_study}
PRETRAINED=${PRETRAINED:-$OUT/pretrain}
ARMS=${ARMS:-pretrained scratch}
PAIRS=${PAIRS:-500 5000 50000}
SEEDS=${SEEDS:-0 1}
JOBS=${JOBS:-2}
PY=${PY:-.venv/bin/python}
if [[ " $ARMS " == *" pretrained "* && ! -f "$PRETRAINED/results.json" ]]; then
  nice -n 5 "$PY" -m encdec_jax.main \
      --config=experiments/pretrain_span_corruption.py --workdir="$PRETRAINED"
fi
for seed in $SEEDS; do
  for n in $PAIRS; do
    for arm in $ARMS; do
      workdir="$OUT/${arm}_${n}_seed${seed}"
      [ -f "$workdir/results.json" ] && continue
      start=(--config.init_from="$PRETRAINED")
      if [ "$arm" = scratch ]; then
        start=()
        mkdir -p "$workdir"  # the pretrained tokenizer, read instead of trained
        cp "$PRETRAINED/tokenizer.model" "$workdir/"
      fi
      nice -n 5 "$PY" -m encdec_jax.main \
          --config=experiments/pretrain_study.py:"$arm" \
          "${start[@]}" \
          --config.num_train_examples="$n" --config.seed="$seed" \
          --workdir="$workdir" > "$workdir.log" 2>&1 &
      while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n || true; done
    done
  done
done
wait
"$PY" -m encdec_jax.reports.pretrain --runs="$OUT" --copied_tokens=200
