"""Device mesh, sharding rules and multi-host start: 1 CPU device to a pod.

The mesh has three named axes, sized by `config.mesh` (-1: the devices left):

  data    batches split, parameters replicated (data parallelism);
  fsdp    batches split *and* parameters/optimizer state split (FSDP/ZeRO-3:
          XLA all-gathers the weights and reduce-scatters the gradients);
  tensor  parameters split along heads / MLP width / vocabulary (Megatron-
          style tensor parallelism), batches replicated.

Parameters carry logical axis names (`encdec_jax.nn.logical_axes`, e.g.
("embed", "heads", "kv")); `config.logical_axis_rules` maps them onto mesh
axes. With the default rules the layout is picked by the mesh alone:
data=-1 is data parallel, fsdp=-1 FSDP, data=-1,tensor=2 data x tensor.
A dimension that does not divide by its mesh axis stays whole (replicated),
so any model runs on any mesh. Optimizer state is sharded like the
parameter it belongs to (`state_shardings`). One device is a mesh of size one,
so the same jitted step runs everywhere.
"""

import os

import jax
from jax.experimental import multihost_utils
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from encdec_jax.nn import logical_axes as logical_axes_lib

MESH_AXES = ("data", "fsdp", "tensor")
# Logical axis -> mesh axis (or axes, or None: replicated). The batch is split
# over data and fsdp; weights over fsdp (their model width) and tensor (heads,
# MLP width, vocabulary). Override with config.logical_axis_rules.
DEFAULT_AXIS_RULES = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("norm", None),
    ("layers", None),
)


def mesh_shape(config=None, num_devices: int | None = None) -> dict:
  """{axis: size} of config.mesh (default data=-1) on `num_devices`."""
  n = jax.device_count() if num_devices is None else num_devices
  wanted = dict(data=-1, fsdp=1, tensor=1)
  mesh_config = config.get("mesh") if config is not None else None
  if mesh_config:
    for axis, size in dict(mesh_config).items():
      if axis not in wanted:
        raise ValueError(f"config.mesh.{axis} is not a mesh axis; use "
                         f"{MESH_AXES}.")
      wanted[axis] = int(size)
  rest = [a for a, size in wanted.items() if size == -1]
  fixed = int(np.prod([s for s in wanted.values() if s != -1]))
  if len(rest) > 1 or any(s == 0 or s < -1 for s in wanted.values()):
    raise ValueError(f"config.mesh={wanted}: sizes must be positive, with at "
                     "most one -1 (the devices left).")
  if rest:
    if n % fixed:
      raise ValueError(f"config.mesh={wanted} does not fit {n} devices: "
                       f"{n} is not divisible by {fixed}.")
    wanted[rest[0]] = n // fixed
  if int(np.prod(list(wanted.values()))) != n:
    raise ValueError(f"config.mesh={wanted} needs "
                     f"{int(np.prod(list(wanted.values())))} devices, "
                     f"there are {n}.")
  return wanted


def make_mesh(config=None, devices=None) -> Mesh:
  """The (data, fsdp, tensor) mesh of `config.mesh` over all devices (or
  the given ones)."""
  shape = mesh_shape(config, None if devices is None else len(devices))
  # Auto axis types: shardings are given at the jit boundary and XLA
  # propagates. jax.make_mesh orders devices for the hardware's topology.
  return jax.make_mesh(tuple(shape[a] for a in MESH_AXES), MESH_AXES,
                       axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=devices)


def axis_rules(config=None) -> tuple:
  """config.logical_axis_rules (a tuple of (logical, mesh axes) pairs)."""
  rules = config.get("logical_axis_rules") if config is not None else None
  if not rules:
    return DEFAULT_AXIS_RULES
  return tuple((name, tuple(a) if isinstance(a, (list, tuple)) else a)
               for name, a in rules)


def logical_to_spec(logical: tuple, shape: tuple, mesh: Mesh,
                    rules=DEFAULT_AXIS_RULES) -> P:
  """The PartitionSpec of an array with these logical axes on `mesh`.

  A mesh axis is used once per array (first dimension wins) and only where
  it divides the dimension; mesh axes of size 1 are left out.
  """
  table = dict(rules)
  used, spec = set(), []
  for name, dim in zip(logical, shape):
    target = table.get(name) if name is not None else None
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes
                 if a not in used and mesh.shape.get(a, 1) > 1)
    size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if not axes or dim % size:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)


