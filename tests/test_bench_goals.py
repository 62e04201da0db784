"""launch/bench_vs_peers.sh's one table (encdec_jax/bench/goals.py) and the
T5 v1.1-large bench's model (encdec_jax/bench/t5_large.py)."""
import json

import jax
import numpy as np

from encdec_jax.bench import goals
from encdec_jax.bench import t5_large_work as t5_large
from encdec_jax.models import registry
from encdec_jax.train import experiment


def _write(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_table_holds_each_unit_to_its_goal_against_the_same_precision(
    tmp_path, capsys):
  _write(tmp_path / "peers.jsonl", [
      {"peer": "hf_bart", "unit": "train", "config": "base-small",
       "tokens_per_s": 1000.0, "autocast": "none"},
      {"peer": "torch_nn_transformer", "unit": "train",
       "config": "base-small", "tokens_per_s": 2000.0, "autocast": "none"},
      {"peer": "hf_bart", "unit": "train", "config": "base-small",
       "tokens_per_s": 4000.0, "autocast": "bf16"},
      {"peer": "hf_t5_peft", "unit": "lora_step", "config": "t5-large",
       "tokens_per_s": 2.0, "peak_rss_mb": 4000.0, "autocast": "none"}])
  _write(tmp_path / "encdec_jax.jsonl", [
      {"peer": "encdec_jax", "unit": "train", "config": "base-small",
       "tokens_per_s": 3200.0, "dtype": "float32"},
      {"peer": "encdec_jax", "unit": "train", "config": "base-small",
       "tokens_per_s": 6000.0, "dtype": "bfloat16"},
      {"peer": "encdec_jax", "unit": "lora_step", "config": "t5-large",
       "tokens_per_s": 3.2, "peak_rss_mb": 3000.0, "compile_s": 40.0,
       "dtype": "float32"}])
  (tmp_path / "cpu_peak.jsonl").write_text('{"torch_gflops_median": 300}\n')
  by = {(r["unit"], r["precision"], r["what"]): r
        for r in goals.rows(goals.load_dir(str(tmp_path)))}
  # float32 against the best float32 peer, bfloat16 against autocast bf16.
  assert by[("train", "float32", "speed")]["ratio"] == 1.6
  assert by[("train", "float32", "speed")]["met"] is True  # >= 1.5
  assert by[("train", "bfloat16", "speed")]["ratio"] == 1.5
  assert by[("train", "bfloat16", "speed")]["met"] is True  # >= 1.3
  assert by[("lora_step", "float32", "speed")]["met"] is True  # 1.6 >= 1.5
  assert by[("lora_step", "float32", "rss")]["ratio"] == 0.75
  assert by[("lora_step", "float32", "rss")]["met"] is True  # <= 0.8
  assert by[("lora_step", "float32", "compile")]["met"] is False  # > 30 s
  goals.main(["goals", str(tmp_path)])
  out = capsys.readouterr().out
  assert out.startswith("machine: ")
  assert ("| train | float32 | tokens/s | 3,200 | 2,000 "
          "(torch_nn_transformer) | 1.60 | ≥ 1.5× | yes |") in out
  assert ("| lora_step (t5-large) | float32 | compile | 40.0 s | – | – "
          "| ≤ 30 s | **no** |") in out


def test_the_t5_large_model_is_t5_v1_1_large():
  config = t5_large.config()
  model = registry.build_model(config.model, t5_large.VOCAB)
  shapes = jax.eval_shape(lambda r: experiment.init_params(model, r, config),
                          jax.random.key(0))
  # HF's T5 v1.1-large with an untied lm_head: 783,150,080 parameters.
  assert experiment.count_params(shapes) == 783_150_080
  assert t5_large.batch()["inputs"].shape == (2, 64)
  assert np.all(t5_large.batch()["targets"] >= 4)
