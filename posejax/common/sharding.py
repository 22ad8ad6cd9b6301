"""Device mesh ('action', 'data'), padding of the model axis, sharded batches and steps.

Stacked model states are sharded over 'action' (each device group holds whole models) and
batches over ('action', 'data'): the models on one action slice split their batch across
the 'data' devices, and XLA inserts the reductions that BatchNorm statistics and gradients
need. Training data tables are replicated. The action axis takes the largest divisor of the device count that does not exceed
the number of models; the model axis is padded with inactive dummy models up to a multiple
of it. On one device this is plain jit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from posejax.common.errors import PosejaxError

PyTree = Any
AXES = ("action", "data")


@dataclasses.dataclass(frozen=True)
class Layout:
  """How A models and their batches lie on the devices.

  Attributes:
    mesh: Mesh of shape (action_size, data_size) over all devices.
    num_models: A, the real models.
    padded_models: A rounded up to a multiple of action_size (extra models are dummies).
  """
  mesh: Mesh
  num_models: int
  padded_models: int

  @property
  def action_size(self) -> int:
    return self.mesh.shape["action"]

  @property
  def data_size(self) -> int:
    return self.mesh.shape["data"]

  @property
  def model_sharding(self) -> NamedSharding:
    """Leaves (A', ...) split over 'action'."""
    return NamedSharding(self.mesh, P("action"))

  @property
  def batch_sharding(self) -> NamedSharding:
    """Leaves (A', B, ...) split over 'action' and 'data'."""
    return NamedSharding(self.mesh, P("action", "data"))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())


def mesh_shape(num_models: int, num_devices: int, action_devices: int = 0) -> tuple[int, int]:
  """(action_size, data_size) for A models on D devices.

  `action_devices` > 0 forces the action axis size (it must divide D); 0 picks the largest
  divisor of D not above A, which keeps whole models on devices (no communication) as far
  as possible and splits batches only when there are more devices than models.
  """
  if action_devices:
    if num_devices % action_devices:
      raise PosejaxError(
          f"config.sharding.action_devices={action_devices} does not divide the {num_devices} devices")
    size = action_devices
  else:
    size = max(d for d in range(1, num_devices + 1) if num_devices % d == 0 and d <= max(num_models, 1))
  return size, num_devices // size


def make_layout(num_models: int, batch_size: int, devices: Sequence[jax.Device] | None = None,
                action_devices: int = 0) -> Layout:
  """The mesh and model padding for A models with per-model batch B.

  Raises:
    PosejaxError: B is not divisible by the data axis size.
  """
  devices = list(devices if devices is not None else jax.devices())
  action_size, data_size = mesh_shape(num_models, len(devices), action_devices)
  if batch_size % data_size:
    raise PosejaxError(
        f"config.train.batch_size={batch_size} must be divisible by the data-parallel size {data_size} "
        f"({len(devices)} devices, {action_size} on the action axis); change the batch size or "
        "config.sharding.action_devices")
  mesh = jax.make_mesh((action_size, data_size), AXES, axis_types=(AxisType.Auto, AxisType.Auto),
                       devices=devices)
  padded = math.ceil(num_models / action_size) * action_size
  return Layout(mesh=mesh, num_models=num_models, padded_models=padded)


def pad_models(tree: PyTree, padded: int) -> PyTree:
  """Pads the leading model axis to `padded` by repeating model 0 (dummies never step)."""
  def pad(x):
    extra = padded - x.shape[0]
    if extra == 0:
      return x
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.concatenate([x, xp.repeat(x[:1], extra, axis=0)], axis=0)
  return jax.tree.map(pad, tree)


def unpad_models(tree: PyTree, num_models: int) -> PyTree:
  """The first `num_models` entries of every leaf's model axis."""
  return jax.tree.map(lambda x: x[:num_models], tree)


def put_global(tree: PyTree, sharding_: NamedSharding) -> PyTree:
  """Global device arrays from host arrays that every process holds whole.

  One process: `device_put`. Several: each process transfers only its own devices' shards.
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding_)
  return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sharding_, lambda i: np.asarray(x)[i]),
                      tree)


def maybe_initialize_distributed(enabled: bool) -> None:
  """`jax.distributed.initialize()` for multi-host runs (config.distributed)."""
  if enabled:
    jax.distributed.initialize()


def fetch(tree: PyTree) -> PyTree:
  """Host NumPy copy of (possibly sharded, multi-host) arrays, fully replicated first."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    tree = multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)
