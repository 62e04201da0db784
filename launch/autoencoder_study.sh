#!/usr/bin/env bash
# Autoencoders of scikit-learn's digits: bottleneck sweep (MLP and conv) and
# anomaly detection with each digit left out in turn, then the report.
#   launch/autoencoder_study.sh [RUNS_DIR=runs/ae] [FIGURES_DIR=docs/figures]
# Env: ZS (bottleneck sizes), DIGITS (held-out digits), PYTHON.
set -euo pipefail
root="${1:-runs/ae}"
figures="${2:-docs/figures}"
py="${PYTHON:-python}"
cfg=experiments/autoencoder_digits.py
for family in mlp conv; do
  for z in ${ZS:-2 4 8 16 32}; do
    "$py" -m encdec_jax.main --config="$cfg:$family" \
      --workdir="$root/${family}_z$z" --config.model.bottleneck_dim="$z"
  done
done
for d in ${DIGITS:-0 1 2 3 4 5 6 7 8 9}; do
  "$py" -m encdec_jax.main --config="$cfg:conv" \
    --workdir="$root/conv_anomaly$d" --config.anomaly_class="$d"
done
"$py" -m encdec_jax.reports.autoencoder --runs="$root" --out="$figures"
