"""LoRA on an imported Hugging Face model, merged and exported back: the tiny
T5 v1.1 imported, fine-tuned 0 steps into a workdir (the LoRA base),
LoRA-trained with config.init_from (architecture, tokenizer, origin),
--mode=merge_adapter, then export_hf of the merged workdir. The export holds
the merged weights (not the base's) and transformers computes our logits
from it. Needs the `pretrained` extra; the transformers check also needs
torch + transformers, in this venv or in the interpreter named by
HF_REFERENCE_PYTHON (the hf-reference extra's environment).
"""

import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

for _module in ("safetensors", "tokenizers"):
  pytest.importorskip(_module, reason=f"{_module} is not installed: "
                      "pip install -e '.[pretrained]'")

from encdec_jax import lora  # noqa: E402
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.pretrained import export_hf, import_hf  # noqa: E402
from encdec_jax import exports  # noqa: E402
from encdec_jax.train import inference, trainer  # noqa: E402
from experiments import t5_finetune  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
TARGETS = (r"encoder/.*/attention/(query|value)",
           r"decoder/.*/(self|cross)_attention/(query|value)",
           r"decoder/.*/mlp/(intermediate|output)")
# transformers' logits of an exported directory on a saved batch.
HF_LOGITS = """
import sys, numpy as np, torch, transformers
model = transformers.AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1]).eval()
transformers.AutoTokenizer.from_pretrained(sys.argv[1])
batch = {k: torch.tensor(v) for k, v in np.load(sys.argv[2]).items()}
with torch.no_grad():
  np.save(sys.argv[3], model(**batch).logits.numpy())
"""


def _config(pretrained: str, files: dict, steps: int, base: str = ""):
  config = t5_finetune.get_config("tiny")
  config.init_from = pretrained
  config.text_files.update(files)
  config.update(num_train_steps=steps, batch_size=8, eval_batch_size=8,
                learning_rate=1e-2, warmup_steps=0, schedule="constant",
                eval_every=1000, checkpoint_every=1000, num_eval_examples=8,
                num_decode_examples=0, test_at_end=False)
  if base:  # the adapters' own groups (lora_encoder, lora_decoder)
    config.group_optim = ml_collections.ConfigDict()
    config.lora.update(base=base, targets=TARGETS, rank=4, alpha=8.0)
  return config


def _logits(model, params, batch):
  return np.asarray(jax.jit(lambda p: model.apply(
      {"params": p}, jnp.asarray(batch["input_ids"]),
      jnp.asarray(batch["decoder_input_ids"]), deterministic=True))(params))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, write_copy_pairs):
  """import -> base (0 steps) -> LoRA (4 steps) -> merged -> exported."""
  tmp = tmp_path_factory.mktemp("lora_hf")
  paths = {name: str(tmp / name)
           for name in ("pre", "base", "lora", "merged", "exported")}
  import_hf.import_hf(os.path.join(DATA, "t5_v11"), paths["pre"])
  files = write_copy_pairs(tmp, num_train=32)
  trainer.train_and_evaluate(_config(paths["pre"], files, 0), paths["base"])
  lora_config = _config(paths["pre"], files, 4, base=paths["base"])
  trainer.train_and_evaluate(lora_config, paths["lora"])
  exports.merge_adapter(lora_config, paths["lora"], paths["merged"])
  assert export_hf.main(["export_hf", paths["merged"],
                         paths["exported"]]) == 0
  return lora_config, paths


@pytest.fixture(scope="module")
def batch():
  with np.load(os.path.join(DATA, "t5_v11", "reference.npz")) as ref:
    return {k: ref[k] for k in ("input_ids", "attention_mask",
                                "decoder_input_ids")}


def test_the_export_holds_the_merged_lora_model_not_the_base(runs, batch):
  config, paths = runs
  model_config, imported, _ = import_hf.load(paths["pre"])
  model = EncoderDecoder(model_config)
  merged = export_hf.latest_params(paths["merged"])
  exported = import_hf.convert(paths["exported"])[2]
  flat = traverse_util.flatten_dict(merged)
  for key, value in traverse_util.flatten_dict(exported).items():
    np.testing.assert_array_equal(value, flat[key], err_msg=str(key))
  # The merged model is the LoRA run's (base + adapters, unmerged) ...
  _, lora_params, _ = inference.restore_latest(config, paths["lora"])
  unmerged = _logits(lora.LoraModel(model, config.lora), jax.device_get(lora_params),
                     batch)
  ours = _logits(model, merged, batch)
  scale = np.abs(ours).max()
  assert np.abs(ours - unmerged).max() <= 1e-5 * scale
  # ... and the adapters moved it away from the imported base.
  assert np.abs(ours - _logits(model, imported, batch)).max() > 1e-2 * scale


def test_transformers_loads_the_export_with_our_logits(runs, batch, tmp_path):
  python = sys.executable
  if importlib.util.find_spec("transformers") is None:
    python = os.environ.get("HF_REFERENCE_PYTHON")
    if not python:
      pytest.importorskip("transformers", reason="transformers is not "
                          "installed (or set HF_REFERENCE_PYTHON)")
  _, paths = runs
  np.savez(tmp_path / "batch.npz", **batch)
  out = str(tmp_path / "hf_logits.npy")
  subprocess.run([python, "-c", HF_LOGITS, paths["exported"],
                  str(tmp_path / "batch.npz"), out], check=True,
                 env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  hf_logits = np.load(out)
  model = EncoderDecoder(import_hf.load(paths["pre"])[0])
  ours = _logits(model, export_hf.latest_params(paths["merged"]), batch)
  assert hf_logits.shape == ours.shape
  assert np.abs(hf_logits - ours).max() <= 1e-5 * np.abs(hf_logits).max()
