"""What a log point records (metrics.jsonl, values in metres) and prints (the reference's
epoch line, in mm), and the run's cumulative timers.

`log_record` reads these fields of the trainer's Run: `layout.num_models`, `budget`,
`batch_size`, `hyperparams_fn`, `slices` and `semi`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from posejax.pose.actions import ABBREVIATIONS
from posejax.training import schedules, slices


@dataclasses.dataclass
class Timers:
  """Seconds spent in training steps, compilation and evaluation (cumulative over resumes)."""
  train: float = 0.0
  compile: float = 0.0
  eval: float = 0.0
  wall: float = 0.0  # wall time of earlier sessions of a resumed run

  def as_dict(self, wall_now: float) -> dict[str, float]:
    return {"train_time_s": self.train, "compile_time_s": self.compile, "eval_time_s": self.eval,
            "wall_time_s": self.wall + wall_now}


def epoch_line(record: Mapping[str, Any], minutes: float, slice_names: list[str]) -> str:
  """The reference's per-epoch line (mm), then per-model train/valid pairs in AB mode."""
  per = record["per_action"]
  lrs = sorted({round(per[s]["lr"], 9) for s in slice_names})
  lr = f"{lrs[0]:.6f}" if len(lrs) == 1 else f"{lrs[0]:.6f}-{lrs[-1]:.6f}"
  line = f"[{record['epoch']}] time {minutes:.2f} min lr {lr} 3d_train {1000 * record['loss']:.2f}"
  if "traj_train" in record:  # semi-supervised: trajectory (mm) and unlabeled 2D (normalized) losses
    line += f" traj_train {1000 * record['traj_train']:.2f} 2d_train {record['2d_train']:.5f}"
  if record.get("mpjpe_train_eval") is not None:  # the reference's 3d_eval (reference V10.3)
    line += f" 3d_eval {1000 * record['mpjpe_train_eval']:.2f}"
  if record.get("mpjpe_valid") is not None:
    line += f" 3d_valid {1000 * record['mpjpe_valid']:.2f}"
  if "traj_valid" in record:  # reference V11.4 (trajectory in mm, 2D in normalized units)
    line += (f" traj_valid {1000 * record['traj_valid']:.2f} traj_eval {1000 * record['traj_eval']:.2f} 2d_valid "
             f"{record['2d_valid']:.5f} 2d_train_sup {record['2d_train_sup']:.5f} 2d_train_unsup "
             f"{record['2d_train_unsup']:.5f}")
  if slice_names != [slices.COMMON]:
    parts = [f"{ABBREVIATIONS.get(s, s)} {1000 * per[s]['loss']:.1f}"
             + (f"/{1000 * per[s]['mpjpe_valid']:.1f}" if "mpjpe_valid" in per[s] else "") for s in slice_names]
    line += " | " + " ".join(parts)
  return line


def _train_eval_entries(train_eval: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
  """Run.validate's result on the training set as (top-level, per-action) metrics.jsonl keys:
  mpjpe_train_eval (frame-weighted, the reference's 3d_eval), its plain mean over actions, and
  the same for MPJVE."""
  rename = lambda key: key.replace("_valid", "_train_eval")
  top = {rename(k): v for k, v in train_eval["frame_weighted"].items()}
  top.update({rename(k) + "_action_mean": train_eval[k] for k in ("mpjpe_valid", "mpjve_valid")})
  per = {a: {rename(k): v for k, v in values.items()} for a, values in train_eval["per_action"].items()}
  return top, per


@dataclasses.dataclass(frozen=True)
class Models:
  """What a log point's record says of the run's models (the trainer's plan, read-only)."""
  slices: tuple[str, ...]  # the model of each slice: an action, or 'all' in common mode
  budget: schedules.Budget  # each model's steps and examples per epoch
  batch_size: int  # examples (windows or chunks) per step and model
  hyperparams_fn: Callable[[jax.Array, jax.Array], Mapping[str, jax.Array]]  # (epochs, models) -> lr, BN momentum
  semi: bool  # semi-supervised: trajectory and 2D losses too


def log_record(models: Models, epoch, step: int, positions: np.ndarray, acc_host, valid, timers: Timers,
               wall_now: float, train_eval: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The metrics.jsonl object of a log point (values in metres)."""
  a, budget = len(models.slices), models.budget
  loss = acc_host["loss_sum"][:a] / np.maximum(acc_host["steps"][:a], 1)
  last_epoch = np.maximum(positions[:a] - 1, 0) * models.batch_size // budget.examples_per_epoch
  hp = jax.tree.map(np.asarray, models.hyperparams_fn(jnp.asarray(last_epoch, jnp.int32), jnp.arange(a)))
  per = {}
  for i, name in enumerate(models.slices):
    per[name] = {"loss": float(loss[i]), "lr": float(hp["learning_rate"][i]),
                 "bn_momentum": float(hp["bn_momentum"][i]),
                 "action_epoch": float(positions[i] * models.batch_size / budget.examples_per_epoch[i]),
                 "samples": int(positions[i] * models.batch_size), "steps": int(positions[i])}
  record = {"epoch": epoch, "step": int(step), **timers.as_dict(wall_now),
            "mpjpe_valid": None, "mpjve_valid": None, "loss": float(np.mean(loss))}
  if models.semi:
    # Reference V11.2 step 8: the trajectory loss per labeled step, the unlabeled 2D loss per step past
    # warm-up (0 while every step was warm-up).
    traj = acc_host["traj_sum"][:a] / np.maximum(acc_host["steps"][:a], 1)
    proj = acc_host["proj_sum"][:a] / np.maximum(acc_host["semi_steps"][:a], 1)
    for i, name in enumerate(models.slices):
      per[name].update(traj_train=float(traj[i]), **{"2d_train": float(proj[i])})
    record.update(traj_train=float(np.mean(traj)), **{"2d_train": float(np.mean(proj))})
  if valid is not None:
    # The reference's 3d_valid: frame-weighted over all test frames; the plain mean over
    # actions (the tables' averaging) beside it.
    record.update(mpjpe_valid=valid["frame_weighted"]["mpjpe_valid"],
                  mpjve_valid=valid["frame_weighted"]["mpjve_valid"],
                  mpjpe_valid_action_mean=valid["mpjpe_valid"], mpjve_valid_action_mean=valid["mpjve_valid"])
    for action, values in valid["per_action"].items():
      per.setdefault(action, {}).update(values)
  if train_eval is not None:
    top, per_action = _train_eval_entries(train_eval)
    record.update(top)
    for action, values in per_action.items():
      per.setdefault(action, {}).update(values)
  record["per_action"] = per
  return record
