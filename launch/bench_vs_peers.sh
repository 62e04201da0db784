#!/usr/bin/env bash
# Side by side, one process per (side, unit), one right after the other on
# this machine: the PyTorch peers of ../shared/bench and encdec_jax, then ONE
# table (python -m encdec_jax.bench.goals): unit, ours, peer, ratio, issue
# 28's goal, met?, with the machine named (lscpu model, bf16 flags).
#   1. base-small (batch 32, lengths 64): train, decode_greedy, decode_beam4
#      in float32 against TRAIN_PEERS / HF generate, and, where the CPU has
#      bfloat16 instructions (avx512_bf16 / amx_bf16), ours in
#      --dtype=bfloat16 against the peers under --autocast bf16;
#   2. packed variable-length training (train_varlen_grouped) against the
#      VARLEN_PEERS (length-grouped batches);
#   3. T5 v1.1-large shapes (750 M params, batch 2, source 64, target 16):
#      lora_step (vs PEFT), full_step and decode_greedy (vs HF T5), step
#      speed, peak RSS and compile seconds (encdec_jax.bench.t5_large,
#      peers/hf_t5_large.py), LARGE_DTYPES of them.
# ~13 min on a quiet 2-core Xeon. Edit nothing; set the environment instead:
#   PEERS_DIR=../shared/bench/peers  where the peers harness lives
#   PEERS_VENV=.peers_venv           its venv (created here on first use:
#                                    CPU torch 2.13.0 + requirements.txt,
#                                    which has transformers and peft)
#   TRAIN_PEERS="torch_nn_transformer hf_bart"   (add torch_compile: +2 min)
#   DECODE_PEERS="hf_bart"  VARLEN_PEERS="hf_bart" (empty: skip part 2)
#   BF16=auto|0|1   the bfloat16 rows (auto: where the CPU has bf16)
#   LARGE=1         0 skips part 3
#   LARGE_DTYPES="float32"   add bfloat16 for its rows too (+6 min)
#   LATENCY=0       1 adds batch-1 latency and speculative decoding (HF and
#                   ours, +4 min), tabled apart in $OUT/latency/report.md
#   OUT=runs/bench  THREADS=2  QUIET_TIMEOUT=120 (wait_quiet.py per run)
#   STEPS=10 WARMUP=3  base-small timed/untimed steps (T5-large: 3 and 1)
#   LOCK=/tmp/team/bigmem.lock  the T5-large units (4-14 GiB each) run
#                               under flock on it, when the file exists
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR=${PEERS_DIR:-../shared/bench/peers}
PEERS_VENV=${PEERS_VENV:-.peers_venv}
OUT=${OUT:-runs/bench}
TRAIN_PEERS=${TRAIN_PEERS:-torch_nn_transformer hf_bart}
DECODE_PEERS=${DECODE_PEERS:-hf_bart}
VARLEN_PEERS=${VARLEN_PEERS-hf_bart}
BF16=${BF16:-auto}
LARGE=${LARGE:-1}
LARGE_DTYPES=${LARGE_DTYPES:-float32}
LATENCY=${LATENCY:-0}
THREADS=${THREADS:-2}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
QUIET_TIMEOUT=${QUIET_TIMEOUT:-120}
LOCK=${LOCK:-/tmp/team/bigmem.lock}
PY=${PY:-.venv/bin/python}
if [ ! -d "$PEERS_DIR" ]; then
  echo "error: no peers harness at $PEERS_DIR; set PEERS_DIR" >&2; exit 1
fi
if [ ! -x "$PEERS_VENV/bin/python" ]; then
  python3 -m venv "$PEERS_VENV"
  "$PEERS_VENV/bin/pip" install -q "${TORCH_SPEC:-torch==2.13.0}"
  "$PEERS_VENV/bin/pip" install -q -r "$PEERS_DIR/requirements.txt"
fi
TPY="$PEERS_VENV/bin/python"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONWARNINGS=ignore
if [ "$BF16" = auto ]; then
  BF16=0
  grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && BF16=1
