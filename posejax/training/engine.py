"""The compiled training loop of a run: slots of stacked models over resident or host data.

Two input paths feed the same step (`train_step.slot_step`):

* 'device' (default): the frame tables (`sampling.WindowTable`) live on the device; a compiled
  call runs up to `steps_per_call` global steps in a `fori_loop`, each gathering its windows
  on the device from the schedule rows (slot model, its own step count, its own epoch). The
  host sends a few hundred bytes of schedule per step and never waits between log points.
* 'host': tf.data gathers the same windows on the host (`input_pipeline`), one call per step;
  for tables that do not fit the device.

No TensorFlow or ml_collections here: benchmarks drive this module directly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from posejax.common import progress, sharding
from posejax.pose import losses
from posejax.training import sampling, slices, step as train_step
from posejax.training.semi import step as semi_step

PyTree = Any
INPUTS = ("device", "host")


@dataclasses.dataclass(frozen=True)
class Semi:
  """Semi-supervised training's static pieces (reference V11): the second stream and step.

  Attributes:
    traj_model: the trajectory model (the training model's form, one output joint).
    spec: the unlabeled stream's windows (its own seed; the labeled batch size).
    options: the loss settings.
  """
  traj_model: nn.Module
  spec: sampling.WindowSpec
  options: semi_step.SemiOptions


@dataclasses.dataclass(frozen=True)
class Engine:
  """Everything static about a run's steps.

  Attributes:
    model: the training model: strided for one-frame examples, else dilated (chunks of
      `spec.chunk_length` frames, or `train.dense_training`).
    optimizer: `optim.adam_amsgrad()`.
    hyperparams_fn: ((K,) epochs, (K,) models) -> lr and BN momentum.
    model_ids: (A',) int32 stable model ids.
    layout: the device mesh and model padding.
    slots: how the K slots lie on the mesh's action groups.
    spec: the windows' static description (batch_size in examples, i.e. chunks).
    examples: (A,) n_a (examples per epoch) of the real models.
    steps_per_call: global steps per compiled call on the device path.
    semi: semi-supervised training (device path only; tables hold an 'unlabeled' table).
    loss_fn: the model family's training loss (`Family.loss`).
  """
  model: nn.Module
  optimizer: optax.GradientTransformation
  hyperparams_fn: Callable
  model_ids: np.ndarray
  layout: sharding.Layout
  slots: slices.SlotLayout
  spec: sampling.WindowSpec
  examples: np.ndarray
  steps_per_call: int
  semi: Semi | None = None
  loss_fn: train_step.LossFn = losses.mpjpe

  @property
  def num_models(self) -> int:
    return len(self.examples)

  def schedule_inputs(self, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(T, K, 3) int32 per slot: global model index (A' empty), own step count, own epoch."""
    at = slices.row_positions(rows, positions).astype(np.int64)
    n = np.asarray(self.examples, np.int64)[np.minimum(rows, self.num_models - 1)]
    epoch = at * self.spec.batch_size // n
    return np.stack([rows, at, np.where(rows < len(positions), epoch, 0)], axis=-1).astype(np.int32)

  def _one_step(self, state, acc, batch, row, global_step, rng):
    slots_in = {"model": row[:, 0], "epoch": row[:, 2]}
    step_fn = vmapped = None
    if self.semi is not None:
      step_fn = functools.partial(semi_step.semi_train_step, model=self.model, traj_model=self.semi.traj_model,
                                  optimizer=self.optimizer, options=self.semi.options)
      vmapped = semi_step.vmapped_step(step_fn)
    state, metrics = train_step.slot_step(
        state, batch, slots_in, rng, model=self.model, optimizer=self.optimizer,
        hyperparams_fn=self.hyperparams_fn, model_ids=jnp.asarray(self.model_ids), layout=self.slots,
        step_fn=step_fn, vmapped_step_fn=vmapped, loss_fn=self.loss_fn)
    if self.semi is None:
      return state, train_step.accumulate(acc, row[:, 0], metrics["loss"], global_step)
    # A non-finite trajectory or 2D loss stops the run as a non-finite 3D loss does.
    loss = jnp.where(jnp.isfinite(metrics["loss_traj"] + metrics["loss_2d"]), metrics["loss"], jnp.nan)
    base = train_step.accumulate({k: acc[k] for k in train_step.init_accumulator(0)}, row[:, 0], loss, global_step)
    return state, semi_step.accumulate(dict(acc, **base), row[:, 0], metrics)

  def _batch_sharding(self) -> NamedSharding:
    return NamedSharding(self.layout.mesh, P("action", "data"))

  def device_batch(self, tables, row):
    """The slots' windows gathered on the device from the resident tables."""
    slice_index = jnp.minimum(row[:, 0], self.num_models - 1)
    batch = sampling.device_batch(tables, self.spec, slice_index, row[:, 1])
    if self.semi is not None:
      # The endless unlabeled stream advances with the model's own step count: resumable as is.
      unlabeled = sampling.device_batch(tables["unlabeled"], self.semi.spec, slice_index, row[:, 1])
      batch = dict(batch, unlabeled_2d=unlabeled["poses_2d"], cameras=unlabeled["cameras"])
    return jax.lax.with_sharding_constraint(batch, self._batch_sharding())

  def _run_rows(self, state, acc, tables, rows, count, base_step, rng):
    """Global steps rows[0:count] (rows: (C, K, 3), a fixed C: one compilation)."""
    def body(i, carry):
      state, acc = carry
      row = rows[i]
      return self._one_step(state, acc, self.device_batch(tables, row), row, base_step + i, rng)
    return jax.lax.fori_loop(0, count, body, (state, acc))

  def compile_device(self, state, acc, tables, rng):
    """The compiled `fn(state, acc, tables, rows (C,K,3), count, base_step, rng) -> (state, acc)`."""
    model, replicated = self.layout.model_sharding, self.layout.replicated
    fn = jax.jit(self._run_rows, in_shardings=(model, model, replicated, replicated, replicated, replicated,
                                               replicated),
                 out_shardings=(model, model), donate_argnums=(0, 1))
    rows = np.zeros((self.steps_per_call, self.slots.slots, 3), np.int32)
    return fn.lower(state, acc, tables, rows, np.int32(0), np.int32(0), rng).compile()

  def compile_host(self, state, acc, batch, rng):
    """The compiled `fn(state, acc, batch, row (K,3), global_step, rng) -> (state, acc)`."""
    model, replicated = self.layout.model_sharding, self.layout.replicated
    batch_sharding = jax.tree.map(lambda _: self._batch_sharding(), batch)
    fn = jax.jit(self._one_step, in_shardings=(model, model, batch_sharding, replicated, replicated, replicated),
                 out_shardings=(model, model), donate_argnums=(0, 1))
    row = np.zeros((self.slots.slots, 3), np.int32)
    return fn.lower(state, acc, batch, row, np.int32(0), rng).compile()


def put_tables(table: sampling.WindowTable, layout: sharding.Layout,
               unlabeled: sampling.WindowTable | None = None) -> dict[str, jax.Array]:
  """The frame tables on every device (replicated; the flip is applied on the fly); the
  unlabeled table of semi-supervised training under 'unlabeled'."""
  arrays = table.arrays()
  if unlabeled is not None:
    arrays["unlabeled"] = unlabeled.arrays()
  return sharding.put_global(arrays, layout.replicated)


def run_segment_device(engine: Engine, compiled, state, acc, tables, inputs: np.ndarray, base_step: int,
                       rng, should_stop: Callable[[], bool] = lambda: False,
                       on_chunk: Callable[[int], None] = lambda n: None):
  """Runs the schedule rows `inputs` (T, K, 3) in calls of `steps_per_call` rows.

  `on_chunk(rows)` follows each call when it has completed on the device; after dispatching a
  call the host waits for the one before, so at most two calls are in flight.
  Returns (state, acc, rows done); stops early (at a call boundary) when `should_stop()`.
  """
  c = engine.steps_per_call
  done = 0
  replicated = engine.layout.replicated
  completions = progress.Completions(on_chunk)
  while done < len(inputs):
    count = min(c, len(inputs) - done)
    chunk = np.zeros((c,) + inputs.shape[1:], np.int32)
    chunk[:count] = inputs[done:done + count]
    # Small host arrays: their transfer is asynchronous; the loop reads no result but a marker.
    state, acc = compiled(state, acc, tables, sharding.put_global(chunk, replicated),
                          np.int32(count), np.int32(base_step + done), rng)
    done += count
    completions.dispatched(progress.marker(acc["steps"]), count)
    if should_stop():
      break
  completions.drain()
  return state, acc, done


def run_segment_host(engine: Engine, compiled, state, acc, batches: Iterator[dict[str, np.ndarray]],
                     inputs: np.ndarray, base_step: int, rng, should_stop: Callable[[], bool] = lambda: False,
                     on_chunk: Callable[[int], None] = lambda n: None):
  """Runs the rows `inputs` (T, K, 3) one step per call, windows from the host `batches`;
  `on_chunk` as in `run_segment_device`."""
  done = 0
  batch_sharding = NamedSharding(engine.layout.mesh, P("action", "data"))
  completions = progress.Completions(on_chunk)
  while done < len(inputs):
    host = next(batches)
    batch = sharding.put_global({k: host[k] for k in ("poses_2d", "poses_3d")}, batch_sharding)
    state, acc = compiled(state, acc, batch, inputs[done], np.int32(base_step + done), rng)
    done += 1
    completions.dispatched(progress.marker(acc["steps"]), 1)
    if should_stop():
      break
  completions.drain()
  return state, acc, done


def host_batch_example(engine: Engine, table: sampling.WindowTable) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of one host batch (for compiling the host step before the first batch)."""
  k, spec = engine.slots.slots, engine.spec
  return {"poses_2d": jax.ShapeDtypeStruct((k, spec.batch_size, spec.window_frames) + table.frames_2d.shape[1:],
                                           jnp.float32),
          "poses_3d": jax.ShapeDtypeStruct((k, spec.batch_size, spec.chunk_length) + table.targets_3d.shape[1:],
                                           jnp.float32)}


def init_accumulator(num_models: int, semi: bool = False) -> dict[str, jax.Array]:
  acc = train_step.init_accumulator(num_models)
  return dict(acc, **semi_step.init_accumulator(num_models)) if semi else acc


def fresh_accumulator(layout: sharding.Layout, semi: bool = False) -> dict[str, jax.Array]:
  return jax.jit(lambda: init_accumulator(layout.padded_models, semi), out_shardings=layout.model_sharding)()
