"""Writes a model's tensors in each layout the Hub has (weight_files.LAYOUTS),
without torch: safetensors through hf_lib, .bin through torch_bin_writer.
Shared by tests/test_weight_files.py and tests/test_hf_layouts.py."""

import json
import os
import shutil

import torch_bin_writer as writer
from encdec_jax.pretrained import hf as hf_lib
from encdec_jax.pretrained import weight_files


def shards(tensors: dict, n: int) -> list[dict]:
  names = sorted(tensors)
  return [{k: tensors[k] for k in names[i::n]} for i in range(n)]


def write_layout(model_dir: str, tensors: dict, layout: str,
                 n_shards: int = 3) -> None:
  """`tensors` as `layout` (one of weight_files.LAYOUTS) in model_dir."""
  os.makedirs(model_dir, exist_ok=True)
  if layout == weight_files.SAFETENSORS:
    hf_lib.write_tensors(os.path.join(model_dir, layout), tensors)
  elif layout == weight_files.TORCH_BIN:
    writer.write_torch_bin(os.path.join(model_dir, layout), tensors,
                           root="pytorch_model")
  else:
    stem, ext = (("model", "safetensors")
                 if layout == weight_files.SAFETENSORS_INDEX
                 else ("pytorch_model", "bin"))
    weight_map = {}
    for i, shard in enumerate(shards(tensors, n_shards)):
      name = f"{stem}-{i + 1:05d}-of-{n_shards:05d}.{ext}"
      path = os.path.join(model_dir, name)
      if ext == "bin":
        writer.write_torch_bin(path, shard, root=name[:-4])
      else:
        hf_lib.write_tensors(path, shard)
      weight_map.update({k: name for k in shard})
    total = sum(v.nbytes for v in tensors.values())
    with open(os.path.join(model_dir, layout), "w") as f:
      json.dump({"metadata": {"total_size": total},
                 "weight_map": weight_map}, f, indent=1)


def hf_dir_like(source: str, model_dir: str) -> None:
  """model_dir with source's files but its weights (and reference npz)."""
  os.makedirs(model_dir)
  for name in os.listdir(source):
    if not name.endswith((".safetensors", ".npz")):
      shutil.copy(os.path.join(source, name), model_dir)
