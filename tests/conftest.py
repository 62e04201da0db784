"""Test-wide settings: small compile times on a 2-core CPU, float32 matmuls."""
import os

# Must be set before JAX initialises. Most XLA optimisations only cost compile
# time for the tiny models used in tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "float32")
