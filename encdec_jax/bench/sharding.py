r"""Sharded training checks on simulated CPU devices and processes.

Layouts: a few train steps of a tiny Transformer under each mesh layout,
against the same steps on one device (same loss and params, float32), and
the collectives XLA put into each compiled step:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
      python -m encdec_jax.bench.sharding layouts [STEPS [LAYOUT ...]]

prints one JSON object: {layout: {"mesh", "losses", "max_abs_param_diff",
"max_loss_rel_diff", "collectives", "forward_all_reduces", "param_specs",
"sharded_params", "sharded_opt_leaves", "opt_matches_params"},
"single": {...}}.

Multi-host: the real trainer (tiny_config on TSV files) in one of
several processes, which then dumps this process's copy of the params:

  python -m encdec_jax.bench.sharding train WORKDIR DATA_DIR STEPS \
      [COORDINATOR NUM_PROCESSES PROCESS_ID] [key=value config overrides]

(`tests/test_scale.py` runs both; the multi-host test is marked slow.)
The flags of XLA must be set before JAX starts, hence the subprocesses.
"""

import json
import os
import re
import sys
import time

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from encdec_jax import checkpoint, parallel
from encdec_jax import tasks
from encdec_jax.bench import base_small
from encdec_jax.train import experiment, param_groups, trainer

VOCAB = 64
LAYOUTS = {
    "data": dict(data=-1),
    "fsdp": dict(data=1, fsdp=-1),
    "data_tensor": dict(data=-1, tensor=2),
    "data_fsdp_tensor": dict(data=2, fsdp=2, tensor=2),
}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute")


def tiny_config(mesh: dict, **overrides) -> ml_collections.ConfigDict:
  """base-small shrunk to a 1+1-layer Transformer of width 32 on bytes, with
  what the trainer reads besides (text_files to fill in for `train`)."""
  c = base_small.config(
      num_heads=2, emb_dim=32, qkv_dim=32, mlp_dim=64, num_encoder_layers=1,
      num_decoder_layers=1, pre_layernorm=True, scale_embeddings=False,
      dropout_rate=0.0, attention_dropout_rate=0.0,
      # No q/k/v biases: the key bias has no effect on attention, so its true
      # gradient is 0 and Adam (eps 1e-9) would turn the rounding noise of any
      # summation order into full-size steps, hiding real differences.
      use_bias=False)
  c.update(learning_rate=2e-3, warmup_steps=5, schedule="cosine",
           grad_clip_norm=1.0, dataset="text_files", tokenizer="bytes",
           overlong="truncate", bucket_boundaries=(16, 32, 64),
           batch_size=16, eval_batch_size=32, max_decode_length=64,
           keep_checkpoints=3, num_samples_to_print=3, bleu_tokenize="char")
  c.text_files = ml_collections.ConfigDict(
      {"train": "", "validation": "", "test": ""})
  c.mesh = ml_collections.ConfigDict(dict(dict(data=-1, fsdp=1, tensor=1),
                                          **mesh))
  c.update(overrides)
  return c


