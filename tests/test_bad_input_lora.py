"""Bad LoRA input: config.lora.targets of the wrong type, a rank as large
as the kernel, and export_hf of a LoRA run that was never merged."""

import json
import os
import re

import jax
import ml_collections
import pytest

from encdec_jax import lora
from encdec_jax.models import registry
from encdec_jax.pretrained import export_hf, import_hf
from experiments import tiny

T5 = os.path.join(os.path.dirname(__file__), "data", "hf_tiny", "t5_v11")


def _base(**model):
  """The abstract params of experiments/tiny.py's model (emb_dim 32)."""
  config = tiny.get_config()
  config.model.update(model)
  module = registry.build_model(config.model, 40)
  ids_1x4 = jax.numpy.ones((1, 4), jax.numpy.int32)
  return config, jax.eval_shape(
      lambda: module.init(jax.random.key(0), ids_1x4, ids_1x4))["params"]


@pytest.mark.parametrize("targets, message", [
    ((5,), "config.lora.targets: 5 is not a regex or a (regex, {settings}) "
           "pair"),
    (((r"encoder/.*/attention/query", 4),),
     "config.lora.targets: ('encoder/.*/attention/query', 4) is not a regex "
     "or a (regex, {settings}) pair"),
    (((r"encoder/.*/attention/query", {"rank": 2.5}),),
     "config.lora.targets: 'encoder/.*/attention/query' has rank 2.5; use "
     "an integer rank >= 1"),
    (((r"encoder/.*/attention/query", {"alpha": "big"}),),
     "config.lora.targets: 'encoder/.*/attention/query' has alpha 'big'; "
     "use a number"),
])
def test_targets_of_the_wrong_type_are_one_line(targets, message):
  config, base = _base()
  config.lora.targets = targets
  with pytest.raises(ValueError, match=re.escape(message)):
    lora.adapters.resolve(config.lora, base)


def test_a_single_pattern_string_is_one_target_not_its_characters():
  _, base = _base()
  lora_config = {"targets": r"encoder/.*/attention/(query|value)"}
  chosen = lora.adapters.resolve(lora_config, base)
  assert sorted("/".join(p) for p in chosen) == [
      "encoder/layers_0/attention/query", "encoder/layers_0/attention/value"]


def test_a_rank_as_large_as_the_kernel_is_warned_about_once(capsys):
  config, base = _base()
  config.lora.targets = (r"encoder/.*/attention/(query|value)",)
  config.lora.rank = 32  # emb_dim 32: the kernels are (32, heads, 32/heads)
  lora.adapters.init(config.lora, base, jax.random.key(0))
  lora.adapters.init(config.lora, base, jax.random.key(0))
  err = capsys.readouterr().err
  assert err.count("\n") == 1, err
  assert err.startswith(
      "warning: config.lora rank 32 is >= the smaller side of 2 kernels "
      "(encoder/layers_0/attention/query: 32 in, 32 out)")
  config.lora.rank = 4
  lora.adapters.init(config.lora, base, jax.random.key(0))
  assert capsys.readouterr().err == ""


def test_export_hf_of_an_unmerged_lora_run_says_to_merge_it(tmp_path, capsys):
  """A LoRA workdir's checkpoints hold {"base", "lora"}: refused before any
  checkpoint is read, with the command that merges it."""
  pytest.importorskip("safetensors")
  workdir, out = tmp_path / "lora_run", str(tmp_path / "exported")
  import_hf.import_hf(T5, str(workdir / export_hf.ORIGIN))
  config = ml_collections.ConfigDict(
      {"lora": {"targets": [r"encoder/.*/attention/query"], "rank": 4},
       "model": {}})
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  assert export_hf.main(["export_hf", str(workdir), out]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1
  assert (f"error: {workdir} is a LoRA run: its checkpoints hold adapters "
          "beside the frozen base; merge them first with --mode="
          "merge_adapter --output=MERGED") in err
  assert f"export_hf MERGED {out}" in err
  assert not os.path.exists(out)
