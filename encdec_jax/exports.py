"""--mode=export_encoder, export_adapter and merge_adapter: a trained
workdir's encoder or LoRA adapters written out for another run to use.

Each restores a run (train/inference.py) and writes another directory, a
new one, whole or not at all (checkpoint/output_dir.py):
  export_encoder  the newest checkpoint's encoder, its spec and tokenizer
                  (checkpoint/encoder.py), for --config.init_encoder;
  export_adapter  a LoRA run's adapters and adapter.json (lora/store.py),
                  for --config.lora.adapter on the same base;
  merge_adapter   the adapters folded into the base: a plain workdir that
                  decodes at full speed and exports like any trained model
                  (a model imported from Hugging Face keeps its origin, so
                  `python -m encdec_jax.pretrained.export_hf` takes it).
"""

import os
import shutil

import numpy as np

from encdec_jax import checkpoint
from encdec_jax.checkpoint import output_dir
from encdec_jax.data import tokenizer as tokenizer_lib
from encdec_jax.lora import adapters, store
from encdec_jax.pretrained import export_hf
from encdec_jax.train import experiment, inference
from encdec_jax.train import step as step_lib


def _check_output(mode: str, output: str, what: str) -> str:
  """The absolute --output, refused before the run is restored if it is
  '-' or a non-empty directory (output_dir.py writes it)."""
  if output == "-":
    raise ValueError(f"--mode={mode} needs --output=DIR, a new directory.")
  return output_dir.check_new(output, what)


def export_encoder(config, workdir: str, output: str) -> None:
  del config  # the workdir's checkpoint says everything
  output = _check_output("export_encoder", output, "the encoder")
  step = checkpoint.export_encoder(workdir, output)
  print(f"saved the encoder of step {step} in {output}; fine-tune from it "
        f"with --config.init_encoder={output}")


def _lora_meta(workdir: str) -> dict:
  """meta["lora"] of the workdir's newest checkpoint ({} if none)."""
  meta = checkpoint.read_meta(checkpoint.make_manager(workdir,
                                                      async_save=False))
  return meta.get("lora") or {}


def export_adapter(config, workdir: str, output: str) -> None:
  """Writes the newest checkpoint's adapters of a LoRA workdir."""
  output = _check_output("export_adapter", output, "the adapter")
  exp, params, step = inference.restore_latest(config, workdir)
  if not (isinstance(params, dict) and "lora" in params):
    raise ValueError(f"{workdir} is not a LoRA run (config.lora.targets is "
                     "empty); nothing to export.")
  spec = store.make_spec(exp.config, _lora_meta(workdir), step,
                         params["lora"])
  store.save_adapter(output, params["lora"], spec)
  print(f"saved the adapters of step {spec['step']} ({spec['num_params']:,} "
        f"params) in {output}; apply them with --config.lora.adapter="
        f"{output} and --workdir=<the base run, {spec['base']}>")


def origin_dir(workdir: str, base: str | None) -> str | None:
  """The Hugging Face origin (pretrained.json + hf/) of a LoRA run: its own
  copy (config.init_from installs one), else its base run's; None when the
  model was not imported."""
  for run in (workdir, base):
    origin = run and os.path.join(run, export_hf.ORIGIN)
    if origin and os.path.isfile(os.path.join(origin, "pretrained.json")):
      return origin
  return None


def merge_adapter(config, workdir: str, output: str) -> None:
  """Folds the adapters of `workdir`'s newest checkpoint (or of
  config.lora.adapter on the base run in `workdir`) into the base and writes
  a plain workdir `output`."""
  output = _check_output("merge_adapter", output, "the merged model")
  exp, params, step = inference.restore_latest(config, workdir)
  if not (isinstance(params, dict) and set(params) == {"base", "lora"}):
    raise ValueError(f"{workdir} holds no adapter to merge (a LoRA run's "
                     "workdir, or --config.lora.adapter=DIR on its base).")
  merged = adapters.merge(exp.config.lora, params["base"], params["lora"])
  plain = config.copy_and_resolve_references()
  plain.lora.targets, plain.lora.adapter, plain.lora.base = (), "", ""
  # export_hf reads the merged params against the imported model's files.
  origin = origin_dir(workdir, _lora_meta(workdir).get("base"))
  state = step_lib.TrainState(step=np.asarray(step, np.int32),
                              params=merged, opt_state={})
  with output_dir.new_directory(output, "the merged model") as partial:
    for name in tokenizer_lib.TOKENIZER_FILES.values():  # the same vocabulary
      if os.path.exists(os.path.join(workdir, name)):
        shutil.copy(os.path.join(workdir, name), os.path.join(partial, name))
    if origin:
      shutil.copytree(origin, os.path.join(partial, export_hf.ORIGIN))
    experiment.save_config(plain, partial)
    manager = checkpoint.make_manager(partial, async_save=False)
    checkpoint.save(manager, state, {}, experiment.checkpoint_meta(exp))
    checkpoint.wait_until_committed(manager)
    manager.close()
  print(f"merged the adapters of step {step} into the base: a plain workdir "
        f"in {output}; decode it with the same flags and --workdir={output}")
