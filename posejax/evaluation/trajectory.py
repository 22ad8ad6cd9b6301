"""Trajectory models (reference V8.10): the camera-space position of the root (metres) from 2D input.

A trajectory model has the pose model's architecture with one output joint. Semi-supervised
runs train one beside each pose model, so an action-based run has one per action; the
checkpoints hold them stacked like the pose models (item 'trajectory', their hyper-parameters
in metadata['trajectory_model']), and so does a workdir imported from a semi-supervised
VideoPose3D checkpoint (`posejax.tools.interop --workdir`, its `model_traj`).

Each sequence's trajectory comes from the pair of the pose model that lifted it (its routed
slice), and a soft mixture of pose models mixes the trajectories with the same per-frame
weights. Test-time flipping is the reference's for trajectories: the mirrored input's
prediction has its x negated and no joints swapped.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax

from posejax.common.errors import PosejaxError
from posejax.evaluation import resident as device_eval
from posejax.models import spec as model_spec
from posejax.models.family import PoseModel
from posejax.workdir import checkpoints as checkpointing, layout


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """The trajectory models of a checkpoint."""

  model: PoseModel  # the dilated (evaluation) form, one output joint
  variables: Any        # {'params', 'batch_stats'}, leading slice axis like the pose models'


def hparams_of(pose_hparams: Mapping[str, Any]) -> dict[str, Any]:
  """A trajectory model's hyper-parameters: the pose model's with one output joint."""
  return dict(pose_hparams, num_joints_out=1)


def from_checkpoint(workdir: str, step: int, metadata: Mapping[str, Any]) -> Trajectory | None:
  """The trajectory models of a checkpoint step, or None when it has none (supervised runs)."""
  variables = checkpointing.restore_trajectory(workdir, step)
  if variables is None:
    return None
  hparams = metadata.get("trajectory_model") or hparams_of(metadata.get("model") or {})
  try:
    model = model_spec.build(hparams)
  except (ValueError, KeyError, TypeError) as e:
    raise PosejaxError(f"{layout.checkpoint_dir(workdir)}: step {step} records no usable trajectory "
                       f"model ({e})") from None
  if model.num_joints_out != 1:
    raise PosejaxError(f"{layout.checkpoint_dir(workdir)}: step {step}'s trajectory model predicts "
                       f"{model.num_joints_out} joints, expected 1")
  return Trajectory(model, variables)


def flip(pose_flip: device_eval.Flip) -> device_eval.Flip:
  """The test-time flip of trajectories: the pose models' keypoint swap, no output joint swap."""
  kps_left, kps_right, _, _ = pose_flip
  return (tuple(kps_left), tuple(kps_right), (), ())


def roots(trajectory: Trajectory, resident: device_eval.ResidentTestSet, *, tta: bool,
          weights: jax.Array | None = None) -> jax.Array:
  """(N, 1, 3) camera-space roots of the resident set's flat frames.

  Each record is lifted by the trajectory model of the slice the set routes it to, or, with
  `weights` (N, S), by the per-frame mixture of all S trajectory models (soft routing).
  """
  resident = dataclasses.replace(resident, flip=flip(resident.flip), targets=None)
  if weights is None:
    return device_eval.predict(trajectory.model, trajectory.variables, resident, tta=tta)
  everything = device_eval.predict_all(trajectory.model, trajectory.variables, resident, tta=tta)
  return device_eval.mix_models(everything, weights)