def param_specs(params, mesh: Mesh, rules=DEFAULT_AXIS_RULES):
  """A tree like `params` (arrays or ShapeDtypeStructs) of PartitionSpecs."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({
      path: logical_to_spec(logical_axes_lib.logical_axes(path, x.shape),
                            x.shape, mesh, rules)
      for path, x in flat.items()})


def param_shardings(params, mesh: Mesh, rules=DEFAULT_AXIS_RULES):
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec),
                      param_specs(params, mesh, rules),
                      is_leaf=lambda x: isinstance(x, P))


def _dict_keys(path) -> tuple:
  return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def state_shardings(state, mesh: Mesh, rules=DEFAULT_AXIS_RULES):
  """Shardings of a whole tree holding params (a TrainState, an optimizer
  state): each leaf whose trailing dict keys name a parameter and whose shape
  is that parameter's gets the parameter's sharding (Adam's mu and nu inside
  optax.multi_transform's per-group states, masked or not); every other leaf
  (step counters, scalars) is replicated."""
  params = state.params if hasattr(state, "params") else state
  specs = traverse_util.flatten_dict(param_specs(params, mesh, rules))
  shapes = {k: tuple(v.shape)
            for k, v in traverse_util.flatten_dict(params).items()}

  def sharding(path, leaf):
    keys = _dict_keys(path)
    for i in range(len(keys)):
      if keys[i:] in specs and shapes[keys[i:]] == tuple(leaf.shape):
        return NamedSharding(mesh, specs[keys[i:]])
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(sharding, state)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over `data` and `fsdp`."""
  return NamedSharding(mesh, P(("data", "fsdp")))


def _pad_to_common_shape(batch: dict) -> dict:
  """Pads each field (with 0: padding tokens) to the largest shape any
  process has: length buckets are chosen per process, and a global array
  needs one shape. One small all-gather of the shapes per batch."""
  keys = sorted(batch)
  shapes = np.asarray([d for k in keys for d in np.shape(batch[k])], np.int32)
  biggest = np.max(multihost_utils.process_allgather(shapes), axis=0)
  out, i = {}, 0
  for k in keys:
    v = np.asarray(batch[k])
    want = biggest[i:i + v.ndim]
    i += v.ndim
    pad = [(0, int(w) - d) for d, w in zip(v.shape, want)]
    out[k] = np.pad(v, pad) if any(p for _, p in pad) else v
  return out


def global_batch(batch: dict, mesh: Mesh) -> dict:
  """A global jax.Array per field from this process's share of the batch."""
  if jax.process_count() > 1:
    batch = _pad_to_common_shape(batch)
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}


def shared_batch(batch: dict, mesh: Mesh) -> dict:
  """Global arrays from a batch that *every* process holds in full (eval and
  decode batches): each process contributes its contiguous block of rows."""
  n, k = jax.process_count(), jax.process_index()
  if n > 1:
    rows = len(next(iter(batch.values())))
    if rows % n:
      raise ValueError(f"an evaluation batch of {rows} rows cannot be split "
                       f"over {n} processes; make config.eval_batch_size "
                       "divisible by the number of processes.")
    batch = {key: v[k * rows // n:(k + 1) * rows // n]
             for key, v in batch.items()}
  return global_batch(batch, mesh)


def fetch(tree):
  """numpy values of (possibly multi-process, sharded) arrays, on every
  process: device_get on one process, an all-gather across processes."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def sync(name: str) -> None:
  """A barrier across processes (a no-op with one)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def abstract(tree, shardings=None):
  """ShapeDtypeStructs of `tree`'s leaves (arrays or ShapeDtypeStructs), each
  with its sharding in `shardings` (a matching tree) or else its own, so that
  a restore into them lands on those devices."""
  if shardings is None:  # (None leaves would be empty subtrees: map one tree)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           auto: bool = False,
                           heartbeat_timeout: int = 100) -> bool:
  """jax.distributed.initialize for a multi-host run; whether it ran.

  With a coordinator address, the three values are used as given (any
  cluster, or several processes on one machine). Otherwise, with `auto` or
  inside a multi-task SLURM job, JAX detects them itself (TPU VM pods, SLURM,
  Open MPI). A single process needs neither. Must run before any other JAX
  call. CPU processes talk through gloo collectives. A process that sends
  no heartbeat for `heartbeat_timeout` seconds is taken for dead, and the
  others stop with an error rather than wait for it.
  """
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  if not (coordinator_address or auto or slurm):
    return False
  if "cpu" in os.environ.get("JAX_PLATFORMS", ""):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address:
    if num_processes is None or process_id is None:
      raise ValueError("--coordinator_address needs --num_processes and "
                       "--process_id as well.")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout)
  else:
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout)
  return True


# How a dead peer shows in a surviving process: a failed gloo collective, the
# coordination service's heartbeat or barrier errors.
_PEER_GONE = ("Gloo", "Connection closed by peer", "heartbeat timeout",
              "CoordinationService", "Barrier failed", "tasks are unhealthy")


def lost_peer(error: BaseException) -> str | None:
  """A one-line account of `error` if it means that another process of a
  multi-host run is gone (killed, preempted, crashed); else None."""
  if jax.process_count() == 1:
    return None
  chain, e = [], error
  while e is not None and len(chain) < 5:
    chain.append(e)
    e = e.__cause__ or e.__context__
  text = " ".join(str(e) for e in chain)
  marker = next((m for m in _PEER_GONE if m in text), None)
  if marker is None:
    return None
  line = next((l for l in text.splitlines() if marker in l), marker)
  return (f"another process of this {jax.process_count()}-process run is "
          f"gone ({line.strip()[:160]}); the checkpoints committed so far "
          "are intact: restart every process with the same command to "
          "resume from the last one.")
