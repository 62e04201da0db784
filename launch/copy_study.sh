#!/usr/bin/env bash
# The copy study (experiments/copy_generalisation.py): on commands
# whose test values never occur in training, the Transformer and the RNN with
# and without the pointer-generator copy head, and the other remedies (more
# dropout and label smoothing, relative positions, a byte tokenizer); then
# the main job with copy on. One run at a time; a finished run (its
# results.json exists) is skipped, so rerunning resumes the study. Ends with
# the table, the figure and the pointer heatmaps (reports/copy.py).
#
# Edit nothing; set the environment instead:
#   OUT=runs/copy ARMS="transformer_copy transformer" launch/copy_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/copy}
PY=${PY:-.venv/bin/python}
CONFIG=experiments/copy_generalisation.py
COPY=--config.model.copy=true
BYTES=--config.tokenizer=bytes
RELATIVE="--config.model.position_embedding=none \
--config.model.relative_position_buckets=32"
REGULARISED="--config.model.dropout_rate=0.3 \
--config.model.attention_dropout_rate=0.1 --config.label_smoothing=0.2"
declare -A RUNS=(
  [transformer]="$CONFIG"
  [transformer_copy]="$CONFIG $COPY"
  [transformer_regularised]="$CONFIG $REGULARISED"
  [transformer_relative]="$CONFIG $RELATIVE"
  [transformer_relative_copy]="$CONFIG $RELATIVE $COPY"
  [transformer_bytes]="$CONFIG $BYTES"
  [transformer_bytes_copy]="$CONFIG $BYTES $COPY"
  [rnn]="$CONFIG:rnn"
  [rnn_copy]="$CONFIG:rnn $COPY"
  [en_de_copy]="$CONFIG:en_de $COPY"
)
ARMS=${ARMS:-transformer_copy transformer transformer_bytes \
transformer_bytes_copy transformer_regularised transformer_relative \
transformer_relative_copy rnn_copy rnn en_de_copy}
for arm in $ARMS; do
  [ -f "$OUT/$arm/results.json" ] && continue
  read -r config flags <<< "${RUNS[$arm]} "
  # shellcheck disable=SC2086  # the flags are words
  "$PY" -m encdec_jax.main --config="$config" --workdir="$OUT/$arm" $flags
done
"$PY" -m encdec_jax.reports.copy --runs="$OUT"
