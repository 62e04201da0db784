"""Scaling out: mesh layouts, multi-host, accumulation, remat, scan, bf16.

The sharded runs need 8 simulated devices (an XLA flag read when JAX starts)
or several processes, so they run `python -m encdec_jax.bench.sharding` in
subprocesses; the rest runs here, on the test process's one device.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from num2words import num2words

from encdec_jax import parallel, tasks
from encdec_jax.bench import sharding
from encdec_jax.models.contract import shift_right
from encdec_jax.train import experiment, param_groups, trainer
from encdec_jax.train import step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(num_devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _json_line(stdout: str) -> dict:
  return json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])


def test_layouts_on_8_devices_match_one_device():
  """DP, FSDP and data x tensor: same losses and params as one device
  (float32), optimizer state sharded like the params, and the collectives
  each layout implies in the compiled step."""
  out = subprocess.run(
      [sys.executable, "-m", "encdec_jax.bench.sharding", "layouts", "2",
       "data", "fsdp", "data_tensor"],
      cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  r = _json_line(out.stdout)
  for name in ("data", "fsdp", "data_tensor"):
    layout = r[name]
    # docs/scaling.md: losses within 2.1e-7 relative, params within 2.4e-7.
    assert layout["max_loss_rel_diff"] < 2e-6, (name, layout)
    assert layout["max_abs_param_diff"] < 2e-6, (name, layout)
    assert layout["opt_matches_params"], name
    # Adam's mu and nu are sharded exactly where their params are.
    assert layout["sharded_opt_leaves"] == 2 * layout["sharded_params"]
  assert r["data"]["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
  assert r["data"]["sharded_params"] == 0  # replicated
  assert "all-reduce" in r["data"]["collectives"]  # gradient sums
  assert "all-gather" not in r["data"]["collectives"]
  assert r["fsdp"]["sharded_params"] > 0
  assert "all-gather" in r["fsdp"]["collectives"]  # weights gathered
  assert r["data_tensor"]["mesh"] == {"data": 4, "fsdp": 1, "tensor": 2}
  # Tensor parallelism: the MLP's first kernel split by columns, its second
  # by rows, attention by heads; data parallelism replicates them.
  specs = r["data_tensor"]["param_specs"]
  mlp = "encoder/layers_0/mlp/"
  assert specs[mlp + "intermediate/kernel"] == [None, "tensor"]
  assert specs[mlp + "output/kernel"] == ["tensor", None]
  assert specs["encoder/layers_0/attention/query/kernel"] == [
      None, "tensor", None]
  assert r["data"]["param_specs"][mlp + "output/kernel"] == [None, None]
  # ... and the collective only it adds: the forward pass sums the partial
  # products of the row-split matmuls (data parallelism's all-reduces are
  # all gradient and loss sums).
  assert r["data"]["forward_all_reduces"] == []
  tensor_sums = r["data_tensor"]["forward_all_reduces"]
  for op in ("encoder/layers_0/mlp/output/dot_general",
             "decoder/layers_0/mlp/output/dot_general",
             "encoder/layers_0/attention/attention.attend/out/dot_general"):
    assert any(s.endswith(op) for s in tensor_sums), (op, tensor_sums)


def test_mesh_shape_from_config():
  c = sharding.tiny_config({})
  assert parallel.mesh_shape(c, 8) == {"data": 8, "fsdp": 1, "tensor": 1}
  c.mesh.update(data=2, fsdp=-1, tensor=2)
  assert parallel.mesh_shape(c, 8) == {"data": 2, "fsdp": 2, "tensor": 2}
  c.mesh.update(data=-1, fsdp=-1)
  with pytest.raises(ValueError, match="at most one -1"):
    parallel.mesh_shape(c, 8)
  c.mesh.update(data=3, fsdp=1, tensor=1)
  with pytest.raises(ValueError, match="needs 3 devices"):
    parallel.mesh_shape(c, 8)


def test_logical_axes_and_rules():
  from encdec_jax.nn import logical_axes as logical_axes_lib
  assert logical_axes_lib.logical_axes(
      ("encoder", "layers_0", "attention", "query", "kernel"),
      (32, 2, 16)) == ("embed", "heads", "kv")
  assert logical_axes_lib.logical_axes(
      ("decoder", "layers", "mlp", "intermediate", "kernel"),
      (3, 32, 64)) == ("layers", "embed", "mlp")  # scan_layers
  assert logical_axes_lib.logical_axes(  # an RNN cell: replicated
      ("encoder", "rnn", "cell", "kernel"), (32, 64)) == (None, None)

  class FakeMesh:
    shape = {"data": 2, "fsdp": 4, "tensor": 2}

  spec = parallel.logical_to_spec(("vocab", "embed"), (259, 32), FakeMesh())
  assert spec == jax.sharding.PartitionSpec(None, "fsdp")  # 259 % 2 != 0
  spec = parallel.logical_to_spec(("embed", "mlp"), (32, 64), FakeMesh())
  assert spec == jax.sharding.PartitionSpec("fsdp", "tensor")


def _setup(**model):
  c = sharding.tiny_config({})
  c.model.update(model)
  mesh = parallel.make_mesh(c)
  task = tasks.get(c)
  exp = experiment.Experiment(
      c, "", mesh, {}, None,
      experiment.build_model(task, c, sharding.VOCAB, {}), task)
  return c, exp


def test_grad_accumulation_equals_the_whole_batch_gradient():
  """4 micro-batches (summed losses and token counts) give the gradient of
  the per-token mean over the whole batch."""
  c, exp = _setup()
  loss_fn = exp.task.make_loss(exp.model, exp.config)
  params = experiment.init_params(exp.model, jax.random.key(0), c)
  batch = parallel.global_batch(sharding.synthetic_batches(1, 16)[0],
                                exp.mesh)
  flat = traverse_util.flatten_dict(params)
  params_of = traverse_util.unflatten_dict
  (loss1, sums1), g1 = jax.jit(jax.value_and_grad(
      lambda t: loss_fn(params_of(t), batch, None), has_aux=True))(flat)
  (loss4, sums4), g4 = jax.jit(lambda t: step_lib.accumulated_grads(
      loss_fn, params_of, t, batch, None, 4))(flat)
  np.testing.assert_allclose(loss4, loss1, rtol=1e-6)
  assert float(sums4["tokens"]) == float(sums1["tokens"])
  for k in g1:
    np.testing.assert_allclose(g4[k], g1[k], rtol=1e-5, atol=1e-7,
                               err_msg=str(k))


@pytest.mark.slow
def test_grad_accumulation_train_step_equals_one_big_step():
  """config.grad_accum_steps through bind_train_step: one update."""
  c, exp = _setup()
  plan = param_groups.make_plan(c, experiment.abstract_params(exp))
  loss_fn = exp.task.make_loss(exp.model, exp.config)
  tx = param_groups.make_optimizer(plan, c, 0, experiment.abstract_params(exp))
  state, _ = experiment.create_state(exp, lambda p: tx, jax.random.key(0))
  batch = parallel.global_batch(sharding.synthetic_batches(1, 16)[0],
                                exp.mesh)
  steps = {}
  for k in (1, 4):
    c.grad_accum_steps = k
    step_fn = jax.jit(step_lib.bind_train_step(loss_fn, tx, plan, c, 0))
    steps[k] = step_fn(state, batch, trainer.dropout_key(c))
  new1, m1 = steps[1]
  new4, m4 = steps[4]
  np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-6)
  np.testing.assert_allclose(m4["grad_norm"], m1["grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(new4.params), jax.tree.leaves(new1.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _loss_and_grads(exp, params, batch):
  def loss(p):
    logits = exp.model.apply({"params": p}, batch["inputs"],
                             shift_right(batch["targets"]))
    return jnp.mean(jax.nn.logsumexp(logits, -1))
  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("policy", [pytest.param("full",
                                                 marks=pytest.mark.slow),
                                    "dots"])
def test_remat_does_not_change_the_gradients(policy):
  _, plain = _setup()
  _, remat = _setup(remat=policy)
  params = experiment.init_params(plain.model, jax.random.key(0), plain.config)
  remat_params = experiment.init_params(remat.model, jax.random.key(0),
                                        remat.config)
  assert (jax.tree.structure(params) == jax.tree.structure(remat_params))
  batch = sharding.synthetic_batches(1, 4)[0]
  loss, grads = _loss_and_grads(plain, params, batch)
  remat_loss, remat_grads = _loss_and_grads(remat, params, batch)
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_scan_layers_stacks_params_and_computes_the_same():
  _, plain = _setup(num_encoder_layers=2, num_decoder_layers=2)
  _, scanned = _setup(num_encoder_layers=2, num_decoder_layers=2,
                      scan_layers=True, remat="full")
  stacked = experiment.init_params(scanned.model, jax.random.key(0),
                                   scanned.config)
  assert "layers" in stacked["encoder"] and "layers_0" not in stacked["encoder"]
  assert stacked["encoder"]["layers"]["mlp"]["intermediate"]["kernel"].shape \
      == (2, 32, 64)
  # The same function: the stacked params, unstacked into layers_{i}, give
  # the unscanned model the same loss.
  batch = sharding.synthetic_batches(1, 4)[0]
  want, _ = _loss_and_grads(plain, stacked_to_list(stacked), batch)
  got, _ = _loss_and_grads(scanned, stacked, batch)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def stacked_to_list(params):
  out = {}
  for part, tree in params.items():
    tree = dict(tree)
    if "layers" in tree:
      stacked = tree.pop("layers")
      n = jax.tree.leaves(stacked)[0].shape[0]
      for i in range(n):
        tree[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    out[part] = tree
  return out


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params_and_optimizer_state():
  c, exp = _setup(dtype="bfloat16")
  plan = param_groups.make_plan(c, experiment.abstract_params(exp))
  stepper = trainer._Stepper(exp, plan, exp.task.make_loss(exp.model, exp.config),
                             trainer.dropout_key(c))
  state, _ = experiment.create_state(
      exp, lambda p: stepper.optimizer(0, p), jax.random.key(0))
  state = stepper.enter(0, state)
  batch = parallel.global_batch(sharding.synthetic_batches(1, 8)[0], exp.mesh)
  hlo = stepper.step_fn.lower(state, batch, stepper.rng).as_text()
  assert "bf16" in hlo  # the matmuls run in bfloat16
  state, metrics = stepper(state, batch)
  assert np.isfinite(float(metrics["loss"]))
  f32 = np.dtype("float32")
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {f32}
  assert {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim} == {f32}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(workdir, data_dir, steps, processes: int, *overrides):
  """The tiny experiment in `processes` processes of 8 // processes
  simulated devices each; process 0's JSON summary."""
  cmd = [sys.executable, "-m", "encdec_jax.bench.sharding", "train",
         str(workdir), str(data_dir), str(steps)]
  if processes == 1:
    runs = [subprocess.Popen(cmd + list(overrides), cwd=ROOT, env=_env(8),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)]
  else:
    address = f"127.0.0.1:{_free_port()}"
    runs = [subprocess.Popen(
        cmd + [address, str(processes), str(i)] + list(overrides), cwd=ROOT,
        env=_env(8 // processes), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(processes)]
  outputs = [r.communicate(timeout=600) for r in runs]
  for r, (stdout, stderr) in zip(runs, outputs):
    assert r.returncode == 0, stderr[-3000:]
  return _json_line(outputs[0][0]), outputs[0][0]


def _load(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def _assert_close(a: dict, b: dict):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def tsv_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tsv")
  numbers = np.random.default_rng(0).permutation(1000)
  for split, part in (("train", numbers[:900]),
                      ("validation", numbers[900:950]),
                      ("test", numbers[950:])):
    with open(d / f"{split}.tsv", "w", encoding="utf-8") as f:
      f.writelines(f"{n}\t{num2words(int(n))}\n" for n in part)
  return d


@pytest.mark.slow
def test_two_processes_train_like_one_and_share_checkpoints(tsv_dir,
                                                            tmp_path):
  """2 processes x 4 CPU devices (gloo) vs 1 process x 8: the processes
  stay identical, match the single process, and each resumes the other's
  checkpoint."""
  # No q/k/v biases: their true gradient is 0, see bench/sharding.py.
  over = ("model.use_bias=false",)
  two, one = tmp_path / "two", tmp_path / "one"
  summary, _ = _train(two, tsv_dir, 6, 2, *over)
  assert (summary["processes"], summary["devices"]) == (2, 8)
  _train(one, tsv_dir, 6, 1, *over)
  local = [_load(two / f"local.{k}.npz") for k in (0, 1)]
  assert local[0].keys() == local[1].keys() and local[0]
  for k in local[0]:  # every replicated leaf, bit for bit
    np.testing.assert_array_equal(local[0][k], local[1][k], err_msg=k)
  _assert_close(_load(two / "params.0.npz"), _load(one / "params.0.npz"))
  # Each continues the other's checkpoint of step 6 to step 9.
  _, log_one = _train(two, tsv_dir, 9, 1, *over)  # 2-process ckpt, 1 process
  _, log_two = _train(one, tsv_dir, 9, 2, *over)  # 1-process ckpt, 2 processes
  assert "resumed from" in log_one and "at step 6" in log_one
  assert "resumed from" in log_two and "at step 6" in log_two
  _assert_close(_load(two / "params.0.npz"), _load(one / "params.0.npz"))
