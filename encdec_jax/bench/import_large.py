r"""Memory and time of import_hf on a checkpoint of T5 v1.1-large's shapes
(24 + 24 layers, d_model 1024, 16 heads of 64, gated-GELU d_ff 2816, vocab
32128, untied lm_head: 783M params, 3.1 GB in float32), never downloaded:

  flock /tmp/team/bigmem.lock python -m encdec_jax.bench.import_large \
      --dir=/tmp/import_large [--layouts=safetensors,bin] [--keep]

writes the synthetic Hugging Face directory (random values, generated and
written in chunks: this process stays small; --keep reuses one already
there), then imports each layout in a fresh subprocess (python -m
encdec_jax.pretrained.import_hf) and prints one JSON line per layout:
seconds, the child's peak RSS (getrusage ru_maxrss through wait4) and its
ratio to the float32 model size, beside the peak RSS of a child that only
imports the package (the interpreter, numpy, JAX). The goal is a peak below
1.5x the float32 size: the checkpoint is read one tensor at a time, so the
import holds its converted params (1x) and one or two tensors in flight.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
from absl import app, flags

flags.DEFINE_string("dir", "/tmp/import_large", "Where the synthetic "
                    "checkpoints and the imports go (several GB).")
flags.DEFINE_list("layouts", ["safetensors", "bin"], "model.safetensors "
                  "and/or pytorch_model.bin.")
flags.DEFINE_string("dtype", "float32", "import_hf --dtype.")
flags.DEFINE_bool("keep", False, "Keep (and reuse) the synthetic "
                  "checkpoints; by default everything written is removed.")
FLAGS = flags.FLAGS

LARGE = dict(d_model=1024, d_kv=64, num_heads=16, d_ff=2816, num_layers=24,
             num_decoder_layers=24, vocab_size=32128)
CHUNK = 1 << 22  # elements generated and written at a time (16 MB)
FILES = {"safetensors": "model.safetensors", "bin": "pytorch_model.bin"}


def config_json(shape: dict) -> dict:
  return dict(shape, model_type="t5", architectures=[
      "T5ForConditionalGeneration"], feed_forward_proj="gated-gelu",
      tie_word_embeddings=False, relative_attention_num_buckets=32,
      relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
      dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0,
      eos_token_id=1, is_encoder_decoder=True)


def tensor_specs(c: dict) -> list[tuple[str, tuple, float]]:
  """(Hugging Face name, shape, scale of the random values) of every
  tensor of a T5 v1.1 checkpoint with config `c`."""
  d, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
  out = [("shared.weight", (c["vocab_size"], d), 1.0)]
  for stack, layers in (("encoder", c["num_layers"]),
                        ("decoder", c["num_decoder_layers"])):
    out.append((f"{stack}.block.0.layer.0.SelfAttention."
                "relative_attention_bias.weight", (32, c["num_heads"]), 0.5))
    for i in range(layers):
      block = f"{stack}.block.{i}.layer"
      attentions = ["0.SelfAttention"] + (["1.EncDecAttention"]
                                          if stack == "decoder" else [])
      for a in attentions:
        for proj in "qkv":
          out.append((f"{block}.{a}.{proj}.weight", (inner, d), d ** -0.5))
        out.append((f"{block}.{a}.o.weight", (d, inner), inner ** -0.5))
        out.append((f"{block}.{a[0]}.layer_norm.weight", (d,), 1.0))
      mlp = len(attentions)
      for wi in ("wi_0", "wi_1"):
        out.append((f"{block}.{mlp}.DenseReluDense.{wi}.weight", (ff, d),
                    d ** -0.5))
      out.append((f"{block}.{mlp}.DenseReluDense.wo.weight", (d, ff),
                  ff ** -0.5))
      out.append((f"{block}.{mlp}.layer_norm.weight", (d,), 1.0))
    out.append((f"{stack}.final_layer_norm.weight", (d,), 1.0))
  out.append(("lm_head.weight", (c["vocab_size"], d), d ** -0.5))
  return out


def _write_values(f, shape: tuple, scale: float, rng) -> None:
  """Random float32 values, CHUNK at a time."""
  left = int(np.prod(shape))
  while left:
    n = min(left, CHUNK)
    f.write((rng.standard_normal(n, np.float32) * scale).tobytes())
    left -= n


def write_safetensors(path: str, specs, seed: int = 0) -> None:
  """The safetensors format (8-byte header length, JSON header, data) by
  hand: safetensors' writers take every tensor in memory at once."""
  header, offset = {"__metadata__": {"format": "pt"}}, 0
  for name, shape, _ in specs:
    nbytes = 4 * int(np.prod(shape))
    header[name] = {"dtype": "F32", "shape": list(shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  text = json.dumps(header).encode()
  text += b" " * (-len(text) % 8)
  rng = np.random.default_rng(seed)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for _, shape, scale in specs:
      _write_values(f, shape, scale, rng)


def _state_dict_pickle(specs) -> bytes:
  """torch.save's data.pkl for a state dict of float32 tensors (storage i
  holds tensor i): protocol 2, its opcodes written out."""
  text = lambda s: b"X" + struct.pack("<I", len(s.encode())) + s.encode()
  integer = lambda i: b"J" + struct.pack("<i", i)
  ints = lambda values: b"(" + b"".join(map(integer, values)) + b"t"
  ordered_dict = b"ccollections\nOrderedDict\n)R"  # OrderedDict()
  out = [b"\x80\x02", ordered_dict, b"("]  # the dict, then MARK
  for i, (name, shape, _) in enumerate(specs):
    numel = int(np.prod(shape))
    strides = [int(np.prod(shape[k + 1:])) for k in range(len(shape))]
    storage = (b"(" + text("storage") + b"ctorch\nFloatStorage\n"
               + text(str(i)) + text("cpu") + integer(numel) + b"tQ")
    out.append(text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
               + storage + integer(0) + ints(shape) + ints(strides)
               + b"\x89" + ordered_dict + b"tR")
  out.append(b"u.")  # SETITEMS, STOP
  return b"".join(out)


def write_torch_bin(path: str, specs, seed: int = 0) -> None:
  """A torch >= 1.6 zip checkpoint (stored members, as torch.save writes),
  its storages streamed into the archive."""
  rng = np.random.default_rng(seed)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr("pytorch_model/data.pkl", _state_dict_pickle(specs))
    zf.writestr("pytorch_model/byteorder", "little")
    for i, (_, shape, scale) in enumerate(specs):
      with zf.open(f"pytorch_model/data/{i}", "w", force_zip64=True) as f:
        _write_values(f, shape, scale, rng)
    zf.writestr("pytorch_model/version", "3\n")


def write_model_dir(model_dir: str, layout: str) -> int:
  """The synthetic Hugging Face directory; returns its float32 bytes."""
  specs = tensor_specs(LARGE)
  size = sum(4 * int(np.prod(s)) for _, s, _ in specs)
  path = os.path.join(model_dir, FILES[layout])
  if os.path.isfile(path) and FLAGS.keep:
    return size
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, "config.json"), "w") as f:
    json.dump(config_json(LARGE), f, indent=1)
  # ByT5's tokenizer is bytes: no tokenizer file to make.
  with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "ByT5Tokenizer"}, f)
  writer = write_safetensors if layout == "safetensors" else write_torch_bin
  writer(path + ".tmp", specs)
  os.replace(path + ".tmp", path)
  return size


