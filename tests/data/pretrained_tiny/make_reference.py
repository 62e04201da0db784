r"""Records, once, what transformers computes from the export of a tiny
pretrained T5, for tests/test_pretraining_reference.py (which needs no
torch). Run from the repository root in our venv, naming a Python that has
torch and transformers:

  .venv/bin/python tests/data/pretrained_tiny/make_reference.py \
      /tmp/torchvenv/bin/python

Pretrains the tiny T5 of tests/test_pretraining.py (span corruption on the
Python documentation, 4 steps, 300 pieces + 100 extra ids) in a temporary
workdir, writes its export_hf directory to hf/, and records in
reference.npz a batch of two test paragraphs with sentinels, the logits
AutoModelForSeq2SeqLM computes on it, the ids AutoTokenizer gives
<extra_id_0> and <extra_id_99>, and the versions that computed them.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from encdec_jax.data import python_docs
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.pretrained import export_hf
from encdec_jax.train import trainer
from experiments import pretrain_span_corruption

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_MODEL = dict(emb_dim=32, qkv_dim=32, num_heads=2, mlp_dim=64,
                  num_encoder_layers=1, num_decoder_layers=1,
                  relative_position_buckets=8,
                  relative_position_max_distance=16)
HF_LOGITS = """
import json, sys, numpy as np, torch, transformers
model = transformers.AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1]).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
batch = {k: torch.tensor(v) for k, v in np.load(sys.argv[2]).items()}
with torch.no_grad():
  np.save(sys.argv[3], model(**batch).logits.numpy())
print(json.dumps({"extra_ids": tokenizer.convert_tokens_to_ids(
    ["<extra_id_0>", "<extra_id_99>"]), "torch": torch.__version__,
    "transformers": transformers.__version__}))
"""


def tiny_config():
  config = pretrain_span_corruption.get_config()
  config.model.update(TINY_MODEL)
  config.update(vocab_size=300, batch_size=8, eval_batch_size=16,
                num_train_steps=4, warmup_steps=0, eval_every=1000,
                checkpoint_every=1000, num_eval_examples=32,
                test_at_end=False, log_every=2)
  return config


def batch(tokenizer) -> dict[str, np.ndarray]:
  """Two test paragraphs' first pieces, a sentinel and EOS; decoder inputs
  from the start id with sentinels (<extra_id_0> = 399, <extra_id_1> = 398)."""
  inputs = [tokenizer.encode(t)[:12].tolist() + [399, 1]
            for t in python_docs.split("test")[:2]]
  ids = np.zeros((2, max(map(len, inputs))), np.int64)
  for row, seq in zip(ids, inputs):
    row[:len(seq)] = seq
  return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64),
          "decoder_input_ids": np.asarray([[0, 399, 17, 5], [0, 399, 8, 398]],
                                          np.int64)}


def main(reference_python: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, "pretrain")
    trainer.train_and_evaluate(tiny_config(), workdir)
    out = os.path.join(HERE, "hf")
    shutil.rmtree(out, ignore_errors=True)
    export_hf.export_hf(workdir, out)
    with open(tokenizer_lib.tokenizer_path(workdir), "rb") as f:
      inputs = batch(tokenizer_lib.SentencePieceTokenizer(f.read()))
    np.savez(os.path.join(tmp, "batch.npz"), **inputs)
    result = subprocess.run(
        [reference_python, "-c", HF_LOGITS, out,
         os.path.join(tmp, "batch.npz"), os.path.join(tmp, "logits.npy")],
        check=True, capture_output=True, text=True,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    recorded = json.loads(result.stdout.strip().splitlines()[-1])
    logits = np.load(os.path.join(tmp, "logits.npy"))
  np.savez(os.path.join(HERE, "reference.npz"), **inputs, logits=logits,
           extra_ids=np.asarray(recorded["extra_ids"]))
  with open(os.path.join(HERE, "versions.json"), "w") as f:
    json.dump({k: recorded[k] for k in ("torch", "transformers")}, f,
              indent=1)
  print(f"wrote {out} and reference.npz: logits {logits.shape}, "
        f"extra ids {recorded['extra_ids']}")


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  main(sys.argv[1])
