"""Mixed precision: low-precision operands, float32 accumulation in every dot.

With `config.model.dtype=bfloat16` every matmul of the model takes bfloat16
operands and accumulates in float32 (`preferred_element_type`), the result
cast back to the compute dtype; parameters stay in `param_dtype` (float32
master weights), and softmax, norms and the loss run in float32. That is
what accelerators do in hardware, and on CPUs with AVX512-BF16 or AMX it is
what makes bfloat16 fast: XLA's CPU dot with float32 accumulation runs
~4.7x float32's GFLOP/s at 2048^2 on a Xeon with AMX (measured 2026-12-07,
1,367 vs 288), while a bfloat16-in, bfloat16-out dot is *slower* than
float32 (230): it has no fast kernel. `python -m encdec_jax.bench
--dtype=bfloat16` measures the whole model.

On a CPU without bfloat16 instructions the same program runs, emulated and
slower than float32: `cpu_has_bf16` says which, and the bench prints it.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax


def is_low(dtype) -> bool:
  return jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _einsum_specs(dimension_numbers, lhs_ndim: int, rhs_ndim: int):
  """(lhs, rhs, out) einsum subscripts of a dot_general."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  letters = iter("abcdefghijklmnopqrstuvwxyz")
  lhs = [next(letters) for _ in range(lhs_ndim)]
  rhs = [None] * rhs_ndim
  for i, j in zip(lhs_contract, rhs_contract):
    rhs[j] = lhs[i]
  for i, j in zip(lhs_batch, rhs_batch):
    rhs[j] = lhs[i]
  rhs = [r or next(letters) for r in rhs]
  free = lambda spec, skip: [c for k, c in enumerate(spec) if k not in skip]
  out = ([lhs[i] for i in lhs_batch] +
         free(lhs, set(lhs_contract) | set(lhs_batch)) +
         free(rhs, set(rhs_contract) | set(rhs_batch)))
  return "".join(lhs), "".join(rhs), "".join(out)


def _f32_einsum(spec: str, a, b):
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def mixed_dot_general(lhs, rhs, dimension_numbers, dtype):
  """lax.dot_general of `dtype` operands accumulated in float32 (the result
  float32, for the caller to round). Its gradient is two more such dots: JAX's own transpose would
  take the float32 cotangent of the accumulation, and XLA's CPU then runs
  the backward dots in float32 (the forward 3x faster, the step slower)."""
  lhs_spec, rhs_spec, out_spec = _einsum_specs(dimension_numbers, lhs.ndim,
                                               rhs.ndim)
  return _f32_einsum(f"{lhs_spec},{rhs_spec}->{out_spec}", lhs.astype(dtype),
                     rhs.astype(dtype))


def _mixed_fwd(lhs, rhs, dimension_numbers, dtype):
  return mixed_dot_general(lhs, rhs, dimension_numbers, dtype), (lhs, rhs)


def _mixed_bwd(dimension_numbers, dtype, residuals, g):
  lhs, rhs = residuals
  lhs_spec, rhs_spec, out_spec = _einsum_specs(dimension_numbers, lhs.ndim,
                                               rhs.ndim)
  g, lhs_low, rhs_low = g.astype(dtype), lhs.astype(dtype), rhs.astype(dtype)
  d_lhs = _f32_einsum(f"{out_spec},{rhs_spec}->{lhs_spec}", g, rhs_low)
  d_rhs = _f32_einsum(f"{out_spec},{lhs_spec}->{rhs_spec}", g, lhs_low)
  return d_lhs.astype(lhs.dtype), d_rhs.astype(rhs.dtype)


mixed_dot_general.defvjp(_mixed_fwd, _mixed_bwd)


def dot_general(dtype):
  """The dot_general of a Dense/DenseGeneral computing in `dtype`:
  mixed_dot_general for bfloat16/float16, lax.dot_general for float32."""
  if not is_low(dtype):
    return lax.dot_general

  def accumulate_in_float32(lhs, rhs, dimension_numbers, precision=None,
                            preferred_element_type=None, **kwargs):
    del precision, preferred_element_type, kwargs  # float32 accumulation
    return mixed_dot_general(lhs, rhs, dimension_numbers,
                             jnp.dtype(dtype)).astype(dtype)

  return accumulate_in_float32


def einsum(spec: str, a, b, dtype, out_dtype=None) -> jax.Array:
  """einsum of two operands in `dtype` accumulated in float32 (with the
  gradient of mixed_dot_general), the result in `out_dtype` (default
  `dtype`; float32 for logits that go to a softmax). For float32,
  jnp.einsum as it is."""
  if not is_low(dtype):
    return jnp.einsum(spec, a, b).astype(out_dtype or dtype)
  return _mixed_einsum(a, b, spec, jnp.dtype(dtype)).astype(out_dtype or dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mixed_einsum(a, b, spec, dtype):
  return _f32_einsum(spec, a.astype(dtype), b.astype(dtype))


def _mixed_einsum_fwd(a, b, spec, dtype):
  return _mixed_einsum(a, b, spec, dtype), (a, b)


def _mixed_einsum_bwd(spec, dtype, residuals, g):
  """Each operand's gradient is an einsum of the cotangent with the other
  (every index of an operand is in the output or the other operand)."""
  a, b = residuals
  inputs, out = spec.replace(" ", "").split("->")
  a_spec, b_spec = inputs.split(",")
  g, a_low, b_low = g.astype(dtype), a.astype(dtype), b.astype(dtype)
  # The cotangent first: XLA's CPU has no generic bf16 x bf16 -> f32 dot,
  # and this order keeps every attention gradient on its fast kernels
  # (bthk,bhts->bshk fails where bhts,bthk->bshk runs).
  d_a = _f32_einsum(f"{out},{b_spec}->{a_spec}", g, b_low)
  d_b = _f32_einsum(f"{out},{a_spec}->{b_spec}", g, a_low)
  return d_a.astype(a.dtype), d_b.astype(b.dtype)


_mixed_einsum.defvjp(_mixed_einsum_fwd, _mixed_einsum_bwd)


@functools.cache
def cpu_has_bf16() -> bool | None:
  """Whether this x86 CPU has bfloat16 dot instructions (AVX512-BF16 or
  AMX-BF16); None where /proc/cpuinfo does not say (not Linux x86)."""
  try:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
          return bool(flags & {"avx512_bf16", "amx_bf16"})
  except OSError:
    pass
  return None


def bf16_is_fast(platform: str | None = None) -> bool:
  """bfloat16 dots beat float32 here: any accelerator, or a CPU with
  bfloat16 instructions."""
  platform = platform or jax.default_backend()
  return platform != "cpu" or bool(cpu_has_bf16())

