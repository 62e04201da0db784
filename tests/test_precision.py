"""Mixed precision (nn/precision.py): with config.model.dtype=bfloat16 every
projection takes bfloat16 operands and accumulates in float32, forward and
backward, and the model stays the float32 model within bfloat16's rounding."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from encdec_jax.bench import base_small
from encdec_jax.models import registry
from encdec_jax.nn import precision
from encdec_jax.tasks import losses
from encdec_jax.train import experiment

BF16 = jnp.dtype(jnp.bfloat16)


@pytest.mark.parametrize("dimension_numbers, lhs_shape, rhs_shape", [
    ((((1,), (0,)), ((), ())), (6, 8), (8, 5)),  # Dense
    ((((2,), (0,)), ((), ())), (3, 4, 8), (8, 2, 5)),  # q/k/v projection
    ((((2, 3), (0, 1)), ((), ())), (3, 4, 2, 5), (2, 5, 8)),  # out proj.
    ((((2,), (2,)), ((0,), (0,))), (2, 3, 8), (2, 5, 8)),  # batched
])
def test_mixed_dot_and_its_gradient_match_float32(dimension_numbers,
                                                   lhs_shape, rhs_shape):
  k1, k2 = jax.random.split(jax.random.key(0))
  lhs = jax.random.normal(k1, lhs_shape)
  rhs = jax.random.normal(k2, rhs_shape)
  exact = lambda a, b: jnp.sum(jnp.sin(lax.dot_general(a, b,
                                                       dimension_numbers)))
  mixed = lambda a, b: jnp.sum(jnp.sin(precision.mixed_dot_general(
      a, b, dimension_numbers, BF16)))
  assert mixed(lhs, rhs) == pytest.approx(float(exact(lhs, rhs)), rel=0.05,
                                          abs=0.2)
  for want, got in zip(jax.grad(exact, (0, 1))(lhs, rhs),
                       jax.grad(mixed, (0, 1))(lhs, rhs)):
    assert got.dtype == jnp.float32
    # bfloat16 has 8 bits of mantissa: ~0.4 % per rounding.
    np.testing.assert_allclose(got, want, atol=0.03 * np.abs(want).max())


def _dots(fn, *args) -> list[tuple[str, str]]:
  """(lhs, rhs) element types of every dot_general in fn's StableHLO."""
  text = jax.jit(fn).lower(*args).as_text()
  return re.findall(r"stablehlo\.dot_general.*?:\s*\(tensor<[^>]*x(\w+)>, "
                    r"tensor<[^>]*x(\w+)>\)", text)


def test_every_projection_dot_of_a_training_step_reads_bfloat16():
  """Forward and backward: the gradient's dots too (JAX's own transpose of
  an f32-accumulated dot would take float32 cotangents, and XLA's CPU
  runs those dots in float32, ~4x slower than bfloat16 on AMX)."""
  config = base_small.config(dtype="bfloat16", num_encoder_layers=1,
                             num_decoder_layers=1)
  model = registry.build_model(config.model, 64)
  params = experiment.init_params(model, jax.random.key(0), config)
  batch = {k: v[:2, :8] % 64 for k, v in base_small.batches(n=1)[0].items()
           if v.ndim == 2}
  batch.update(example_weight=np.ones((2,), np.float32),
               overlong=np.zeros((2,), np.int32))
  loss_fn = losses.seq2seq_loss(model, 0.1)
  scalar = lambda p: jax.tree.leaves(loss_fn(p, batch, None))[0]
  dots = _dots(jax.grad(scalar), params)
  # Attention's scores and weighted sums stay float32 (nn/attention.py):
  # per layer 2 forward + 4 backward, and the decoder has two attentions.
  low = [d for d in dots if d == ("bf16", "bf16")]
  high = [d for d in dots if d == ("f32", "f32")]
  assert len(high) == 3 * 6, dots
  # Projections (q, k, v, out) x 3 attentions, MLP 2 x 2 blocks, tied
  # logits: 17 forward dots, each with 2 gradient dots.
  assert len(low) == 3 * 17, dots
  assert len(dots) == len(low) + len(high)


def test_a_bfloat16_model_computes_the_float32_model():
  config32 = base_small.config(num_encoder_layers=1, num_decoder_layers=1)
  config16 = base_small.config(num_encoder_layers=1, num_decoder_layers=1,
                               dtype="bfloat16")
  model32 = registry.build_model(config32.model, 512)
  model16 = registry.build_model(config16.model, 512)
  params = experiment.init_params(model32, jax.random.key(0), config32)
  rng = np.random.default_rng(0)
  inputs = rng.integers(4, 512, (4, 12)).astype(np.int32)
  targets = rng.integers(4, 512, (4, 10)).astype(np.int32)
  logits32 = model32.apply({"params": params}, inputs, targets)
  logits16 = model16.apply({"params": params}, inputs, targets)
  assert logits16.dtype == jnp.float32  # softmax and loss read float32
  scale = np.abs(logits32).max()
  err = np.abs(logits16 - logits32).max() / scale
  assert 1e-4 < err < 0.03  # bfloat16's rounding, and only that
  agree = np.mean(np.argmax(logits16, -1) == np.argmax(logits32, -1))
  assert agree > 0.9


def test_float32_is_untouched():
  assert precision.dot_general(jnp.float32) is lax.dot_general
  a = jnp.arange(6.0).reshape(2, 3)
  np.testing.assert_array_equal(precision.einsum("ab,cb->ac", a, a,
                                                 jnp.float32), a @ a.T)


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch, tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
  real_open = open
  monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(
      info if path == "/proc/cpuinfo" else path, *a, **k))
  precision.cpu_has_bf16.cache_clear()
  try:
    assert precision.cpu_has_bf16() is True
    info.write_text("flags\t\t: fpu sse avx2\n")
    precision.cpu_has_bf16.cache_clear()
    assert precision.cpu_has_bf16() is False
    assert precision.bf16_is_fast("gpu") and not precision.bf16_is_fast("cpu")
  finally:
    precision.cpu_has_bf16.cache_clear()
