"""The pure training step: one model (`train_step`) and K slots of A stacked models (`slot_step`).

Action-based training is `jax.vmap` of the same one-model step over the K models that the
schedule (`posejax.training.slices`) puts in this global step's slots: their states are gathered from
the stacked state (leaves (A', ...)), stepped, and scattered back; models not in a slot are
neither computed nor touched. Common mode is the same with A = K = 1. A model's updates depend
only on its own step count (data, dropout, lr and BN momentum), so each model's sequence of
updates is exactly that of an independent run, whatever the schedule.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from posejax.pose import losses
from posejax.training import optim, slices

PyTree = Any
LossFn = Callable[[jax.Array, jax.Array], jax.Array]  # (predicted, target) -> () loss


@flax.struct.dataclass
class TrainState:
  """Everything one model's training changes (stacked: every leaf has a leading model axis).

  Attributes:
    params: the model's 'params' collection.
    batch_stats: BatchNorm running statistics.
    opt_state: `optim.adam_amsgrad` state (holds the current learning rate).
    step: () int32, optimizer steps this model has taken.
  """
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState
  step: jax.Array

  @property
  def variables(self) -> dict[str, PyTree]:
    return {"params": self.params, "batch_stats": self.batch_stats}


def _init_state(model: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array,
                input_shape: tuple[int, ...]) -> TrainState:
  variables = model.init(key, jnp.zeros(input_shape, jnp.float32), train=False)
  params = variables["params"]
  return TrainState(params=params, batch_stats=variables["batch_stats"],
                    opt_state=optimizer.init(params), step=jnp.zeros([], jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def init_state(model: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array,
               input_shape: tuple[int, ...]) -> TrainState:
  """A fresh state for one model; `input_shape` = (1, RF, K, 2) of the training model.

  Jitted: run eagerly, Flax's init dispatches hundreds of small ops (seconds on a CPU).
  """
  return _init_state(model, optimizer, key, input_shape)


def model_key(seed: int | jax.Array, model_id: int | jax.Array) -> jax.Array:
  """The initialisation key of a model: fold_in(key(seed), id), RBG bits.

  RBG instead of the default threefry: the same streams, compiled in about a second
  instead of several on a CPU (threefry's partitionable form unrolls per parameter).
  """
  return jax.random.fold_in(jax.random.key(seed, impl="rbg"), model_id)


@functools.partial(jax.jit, static_argnums=(0, 1, 4))
def init_stacked_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       seed: int | jax.Array, model_ids: jax.Array,
                       input_shape: tuple[int, ...]) -> TrainState:
  """States of A models; model a is `init_state` with key `model_key(seed, model_ids[a])`.

  Keying on a stable id (the action's index in the canonical table) rather than the slice
  makes an action's initial weights the same whatever other actions train beside it; the
  models are initialised one after another (`lax.map`) because RBG bits under vmap depend
  on the batch.
  """
  return jax.lax.map(lambda i: _init_state(model, optimizer, model_key(seed, i), input_shape),
                     jnp.asarray(model_ids))


def train_step(state: TrainState, batch: Mapping[str, jax.Array], hparams: Mapping[str, jax.Array],
               rng: jax.Array, *, model: nn.Module, optimizer: optax.GradientTransformation,
               loss_fn: LossFn = losses.mpjpe) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step of one model.

  Args:
    state: the model's TrainState.
    batch: 'poses_2d' (B, RF, K, 2) input windows, 'poses_3d' (B, 1, J, 3) targets.
    hparams: 'learning_rate' and 'bn_momentum', () float32 (traced: they follow schedules).
    rng: the model's dropout key; the step count is folded in here.
    model: the training model (strided form, reference V8.6).
    optimizer: `optim.adam_amsgrad()`.
    loss_fn: (predicted, target) -> () the model family's training loss (`Family.loss`; the
      TCN's: MPJPE).

  Returns:
    (new state, {'loss', 'learning_rate', 'bn_momentum'}), loss = `loss_fn` in metres against the
    target with joint 0 zeroed (reference V10.2).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)
  target = batch["poses_3d"].at[..., 0, :].set(0.0)

  def objective(params):
    pred, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["poses_2d"], train=True,
        bn_momentum=hparams["bn_momentum"], rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    return loss_fn(pred, target), updates["batch_stats"]

  loss, batch_stats, params, opt_state = optim.gradient_update(
      objective, state.params, state.opt_state, hparams["learning_rate"], optimizer)
  new_state = TrainState(params=params, batch_stats=batch_stats, opt_state=opt_state, step=state.step + 1)
  metrics = {"loss": loss, "learning_rate": jnp.asarray(hparams["learning_rate"], jnp.float32),
             "bn_momentum": jnp.asarray(hparams["bn_momentum"], jnp.float32)}
  return new_state, metrics


def gather_models(tree: PyTree, models: jax.Array, layout: slices.SlotLayout) -> PyTree:
  """The slot models' entries of a stacked tree: leaves (A', ...) -> (K, ...).

  models: (K,) global model index of each slot (A' for an empty slot: it gets a copy of its
  group's last model, computed and dropped). Slot s reads only group s // (K / G): with the
  model axis sharded over the G action-device groups, the gather stays on each group's devices.
  """
  g, m, k = layout.groups, layout.models_per_group, layout.slots_per_group
  local = jnp.minimum(models.reshape(g, k) - (jnp.arange(g, dtype=models.dtype) * m)[:, None], m - 1)

  def take(x):
    if g == 1:  # no group axis: a plain gather (reshapes of the state cost copies)
      return x[local[0]]
    grouped = x.reshape((g, m) + x.shape[1:])
    return jax.vmap(lambda xs, i: xs[i])(grouped, local).reshape((g * k,) + x.shape[1:])

  return jax.tree.map(take, tree)


def scatter_models(tree: PyTree, models: jax.Array, values: PyTree, layout: slices.SlotLayout) -> PyTree:
  """`tree` with the slot models' entries replaced by `values` (K, ...); empty slots dropped."""
  g, m, k = layout.groups, layout.models_per_group, layout.slots_per_group
  local = models.reshape(g, k) - (jnp.arange(g, dtype=models.dtype) * m)[:, None]  # >= m: empty

  def put(x, v):
    if g == 1:
      return x.at[local[0]].set(v, mode="drop")
    grouped, v = x.reshape((g, m) + x.shape[1:]), v.reshape((g, k) + v.shape[1:])
    out = jax.vmap(lambda xs, i, vs: xs.at[i].set(vs, mode="drop"))(grouped, local, v)
    return out.reshape(x.shape)

  return jax.tree.map(put, tree, values)


def slot_step(state: TrainState, batch: Mapping[str, jax.Array], slots: Mapping[str, jax.Array],
              rng: jax.Array, *, model: nn.Module, optimizer: optax.GradientTransformation,
              hyperparams_fn: Callable[[jax.Array, jax.Array], dict[str, jax.Array]],
              model_ids: jax.Array, layout: slices.SlotLayout,
              step_fn: Callable | None = None,
              vmapped_step_fn: Callable | None = None,
              loss_fn: LossFn = losses.mpjpe) -> tuple[TrainState, dict[str, jax.Array]]:
  """One global step: each of the K slots' models takes one optimizer step.

  Args:
    state: stacked TrainState, leaves (A', ...).
    batch: 'poses_2d' (K, B, RF, Kp, F), 'poses_3d' (K, B, 1, J, 3): each slot's batch.
    slots: 'model' (K,) int32 global model index of each slot (A' for an empty slot),
      'epoch' (K,) int32 its model's own epoch (drives its lr and BN momentum).
    rng: the run's dropout key; model a uses fold_in(rng, model_ids[a]) folded with its own
      step count, so its dropout does not depend on the schedule.
    hyperparams_fn: ((K,) epochs, (K,) model index) -> {'learning_rate', 'bn_momentum'}.
    model_ids: (A',) int32 stable model ids.
    layout: how models and slots lie on the action-device groups.
    step_fn: another one-model step `(state, batch, hparams, rng) -> (state, metrics)` (the
      semi-supervised one), given the whole batch.
    vmapped_step_fn: with step_fn, what steps the K gathered slots in place of
      `jax.vmap(step_fn)`.
    loss_fn: the model family's training loss (`train_step`'s; step_fn binds its own).

  Returns:
    (new state, metrics of (K,) values: 'loss', 'learning_rate', 'bn_momentum').
  """
  models = slots["model"]
  num_models = layout.groups * layout.models_per_group
  hparams = hyperparams_fn(slots["epoch"], jnp.minimum(models, num_models - 1))
  rngs = jax.vmap(lambda i: jax.random.fold_in(rng, i))(model_ids[jnp.minimum(models, num_models - 1)])
  if step_fn is None:
    inputs = {"poses_2d": batch["poses_2d"], "poses_3d": batch["poses_3d"]}
    step = functools.partial(train_step, model=model, optimizer=optimizer, loss_fn=loss_fn)
  else:
    inputs, step = dict(batch), step_fn
  if num_models == 1 and layout.slots == 1:
    # One model, stepping at every global step: no gather or scatter (a pass over the state
    # each), and unbatched, so XLA folds the weight-gradient transposes into the matmuls.
    squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)
    new_state, metrics = step(*map(squeeze, (state, inputs, hparams, rngs)))
    return jax.tree.map(lambda x: x[None], (new_state, metrics))
  vmapped = jax.vmap(step) if vmapped_step_fn is None else vmapped_step_fn
  new_slots, metrics = vmapped(gather_models(state, models, layout), inputs, hparams, rngs)
  return scatter_models(state, models, new_slots, layout), metrics


def init_accumulator(num_models: int) -> dict[str, jax.Array]:
  """Per-model sums between two log points, and the first global step with a non-finite loss."""
  return {"loss_sum": jnp.zeros((num_models,), jnp.float32),
          "steps": jnp.zeros((num_models,), jnp.int32),
          "first_nonfinite": jnp.full((num_models,), -1, jnp.int32)}


def accumulate(acc: dict[str, jax.Array], models: jax.Array, loss: jax.Array,
               global_step: jax.Array) -> dict[str, jax.Array]:
  """Adds each slot's loss to its model (empty slots, index A', are dropped)."""
  bad = ~jnp.isfinite(loss)
  first = acc["first_nonfinite"]
  marked = first.at[models].set(jnp.where(bad, global_step, -1), mode="drop")
  return {"loss_sum": acc["loss_sum"].at[models].add(loss, mode="drop"),
          "steps": acc["steps"].at[models].add(1, mode="drop"),
          "first_nonfinite": jnp.where(first >= 0, first, marked)}
