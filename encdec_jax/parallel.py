"""Device mesh and shardings: one code path from 1 CPU device to a pod.

The mesh has a `data` axis over all devices; parameters and optimizer state are
replicated and batches are split along `data`. One device is just a mesh of
size one, so the same jitted step runs everywhere.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
  devices = np.asarray(jax.devices())
  # Auto axis types: shardings are given at the jit boundary and XLA propagates.
  return Mesh(devices.reshape(-1), ("data",),
              axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over `data`."""
  return NamedSharding(mesh, P("data"))


def global_batch(batch: dict, mesh: Mesh) -> dict:
  """A global jax.Array per field from this process's share of the batch."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
