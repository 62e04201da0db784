#!/usr/bin/env bash
# Attention vs. source length (Bahdanau et al. 2015, Fig. 2): LSTM without
# attention, LSTM with additive attention, Transformer; same data and budget.
#   launch/length_study.sh [RUNS_DIR=runs/length] [FIGURES_DIR=docs/figures]
# Env: ARMS (subset of the arms), PYTHON.
set -euo pipefail
root="${1:-runs/length}"
figures="${2:-docs/figures}"
py="${PYTHON:-python}"
for arm in ${ARMS:-bottleneck attention transformer}; do
  "$py" -m encdec_jax.main --config="experiments/attention_vs_length.py:$arm" \
    --workdir="$root/$arm"
done
"$py" -m encdec_jax.reports.length --runs="$root" --out="$figures"
"$py" -m encdec_jax.reports.attention \
  --workdirs="$root/transformer,$root/attention" --out="$figures"
