"""Hugging Face `generate` at batch 1: the peer of decode_latency.py.

Run with the peers' venv (torch + transformers), as a file (it imports no
encdec_jax, so no JAX is needed there):

  .peers_venv/bin/python encdec_jax/bench/hf_latency.py \\
      --peers_dir ../shared/bench/peers --out runs/bench/peers.jsonl

The same base-small BART as the peers harness (hf_bart.build_model, random
weights, generate with the KV cache, exactly 64 new tokens), on the first
source row of the harness's batches, units latency_greedy / latency_beam4 /
latency_sample (do_sample=True, temperature 1) and latency_assisted (HF's
speculative decoding: assistant_model = the same BART cut to its first
decoder layer; greedy). ttft_ms is generate with max_new_tokens=1,
per_token_ms = (t_64 - t_1) / 63; one JSON line per unit (peer hf_bart).
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--peers_dir", default="../shared/bench/peers")
  # latency_assisted (HF assisted generation, a 1-layer draft) stops with
  # an IndexError in the draft's position table on this BART config with
  # transformers 5.23 (2026-11-29), so it is not run by default.
  p.add_argument("--units", default="latency_greedy,latency_beam4,"
                 "latency_sample")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--out", default="")
  args = p.parse_args()
  sys.path.insert(0, os.path.abspath(args.peers_dir))
  import common  # noqa: E402  (the peers harness)
  import hf_bart  # noqa: E402
  import torch
  import transformers
  transformers.logging.set_verbosity_error()
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  cfg = common.CONFIGS["base-small"] if hasattr(common, "CONFIGS") else None
  if cfg is None:
    cfg = common.parse_args(hf_bart.PEER, ["--unit", "decode_greedy"]).cfg
  model = hf_bart.build_model(cfg).eval()
  src = common.make_batches(cfg, 0)[0][0][:1]
  mask = torch.ones_like(src)
  new = cfg.new_tokens

  def run(unit, tokens):
    beams = cfg.beams if unit == "latency_beam4" else 1
    gc = hf_bart.gen_config(cfg, beams)
    gc.max_new_tokens = gc.min_new_tokens = tokens
    kwargs = {}
    if unit == "latency_sample":
      gc.do_sample, gc.temperature, gc.top_k = True, 1.0, 0
    if unit == "latency_assisted":
      draft = copy.deepcopy(model)
      draft.model.decoder.layers = draft.model.decoder.layers[:1]
      draft.config.decoder_layers = 1
      kwargs["assistant_model"] = draft
    with torch.inference_mode():
      model.generate(input_ids=src, attention_mask=mask, generation_config=gc,
                     **kwargs)

  def timed(unit, tokens):
    for _ in range(args.warmup):
      run(unit, tokens)
    times = []
    for _ in range(args.steps):
      start = time.perf_counter()
      run(unit, tokens)
      times.append(time.perf_counter() - start)
    return times

  for unit in args.units.split(","):
    times, t1 = timed(unit, new), timed(unit, 1)
    med, ttft = statistics.median(times), statistics.median(t1)
    line = json.dumps({
        "peer": hf_bart.PEER, "unit": unit, "batch": 1,
        "tokens_per_s": round(new / med, 2),
        "step_ms_median": round(1e3 * med, 2),
        "step_ms_min": round(1e3 * min(times), 2),
        "step_ms_max": round(1e3 * max(times), 2),
        "ttft_ms": round(1e3 * ttft, 2),
        "per_token_ms": round(1e3 * (med - ttft) / (new - 1), 3),
        "threads": torch.get_num_threads(), "config": "base-small",
        "transformers": transformers.__version__})
    print(line, flush=True)
    if args.out:
      with open(args.out, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
  main()
