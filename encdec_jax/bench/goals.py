r"""The one table of launch/bench_vs_peers.sh: each unit against its peer,
the ratio, issue 28's goal and whether it is met, the machine named.

  python -m encdec_jax.bench.goals RESULTS_DIR

Reads every RESULTS_DIR/*.jsonl (the peers' lines and encdec_jax's,
as the script writes them). A line's precision is its `dtype` (ours) or
`autocast` (the peers': none = float32, bf16 = bfloat16); base-small lines
compare with the best peer of the same unit and precision, T5-large lines
(config t5-large) with HF T5 / PEFT. Speed goals compare tokens/s (ours /
peer's); memory goals compare peak RSS (ours / peer's, lower is better);
compile goals are our compile seconds.
"""

import glob
import json
import os
import platform
import subprocess
import sys

# (config, unit, precision) -> (what, goal): "speed" ours/peer >= goal,
# "rss" ours/peer <= goal, "compile" our seconds <= goal.
GOALS = {
    ("base-small", "train", "float32"): [("speed", 1.5)],
    ("base-small", "train_varlen_grouped", "float32"): [("speed", 1.5)],
    ("base-small", "decode_greedy", "float32"): [("speed", 2.5)],
    ("base-small", "decode_beam4", "float32"): [("speed", 2.0)],
    ("base-small", "train", "bfloat16"): [("speed", 1.3)],
    ("base-small", "decode_greedy", "bfloat16"): [("speed", 2.0)],
    ("base-small", "decode_beam4", "bfloat16"): [("speed", 2.0)],
    ("t5-large", "lora_step", "float32"): [
        ("speed", 1.5), ("rss", 0.8), ("compile", 30.0)],
    ("t5-large", "full_step", "float32"): [
        ("speed", 1.3), ("rss", 1.0), ("compile", 30.0)],
    ("t5-large", "decode_greedy", "float32"): [
        ("speed", 2.0), ("compile", 30.0)],
}
# The bfloat16 T5-large units are held to the float32 goals.
for (_c, _u, _p), _g in list(GOALS.items()):
  if _c == "t5-large":
    GOALS[(_c, _u, "bfloat16")] = _g


def precision(record: dict) -> str:
  if record.get("peer") == "encdec_jax":
    return record.get("dtype", "float32")
  return "bfloat16" if record.get("autocast") == "bf16" else "float32"


def load_dir(path: str) -> list[dict]:
  records = []
  for name in sorted(glob.glob(os.path.join(path, "*.jsonl"))):
    with open(name) as f:
      records += [json.loads(line) for line in f if line.strip()]
  return [r for r in records if "unit" in r]  # not cpu_peak.jsonl's


def _key(record: dict) -> tuple:
  return (record.get("config", "base-small"), record["unit"],
          precision(record))


def _fmt(value: float, what: str) -> str:
  if what == "rss":
    return f"{value:,.0f} MB"
  if what == "compile":
    return f"{value:.1f} s"
  return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def rows(records: list[dict]) -> list[dict]:
  """One row per (config, unit, precision, goal) that has our line."""
  ours, peers = {}, {}
  for r in records:  # the last line of a unit wins (a rerun)
    if r.get("peer") == "encdec_jax":
      ours[_key(r)] = r
    else:
      peers.setdefault(_key(r), {})[r["peer"]] = r
  out = []
  for key, mine in ours.items():
    theirs = peers.get(key, {})
    best = (max(theirs.values(), key=lambda r: r["tokens_per_s"])
            if theirs else None)
    if key not in GOALS and not theirs:
      continue  # nothing to hold it to (e.g. packed's ungrouped twin)
    for what, goal in GOALS.get(key, [("speed", None)]):
      row = dict(config=key[0], unit=key[1], precision=key[2], what=what,
                 goal=goal, peer=best["peer"] if best else None)
      if what == "compile":
        row.update(ours=mine.get("compile_s"), theirs=None,
                   ratio=mine.get("compile_s"))
        row["met"] = row["ours"] is not None and row["ours"] <= goal
      else:
        field = "peak_rss_mb" if what == "rss" else "tokens_per_s"
        row.update(ours=mine.get(field),
                   theirs=best.get(field) if best else None)
        row["ratio"] = (row["ours"] / row["theirs"]
                        if row["ours"] and row["theirs"] else None)
        row["met"] = (None if row["ratio"] is None or goal is None else
                      row["ratio"] <= goal if what == "rss" else
                      row["ratio"] >= goal)
      out.append(row)
  order = lambda r: (r["config"] != "base-small", r["precision"] != "float32",
                     r["unit"], ("speed", "rss", "compile").index(r["what"]))
  return sorted(out, key=order)


def table(records: list[dict]) -> str:
  lines = ["| unit | precision | measure | encdec_jax | peer | × | goal | "
           "met? |", "|---|---|---|---:|---:|---:|---|---|"]
  for r in rows(records):
    unit = r["unit"] if r["config"] == "base-small" else (
        f"{r['unit']} (t5-large)")
    what = {"speed": "tokens/s", "rss": "peak RSS",
            "compile": "compile"}[r["what"]]
    peer = ("–" if r["theirs"] is None else
            f"{_fmt(r['theirs'], r['what'])} ({r['peer']})")
    ratio = ("–" if r["what"] == "compile" or r["ratio"] is None
             else f"{r['ratio']:.2f}")
    goal = ("–" if r["goal"] is None else
            f"≤ {r['goal']:g} s" if r["what"] == "compile" else
            f"≤ {r['goal']:g}×" if r["what"] == "rss" else
            f"≥ {r['goal']:g}×")
    met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
    ours = "–" if r["ours"] is None else _fmt(r["ours"], r["what"])
    lines.append(f"| {unit} | {r['precision']} | {what} | {ours} | {peer} "
                 f"| {ratio} | {goal} | {met} |")
  return "\n".join(lines)


def machine() -> str:
  """'<lscpu model name>, N CPUs, bf16: <flags>' of this machine."""
  model, cpus, flags = platform.processor() or "?", os.cpu_count(), set()
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
      name, _, value = line.partition(":")
      if name.strip() == "Model name":
        model = value.strip()
      elif name.strip() == "Flags":
        flags = set(value.split())
  except (OSError, subprocess.CalledProcessError):
    pass
  bf16 = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
  avx512 = "AVX-512" if "avx512f" in flags else "no AVX-512"
  return (f"{model}, {cpus} CPUs, {avx512}, bf16 instructions: "
          f"{', '.join(bf16) if bf16 else 'none'}")


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit("usage: python -m encdec_jax.bench.goals RESULTS_DIR")
  records = load_dir(argv[1])
  if not any(r.get("peer") == "encdec_jax" for r in records):
    raise SystemExit(f"no encdec_jax lines under {argv[1]}: run "
                     "launch/bench_vs_peers.sh (or python -m "
                     "encdec_jax.bench --out=...) first")
  print(f"machine: {machine()}\n")
  print(table(records))


if __name__ == "__main__":
  main(sys.argv)
