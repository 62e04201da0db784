#!/usr/bin/env bash
# Side-by-side speed: the PyTorch peers of ../shared/bench (eager
# nn.Transformer, HF BART, torch.compile) and encdec_jax, one right after the
# other on this machine, then the ratio table. Training runs for every peer;
# decoding by default only for HF `generate` (the peer with a KV cache: the
# others re-run the decoder over the prefix and take ~15 min more; add them
# with DECODE_PEERS). Takes ~20 min on 2 cores (~10 without VARLEN_PEERS="").
#
# Edit nothing; set the environment instead:
#   PEERS_DIR=../shared/bench/peers  where the peers harness lives
#   PEERS_VENV=.peers_venv           its venv (created here on first use:
#                                    CPU torch 2.13.0 + its requirements.txt)
#   TRAIN_PEERS="torch_nn_transformer hf_bart torch_compile"
#   DECODE_PEERS="hf_bart"
#   VARLEN_PEERS="torch_nn_transformer hf_bart"  the variable-length units
#                                    (train_varlen, train_varlen_grouped:
#                                    real target tokens/s over 1,600 pairs;
#                                    encdec_jax trains them packed,
#                                    python -m encdec_jax.bench.packed)
#   OUT=runs/bench  THREADS=2
#   LATENCY=1        0 skips the decoding-latency / speculative rows
#                    (encdec_jax.bench.decode_latency, bench/hf_latency.py)
#   SPEC_K=4 SPEC_DRAFT=self:1   speculative decoding's k and draft
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR=${PEERS_DIR:-../shared/bench/peers}
PEERS_VENV=${PEERS_VENV:-.peers_venv}
OUT=${OUT:-runs/bench}
TRAIN_PEERS=${TRAIN_PEERS:-torch_nn_transformer hf_bart torch_compile}
DECODE_PEERS=${DECODE_PEERS:-hf_bart}
VARLEN_PEERS=${VARLEN_PEERS-torch_nn_transformer hf_bart}
THREADS=${THREADS:-2}
LATENCY=${LATENCY:-1}
SPEC_K=${SPEC_K:-4}
SPEC_DRAFT=${SPEC_DRAFT:-self:1}
PY=${PY:-.venv/bin/python}
if [ ! -d "$PEERS_DIR" ]; then
  echo "error: no peers harness at $PEERS_DIR; set PEERS_DIR" >&2; exit 1
fi
if [ ! -x "$PEERS_VENV/bin/python" ]; then
  python3 -m venv "$PEERS_VENV"
  "$PEERS_VENV/bin/pip" install -q "${TORCH_SPEC:-torch==2.13.0}"
  "$PEERS_VENV/bin/pip" install -q -r "$PEERS_DIR/requirements.txt"
fi
mkdir -p "$OUT/train" "$OUT/decode" "$OUT/varlen"
PY="$PEERS_VENV/bin/python" RES="$OUT/train" PEERS="$TRAIN_PEERS" \
    UNITS=train THREADS="$THREADS" bash "$PEERS_DIR/run_all.sh"
PY="$PEERS_VENV/bin/python" RES="$OUT/decode" PEERS="$DECODE_PEERS" \
    UNITS="decode_greedy decode_beam4" THREADS="$THREADS" \
    bash "$PEERS_DIR/run_all.sh"
: > "$OUT/varlen/peers.jsonl"
if [ -n "$VARLEN_PEERS" ]; then
  PY="$PEERS_VENV/bin/python" RES="$OUT/varlen" PEERS="$VARLEN_PEERS" \
      UNITS="train_varlen train_varlen_grouped" THREADS="$THREADS" \
      bash "$PEERS_DIR/run_all.sh"
fi
cat "$OUT/train/peers.jsonl" "$OUT/decode/peers.jsonl" \
    "$OUT/varlen/peers.jsonl" > "$OUT/peers.jsonl"
cp "$OUT/train/cpu_peak.jsonl" "$OUT/cpu_peak.jsonl"
: > "$OUT/encdec_jax.jsonl"
# MFU against the same peak the peers' report uses (torch matmul, median).
peak=$(python3 -c "import json; print([json.loads(l) for l in open('$OUT/cpu_peak.jsonl')][-1]['torch_gflops_median'])")
for unit in train decode_greedy decode_beam4; do
  "$PEERS_VENV/bin/python" "$PEERS_DIR/wait_quiet.py" --timeout 600 || true
  "$PY" -m encdec_jax.bench --unit="$unit" --out="$OUT/encdec_jax.jsonl" \
      --peak_gflops="$peak"
done
if [ -n "$VARLEN_PEERS" ]; then  # one line per varlen unit: packed
  "$PEERS_VENV/bin/python" "$PEERS_DIR/wait_quiet.py" --timeout 600 || true
  "$PY" -m encdec_jax.bench.packed --peers_dir="$PEERS_DIR" \
      --out="$OUT/encdec_jax.jsonl" --peak_gflops="$peak"
fi
if [ "$LATENCY" = 1 ]; then
  # Batch-1 latency of HF generate (greedy, beam 4, sampling) and
  # ours (+ speculative at batch 1 and 32), one right after the other.
  "$PEERS_VENV/bin/python" "$PEERS_DIR/wait_quiet.py" --timeout 600 || true
  "$PEERS_VENV/bin/python" encdec_jax/bench/hf_latency.py \
      --peers_dir "$PEERS_DIR" --threads "$THREADS" --out "$OUT/peers.jsonl"
  "$PEERS_VENV/bin/python" "$PEERS_DIR/wait_quiet.py" --timeout 600 || true
  "$PY" -m encdec_jax.bench.decode_latency --k="$SPEC_K" \
      --draft="$SPEC_DRAFT" --out="$OUT/encdec_jax.jsonl"
fi
"$PY" -m encdec_jax.bench.compare "$OUT"
