"""Semi-supervised training's extra end-of-epoch metrics (reference V11.4), in eval mode, no TTA.

For a set of sequences with cameras (the test set, the labeled training set, the unlabeled
set): the trajectory error `||pred_traj - true root||` (when the set has 3D) and the 2D
reprojection error of `project_to_2d(pred + pred_traj)` (always the non-linear projection)
against the input keypoints, both averaged over all frames (frame-weighted, as the reference).

The sets live on the device as the evaluation's resident sets (`posejax.evaluation.resident`: whole
edge-padded sequences, each record routed to its action's model pair), with each flat frame's
true root and camera beside them; the test set shares the resident set the trainer validates
with. Prediction is the evaluation's compiled loop, and the errors are reduced on the device:
two numbers come back per set.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from posejax.data.dataset import PoseDataset
from posejax.evaluation import protocols as evaluation, resident as device_eval
from posejax.pose import camera, losses


@dataclasses.dataclass(frozen=True)
class SemiSet:
  """Sequences with cameras on the device.

  Attributes:
    resident: their 2D keypoints, routed to the model slices (its targets are not used).
    roots: (N, 1, 3) device true camera-space roots of the flat frames, or None without 3D.
    cameras: (N, 9) device normalized intrinsics of each flat frame.
  """
  resident: device_eval.ResidentTestSet
  roots: jax.Array | None
  cameras: jax.Array


def build(dataset: PoseDataset, resident: device_eval.ResidentTestSet) -> SemiSet:
  """The set of `dataset`'s sequences around `resident`, a resident set built from them."""
  records = [dataset.sequences[i] for i in resident.records]  # the flat frame order
  flat = lambda arrays, tail: (np.concatenate(arrays).astype(np.float32) if arrays
                               else np.zeros((0,) + tail, np.float32))
  cameras = flat([np.broadcast_to(np.asarray(r.intrinsic, np.float32), (r.num_frames, 9)) for r in records], (9,))
  has_3d = all(r.poses_3d is not None for r in dataset.sequences)
  roots = flat([r.poses_3d[:, :1] for r in records], (1, 3)) if has_3d else None
  return SemiSet(resident, None if roots is None else jax.device_put(roots), jax.device_put(cameras))


def resident_set(dataset: PoseDataset, actions_of_slices: Sequence[str], model: nn.Module, *,
                 chunk: int = evaluation.DEFAULT_CHUNK, batch: int | None = evaluation.DEFAULT_BATCH) -> SemiSet:
  """`dataset` on the device, its records routed to `actions_of_slices`."""
  resident = evaluation.resident_test_set(dataset, actions_of_slices, model, chunk=chunk, batch=batch,
                                          with_targets=False)
  return build(dataset, resident)


@jax.jit
def _error_sums(pred: jax.Array, pred_traj: jax.Array, roots: jax.Array | None, cameras: jax.Array,
                poses_2d: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Sums over the N flat frames of the trajectory error (0 without roots) and the 2D error."""
  recon = camera.project_to_2d(pred + pred_traj, cameras, xp=jnp)
  err_2d = jnp.sum(losses.mpjpe_per_frame(recon, poses_2d[..., :2]))
  traj = jnp.zeros([]) if roots is None else jnp.sum(losses.mpjpe_per_frame(pred_traj, roots))
  return traj, err_2d


def metrics(model: nn.Module, traj_model: nn.Module, variables: Any, traj_variables: Any,
            semi_set: SemiSet) -> dict[str, float | None]:
  """{'traj': m or None, '2d': normalized units}, frame-weighted over all frames of `semi_set`.

  variables, traj_variables: stacked (A, ...) eval-model variables of the model pairs.
  """
  resident = dataclasses.replace(semi_set.resident, targets=None)
  pred = device_eval.predict(model, variables, resident, tta=False)
  pred_traj = device_eval.predict(traj_model, traj_variables, resident, tta=False)
  traj, err_2d = _error_sums(pred, pred_traj, semi_set.roots, semi_set.cameras, resident.poses_2d)
  frames = max(int(resident.plan.total_frames), 1)
  return {"traj": None if semi_set.roots is None else float(traj) / frames, "2d": float(err_2d) / frames}
