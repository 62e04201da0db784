"""Optimizer partitions: per-group optimizers, freezing, gradual unfreezing."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from encdec_jax.models import registry
from encdec_jax.tasks import losses
from encdec_jax.train import experiment, param_groups
from encdec_jax.train import step as step_lib
from experiments import tiny

VOCAB = 40


def _config(**overrides):
  c = tiny.get_config()
  c.update(num_train_steps=100, warmup_steps=0, schedule="constant",
           weight_decay=0.0, grad_clip_norm=0.0, learning_rate=1e-3)
  c.update(overrides)
  return c


def _batch(seed=0, batch=4, length=8):
  rng = np.random.default_rng(seed)
  return {"inputs": rng.integers(3, VOCAB, (batch, length)).astype(np.int32),
          "targets": rng.integers(3, VOCAB, (batch, length)).astype(np.int32),
          "example_weight": np.ones((batch,), np.float32),
          "overlong": np.zeros((batch,), np.int32)}


def _setup(config):
  model = registry.build_model(config.model, VOCAB)
  params = experiment.init_params(model, jax.random.key(0), config)
  plan = param_groups.make_plan(config, params)
  loss_fn = losses.seq2seq_loss(model, 0.0)
  return model, params, plan, loss_fn


def _step_fn(config, plan, loss_fn, step, params):
  tx = param_groups.make_optimizer(plan, config, step, params)
  fn = jax.jit(step_lib.bind_train_step(loss_fn, tx, plan, config, step))
  return tx, fn


def _run(config, steps=3):
  _, params, plan, loss_fn = _setup(config)
  tx, fn = _step_fn(config, plan, loss_fn, 0, params)
  state = step_lib.init_state(params, tx)
  for i in range(steps):
    state, metrics = fn(state, _batch(i), jax.random.key(1))
  return params, state, plan, metrics


def _flat(tree):
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def test_default_rules_give_encoder_and_decoder_groups():
  _, params, plan, _ = _setup(_config())
  assert plan.groups == ("decoder", "encoder")
  assert plan.labels[("encoder", "layers_0", "mlp", "output", "kernel")] == (
      "encoder")
  assert plan.training(0) == {"encoder", "decoder"}


def test_rules_with_backreferences_make_per_layer_groups():
  config = _config(param_groups=(
      ("encoder/embedder/.*", "embeddings"),
      (r"encoder/layers_(\d+)/.*", r"encoder_\1"),
      (".*", "rest")))
  config.model.num_encoder_layers = 2
  _, _, plan, _ = _setup(config)
  assert plan.groups == ("embeddings", "encoder_0", "encoder_1", "rest")


def test_frozen_group_is_bit_identical_and_has_no_optimizer_state():
  before, state, plan, metrics = _run(_config(frozen_groups=("encoder",)))
  after = state.params
  for a, b in zip(jax.tree.leaves(before["encoder"]),
                  jax.tree.leaves(after["encoder"])):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(before["decoder"]), jax.tree.leaves(after["decoder"])))
  inner = state.opt_state[1].inner_states
  assert jax.tree.leaves(inner["encoder"]) == []
  decoder_bytes = sum(x.nbytes for x in jax.tree.leaves(after["decoder"]))
  # Adam's two moments for the decoder only, plus two int32 step counts.
  assert param_groups.opt_state_bytes(state.opt_state) == 2 * decoder_bytes + 8
  assert float(metrics["learning_rate/encoder"]) == 0.0
  assert "grad_norm/encoder" not in metrics


def test_frozen_parameters_are_not_differentiated():
  """The frozen encoder costs no backward pass: the step has fewer matmuls."""

  def dots(config):
    _, params, plan, loss_fn = _setup(config)
    tx, _ = _step_fn(config, plan, loss_fn, 0, params)
    step = step_lib.bind_train_step(loss_fn, tx, plan, config, 0)
    jaxpr = jax.make_jaxpr(step)(step_lib.init_state(params, tx), _batch(),
                                 jax.random.key(0))
    return str(jaxpr).count("dot_general")

  full, frozen = dots(_config()), dots(_config(frozen_groups=("encoder",)))
  # Encoder: 1 layer = 6 matmuls forward (q, k, v, scores, mix, out) + 2 MLP;
  # its backward (2 per forward matmul) disappears, the forward stays.
  assert full - frozen >= 16


def test_groups_get_their_own_learning_rates():
  config = _config()
  config.group_optim = {"encoder": {"learning_rate": 1e-3},
                        "decoder": {"learning_rate": 1e-5}}
  before, state, _, metrics = _run(config, steps=1)

  def max_update(part):
    return max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(before[part]), jax.tree.leaves(state.params[part])))

  # Adam's first step moves each parameter by about lr.
  assert max_update("encoder") == pytest.approx(1e-3, rel=0.05)
  assert max_update("decoder") == pytest.approx(1e-5, rel=0.05)
  assert float(metrics["learning_rate/decoder"]) == pytest.approx(1e-5)


def test_gradual_unfreezing_keeps_the_state_of_groups_already_training():
  config = _config(layer_groups=("decoder", "encoder"), unfreeze_every=2,
                   lr_decay_per_group=2.6)
  _, params, plan, loss_fn = _setup(config)
  assert plan.training(1) == {"decoder"}
  assert plan.training(2) == {"decoder", "encoder"}
  assert plan.stage_boundaries() == [2]
  assert plan.settings["encoder"]["learning_rate"] == pytest.approx(1e-3 / 2.6)
  tx, fn = _step_fn(config, plan, loss_fn, 0, params)
  state = step_lib.init_state(params, tx)
  for i in range(2):
    state, _ = fn(state, _batch(i), jax.random.key(1))
  decoder_state = state.opt_state[1].inner_states["decoder"]
  encoder_before = state.params["encoder"]

  tx, fn = _step_fn(config, plan, loss_fn, 2, state.params)
  opt_state = param_groups.migrate_opt_state(state.opt_state, tx, state.params,
                                          plan.training(1))
  kept = opt_state[1].inner_states["decoder"]
  for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(decoder_state)):
    assert np.array_equal(a, b)
  assert int(jax.tree.leaves(kept)[0]) == 2  # Adam's count went on
  state = state.replace(opt_state=opt_state)
  state, metrics = fn(state, _batch(2), jax.random.key(1))
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(encoder_before), jax.tree.leaves(state.params["encoder"])))
  # A newly unfrozen group warms up over warmup_steps (here 1: full lr).
  assert float(metrics["learning_rate/encoder"]) == pytest.approx(1e-3 / 2.6)


def test_late_group_learning_rate_is_zero_before_its_stage():
  config = _config(layer_groups=("decoder", "encoder"), unfreeze_every=5,
                   warmup_steps=4)
  _, _, plan, _ = _setup(config)
  lrs = [param_groups.group_learning_rates(plan, config, jnp.asarray(s))
         for s in (4, 5, 8)]
  assert float(lrs[0]["encoder"]) == 0.0
  assert float(lrs[1]["encoder"]) == pytest.approx(1e-3 / 4)
  assert float(lrs[2]["encoder"]) == pytest.approx(1e-3)


@pytest.mark.parametrize("overrides,message", [
    (dict(frozen_groups=("encodr",)), r"'encodr' \(did you mean 'encoder'"),
    (dict(layer_groups=("head",)), "config.layer_groups names group 'head'"),
    (dict(param_groups=(("encoder/.*", "encoder"),)),
     "parameter decoder/.* matches no rule"),
    (dict(group_optim={"encoder": {"lr": 1.0}}),
     r"group_optim.encoder.lr is not an optimizer setting"),
    (dict(unfreeze_every=-1), "unfreeze_every must be >= 0"),
])
def test_bad_partition_configs_are_clear_errors(overrides, message):
  with pytest.raises(ValueError, match=message):
    _setup(_config(**overrides))
