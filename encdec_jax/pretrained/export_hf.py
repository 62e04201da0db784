r"""Our T5 / BART / Marian EncoderDecoder back to Hugging Face format:

  python -m encdec_jax.pretrained.export_hf SRC OUT [--dtype=float16]

SRC is an import_hf directory, or a training workdir fine-tuned from one
(--config.init_from=...; its latest checkpoint's params are written). OUT (a
new directory) gets config.json, generation_config.json and the tokenizer
files as import_hf found them, and model.safetensors with the tensors the
family's table names, in the dtype the model was imported as (pretrained.
json's weights_dtype: float32 unless import_hf was given --dtype; --dtype
here overrides it), so that

  transformers.AutoModelForSeq2SeqLM.from_pretrained(OUT)
  transformers.AutoTokenizer.from_pretrained(OUT)

load it. An unchanged import exports bit for bit the tensors it was
imported from (tests/test_pretrained_hf.py), when they were imported in
their own dtype (float32 by default, --dtype=float16 for a float16 file)
and saved by transformers >= 5 (which writes no tied copies); older files'
tied copies (encoder.embed_tokens, ...) and T5's unused
EncDecAttention.relative_attention_bias are not written back.
"""

import os
import shutil
import sys

import jax
import numpy as np
from flax import traverse_util

from encdec_jax import checkpoint
from encdec_jax.checkpoint import output_dir
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained import import_hf, stacking

# What a fine-tuning workdir keeps of its pretrained origin (the trainer
# copies it there): pretrained.json and hf/.
ORIGIN = "pretrained"


EXPORTED = "the Hugging Face export"  # what output_dir calls OUT

def export_params(params, meta: dict, hf_files_dir: str, out_dir: str,
                  dtype: str | None = None) -> None:
  """Writes `params` (our EncoderDecoder's) as a Hugging Face directory, as
  `dtype` (a name; default: the import's weights_dtype); `meta` is the
  import's pretrained.json, hf_files_dir its hf/ folder."""
  family = import_hf.FAMILIES[meta["family"]]
  config = import_hf.config_from_fields(meta["model"])
  tensors = hf_lib.export_tensors(
      params, family.weight_table(config),
      import_hf.WEIGHTS_DTYPES[dtype or meta["weights_dtype"]])
  log = lambda line: print(line, file=sys.stderr, flush=True)
  with output_dir.new_directory(out_dir, EXPORTED, log) as tmp:
    for name in sorted(os.listdir(hf_files_dir)):
      shutil.copyfile(os.path.join(hf_files_dir, name),
                      os.path.join(tmp, name))
    hf_lib.write_tensors(os.path.join(tmp, "model.safetensors"), tensors)


def origin_dir(src: str) -> str:
  """The import_hf directory (pretrained.json + hf/) of SRC: SRC itself, or
  a workdir's copy of it."""
  if os.path.isfile(os.path.join(src, "pretrained.json")):
    return src
  copied = os.path.join(src, ORIGIN)
  if os.path.isfile(os.path.join(copied, "pretrained.json")):
    return copied
  raise FileNotFoundError(
      f"{src} is neither an import_hf directory nor a workdir fine-tuned "
      "from one (no pretrained.json, no pretrained/pretrained.json); give "
      "the directory import_hf wrote, or the --workdir of a run started with "
      "--config.init_from")


def latest_params(workdir: str, out_dir: str = "OUT"):
  """The params of a fine-tuning workdir's latest checkpoint, in the
  import's (unstacked) layout; needs no data, only the workdir."""
  config = checkpoint.load_config(workdir)
  if (config.get("lora") or {}).get("targets"):
    raise ValueError(
        f"{workdir} is a LoRA run: its checkpoints hold adapters beside the "
        "frozen base; merge them first with --mode=merge_adapter "
        f"--output=MERGED (python -m encdec_jax.main --config=<its config> "
        f"--workdir={workdir} --mode=merge_adapter --output=MERGED), then "
        f"python -m encdec_jax.pretrained.export_hf MERGED {out_dir}")
  meta = import_hf.read_meta(os.path.join(workdir, ORIGIN))
  fields = dict(meta["model"])
  for key in ("scan_layers", "dtype", "param_dtype"):
    if key in config.model:
      fields[key] = config.model[key]
  model_config = import_hf.config_from_fields(fields)
  abstract = import_hf.abstract_params(model_config)
  if not checkpoint.has_checkpoint(workdir):
    raise FileNotFoundError(f"{workdir} holds no checkpoint to export")
  manager = checkpoint.make_manager(workdir, async_save=False)
  params, _ = checkpoint.restore_params(manager, abstract)
  flat = traverse_util.flatten_dict(jax.device_get(params))
  # A partial restore leaves what the checkpoint lacks as shapes.
  unread = sorted("/".join(k) for k, v in flat.items()
                  if isinstance(v, jax.ShapeDtypeStruct))
  if unread:
    raise ValueError(f"{workdir}'s latest checkpoint lacks {unread[0]} (and "
                     f"{len(unread) - 1} more params) of the model "
                     f"{ORIGIN}/pretrained.json describes: not a run "
                     "fine-tuned from that import")
  flat = {k: np.asarray(v) for k, v in flat.items()}
  if model_config.scan_layers:
    flat = stacking.unstack_layers(flat)
  return traverse_util.unflatten_dict(flat)


def export_hf(src: str, out_dir: str, dtype: str | None = None) -> None:
  """SRC (an import or a workdir fine-tuned from one) to OUT, as `dtype`
  (default: the dtype it was imported as)."""
  if dtype is not None and dtype not in import_hf.WEIGHTS_DTYPES:
    raise ValueError(f"--dtype={dtype} is not one of "
                     f"{', '.join(import_hf.WEIGHTS_DTYPES)}")
  output_dir.check_new(out_dir, EXPORTED)  # before restoring anything
  origin = origin_dir(src)
  meta = import_hf.read_meta(origin)
  if origin == src:
    _, params, _ = import_hf.load(src)
  else:
    params = latest_params(src, out_dir)
  export_params(params, meta, os.path.join(origin, "hf"), out_dir, dtype)


USAGE = ("usage: python -m encdec_jax.pretrained.export_hf "
         "IMPORT_DIR_OR_WORKDIR OUT_DIR "
         f"[--dtype={'|'.join(import_hf.WEIGHTS_DTYPES)}] (default: the "
         "dtype it was imported as)")


def main(argv: list[str]) -> int:
  parsed = import_hf.dtype_option(argv, None)
  if parsed is None or len(parsed[0]) != 2:
    print(USAGE, file=sys.stderr)
    return 2
  (src, out), dtype = parsed
  argv = [argv[0], src, out]
  try:
    export_hf(src, out, dtype)
  except (ImportError, ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"exported {argv[1]} to {argv[2]} (Hugging Face format: "
        "AutoModelForSeq2SeqLM.from_pretrained loads it)")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