def run_child(argv: list[str]) -> tuple[float, int, int]:
  """(seconds, peak RSS in bytes, exit code) of a fresh Python process."""
  start = time.perf_counter()
  child = subprocess.Popen([sys.executable] + argv)
  _, status, usage = os.wait4(child.pid, 0)
  child.returncode = os.waitstatus_to_exitcode(status)
  return (time.perf_counter() - start, usage.ru_maxrss * 1024,
          child.returncode)


def main(argv):
  del argv
  _, baseline, code = run_child(["-c", "import encdec_jax.pretrained."
                                 "import_hf"])
  assert code == 0
  for layout in FLAGS.layouts:
    model_dir = os.path.join(FLAGS.dir, layout)
    out_dir = os.path.join(FLAGS.dir, f"imported_{layout}")
    shutil.rmtree(out_dir, ignore_errors=True)
    start = time.perf_counter()
    size = write_model_dir(model_dir, layout)
    written = time.perf_counter() - start
    seconds, peak, code = run_child(
        ["-m", "encdec_jax.pretrained.import_hf", model_dir, out_dir,
         f"--dtype={FLAGS.dtype}"])
    if code != 0:
      raise SystemExit(f"import_hf of {model_dir} failed (exit {code})")
    print(json.dumps({
        "unit": "import_large", "layout": FILES[layout],
        "dtype": FLAGS.dtype, "float32_bytes": size,
        "write_seconds": round(written, 1), "import_seconds": round(seconds, 1),
        "peak_rss_bytes": peak, "peak_rss_ratio": round(peak / size, 3),
        "baseline_rss_bytes": baseline}), flush=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    if not FLAGS.keep:
      shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
