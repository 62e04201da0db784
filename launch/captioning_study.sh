#!/usr/bin/env bash
# Image captioning of digit canvases: the two decoders on all 20,000
# training captions, then "does an autoencoder's encoder help with little
# data?": 1,000 training captions, the same steps, the LSTM captioner from
# scratch vs. with its conv encoder from a conv autoencoder (frozen, and
# fine-tuned); then the attention figures.
#   launch/captioning_study.sh [RUNS_DIR=runs/captions] [FIGURES_DIR=docs/figures]
# Env: SMALL (training captions of the small-data arms), STEPS (their
# steps), PYTHON.
set -euo pipefail
root="${1:-runs/captions}"
figures="${2:-docs/figures}"
py="${PYTHON:-python}"
cfg=experiments/captioning_digits.py
small="${SMALL:-1000}"
steps="${STEPS:-600}"
for arm in attention transformer; do
  "$py" -m encdec_jax.main --config="$cfg:$arm" --workdir="$root/$arm"
done
# The autoencoder's encoder must have the captioner's conv_features.
"$py" -m encdec_jax.main --config=experiments/autoencoder_digits.py:conv \
  --workdir="$root/ae_conv3" --config.model.conv_features='(32, 64, 64)'
small_run() {  # name, extra flags...
  local name="$1"; shift
  "$py" -m encdec_jax.main --config="$cfg:attention" \
    --workdir="$root/small${small}_$name" --config.captions.num_train="$small" \
    --config.num_train_steps="$steps" --config.eval_every="$steps" \
    --config.checkpoint_every="$steps" "$@"
}
small_run scratch
small_run ae_frozen --config.init_encoder="$root/ae_conv3"
small_run ae_finetuned --config.init_encoder="$root/ae_conv3" \
  --config.init_encoder_trainable=true
"$py" -m encdec_jax.reports.captions \
  --workdirs="$root/attention,$root/transformer" --out="$figures" \
  --images=0,2,5,7