fi
PRECISIONS="float32"
[ "$BF16" = 1 ] && PRECISIONS="float32 bfloat16"
autocast() { [ "$1" = bfloat16 ] && echo bf16 || echo none; }
quiet() { "$TPY" "$PEERS_DIR/wait_quiet.py" --timeout "$QUIET_TIMEOUT" || true; }
big() {  # one large unit at a time on a shared machine
  if [ -e "$LOCK" ]; then flock "$LOCK" "$@"; else "$@"; fi
}
mkdir -p "$OUT"
PEERS_OUT="$OUT/peers.jsonl" OURS_OUT="$OUT/encdec_jax.jsonl"
: > "$PEERS_OUT"; : > "$OURS_OUT"; : > "$OUT/cpu_peak.jsonl"
start=$(date +%s)
note() { echo "== $(( $(date +%s) - start )) s: $*" >&2; }

quiet
"$TPY" "$PEERS_DIR/cpu_peak.py" --threads "$THREADS" --out "$OUT/cpu_peak.jsonl"
peak=$("$TPY" -c "import json; print([json.loads(l) for l in open('$OUT/cpu_peak.jsonl')][-1]['torch_gflops_median'])")

for precision in $PRECISIONS; do  # 1. base-small
  ac=$(autocast "$precision")
  for peer in $TRAIN_PEERS; do
    quiet; note "$peer train $precision"
    "$TPY" "$PEERS_DIR/$peer.py" --unit train --config base-small \
        --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" \
        --autocast "$ac" --out "$PEERS_OUT" \
        || echo "!! $peer train $precision failed" >&2
  done
  for peer in $DECODE_PEERS; do
    for unit in decode_greedy decode_beam4; do
      quiet; note "$peer $unit $precision"
      "$TPY" "$PEERS_DIR/$peer.py" --unit "$unit" --config base-small \
          --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" \
          --autocast "$ac" --out "$PEERS_OUT" \
          || echo "!! $peer $unit $precision failed" >&2
    done
  done
  quiet; note "encdec_jax base-small $precision"
  peak_flag=()  # float32 MFU against the peers' torch peak; bf16: its own
  [ "$precision" = float32 ] && peak_flag=(--peak_gflops="$peak")
  "$PY" -m encdec_jax.bench --unit=all --dtype="$precision" \
      --steps="$STEPS" --warmup="$WARMUP" "${peak_flag[@]}" --out="$OURS_OUT"
done

if [ -n "$VARLEN_PEERS" ]; then  # 2. packed vs length-grouped
  for peer in $VARLEN_PEERS; do
    quiet; note "$peer train_varlen_grouped"
    "$TPY" "$PEERS_DIR/$peer.py" --unit train_varlen_grouped \
        --config base-small --threads "$THREADS" --out "$PEERS_OUT" \
        || echo "!! $peer train_varlen_grouped failed" >&2
  done
  quiet; note "encdec_jax packed"
  "$PY" -m encdec_jax.bench.packed --peers_dir="$PEERS_DIR" \
      --out="$OURS_OUT" --peak_gflops="$peak"
fi

if [ "$LARGE" = 1 ]; then  # 3. T5 v1.1-large shapes, one unit a process
  for precision in $LARGE_DTYPES; do
    for unit in lora_step full_step decode_greedy; do
      quiet; note "hf_t5_large $unit $precision"
      big "$TPY" "$PEERS_DIR/hf_t5_large.py" --unit "$unit" \
          --threads "$THREADS" --autocast "$(autocast "$precision")" \
          --out "$PEERS_OUT" || echo "!! hf_t5_large $unit failed" >&2
      quiet; note "encdec_jax t5_large $unit $precision"
      big "$PY" -m encdec_jax.bench.t5_large --unit="$unit" \
          --dtype="$precision" --out="$OURS_OUT"
    done
  done
fi
if [ "$LATENCY" = 1 ]; then  # not in the goal table: its own report
  mkdir -p "$OUT/latency"; : > "$OUT/latency/peers.jsonl"
  : > "$OUT/latency/encdec_jax.jsonl"
  quiet; note "latency (HF)"
  "$TPY" encdec_jax/bench/hf_latency.py --peers_dir "$PEERS_DIR" \
      --threads "$THREADS" --out "$OUT/latency/peers.jsonl"
  quiet; note "latency (encdec_jax)"
  "$PY" -m encdec_jax.bench.decode_latency --out="$OUT/latency/encdec_jax.jsonl"
  "$PY" -m encdec_jax.bench.compare "$OUT/latency" > "$OUT/latency/report.md"
fi
note "done"
echo
echo "encdec_jax vs PyTorch peers, $(date -u +%F), threads $THREADS" \
     "(results: $OUT; per-unit lines in $OURS_OUT and $PEERS_OUT)"
"$PY" -m encdec_jax.bench.goals "$OUT"
