#!/usr/bin/env bash
# The copy study (experiments/copy_generalisation.py): on commands
# whose test values never occur in training, the Transformer and the RNN with
# and without the pointer-generator copy head, and the other remedies (more
# dropout and label smoothing, relative positions, a byte tokenizer); then
# the main job with copy on. Then the remedies for values past the edge
# (docs/copy.md): supervised copy, value substitution, both, each with the
# copy head; an arm name ending in _seed1 is the same run with
# --config.seed=1. One run at a time (start two scripts with disjoint ARMS
# to run two); a finished run (its results.json exists) is skipped, so
# rerunning resumes the study. Ends with the table (with the novel-prefix
# split, evaluated from each run's checkpoint), the figures and the pointer
# heatmaps (reports/copy.py).
#
# Edit nothing; set the environment instead:
#   OUT=runs/copy ARMS="transformer_copy transformer" launch/copy_study.sh
#   ARMS=... REPORT=0 launch/copy_study.sh   # runs only, no report
#   EXTRA="--config.eval_every=1000" ...      # flags added to every run
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/copy}
PY=${PY:-.venv/bin/python}
CONFIG=experiments/copy_generalisation.py
COPY=--config.model.copy=true
BYTES=--config.tokenizer=bytes
RELATIVE="--config.model.position_embedding=none \
--config.model.relative_position_buckets=32"
SUPERVISED=--config.copy_supervision=1.0
SUBSTITUTED=--config.substitute_values=0.5
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
  [transformer_copy_supervised]="$CONFIG $COPY $SUPERVISED"
  [transformer_copy_substituted]="$CONFIG $COPY $SUBSTITUTED"
  [transformer_copy_both]="$CONFIG $COPY $SUPERVISED $SUBSTITUTED"
  [transformer_relative_copy_both]="$CONFIG $RELATIVE $COPY $SUPERVISED \
$SUBSTITUTED"
  [rnn_copy_supervised]="$CONFIG:rnn $COPY $SUPERVISED"
  [rnn_copy_substituted]="$CONFIG:rnn $COPY $SUBSTITUTED"
  [rnn_copy_both]="$CONFIG:rnn $COPY $SUPERVISED $SUBSTITUTED"
  [en_de_copy_both]="$CONFIG:en_de $COPY $SUPERVISED $SUBSTITUTED"
  [en_de_copy_substituted]="$CONFIG:en_de $COPY $SUBSTITUTED"
)
ARMS=${ARMS:-transformer_copy transformer transformer_bytes \
transformer_bytes_copy transformer_regularised transformer_relative \
transformer_relative_copy rnn_copy rnn en_de_copy \
transformer_copy_supervised transformer_copy_substituted transformer_copy_both \
transformer_copy_seed1 transformer_copy_supervised_seed1 \
transformer_copy_substituted_seed1 transformer_copy_both_seed1 \
rnn_copy_both rnn_copy_seed1 rnn_copy_both_seed1 en_de_copy_substituted \
transformer_relative_copy_both}
for arm in $ARMS; do
  [ -f "$OUT/$arm/results.json" ] && continue
  run=${arm%_seed1} seed=()
  [ "$run" != "$arm" ] && seed=(--config.seed=1)
  read -r config flags <<< "${RUNS[$run]} "
  # shellcheck disable=SC2086  # the flags are words
  "$PY" -m encdec_jax.main --config="$config" --workdir="$OUT/$arm" $flags \
    "${seed[@]}" ${EXTRA:-}
done
[ "${REPORT:-1}" = 0 ] && exit
"$PY" -m encdec_jax.reports.copy --runs="$OUT"
"$PY" -m encdec_jax.reports.copy_edge --runs="$OUT"
