"""The pure semi-supervised training step (reference V11.2): a pose model and a trajectory model.

The trajectory model (reference V8.10) is the pose model's network with one output joint, the
camera-space root. Both train under one optimizer (Adam is elementwise, so the pose model's
updates do not depend on the trajectory's). A step's batch holds B labeled windows with their
3D targets and trajectories, and B unlabeled windows with their cameras. During warm-up (the
model's first `warmup_steps` steps) the step sees the labeled windows only: the pose model's update
is then exactly the supervised `train_step`'s. Afterwards both models see labeled and
unlabeled windows in one batch, and the loss adds the 2D reprojection of the unlabeled
predictions (`semi_losses.projection_loss`) and the bone-length term.

The warm-up switch is traced (`lax.cond`; a select under vmap), so one compiled step serves
the whole run, and in action-based mode each slot follows its own model's warm-up.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from posejax.pose import losses
from posejax.training import optim
from posejax.training.semi import losses as semi_losses
from posejax.training.step import model_key

PyTree = Any
TRAJ_KEY = 1  # folded into a model's key for its trajectory model's initial weights and dropout
METRICS = ("loss", "loss_traj", "loss_2d", "semi")


@flax.struct.dataclass
class SemiTrainState:
  """One pose model and its trajectory model (stacked: leading model axis on every leaf).

  Attributes:
    params, batch_stats: the pose model's (as `train_step.TrainState`, so that evaluation
      and checkpoints read the pose model the same way).
    traj_params, traj_batch_stats: the trajectory model's.
    opt_state: `optim.adam_amsgrad` state over {'pose': params, 'traj': traj_params}.
    step: () int32 optimizer steps taken.
  """
  params: PyTree
  batch_stats: PyTree
  traj_params: PyTree
  traj_batch_stats: PyTree
  opt_state: optax.OptState
  step: jax.Array

  @property
  def variables(self) -> dict[str, PyTree]:
    return {"params": self.params, "batch_stats": self.batch_stats}

  @property
  def traj_variables(self) -> dict[str, PyTree]:
    return {"params": self.traj_params, "batch_stats": self.traj_batch_stats}


@dataclasses.dataclass(frozen=True)
class SemiOptions:
  """Static settings of the step (hashable).

  Attributes:
    parents: the skeleton's parents (bone-length term).
    pad: (RF - 1) // 2, the unlabeled windows' padding frames on each side.
    linear_projection: the pinhole projection (--linear-projection).
    bone_length: add the bone-length term (not --no-bone-length).
    projection: add the 2D reprojection loss (not --no-proj).
  """
  parents: tuple[int, ...]
  pad: int
  linear_projection: bool = False
  bone_length: bool = True
  projection: bool = True


def _init_state(model: nn.Module, traj_model: nn.Module, optimizer: optax.GradientTransformation,
                key: jax.Array, input_shape: tuple[int, ...]) -> SemiTrainState:
  x = jnp.zeros(input_shape, jnp.float32)
  pose = model.init(key, x, train=False)
  traj = traj_model.init(jax.random.fold_in(key, TRAJ_KEY), x, train=False)
  return SemiTrainState(params=pose["params"], batch_stats=pose["batch_stats"], traj_params=traj["params"],
                        traj_batch_stats=traj["batch_stats"],
                        opt_state=optimizer.init({"pose": pose["params"], "traj": traj["params"]}),
                        step=jnp.zeros([], jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 5))
def init_stacked_state(model: nn.Module, traj_model: nn.Module, optimizer: optax.GradientTransformation,
                       seed: int | jax.Array, model_ids: jax.Array, input_shape: tuple[int, ...]) -> SemiTrainState:
  """States of A model pairs; pose model a starts as `train_step.init_stacked_state`'s."""
  return jax.lax.map(lambda i: _init_state(model, traj_model, optimizer, model_key(seed, i), input_shape),
                     jnp.asarray(model_ids))


