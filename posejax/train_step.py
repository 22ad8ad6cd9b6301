"""The pure training step: one model (`train_step`) and A stacked models (`multi_train_step`).

Action-based training is `jax.vmap` of the same one-model step over a state whose leaves
carry a leading model axis; common mode is the same with A = 1. Each model has an `active`
flag per global step (the lock-step schedule): an inactive model keeps its whole state, so a
model whose budget is spent stops while the others go on, and each model's sequence of
updates is exactly that of an independent run.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from posejax import losses, optim

PyTree = Any


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
               rng: jax.Array, *, model: nn.Module,
               optimizer: optax.GradientTransformation) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step of one model.

  Args:
    state: the model's TrainState.
    batch: 'poses_2d' (B, RF, K, 2) input windows, 'poses_3d' (B, 1, J, 3) targets.
    hparams: 'learning_rate' and 'bn_momentum', () float32 (traced: they follow schedules).
    rng: the model's dropout key; the step count is folded in here.
    model: the training model (strided form, spec 8.6).
    optimizer: `optim.adam_amsgrad()`.

  Returns:
    (new state, {'loss', 'learning_rate', 'bn_momentum'}), loss = MPJPE in metres against the
    target with joint 0 zeroed (spec 10.2).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)
  target = batch["poses_3d"].at[..., 0, :].set(0.0)

  def loss_fn(params):
    pred, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["poses_2d"], train=True,
        bn_momentum=hparams["bn_momentum"], rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    return losses.mpjpe(pred, target), updates["batch_stats"]

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  opt_state = optim.with_learning_rate(state.opt_state, hparams["learning_rate"])
  updates, opt_state = optimizer.update(grads, opt_state, state.params)
  new_state = TrainState(params=optax.apply_updates(state.params, updates), batch_stats=batch_stats,
                         opt_state=opt_state, step=state.step + 1)
  metrics = {"loss": loss, "learning_rate": jnp.asarray(hparams["learning_rate"], jnp.float32),
             "bn_momentum": jnp.asarray(hparams["bn_momentum"], jnp.float32)}
  return new_state, metrics


def select_models(active: jax.Array, new: PyTree, old: PyTree) -> PyTree:
  """Per model a: new[a] if active[a] else old[a]; leaves (A, ...), active (A,) bool."""
  def pick(n, o):
    mask = active.reshape(active.shape + (1,) * (n.ndim - 1))
    return jnp.where(mask, n, o)
  return jax.tree.map(pick, new, old)


def multi_train_step(state: TrainState, batch: Mapping[str, jax.Array], rng: jax.Array, *,
                     model: nn.Module, optimizer: optax.GradientTransformation,
                     hyperparams_fn: Callable[[jax.Array], dict[str, jax.Array]],
                     model_ids: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
  """One global step of A stacked models.

  Args:
    state: stacked TrainState, leaves (A, ...).
    batch: 'poses_2d' (A, B, RF, K, 2), 'poses_3d' (A, B, 1, J, 3), 'active' (A,) bool
      (ignored when A = 1: a lone model steps every time), 'epoch' (A,) int, each model's own
      epoch (drives its lr and BN momentum).
    rng: the run's dropout key; model a uses fold_in(rng, model_ids[a]).
    hyperparams_fn: (A,) epochs -> {'learning_rate': (A,), 'bn_momentum': (A,)}.
    model_ids: (A,) int32 stable model ids.

  Returns:
    (new state, metrics of (A,) values: 'loss', 'learning_rate', 'bn_momentum', 'active').
  """
  hparams = hyperparams_fn(batch["epoch"])
  rngs = jax.vmap(lambda i: jax.random.fold_in(rng, i))(model_ids)
  inputs = {"poses_2d": batch["poses_2d"], "poses_3d": batch["poses_3d"]}
  step = functools.partial(train_step, model=model, optimizer=optimizer)
  active = batch["active"].astype(bool)
  if active.shape[0] == 1:
    # One model: the vmap is a squeeze. Unbatched, XLA folds the transposes of the weight
    # gradients into the matmuls (batched, it leaves them to the optimizer's loops). A lone
    # model is active at every step of its lock-step schedule, so no select either (it costs
    # a pass over the state).
    squeeze = lambda tree: jax.tree.map(lambda x: x[0], tree)
    new_state, metrics = step(*map(squeeze, (state, inputs, hparams, rngs)))
    new_state, metrics = jax.tree.map(lambda x: x[None], (new_state, metrics))
  else:
    new_state, metrics = jax.vmap(step)(state, inputs, hparams, rngs)
    new_state = select_models(active, new_state, state)
  metrics["active"] = active
  return new_state, metrics


def init_accumulator(num_models: int) -> dict[str, jax.Array]:
  """Running sums of the per-model training loss between two log points."""
  return {"loss_sum": jnp.zeros((num_models,), jnp.float32),
          "steps": jnp.zeros((num_models,), jnp.int32)}


def accumulate(acc: dict[str, jax.Array], metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Adds the losses of the models that stepped (every step has the same batch size)."""
  active = metrics["active"]
  return {"loss_sum": acc["loss_sum"] + jnp.where(active, metrics["loss"], 0.0),
          "steps": acc["steps"] + active.astype(jnp.int32)}
