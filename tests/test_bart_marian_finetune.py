"""The tiny BART and Marian imports fine-tuned with the normal trainer
(experiments/t5_finetune.py:tiny with --config.tokenizer=bart_bpe /
marian): train on a TSV, checkpoint, resume, decode, export_hf (the
exported tensors are the checkpoint's params), then LoRA on the fine-tuned
run, merged and exported. Where transformers can be run (this venv, or the
interpreter named by HF_REFERENCE_PYTHON), AutoModelForSeq2SeqLM loads both
exports and computes our logits. Needs the `pretrained` extra.
"""

import importlib.util
import json
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

from encdec_jax import exports  # noqa: E402
from encdec_jax.data import imported_tokenizers  # noqa: E402
from encdec_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from encdec_jax.decoding import greedy_decode  # noqa: E402
from encdec_jax.models.contract import (init_cache,  # noqa: E402
                                        make_tokens_to_logits)
from encdec_jax.models.encoder_decoder import EncoderDecoder  # noqa: E402
from encdec_jax.pretrained import export_hf, import_hf  # noqa: E402
from encdec_jax.train import inference, trainer  # noqa: E402
from experiments import t5_finetune  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "hf_tiny")
KINDS = {"bart": "bart_bpe", "marian": "marian"}
LORA_TARGETS = (r"encoder/.*/attention/(query|value)",
                r"decoder/.*/(self|cross)_attention/(query|value)")
# transformers' logits for each (exported dir, batch .npz, output .npy).
HF_LOGITS = """
import sys, numpy as np, torch, transformers
for exported, batch, out in zip(*[iter(sys.argv[1:])] * 3):
  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
  transformers.AutoTokenizer.from_pretrained(exported)
  inputs = {k: torch.tensor(v) for k, v in np.load(batch).items()}
  with torch.no_grad():
    np.save(out, model(**inputs).logits.numpy())
"""


def _config(family: str, pretrained: str, files: dict, steps: int,
            base: str = "") -> ml_collections.ConfigDict:
  config = t5_finetune.get_config("tiny_lora" if base else "tiny")
  config.init_from = pretrained
  config.tokenizer = KINDS[family]
  config.text_files.update(files)
  config.update(num_train_steps=steps, batch_size=8, eval_batch_size=8,
                log_every=2, eval_every=1000, checkpoint_every=2,
                num_eval_examples=8, num_decode_examples=2,
                test_at_end=False, max_decode_length=8)
  config.decode = ml_collections.ConfigDict({"model_generation": False})
  if base:
    config.group_optim = ml_collections.ConfigDict()
    config.lora.update(base=base, targets=LORA_TARGETS, rank=2, alpha=4.0)
  return config


def _train_losses(workdir: str) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def _flat(params) -> dict:
  return traverse_util.flatten_dict(jax.device_get(params))


def _assert_export_holds(out: str, params) -> None:
  expected = _flat(params)
  exported = _flat(import_hf.convert(out)[2])
  assert exported.keys() == expected.keys()
  for key, value in exported.items():
    np.testing.assert_array_equal(value, expected[key], err_msg=str(key))


def _greedy(model, params, tokenizer, lines, steps, eos) -> list[str]:
  """What --mode=decode should give: greedy from the model's start id,
  inputs padded with the tokenizer's pad id."""
  ids = [tokenizer.encode(line).tolist() + [eos] for line in lines]
  inputs = np.full((len(ids), max(map(len, ids))),
                   tokenizer_lib.pad_id_of(tokenizer), np.int32)
  for row, seq in enumerate(ids):
    inputs[row, :len(seq)] = seq
  encoded = model.apply({"params": params}, jnp.asarray(inputs),
                        method="encode")
  tokens = greedy_decode(make_tokens_to_logits(model, params, encoded),
                         init_cache(model, len(ids), steps, inputs.shape[1]),
                         len(ids), steps, eos,
                         start_id=model.config.start_id)
  return [tokenizer.decode(row) for row in np.asarray(tokens)]


def _logits(model, params, batch) -> np.ndarray:
  return np.asarray(model.apply(
      {"params": params}, jnp.asarray(batch["input_ids"]),
      jnp.asarray(batch["decoder_input_ids"])))


