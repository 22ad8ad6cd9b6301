"""Skeleton trees and 2D keypoint layouts.

A `Skeleton` is a parent array plus left/right joint lists (used for flipping).
Human3.6M's 32-joint mocap skeleton is reduced to the 17 joints used everywhere;
HumanEva-I's 15-joint skeleton uses the same abstraction.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from posejax.common.errors import PosejaxError


def flip_permutation(num_joints: int, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
  """Column order of a mirrored pose: left and right columns swapped, (num_joints,) int32."""
  perm = np.arange(num_joints, dtype=np.int32)
  perm[list(left) + list(right)] = list(right) + list(left)
  return perm


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """A kinematic tree. `parents[j]` is the parent of joint j (-1 for the root)."""

  parents: tuple[int, ...]
  joints_left: tuple[int, ...]
  joints_right: tuple[int, ...]

  def __post_init__(self):
    if len(self.joints_left) != len(self.joints_right):
      raise ValueError("joints_left and joints_right must have the same length")

  @property
  def num_joints(self) -> int:
    return len(self.parents)

  def children(self, joint: int) -> tuple[int, ...]:
    return tuple(j for j, p in enumerate(self.parents) if p == joint)

  def remove_joints(self, removed: Sequence[int]) -> tuple["Skeleton", tuple[int, ...]]:
    """Removes joints, re-attaching orphans to their nearest surviving ancestor.

    Returns:
      The reduced skeleton and the kept original joint indices (ascending), to
      index position arrays: `positions[:, kept]`.
    """
    removed_set = set(removed)
    kept = tuple(j for j in range(self.num_joints) if j not in removed_set)
    new_index = {old: new for new, old in enumerate(kept)}
    parents = []
    for j in kept:
      parent = self.parents[j]
      while parent in removed_set:
        parent = self.parents[parent]
      parents.append(-1 if parent == -1 else new_index[parent])
    left = tuple(new_index[j] for j in self.joints_left if j in new_index)
    right = tuple(new_index[j] for j in self.joints_right if j in new_index)
    return Skeleton(tuple(parents), left, right), kept


H36M_SKELETON_32 = Skeleton(
    parents=(-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19,
             22, 12, 24, 25, 26, 27, 28, 27, 30),
    joints_left=(6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23),
    joints_right=(1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31),
)
H36M_REMOVED_JOINTS = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)


def _h36m_17() -> tuple[Skeleton, tuple[int, ...]]:
  reduced, kept = H36M_SKELETON_32.remove_joints(H36M_REMOVED_JOINTS)
  # The reference re-attaches both shoulders to the thorax (joint 8) after removal.
  parents = list(reduced.parents)
  parents[11] = 8
  parents[14] = 8
  return dataclasses.replace(reduced, parents=tuple(parents)), kept


H36M_SKELETON, H36M_KEPT_JOINTS = _h36m_17()
H36M_JOINT_NAMES = ("Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax",
                    "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow",
                    "RWrist")

HUMANEVA15_SKELETON = Skeleton(
    parents=(-1, 0, 1, 2, 3, 1, 5, 6, 0, 8, 9, 0, 11, 12, 1),
    joints_left=(2, 3, 4, 8, 9, 10),
    joints_right=(5, 6, 7, 11, 12, 13),
)


@dataclasses.dataclass(frozen=True)
class KeypointLayout:
  """A 2D keypoint layout: its size and the left/right lists swapped by a flip."""

  name: str
  num_joints: int
  left: tuple[int, ...]
  right: tuple[int, ...]


# Order matters: `layout_for_source` takes the first name that is a substring.
LAYOUTS: dict[str, KeypointLayout] = {
    layout.name: layout for layout in (
        KeypointLayout("mpii", 16, (3, 4, 5, 13, 14, 15), (0, 1, 2, 10, 11, 12)),
        KeypointLayout("coco", 17, (1, 3, 5, 7, 9, 11, 13, 15), (2, 4, 6, 8, 10, 12, 14, 16)),
        KeypointLayout("h36m", 17, (4, 5, 6, 11, 12, 13), (1, 2, 3, 14, 15, 16)),
        KeypointLayout("humaneva15", 15, (2, 3, 4, 8, 9, 10), (5, 6, 7, 11, 12, 13)),
        KeypointLayout("humaneva20", 20, (3, 4, 5, 6, 11, 12, 13, 14), (7, 8, 9, 10, 15, 16, 17, 18)),
    )
}


def layout_for_source(source: str) -> KeypointLayout:
  """The layout preset of a 2D source name (`cpn_ft_h36m_dbb` -> h36m), by substring."""
  for name, layout in LAYOUTS.items():
    if name in source:
      return layout
  raise PosejaxError(
      f"keypoint source {source!r}: no layout name ({', '.join(LAYOUTS)}) occurs in it")
