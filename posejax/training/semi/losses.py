"""Loss terms of semi-supervised training (reference V11.2, V11.3), pure jax.numpy.

Shapes: B_l labeled and B_u unlabeled rows, T output frames, J joints, and input windows
(B_u, T + 2 * pad, Kp, F) of which the first two features are normalized x, y. The terms:
  * `trajectory_loss`: the root trajectory against the camera-space root, weighted by
    1 / depth (reference V9.2), so that far-away subjects do not dominate;
  * `projection_loss`: pose + trajectory projected through each row's own camera against
    the unlabeled input without its padding frames;
  * `bone_length_penalty`: the mean bone lengths of labeled and unlabeled predictions
    should agree (keeps the unlabeled poses from shrinking towards the camera).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from posejax.pose import camera, losses


def trajectory_loss(pred_traj: jax.Array, traj: jax.Array) -> jax.Array:
  """Weighted MPJPE of the trajectory with w = 1 / depth of the true root (reference V11.2 step 5).

  Args:
    pred_traj: (B, T, 1, 3) predicted camera-space root.
    traj: (B, T, 1, 3) true camera-space root (z > 0).
  """
  return losses.weighted_mpjpe(pred_traj, traj, 1.0 / traj[..., 2])


def unlabeled_2d_target(inputs: jax.Array, pad: int) -> jax.Array:
  """The 2D target of the reprojection: `inputs[:, pad:-pad, :, :2]` (all frames if pad == 0).

  Args:
    inputs: (B, T + 2 * pad, Kp, F) input windows.

  Returns:
    (B, T, Kp, 2).
  """
  return inputs[:, pad:inputs.shape[1] - pad, :, :2]


def reproject(pred: jax.Array, pred_traj: jax.Array, intrinsics: jax.Array,
              linear: bool = False) -> jax.Array:
  """Projects pose + trajectory through each row's camera (reference V2.4).

  Args:
    pred: (B, T, J, 3) root-relative poses.
    pred_traj: (B, T, 1, 3) camera-space root, broadcast over joints.
    intrinsics: (B, 9) normalized `[fx, fy, cx, cy, k1, k2, k3, p1, p2]`.
    linear: the pinhole projection without distortion (--linear-projection).

  Returns:
    (B, T, J, 2) normalized screen coordinates.
  """
  project = camera.project_to_2d_linear if linear else camera.project_to_2d
  return project(pred + pred_traj, intrinsics, xp=jnp)


def projection_loss(pred: jax.Array, pred_traj: jax.Array, intrinsics: jax.Array,
                    inputs: jax.Array, pad: int, linear: bool = False) -> jax.Array:
  """MPJPE of the reprojected unlabeled prediction against its input (reference V11.2 step 6).

  Args:
    pred, pred_traj, intrinsics: as `reproject`, unlabeled rows only.
    inputs: (B, T + 2 * pad, J, F) the unlabeled input windows.
  """
  return losses.mpjpe(reproject(pred, pred_traj, intrinsics, linear), unlabeled_2d_target(inputs, pad))


def bone_lengths(pred: jax.Array, parents: Sequence[int]) -> jax.Array:
  """Each row's mean length of the bones j -> parents[j], j = 1..J-1: (B, T, J, 3) -> (B, J - 1)."""
  parents = jnp.asarray(tuple(parents)[1:], jnp.int32)
  bones = pred[:, :, 1:] - pred[:, :, parents]
  return jnp.mean(losses._euclidean(bones), axis=1)


def bone_length_penalty(pred: jax.Array, parents: Sequence[int], split: int) -> jax.Array:
  """Mean over bones of |mean labeled length - mean unlabeled length| (reference V11.3).

  Args:
    pred: (B_l + B_u, T, J, 3) labeled rows first, then unlabeled.
    parents: (J,) the skeleton's parents (parents[0] = -1, unused).
    split: B_l.
  """
  lengths = bone_lengths(pred, parents)
  return jnp.mean(jnp.abs(jnp.mean(lengths[:split], axis=0) - jnp.mean(lengths[split:], axis=0)))