def _hf_python() -> str | None:
  if importlib.util.find_spec("transformers") is not None:
    return sys.executable
  return os.environ.get("HF_REFERENCE_PYTHON")


@pytest.mark.slow  # four trainer runs per family
@pytest.mark.parametrize("family", sorted(KINDS))
def test_fine_tune_resume_decode_export_and_lora(family, tmp_path,
                                                 write_copy_pairs):
  paths = {name: str(tmp_path / name) for name in
           ("pre", "run", "exported", "lora", "merged", "merged_exported")}
  import_hf.import_hf(os.path.join(DATA, family), paths["pre"])
  files = write_copy_pairs(tmp_path, num_train=32)
  run = paths["run"]

  # Trains from the imported params with the model's own tokenizer and ids.
  trainer.train_and_evaluate(_config(family, paths["pre"], files, 4), run)
  tokenizer_dir = os.path.join(run, imported_tokenizers.IMPORTED_DIR)
  for name in imported_tokenizers.IMPORTED_FILES[KINDS[family]]:
    with open(os.path.join(tokenizer_dir, name), "rb") as f, open(
        os.path.join(DATA, family, name), "rb") as g:
      assert f.read() == g.read(), name
  losses = _train_losses(run)
  assert losses[2] > losses[4], losses
  # Resumes at step 4 and trains on.
  trainer.train_and_evaluate(_config(family, paths["pre"], files, 6), run)
  losses = _train_losses(run)
  assert set(losses) == {2, 4, 6} and losses[6] < losses[4], losses

  model_config, imported, meta = import_hf.load(paths["pre"])
  model = EncoderDecoder(model_config)
  tuned = export_hf.latest_params(run)
  assert all(not np.array_equal(value, _flat(imported)[key])
             for key, value in _flat(tuned).items())
  lines = ["copy: the lazy dog house", "copy: garden play small test"]
  tokenizer = imported_tokenizers.read(tokenizer_dir, KINDS[family])
  decoded = inference.decode_lines(
      _config(family, paths["pre"], files, 6), run, lines)
  assert decoded == _greedy(model, tuned, tokenizer, lines, 8,
                            meta["eos_id"])

  assert export_hf.main(["export_hf", run, paths["exported"]]) == 0
  _assert_export_holds(paths["exported"], tuned)

  # LoRA on the fine-tuned run, merged, exported.
  lora_config = _config(family, paths["pre"], files, 2, base=run)
  trainer.train_and_evaluate(lora_config, paths["lora"])
  exports.merge_adapter(lora_config, paths["lora"], paths["merged"])
  merged = export_hf.latest_params(paths["merged"])
  assert not np.array_equal(
      _flat(merged)[("decoder", "layers_0", "self_attention", "query",
                     "kernel")],
      _flat(tuned)[("decoder", "layers_0", "self_attention", "query",
                    "kernel")])
  assert export_hf.main(["export_hf", paths["merged"],
                         paths["merged_exported"]]) == 0
  _assert_export_holds(paths["merged_exported"], merged)

  python = _hf_python()
  if python is None:
    pytest.skip("transformers is not installed (or set HF_REFERENCE_PYTHON)")
  with np.load(os.path.join(DATA, family, "reference.npz")) as ref:
    batch = {k: ref[k] for k in ("input_ids", "attention_mask",
                                 "decoder_input_ids")}
  np.savez(tmp_path / "batch.npz", **batch)
  args = []
  for name in ("exported", "merged_exported"):
    args += [paths[name], str(tmp_path / "batch.npz"),
             str(tmp_path / f"{name}.npy")]
  subprocess.run([python, "-c", HF_LOGITS, *args], check=True,
                 env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  for name, params in (("exported", tuned), ("merged_exported", merged)):
    hf_logits = np.load(tmp_path / f"{name}.npy")
    ours = _logits(model, params, batch)
    assert hf_logits.shape == ours.shape
    assert np.abs(hf_logits - ours).max() <= 1e-5 * np.abs(
        hf_logits).max(), name
