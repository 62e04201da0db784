"""LoRA (encdec_jax/lora): exact at step 0, merge, frozen base, optimizer
state, adapter-only checkpoints (resume after a kill, another base refused),
export / load / merge, refusals."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from encdec_jax import lora, parallel
from encdec_jax.models import registry
from encdec_jax.nn import logical_axes
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups
from encdec_jax.train import step as step_lib
from experiments import tiny

VOCAB = 40
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QV = (r"encoder/.*/attention/(query|value)",
      r"decoder/.*/self_attention/(query|value)")


def _config(targets=QV, **model):
  c = tiny.get_config()
  c.update(num_train_steps=100, warmup_steps=0, schedule="constant",
           weight_decay=0.0, grad_clip_norm=0.0, learning_rate=1e-2)
  c.model.update(model)
  c.lora.targets = targets
  return c


def _batch(seed=0, batch=4, length=8):
  rng = np.random.default_rng(seed)
  return {"inputs": rng.integers(3, VOCAB, (batch, length)).astype(np.int32),
          "targets": rng.integers(3, VOCAB, (batch, length)).astype(np.int32),
          "example_weight": np.ones((batch,), np.float32),
          "overlong": np.zeros((batch,), np.int32)}


def _models(config):
  inner = registry.build_model(config.model, VOCAB)
  return inner, lora.LoraModel(inner, config.lora)


def _logits(model, params, batch):
  return jax.jit(lambda p, b: model.apply(
      {"params": p}, b["inputs"], b["targets"][:, :-1], deterministic=True))(
          params, batch)


def _train(config, steps=3):
  inner, model = _models(config)
  params = experiment.init_params(model, jax.random.key(0), config)
  plan = param_groups.make_plan(config, params)
  tx = param_groups.make_optimizer(plan, config, 0, params)
  fn = jax.jit(step_lib.bind_train_step(losses.seq2seq_loss(model, 0.0), tx,
                                        plan, config, 0))
  state = step_lib.init_state(params, tx)
  for i in range(steps):
    state, metrics = fn(state, _batch(i), jax.random.key(1))
  return inner, model, params, state, plan, metrics


def test_fresh_adapters_give_the_base_logits_exactly(scan=False):
  """(scan_layers: in the scan test below.)"""
  config = _config(scan_layers=scan, num_encoder_layers=1 + scan)
  inner, model = _models(config)
  params = experiment.init_params(model, jax.random.key(0), config)
  kernel = params["base"]["encoder"]["layers" if scan else "layers_0"][
      "attention"]["query"]["kernel"]
  adapter = params["lora"]["encoder"]["layers" if scan else "layers_0"][
      "attention"]["query"]
  r = config.lora.rank
  assert adapter["lora_a"].shape == kernel.shape[:-2] + (r,)
  assert adapter["lora_b"].shape == kernel.shape[:-3] + (r,) + kernel.shape[-2:]
  batch = _batch()
  assert np.array_equal(_logits(model, params, batch),
                        _logits(inner, params["base"], batch))


def test_targets_are_separate_and_a_pattern_matching_nothing_is_refused():
  config = _config(targets=(
      r"encoder/.*/attention/(query|value)",
      (r"decoder/.*/self_attention/out", {"rank": 2, "alpha": 4.0}),
      r"decoder/.*/cross_attention/key", r"decoder/.*/mlp/intermediate"))
  _, model = _models(config)
  params = experiment.init_params(model, jax.random.key(0), config)
  flat = {"/".join(k) for k in traverse_util.flatten_dict(params["lora"])}
  assert {p.rsplit("/", 1)[0] for p in flat} == {
      "encoder/layers_0/attention/query", "encoder/layers_0/attention/value",
      "decoder/layers_0/self_attention/out",
      "decoder/layers_0/cross_attention/key",
      "decoder/layers_0/mlp/intermediate"}
  out = params["lora"]["decoder"]["layers_0"]["self_attention"]["out"]
  assert out["lora_a"].shape == (2, 16, 2) and out["lora_b"].shape == (2, 32)
  with pytest.raises(ValueError) as e:
    experiment.init_params(_models(_config(targets=(
        QV[0], r"encoder/.*/atention/query"))
                                   )[1], jax.random.key(0), _config())
  assert "'encoder/.*/atention/query' matches no projection kernel" in str(
      e.value)
  assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def trained():
  return _train(_config())


def test_training_freezes_the_base_and_keeps_optimizer_state_for_adapters_only(
    trained):
  _, model, before, state, plan, metrics = trained
  assert plan.groups == ("frozen", "lora_decoder", "lora_encoder")
  for a, b in zip(jax.tree.leaves(before["base"]),
                  jax.tree.leaves(state.params["base"])):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  moved = [not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(before["lora"]), jax.tree.leaves(state.params["lora"]))]
  assert all(moved), metrics  # A and B of every adapter train
  adapter_bytes = sum(x.nbytes for x in jax.tree.leaves(state.params["lora"]))
  # Adam's two moments of the adapters, and per adapter group (lora_encoder,
  # lora_decoder) two int32 step counts (Adam's, the schedule's).
  assert param_groups.opt_state_bytes(state.opt_state) == (
      2 * adapter_bytes + 2 * 8)
  assert jax.tree.leaves(state.opt_state[1].inner_states["frozen"]) == []
  assert "learning_rate/lora_encoder" in metrics


def test_merged_equals_unmerged(trained):
  inner, model, _, state, _, _ = trained
  merged = lora.merge(_config().lora, state.params["base"],
                      state.params["lora"])
  batch = _batch(7)
  unmerged = _logits(model, state.params, batch)
  folded = _logits(inner, merged, batch)
  assert float(jnp.max(jnp.abs(unmerged - _logits(inner, state.params["base"],
                                                  batch)))) > 1e-3
  np.testing.assert_allclose(folded, unmerged, atol=1e-5, rtol=0)


def test_merge_in_bfloat16_and_with_scan_layers_and_remat():
  config = _config(scan_layers=True, num_encoder_layers=2, remat="full")
  inner, model, fresh, state, _, _ = _train(config, steps=1)
  kernel = fresh["base"]["encoder"]["layers"]["attention"]["query"]["kernel"]
  adapter = fresh["lora"]["encoder"]["layers"]["attention"]["query"]
  assert adapter["lora_a"].shape == kernel.shape[:-2] + (8,)  # (2, 32, 8)
  assert adapter["lora_b"].shape == (2, 8) + kernel.shape[-2:]
  assert np.array_equal(_logits(model, fresh, _batch()),
                        _logits(inner, fresh["base"], _batch()))
  merged = lora.merge(config.lora, state.params["base"], state.params["lora"])
  batch = _batch(3)
  np.testing.assert_allclose(_logits(inner, merged, batch),
                             _logits(model, state.params, batch), atol=1e-5)
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), state.params["base"])
  out = lora.merge(config.lora, bf16, state.params["lora"])
  kernel = out["encoder"]["layers"]["attention"]["query"]["kernel"]
  assert kernel.dtype == jnp.bfloat16


def test_adapters_are_sharded_like_their_projection():
  assert logical_axes.logical_axes(
      ("lora", "encoder", "layers_0", "attention", "query", "lora_a"),
      (32, 8)) == ("embed", None)
  assert logical_axes.logical_axes(
      ("lora", "encoder", "layers_0", "attention", "query", "lora_b"),
      (8, 2, 16)) == (None, "heads", "kv")
  assert logical_axes.logical_axes(
      ("lora", "decoder", "layers", "self_attention", "out", "lora_a"),
      (2, 2, 16, 8)) == ("layers", "heads", "kv", None)
  assert logical_axes.logical_axes(
      ("lora", "decoder", "layers_0", "mlp", "output", "lora_b"),
      (8, 32)) == (None, "embed")


def test_load_adapter_is_strict(tmp_path, trained):
  from encdec_jax.lora import store
  config = _config()
  _, _, _, state, _, _ = trained
  base = jax.device_get(state.params["base"])
  spec = {"base_hash": lora.content_hash(base), "base": "b", "step": 3,
          "targets": list(QV), "rank": 8, "alpha": 16.0, "init_std": 0.0,
          "dropout": 0.0}
  store.save_adapter(str(tmp_path / "a"), state.params["lora"], spec)
  loaded = store.load_adapter(str(tmp_path / "a"), base, config.lora)
  for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(state.params["lora"])):
    assert np.array_equal(x, np.asarray(y))
  other = jax.tree.map(lambda x: x + 1, base)
  with pytest.raises(ValueError, match=r"trained on base [0-9a-f]{16} \(b\) "
                     r"but this base has content hash [0-9a-f]{16}"):
    store.load_adapter(str(tmp_path / "a"), other, config.lora)
  wider = _config(targets=QV + (r"decoder/.*/cross_attention/query",))
  with pytest.raises(ValueError, match="missing decoder/layers_0/"
                     "cross_attention/query/lora_a"):
    store.load_adapter(str(tmp_path / "a"), base, wider.lora)


# --- the trainer: adapter-only checkpoints, resume after a kill, a base ---

NUM_STEPS, SAVE_EVERY = 8, 4


def _run_flags(files, workdir, base):
  return ["--config=experiments/tiny.py", f"--workdir={workdir}",
          "--config.dataset=text_files",
          *(f"--config.text_files.{s}={p}" for s, p in files.items()),
          f"--config.num_train_steps={NUM_STEPS}",
          f"--config.checkpoint_every={SAVE_EVERY}",
          f"--config.log_every={SAVE_EVERY}", "--config.eval_every=1000",
          "--config.num_eval_examples=32", "--config.num_decode_examples=0",
          "--config.test_at_end=False", f"--config.lora.base={base}",
          f"--config.lora.targets={QV!r}"]


def _run_config(files, base="", seed=0, steps=NUM_STEPS):
  c = tiny.get_config()
  c.update(dataset="text_files", num_train_steps=steps,
           checkpoint_every=SAVE_EVERY, log_every=SAVE_EVERY, eval_every=1000,
           num_eval_examples=32, num_decode_examples=0, test_at_end=False,
           seed=seed)
  for split, path in files.items():
    c.text_files[split] = path
  if base:
    c.lora.base, c.lora.targets = base, QV
  return c


def _state_item(workdir, step=NUM_STEPS):
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  item_names=("state",))
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore()))["state"]
  return {jax.tree_util.keystr(p): np.asarray(x)
          for p, x in jax.tree_util.tree_leaves_with_path(state)}


@pytest.fixture(scope="module")
def bases(small_text_files, tmp_path_factory):
  from encdec_jax.train import trainer
  out = []
  for seed in (0, 1):
    workdir = str(tmp_path_factory.mktemp(f"base{seed}"))
    trainer.train_and_evaluate(
        _run_config(small_text_files, seed=seed, steps=1), workdir)
    out.append(workdir)
  return out


@pytest.mark.slow  # suite time: the default run keeps a sibling test
def test_adapter_checkpoint_resumes_bit_identically_after_a_kill(
    small_text_files, bases, tmp_path):
  from encdec_jax.train import trainer
  whole = str(tmp_path / "whole")
  trainer.train_and_evaluate(_run_config(small_text_files, bases[0]), whole)
  saved = _state_item(whole)
  assert not any("base" in k for k in saved)  # adapters and their state only
  assert any("lora_a" in k for k in saved)
  killed = str(tmp_path / "killed")
  proc = subprocess.Popen(
      [sys.executable, "-m", "encdec_jax.main",
       *_run_flags(small_text_files, killed, bases[0])], cwd=REPO,
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  first = os.path.join(killed, "checkpoints", str(SAVE_EVERY))
  deadline = time.time() + 300
  while not os.path.exists(os.path.join(first, "commit_success.txt")):
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  trainer.train_and_evaluate(_run_config(small_text_files, bases[0]), killed)
  got = _state_item(killed)
  assert got.keys() == saved.keys()
  for k in saved:
    assert np.array_equal(got[k], saved[k]), k
  # The same workdir on another base: refused, naming both hashes.
  with pytest.raises(ValueError) as e:
    trainer.train_and_evaluate(_run_config(small_text_files, bases[1]),
                               killed)
  message = str(e.value)
  assert "\n" not in message
  meta = json.load(open(os.path.join(killed, "checkpoints", str(NUM_STEPS),
                                     "meta", "metadata")))
  assert f"trained on base {meta['lora']['base_hash']}" in message
  assert "has content hash" in message and bases[1] in message


def test_decoding_unmerged_equals_merged(trained):
  """Greedy and beam search run on {base, lora} params through the wrapper,
  and give the merged model's tokens."""
  from encdec_jax import decoding
  from encdec_jax.models.contract import init_cache, make_tokens_to_logits
  inner, model, _, state, _, _ = trained
  merged = lora.merge(_config().lora, state.params["base"],
                      state.params["lora"])
  inputs = jnp.asarray(_batch(5)["inputs"])
  max_len, beams = 6, 2

  def decode(m, params, beam):
    encoded = m.apply({"params": params}, inputs, method="encode")
    cache = init_cache(m, len(inputs), max_len, inputs.shape[1])
    step = make_tokens_to_logits(m, params,
                                 decoding.expand_to_beams(encoded, beam))
    cache = decoding.expand_to_beams(cache, beam)
    if beam == 1:
      return decoding.greedy_decode(step, cache, len(inputs), max_len, 1)
    return decoding.beam_search(step, cache, len(inputs), beam, max_len, 1)

  for beam in (1, beams):
    got = jax.jit(lambda p: decode(model, p, beam))(state.params)
    want = jax.jit(lambda p: decode(inner, p, beam))(merged)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)
