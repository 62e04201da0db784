r"""Ratio table: encdec_jax against the PyTorch peers, unit by unit.

  python -m encdec_jax.bench.compare runs/bench

Reads `peers.jsonl` (the peers harness) and `encdec_jax.jsonl` (python -m
encdec_jax.bench --out=...) from the directory, as written by
launch/bench_vs_peers.sh, and prints Markdown: tokens/s of every peer and of
encdec_jax, and encdec_jax's ratio to the best peer; then the decoding table
(decode_table): greedy, beam 4 and speculative against our greedy and
against HF `generate`, at batch 32 and at batch 1 with time-to-first-token
and per-token latency (encdec_jax.bench.decode_latency, hf_latency).
"""

import json
import os
import sys


def load(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def table(peers: list[dict], ours: list[dict]) -> str:
  units = [r["unit"] for r in ours if r["unit"] not in DECODE_ONLY]
  names = sorted({r["peer"] for r in peers})
  by = {(r["peer"], r["unit"]): r for r in peers + ours}
  head = ("| unit | " + " | ".join(names) + " | encdec_jax | × best peer "
          "| encdec_jax MFU | compile s |")
  rows = [head, "|---" * (len(names) + 5) + "|"]
  for unit in units:
    mine = by[("encdec_jax", unit)]
    theirs = [by[(n, unit)]["tokens_per_s"] for n in names if (n, unit) in by]
    best = max(theirs) if theirs else float("nan")
    cells = [f"{by[(n, unit)]['tokens_per_s']:,.0f}" if (n, unit) in by
             else "–" for n in names]
    rows.append(f"| {unit} | " + " | ".join(cells) +
                f" | **{mine['tokens_per_s']:,.0f}** | "
                f"{mine['tokens_per_s'] / best:.2f} | "
                f"{100 * mine['mfu']:.0f} % | {mine.get('compile_s', 0):.1f} |")
  return "\n".join(rows)


# unit -> (our greedy of the same batch, the HF unit it is compared with)
DECODE_ROWS = {
    "decode_greedy": ("decode_greedy", "decode_greedy"),
    "decode_beam4": ("decode_greedy", "decode_beam4"),
    "decode_speculative": ("decode_greedy", "decode_greedy"),
    "latency_greedy": ("latency_greedy", "latency_greedy"),
    "latency_beam4": ("latency_greedy", "latency_beam4"),
    "latency_sample": ("latency_greedy", "latency_sample"),
    "latency_speculative": ("latency_greedy", "latency_greedy"),
}
DECODE_ONLY = {"decode_speculative", "latency_greedy", "latency_beam4",
               "latency_sample", "latency_speculative"}


def decode_table(peers: list[dict], ours: list[dict]) -> str:
  """Decoding rows: tokens/s, x our greedy (same batch; a speculative line's
  own same-process greedy when it has one), x HF (speculative against HF
  greedy and HF assisted generation), batch-1 latency, acceptance."""
  mine = {r["unit"]: r for r in ours}
  hf = {r["unit"]: r for r in peers if r["peer"] == "hf_bart"}
  fmt = lambda x, f="{:,.0f}": "–" if x is None else f.format(x)
  rows = ["| unit | batch | encdec_jax tok/s | × our greedy | HF tok/s | "
          "× HF | TTFT ms (ours / HF) | per-token ms (ours / HF) | "
          "acceptance |", "|---" * 9 + "|"]
  for unit, (greedy_unit, hf_unit) in DECODE_ROWS.items():
    if unit not in mine:
      continue
    r = mine[unit]
    vs_greedy = r.get("speedup_vs_greedy")
    if vs_greedy is None and greedy_unit in mine:
      vs_greedy = r["tokens_per_s"] / mine[greedy_unit]["tokens_per_s"]
    h = hf.get(hf_unit)
    vs_hf = r["tokens_per_s"] / h["tokens_per_s"] if h else None
    if unit == "latency_speculative" and "latency_assisted" in hf:
      assisted = r["tokens_per_s"] / hf["latency_assisted"]["tokens_per_s"]
      vs_hf_s = (f"{fmt(vs_hf, '{:.2f}')} (× assisted "
                 f"{assisted:.2f})")
    else:
      vs_hf_s = fmt(vs_hf, "{:.2f}")
    lat = lambda key: (f"{fmt(r.get(key), '{:.1f}')} / "
                       f"{fmt(h.get(key) if h else None, '{:.1f}')}"
                       if key in r else "–")
    rows.append(
        f"| {unit} | {r.get('batch', 32)} | **{r['tokens_per_s']:,.0f}** | "
        f"{fmt(vs_greedy, '{:.2f}')} | "
        f"{fmt(h['tokens_per_s'] if h else None)} | {vs_hf_s} | "
        f"{lat('ttft_ms')} | {lat('per_token_ms')} | "
        f"{fmt(r.get('acceptance'), '{:.2f}')} |")
  return "\n".join(rows)


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit("usage: python -m encdec_jax.bench.compare RESULTS_DIR")
  peers = load(os.path.join(argv[1], "peers.jsonl"))
  ours = load(os.path.join(argv[1], "encdec_jax.jsonl"))
  print("tokens/s (median of the timed steps), base-small, float32:\n")
  print(table(peers, ours))
  if any(r["unit"] in DECODE_ROWS for r in ours):
    print("\ndecoding (speculative: greedy's tokens; its × HF is against HF "
          "greedy):\n")
    print(decode_table(peers, ours))
  if any(r["unit"].startswith("train_varlen") for r in ours):
    print("\ntrain_varlen*: real (non-pad) target tokens/s of one timed pass "
          "over the same 1,600 pairs; the peers pad each batch (grouped: "
          "after sorting by length), encdec_jax packs them "
          "(python -m encdec_jax.bench.packed, data/packing.py); its MFU "
          "counts real tokens only.")


if __name__ == "__main__":
  main(sys.argv)