def semi_train_step(state: SemiTrainState, batch: Mapping[str, jax.Array], hparams: Mapping[str, jax.Array],
                    rng: jax.Array, *, model: nn.Module, traj_model: nn.Module,
                    optimizer: optax.GradientTransformation, options: SemiOptions,
                    branch: str = "auto") -> tuple[SemiTrainState, dict[str, jax.Array]]:
  """One optimizer step of a pose model and its trajectory model.

  Args:
    batch: 'poses_2d' (B, W, Kp, F) labeled windows, 'poses_3d' (B, C, J, 3) targets,
      'trajectory' (B, C, 1, 3) their camera-space roots, 'unlabeled_2d' (B, W, Kp, F),
      'cameras' (B, 9) the unlabeled windows' intrinsics (flipped with them).
    hparams: 'learning_rate', 'bn_momentum' () float32, 'warmup_steps' () int32: the model's
      steps before that count are warm-up (supervised only).
    rng: the model's dropout key (the step count is folded in here, as `train_step`).
    branch: 'auto' (warm-up decided by the step count), or 'warmup' / 'semi' when the caller
      knows it (`vmapped_step`: under vmap a traced choice computes both branches).

  Returns:
    (new state, {'loss': 3D MPJPE, 'loss_traj', 'loss_2d' (0 in warm-up), 'semi': 1.0 after
     warm-up else 0.0, 'learning_rate', 'bn_momentum'}).
  """
  dropout_rng = jax.random.fold_in(rng, state.step)
  traj_rng = jax.random.fold_in(dropout_rng, TRAJ_KEY)
  target = batch["poses_3d"].at[..., 0, :].set(0.0)
  traj_target = batch["trajectory"]
  split = target.shape[0]
  momentum = hparams["bn_momentum"]

  def apply(net, params, stats, x, key):
    return net.apply({"params": params, "batch_stats": stats}, x, train=True, bn_momentum=momentum,
                     rngs={"dropout": key}, mutable=["batch_stats"])

  def supervised(params):
    pred, pose_upd = apply(model, params["pose"], state.batch_stats, batch["poses_2d"], dropout_rng)
    pred_traj, traj_upd = apply(traj_model, params["traj"], state.traj_batch_stats, batch["poses_2d"], traj_rng)
    loss_3d = losses.mpjpe(pred, target)
    loss_traj = semi_losses.trajectory_loss(pred_traj, traj_target)
    zero = jnp.zeros([], loss_3d.dtype)
    return loss_3d + loss_traj, (pose_upd["batch_stats"], traj_upd["batch_stats"], loss_3d, loss_traj, zero)

  def semi(params):
    x = jnp.concatenate([batch["poses_2d"], batch["unlabeled_2d"]], axis=0)
    pred, pose_upd = apply(model, params["pose"], state.batch_stats, x, dropout_rng)
    pred_traj, traj_upd = apply(traj_model, params["traj"], state.traj_batch_stats, x, traj_rng)
    loss_3d = losses.mpjpe(pred[:split], target)
    loss_traj = semi_losses.trajectory_loss(pred_traj[:split], traj_target)
    loss_2d = semi_losses.projection_loss(pred[split:], pred_traj[split:], batch["cameras"], batch["unlabeled_2d"],
                                          options.pad, options.linear_projection)
    total = loss_3d + loss_traj
    if options.projection:
      total = total + loss_2d
    if options.bone_length:
      total = total + semi_losses.bone_length_penalty(pred, options.parents, split)
    return total, (pose_upd["batch_stats"], traj_upd["batch_stats"], loss_3d, loss_traj, loss_2d)

  warmup = state.step < hparams["warmup_steps"]
  if branch == "auto":
    loss_fn = lambda params: jax.lax.cond(warmup, supervised, semi, params)
  else:
    loss_fn = supervised if branch == "warmup" else semi
  params = {"pose": state.params, "traj": state.traj_params}
  _, (stats, traj_stats, loss_3d, loss_traj, loss_2d), new_params, opt_state = optim.gradient_update(
      loss_fn, params, state.opt_state, hparams["learning_rate"], optimizer)
  new_state = SemiTrainState(params=new_params["pose"], batch_stats=stats, traj_params=new_params["traj"],
                             traj_batch_stats=traj_stats, opt_state=opt_state, step=state.step + 1)
  metrics = {"loss": loss_3d, "loss_traj": loss_traj, "loss_2d": loss_2d,
             "semi": jnp.where(warmup, 0.0, 1.0).astype(jnp.float32),
             "learning_rate": jnp.asarray(hparams["learning_rate"], jnp.float32),
             "bn_momentum": jnp.asarray(hparams["bn_momentum"], jnp.float32)}
  return new_state, metrics


def vmapped_step(step_fn: Callable[..., Any]) -> Callable[..., Any]:
  """`jax.vmap(step_fn)` over K slots that computes one branch when all slots agree.

  `step_fn` is `semi_train_step` with its static arguments bound. The slots are all in
  warm-up or all past it at every global step but those where some models cross the
  boundary; only those compute both branches.
  """
  def run(states, batch, hparams, rngs):
    warm = states.step < hparams["warmup_steps"]
    one = lambda branch: lambda: jax.vmap(functools.partial(step_fn, branch=branch))(states, batch, hparams, rngs)
    return jax.lax.cond(jnp.all(warm), one("warmup"),
                        lambda: jax.lax.cond(jnp.any(warm), one("auto"), one("semi")))
  return run


def init_accumulator(num_models: int) -> dict[str, jax.Array]:
  """Per-model sums of the trajectory and unlabeled 2D losses, and the steps past warm-up."""
  return {"traj_sum": jnp.zeros((num_models,), jnp.float32), "proj_sum": jnp.zeros((num_models,), jnp.float32),
          "semi_steps": jnp.zeros((num_models,), jnp.float32)}


def accumulate(acc: dict[str, jax.Array], models: jax.Array, metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Adds each slot's extra losses to its model (empty slots, index A', are dropped).

  Every step predicts the same number of frames, so sums over steps are the reference's
  frame-weighted epoch means once divided by the step counts.
  """
  add = lambda key, value: acc[key].at[models].add(value, mode="drop")
  return dict(acc, traj_sum=add("traj_sum", metrics["loss_traj"]),
              proj_sum=add("proj_sum", metrics["loss_2d"] * metrics["semi"]),
              semi_steps=add("semi_steps", metrics["semi"]))
