"""Writes a LoRA run and a run fine-tuned from an imported Hugging Face model,
saved by the code of their day, and what that code made of them.

tests/test_checkpoint_compat.py copies them elsewhere (as a user who moved
their directories would, passing the new paths in config.lora.base and
config.init_from) and checks that the current code resumes, evaluates,
decodes and exports them as the code of their day did (expected.json).
Rerun this only on purpose (a deliberate format change), from a clean
checkout of the commit whose checkpoints the fixture should hold (README.md
here: a worktree, PYTHONPATH=<it>), then copy what it wrote back:

  .venv/bin/python tests/data/old_checkpoint/regenerate_lora_and_import.py

It writes beside itself (~1.8 MB):
  lora_base/     a tiny transformer (bytes tokenizer) trained STEP steps
  lora_run/      LoRA adapters (QV targets) trained STEP steps on lora_base
  t5_import/     tests/data/hf_tiny/t5_v11 as `import_hf` writes it
  t5_finetuned/  t5_import fine-tuned STEP steps (config.init_from)
  expected.json  the source commit, and per run: the step, decodes of a few
                 lines, eval losses, sha256s of the adapters / the exported
                 Hugging Face tensors
Each workdir keeps config.json, tokenizer.model (if any), pretrained/ (the
origin config.init_from installs) and checkpoints/<STEP>: no metrics,
TensorBoard files or logs (a resume does not read them).
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
STEP = 4  # Every run's one checkpoint.
LORA_BASE, LORA_RUN = "lora_base", "lora_run"
T5_IMPORT, T5_FINETUNED = "t5_import", "t5_finetuned"
EXPECTED = "expected.json"
KEPT = ("config.json", "tokenizer.model", "pretrained", "checkpoints")
QV = (r"encoder/.*/attention/(query|value)",
      r"decoder/.*/self_attention/(query|value)")
DECODE_LINES = ["12", "7", "245"]


def _plain_fixture():
  """regenerate.py (the plain run's): its digits -> words TSV splits."""
  spec = importlib.util.spec_from_file_location(
      "old_checkpoint_regenerate", os.path.join(HERE, "regenerate.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


write_text_files = _plain_fixture().write_text_files


def _run_settings(c, num_train_steps: int) -> None:
  c.update(num_train_steps=num_train_steps, checkpoint_every=STEP,
           keep_checkpoints=1, log_every=STEP, eval_every=1000,
           num_eval_examples=16, num_decode_examples=4, test_at_end=False,
           warmup_steps=0, schedule="constant", max_decode_length=12)


def lora_base_config(text_files: dict, num_train_steps: int):
  """experiments/tiny.py (bytes tokenizer) on the digits -> words splits."""
  from experiments import tiny
  c = tiny.get_config()
  c.dataset = "text_files"
  c.text_files.update(text_files)
  _run_settings(c, num_train_steps)
  return c


def lora_config(text_files: dict, base: str, num_train_steps: int):
  """LoRA on query/value of the base's attentions (test_lora's QV)."""
  c = lora_base_config(text_files, num_train_steps)
  c.learning_rate = 1e-2  # a few steps move the adapters visibly
  c.lora.update(base=base, targets=QV)
  return c


def finetune_config(text_files: dict, init_from: str, num_train_steps: int):
  """experiments/t5_finetune.py:tiny (encoder and decoder groups) from the
  import_hf directory `init_from`."""
  from experiments import t5_finetune
  c = t5_finetune.get_config("tiny")
  c.init_from = init_from
  c.text_files.update(text_files)
  _run_settings(c, num_train_steps)
  return c


def sha256(x) -> str:
  import numpy as np
  x = np.ascontiguousarray(np.asarray(x))
  return hashlib.sha256(f"{x.dtype.str}{x.shape}".encode() +
                        x.tobytes()).hexdigest()


def tree_sha256(tree) -> dict:
  """{"a/b/c": sha256} of a nested dict of arrays."""
  from flax import traverse_util
  return {"/".join(k): sha256(v)
          for k, v in sorted(traverse_util.flatten_dict(tree).items())}


def read_checkpoint_meta(workdir: str, step: int = STEP) -> dict:
  with open(os.path.join(workdir, "checkpoints", str(step), "meta",
                         "metadata"), encoding="utf-8") as f:
    return json.load(f)


def eval_losses(results: dict) -> dict:
  return {split: results[split]["loss"] for split in sorted(results)}


def _source_commit() -> str:
  """HEAD of the checkout this runs from; refuses uncommitted code."""
  git = lambda *a: subprocess.run(["git", "-C", REPO, *a], check=True,
                                  capture_output=True, text=True).stdout
  dirty = git("status", "--porcelain", "--", "encdec_jax", "experiments")
  if dirty:
    sys.exit(f"uncommitted changes in {REPO}:\n{dirty}write the fixture "
             "from a clean checkout (git worktree add /tmp/src HEAD)")
  return git("rev-parse", "HEAD").strip()


def _keep(run: str, name: str) -> None:
  """Copies the parts of workdir `run` a resume needs to HERE/name."""
  target = os.path.join(HERE, name)
  shutil.rmtree(target, ignore_errors=True)
  os.makedirs(target)
  for kept in KEPT:
    source = os.path.join(run, kept)
    if os.path.isdir(source):
      shutil.copytree(source, os.path.join(target, kept))
    elif os.path.exists(source):
      shutil.copy2(source, os.path.join(target, kept))


def main() -> None:
  # The tests' settings (tests/conftest.py), so that decodes match theirs.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  sys.path.insert(0, REPO)
  import jax
  jax.config.update("jax_default_matmul_precision", "float32")
  import encdec_jax
  if not os.path.abspath(encdec_jax.__file__).startswith(REPO + os.sep):
    sys.exit(f"encdec_jax comes from {encdec_jax.__file__}, not {REPO}: "
             f"run with PYTHONPATH={REPO}")
  commit = _source_commit()
  from encdec_jax.pretrained import export_hf, import_hf
  from encdec_jax.train import inference, trainer
  from safetensors.numpy import load_file

  with tempfile.TemporaryDirectory() as tmp:
    files = write_text_files(tmp)
    run = lambda name: os.path.join(tmp, "runs", name)
    trainer.train_and_evaluate(lora_base_config(files, STEP), run(LORA_BASE))
    trainer.train_and_evaluate(lora_config(files, run(LORA_BASE), STEP),
                               run(LORA_RUN))
    import_hf.import_hf(os.path.join(REPO, "tests", "data", "hf_tiny",
                                     "t5_v11"), run(T5_IMPORT))
    trainer.train_and_evaluate(finetune_config(files, run(T5_IMPORT), STEP),
                               run(T5_FINETUNED))
    for name in (LORA_BASE, LORA_RUN, T5_FINETUNED):
      _keep(run(name), name)
    shutil.rmtree(os.path.join(HERE, T5_IMPORT), ignore_errors=True)
    shutil.copytree(run(T5_IMPORT), os.path.join(HERE, T5_IMPORT))

    # What this code makes of the runs. The LoRA run where it was trained:
    # today's code refuses it once its base has moved (meta["lora"]["base"]
    # is compared as a path; see test_checkpoint_compat.py). The fine-tuned
    # run moved, as the tests use it.
    lora = lora_config(files, run(LORA_BASE), STEP)
    base = lora_base_config(files, STEP)
    _, params, step = inference.restore_latest(lora, run(LORA_RUN))
    assert step == STEP
    lora_decoded = inference.decode_lines(lora, run(LORA_RUN), DECODE_LINES)
    base_decoded = inference.decode_lines(base, run(LORA_BASE), DECODE_LINES)
    assert lora_decoded != base_decoded, (lora_decoded, base_decoded)
    meta = read_checkpoint_meta(run(LORA_RUN))
    lora_eval = eval_losses(inference.evaluate_checkpoint(lora, run(LORA_RUN)))
    moved = os.path.join(tmp, "moved")
    for name in (T5_IMPORT, T5_FINETUNED):
      shutil.copytree(os.path.join(HERE, name), os.path.join(moved, name))
    at = lambda name: os.path.join(moved, name)
    tuned = finetune_config(files, at(T5_IMPORT), STEP)
    ft_decoded = inference.decode_lines(tuned, at(T5_FINETUNED), DECODE_LINES)
    ft_eval = eval_losses(inference.evaluate_checkpoint(tuned,
                                                        at(T5_FINETUNED)))
    export_hf.export_hf(at(T5_FINETUNED), os.path.join(tmp, "exported"))
    exported = load_file(os.path.join(tmp, "exported", "model.safetensors"))
    expected = {
        "source_commit": commit,
        "decode_lines": DECODE_LINES,
        LORA_RUN: {
            "step": STEP, "base_hash": meta["lora"]["base_hash"],
            "decoded": lora_decoded, "base_decoded": base_decoded,
            "eval_loss": lora_eval,
            "adapter_sha256": tree_sha256(jax.device_get(params["lora"]))},
        T5_FINETUNED: {
            "step": STEP, "decoded": ft_decoded,
            "eval_loss": ft_eval,
            "export_sha256": {k: sha256(v)
                              for k, v in sorted(exported.items())}},
    }
  with open(os.path.join(HERE, EXPECTED), "w", encoding="utf-8") as f:
    json.dump(expected, f, indent=2)
    f.write("\n")
  print(f"wrote {', '.join((LORA_BASE, LORA_RUN, T5_IMPORT, T5_FINETUNED))} "
        f"and {EXPECTED} in {HERE} (code of {commit})")


if __name__ == "__main__":
  main()
