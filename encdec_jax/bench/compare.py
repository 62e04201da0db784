r"""Ratio table: encdec_jax against the PyTorch peers, unit by unit.

  python -m encdec_jax.bench.compare runs/bench

Reads `peers.jsonl` (the peers harness) and `encdec_jax.jsonl` (python -m
encdec_jax.bench --out=...) from the directory, as written by
launch/bench_vs_peers.sh, and prints Markdown: tokens/s of every peer and of
encdec_jax, and encdec_jax's ratio to the best peer.
"""

import json
import os
import sys


def load(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def table(peers: list[dict], ours: list[dict]) -> str:
  units = [r["unit"] for r in ours]
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


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit("usage: python -m encdec_jax.bench.compare RESULTS_DIR")
  peers = load(os.path.join(argv[1], "peers.jsonl"))
  ours = load(os.path.join(argv[1], "encdec_jax.jsonl"))
  print("tokens/s (median of the timed steps), base-small, float32:\n")
  print(table(peers, ours))
  if any(r["unit"].startswith("train_varlen") for r in ours):
    print("\ntrain_varlen*: real (non-pad) target tokens/s of one timed pass "
          "over the same 1,600 pairs; the peers pad each batch (grouped: "
          "after sorting by length), encdec_jax packs them "
          "(python -m encdec_jax.bench.packed, data/packing.py); its MFU "
          "counts real tokens only.")


if __name__ == "__main__":
  main(sys.argv)
