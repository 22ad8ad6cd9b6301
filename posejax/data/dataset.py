"""The in-memory pose dataset: one record per (subject, sequence, camera).

Every loader (Human3.6M npz files, the synthetic generator's files, custom 2D keypoints)
produces a `PoseDataset`; the input pipeline and the evaluation only read this type.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np

from posejax.pose.skeleton import Skeleton


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceRecord:
  """One camera view of one sequence.

  Attributes:
    subject: e.g. 'S9'.
    name: canonical sequence name, e.g. 'Walking 1'.
    action: canonical action, e.g. 'Walking'.
    camera: camera index (0..3 for Human3.6M).
    poses_2d: (T, K, 2) float32 keypoints in normalized screen coordinates, cropped to the
      mocap length.
    poses_3d: (T, J, 3) float32 camera-space joints, or None (unlabeled). Joint 0 holds the
      camera-space root (the trajectory); joints 1.. are relative to it.
    intrinsic: (9,) float32 normalized camera vector, or None.
    res_w, res_h: image resolution in pixels.
  """

  subject: str
  name: str
  action: str
  camera: int
  poses_2d: np.ndarray
  poses_3d: np.ndarray | None
  intrinsic: np.ndarray | None
  res_w: int
  res_h: int

  @property
  def num_frames(self) -> int:
    return int(self.poses_2d.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class PoseDataset:
  """A list of sequence records plus the metadata needed to flip and to build models.

  Records are ordered as the reference orders them: subject order x file dict order x camera.
  """

  sequences: tuple[SequenceRecord, ...]
  keypoints_left: tuple[int, ...]
  keypoints_right: tuple[int, ...]
  skeleton: Skeleton
  num_keypoints: int
  fps: float | None
  layout_name: str | None
  source: str

  @property
  def joints_left(self) -> tuple[int, ...]:
    return self.skeleton.joints_left

  @property
  def joints_right(self) -> tuple[int, ...]:
    return self.skeleton.joints_right

  @property
  def subjects(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.subject for s in self.sequences))

  @property
  def actions(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.action for s in self.sequences))

  def frames(self) -> int:
    """Total 2D frames over all records (the reference's "Training on N frames")."""
    return sum(s.num_frames for s in self.sequences)

  def frames_per_action(self) -> dict[str, int]:
    counts: dict[str, int] = collections.defaultdict(int)
    for s in self.sequences:
      counts[s.action] += s.num_frames
    return dict(counts)

  def select(self, subjects: Sequence[str] | None = None,
             actions: Sequence[str] | None = None) -> "PoseDataset":
    """The records of the given subjects and canonical actions (None keeps all)."""
    keep = [s for s in self.sequences
            if (subjects is None or s.subject in subjects) and (actions is None or s.action in actions)]
    return dataclasses.replace(self, sequences=tuple(keep))