def synthetic_batches(num: int, batch: int, length: int = 16, seed: int = 0):
  """Token batches with ragged lengths (padding included)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num):
    b = {}
    for key in ("inputs", "targets"):
      tokens = rng.integers(3, VOCAB, (batch, length), dtype=np.int32)
      lengths = rng.integers(3, length + 1, (batch, 1))
      b[key] = np.where(np.arange(length)[None] < lengths, tokens, 0)
    b["example_weight"] = np.ones((batch,), np.float32)
    b["overlong"] = np.zeros((batch,), bool)
    out.append(b)
  return out


def collectives(hlo: str) -> dict:
  found = re.findall(r"\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(", hlo)
  return {c: found.count(c) for c in COLLECTIVES if c in found}


def forward_all_reduces(hlo: str) -> list[str]:
  """The model ops whose results the forward pass all-reduces (op names
  under jvp(<Model>), not its transpose). Tensor parallelism adds them at
  the matmuls that contract its sharded axis: mlp/output and attention out,
  the row-parallel halves of Megatron's MLP and attention. Data parallelism
  adds none: its all-reduces sum gradients, in the backward pass
  (transpose(...)), and the loss. (Under FSDP XLA:CPU may sum partial
  matmuls of the weights' sharded input axis instead of gathering them.)"""
  ops = set()
  for line in hlo.splitlines():
    if re.search(r"\ball-reduce(?:-start)?\(", line):
      m = re.search(r'op_name="[^"]*?/jvp\(\w+\)/([^"]*)"', line)
      if m:  # XLA names a combined all-reduce "(op:op...)": each one
        ops.update(part.strip("()") for part in m.group(1).split(":"))
  return sorted(ops)


def _spec(x) -> list:
  """x's PartitionSpec as a JSON list, one entry per axis (None: whole)."""
  spec = list(x.sharding.spec) + [None] * (x.ndim - len(x.sharding.spec))
  return [a if a is None or isinstance(a, str) else list(a) for a in spec]


def _is_sharded(x) -> bool:
  return any(a is not None for a in x.sharding.spec)


def run_layout(config, devices, batches):
  """(losses, flat params, compiled HLO text, sharding summary)."""
  mesh = parallel.make_mesh(config, devices)
  task = tasks.get(config)
  exp = experiment.Experiment(
      config, "", mesh, {}, None,
      experiment.build_model(task, config, VOCAB, {}), task)
  abstract = experiment.abstract_params(exp)
  plan = param_groups.make_plan(config, abstract)
  tx = param_groups.make_optimizer(plan, config, 0, abstract)
  state, _ = experiment.create_state(exp, lambda p: tx,
                                     jax.random.key(config.seed))
  step_fn = trainer.jit_train_step(
      exp, plan, exp.task.make_loss(exp.model, config), tx, state, 0)
  rng = trainer.dropout_key(config)
  # Every optimizer leaf shaped like a param is sharded like it.
  param_specs = {k: v.sharding.spec for k, v in
                 traverse_util.flatten_dict(state.params).items()}
  opt_leaves = jax.tree_util.tree_leaves_with_path(state.opt_state)
  matches, sharded_opt = True, 0
  for path, leaf in opt_leaves:
    keys = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
    for i in range(len(keys)):
      if keys[i:] in param_specs:
        matches &= leaf.sharding.spec == param_specs[keys[i:]]
        break
    sharded_opt += _is_sharded(leaf)
  losses, compiled = [], None
  for b in batches:
    gb = parallel.global_batch(b, mesh)
    if compiled is None:  # the step the trainer runs, compiled once
      compiled = step_fn.lower(state, gb, rng).compile()
      hlo = compiled.as_text()
    state, metrics = compiled(state, gb, rng)
    m = jax.device_get(metrics)
    losses.append(float(m["loss"]) / float(m["tokens"]))
  summary = {
      "mesh": dict(mesh.shape),
      "sharded_params": sum(_is_sharded(x)
                            for x in jax.tree.leaves(state.params)),
      "sharded_opt_leaves": sharded_opt,
      "opt_matches_params": bool(matches),
      "param_specs": {"/".join(k): _spec(v) for k, v in
                      traverse_util.flatten_dict(state.params).items()},
  }
  params = traverse_util.flatten_dict(jax.device_get(state.params))
  return losses, params, hlo, summary


def layouts(steps: int = 3, names=tuple(LAYOUTS)) -> dict:
  jax.config.update("jax_default_matmul_precision", "float32")
  batches = synthetic_batches(steps, batch=16)
  results = {"worst": {}}
  ref_losses, ref_params, _, summary = run_layout(
      tiny_config({}), jax.devices()[:1], batches)
  results["single"] = dict(summary, losses=ref_losses)
  for name in names:
    start = time.time()
    losses, params, hlo, summary = run_layout(tiny_config(LAYOUTS[name]),
                                              jax.devices(), batches)
    summary["seconds"] = round(time.time() - start, 1)
    results[name] = dict(
        summary, losses=losses, collectives=collectives(hlo),
        forward_all_reduces=forward_all_reduces(hlo),
        max_abs_param_diff=max(float(np.max(np.abs(params[k] - v)))
                               for k, v in ref_params.items()),
        max_param_rel_diff=max(
            float(np.max(np.abs(params[k] - v) /
                         (1e-6 + np.abs(v)))) for k, v in ref_params.items()),
        max_loss_rel_diff=max(abs(a - b) / abs(b)
                              for a, b in zip(losses, ref_losses)))
    results["worst"][name] = "/".join(max(
        ref_params, key=lambda k: float(np.max(np.abs(params[k] -
                                                      ref_params[k])))))
  return results


def _parse(value: str):
  try:
    return json.loads(value)
  except ValueError:
    return value


def train(workdir: str, data_dir: str, steps: int, coordinator=None,
          num_processes=None, process_id=None, **overrides) -> None:
  """tiny_config through the real trainer; dumps this process's
  copy of the params to WORKDIR/params.<process>.npz."""
  parallel.initialize_distributed(
      coordinator, None if num_processes is None else int(num_processes),
      None if process_id is None else int(process_id))
  jax.config.update("jax_default_matmul_precision", "float32")
  c = tiny_config({})
  c.text_files.update({s: os.path.join(data_dir, f"{s}.tsv")
                       for s in ("train", "validation", "test")})
  c.update(num_train_steps=steps, checkpoint_every=3, eval_every=1000,
           log_every=3, num_eval_examples=32, num_decode_examples=32,
           test_at_end=False, dropout_prng="threefry2x32")
  for key, value in overrides.items():
    target, *rest = key.split(".")
    if rest:
      c[target][rest[0]] = _parse(value)
    else:
      c[key] = _parse(value)
  saved = {}
  save = checkpoint.save

  def keep_last_saved(manager, state, *args):  # the trainer's final state
    saved["state"] = state
    return save(manager, state, *args)

  checkpoint.save = keep_last_saved
  try:
    results = trainer.train_and_evaluate(c, workdir)
  finally:
    checkpoint.save = save
  params = saved["state"].params
  k = jax.process_index()
  # The global values (gathered), and this process's own copy of every
  # replicated leaf: equal copies on all processes is what keeps them in step.
  flat = traverse_util.flatten_dict(parallel.fetch(params))
  np.savez(os.path.join(workdir, f"params.{k}.npz"),
           **{"/".join(p): v for p, v in flat.items()})
  local = {"/".join(p): np.asarray(x.addressable_data(0))
           for p, x in traverse_util.flatten_dict(params).items()
           if x.is_fully_replicated}
  np.savez(os.path.join(workdir, f"local.{k}.npz"), **local)
  if k == 0:
    print(json.dumps({"results": results, "devices": jax.device_count(),
                      "processes": jax.process_count()}), flush=True)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  mode, args = sys.argv[1], sys.argv[2:]
  if mode == "layouts":
    steps = int(args[0]) if args else 3
    print(json.dumps(layouts(steps, tuple(args[1:]) or tuple(LAYOUTS))))
  elif mode == "train":
    positional = [a for a in args if "=" not in a]
    kv = dict(a.split("=", 1) for a in args if "=" in a)
    workdir, data_dir, steps = positional[:3]
    train(workdir, data_dir, int(steps), *positional[3:], **kv)
  else:
    sys.exit(f"unknown mode {mode!r}: use layouts or train")
