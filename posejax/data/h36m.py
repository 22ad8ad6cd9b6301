"""Loading the published Human3.6M files (`data_3d_h36m.npz`, `data_2d_h36m_<source>.npz`).

The preprocessing is the reference's (reference V6.2-6.3): 32 mocap joints reduced to 17,
3D moved into each camera's frame with joint 0 keeping the trajectory and joints 1.. made
root-relative, video 2D cropped to the mocap length and normalized with the camera's resolution.
Unlike the reference, sequence names are canonicalised on load, selection is by exact action
(never by name prefix), and only the selected sequences are converted and checked numerically.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import load_npz_dict
from posejax.data.dataset import PoseDataset, SequenceRecord
from posejax.data.h36m_cameras import CameraParams, H36M_FPS, h36m_cameras
from posejax.data.npz_files import FileLayout
from posejax.pose.actions import ACTIONS, action_of, canonical_sequence_name, resolve_actions
from posejax.pose.camera import normalize_screen_coordinates, world_to_camera
from posejax.pose.skeleton import H36M_KEPT_JOINTS, H36M_SKELETON

FILE_3D = "data_3d_h36m.npz"
FILE_2D_PATTERN = "data_2d_h36m_{}.npz"
PUBLISHED_SOURCES = ("gt", "cpn_ft_h36m_dbb", "detectron_ft_h36m", "detectron_pt_h36m",
                     "detectron_pt_coco", "sh_pt_mpii", "sh_ft_h36m")
NUM_CAMERAS = 4
HOW_TO_GET_FILES = (
    "prepare the real files with `python -m posejax.data.prepare_h36m --from-cdf DIR --out DIR` "
    "(Human3.6M D3_Positions CDF files) plus the published 2D detections, or generate the "
    "synthetic dataset with `python -m posejax.data.synthetic --out DIR`")


FILES = FileLayout(FILE_3D, FILE_2D_PATTERN, PUBLISHED_SOURCES, HOW_TO_GET_FILES)
available_sources = FILES.available_sources  # the 2D sources X of the data_2d_h36m_X.npz files
_data_paths = FILES.paths
dataset_fingerprint = FILES.fingerprint  # 16 hex digits of SHA-256 over the 3D then the 2D file


def _canonical_dict(path: str, entries: Any, what: str) -> dict[str, Any]:
  """`entries` (a dict name -> value) re-keyed by canonical names, in file order."""
  if not isinstance(entries, dict):
    raise PosejaxError(f"{path}: {what} is a {type(entries).__name__}, expected a dict")
  out: dict[str, Any] = {}
  raw_names: dict[str, str] = {}
  for raw, value in entries.items():
    name = canonical_sequence_name(str(raw))
    if name in out:
      raise PosejaxError(f"{path}: {what} holds both {raw_names[name]!r} and {raw!r}, two "
                         f"spellings of sequence {name!r}")
    out[name], raw_names[name] = value, str(raw)
  return out


def _load_3d(path: str) -> dict[str, dict[str, Any]]:
  positions = load_npz_dict(path, ("positions_3d",))["positions_3d"]
  if not isinstance(positions, dict):
    raise PosejaxError(f"{path}: positions_3d is not a dict subject -> sequence -> (T, 32, 3) array")
  return {str(s): _canonical_dict(path, seqs, f"positions_3d[{s!r}]") for s, seqs in positions.items()}


def _load_2d(path: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
  loaded = load_npz_dict(path, ("positions_2d", "metadata"))
  positions, metadata = loaded["positions_2d"], loaded["metadata"]
  if not isinstance(positions, dict):
    raise PosejaxError(f"{path}: positions_2d is not a dict subject -> sequence -> list of 4 arrays")
  if not isinstance(metadata, dict):
    raise PosejaxError(f"{path}: metadata is a {type(metadata).__name__}, expected a dict")
  seqs = {str(s): _canonical_dict(path, v, f"positions_2d[{s!r}]") for s, v in positions.items()}
  return seqs, metadata


def _keypoint_metadata(path: str,
                       metadata: dict[str, Any]) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
  """(num_joints, left, right) from the 2D metadata, validated."""
  missing = [k for k in ("num_joints", "keypoints_symmetry") if k not in metadata]
  if missing:
    raise PosejaxError(f"{path}: metadata lacks key(s) {', '.join(missing)}")
  try:
    num_joints = int(metadata["num_joints"])
    left, right = (tuple(int(j) for j in side) for side in metadata["keypoints_symmetry"])
  except (TypeError, ValueError):
    raise PosejaxError(f"{path}: metadata num_joints / keypoints_symmetry ([left, right] index lists) "
                       "are malformed") from None
  if len(left) != len(right) or any(not 0 <= j < num_joints for j in left + right):
    raise PosejaxError(f"{path}: metadata keypoints_symmetry {[list(left), list(right)]} does not fit "
                       f"num_joints={num_joints} (equal-length lists of indices below it)")
  return num_joints, left, right


def _select_subjects(subjects: Sequence[str] | str | None, pos_3d: dict, pos_2d: dict,
                     path_3d: str, path_2d: str, require_3d: bool) -> tuple[str, ...]:
  """Requested subjects in the given order (default: the 3D file's), each checked."""
  if isinstance(subjects, str):
    subjects = [s.strip() for s in subjects.split(",") if s.strip()]
  selected = tuple(dict.fromkeys(subjects)) if subjects is not None else tuple(pos_3d)
  if not selected:
    raise PosejaxError(f"{path_3d}: no subjects selected")
  cameras = h36m_cameras()
  for subject in selected:
    if subject not in pos_2d:
      where = (f"subject {subject!r} of {FILE_3D}" if subject in pos_3d
               else f"requested subject {subject!r}")
      raise PosejaxError(f"{path_2d}: {where} is not in the file (subjects: {', '.join(pos_2d)})")
    if subject not in pos_3d and require_3d:
      raise PosejaxError(
          f"{path_3d}: requested subject {subject!r} has no 3D poses (subjects with 3D: "
          f"{', '.join(pos_3d)}); subjects without 3D can only be loaded unlabeled")
    if subject not in cameras:
      raise PosejaxError(f"{path_3d}: subject {subject!r} has no Human3.6M camera parameters "
                         f"(known: {', '.join(cameras)})")
  return selected


def _is_wildcard(actions: Sequence[str] | str | None) -> bool:
  if actions is None:
    return True
  names = actions.split(",") if isinstance(actions, str) else list(actions)
  return [str(n).strip() for n in names if str(n).strip()] in ([], ["*"], ["all"])


def _selected_names(subject: str, seqs_2d: dict[str, Any], seqs_3d: dict[str, Any] | None,
                    actions: tuple[str, ...], check_actions: bool, path_2d: str) -> list[str]:
  """The subject's 2D sequence names (file order) whose action is selected."""
  for name in seqs_3d or ():
    if name not in seqs_2d:
      raise PosejaxError(f"{path_2d}: sequence {subject}/{name!r} of {FILE_3D} is missing")
  names = []
  for name in seqs_2d:
    try:
      action = action_of(name)
    except PosejaxError as e:
      raise PosejaxError(f"{path_2d}: {subject}: {e}") from None
    if action in actions:
      names.append(name)
  if check_actions:
    found = {action_of(n) for n in names}
    absent = [a for a in actions if a not in found]
    if absent:
      raise PosejaxError(f"{path_2d}: requested action(s) {', '.join(absent)} have no sequences "
                         f"for subject {subject}")
  return names


def _check_finite(array: np.ndarray, path: str, where: str) -> None:
  if not np.all(np.isfinite(array)):
    raise PosejaxError(f"{path}: {where} contains NaN or inf values")


def _world_17(positions: Any, path: str, where: str) -> np.ndarray:
  """World (T, 32|17, 3) positions -> the 17 kept joints, (T, 17, 3) float32, checked."""
  positions = np.asarray(positions)
  if positions.ndim != 3 or positions.shape[1:] not in ((32, 3), (17, 3)):
    raise PosejaxError(f"{path}: {where} has shape {positions.shape}, expected (T, 32, 3) or (T, 17, 3)")
  if positions.shape[1] == 32:
    positions = positions[:, list(H36M_KEPT_JOINTS)]
  _check_finite(positions, path, where)
  return positions.astype(np.float32)


def _camera_space_3d(world: np.ndarray, camera: CameraParams) -> np.ndarray:
  """World (T, 17, 3) -> camera space, joint 0 absolute (trajectory), joints 1.. relative to it."""
  pos = world_to_camera(world, camera.orientation, camera.translation)
  pos[:, 1:] -= pos[:, :1]
  return pos


def _camera_arrays_2d(entry: Any, num_joints: int, path: str, where: str) -> list[np.ndarray]:
  """The 4 per-camera (T, K, F) arrays of one sequence (F >= 2: x, y, then e.g. a confidence), shape-checked."""
  if not isinstance(entry, (list, tuple)) or len(entry) != NUM_CAMERAS:
    count = len(entry) if isinstance(entry, (list, tuple)) else type(entry).__name__
    raise PosejaxError(f"{path}: {where} has {count} camera arrays, expected a list of {NUM_CAMERAS}")
  arrays = []
  for cam, kps in enumerate(entry):
    if kps is None:
      raise PosejaxError(f"{path}: {where} camera {cam} is None (missing detections)")
    kps = np.asarray(kps)
    if kps.ndim != 3 or kps.shape[-1] < 2:
      raise PosejaxError(f"{path}: {where} camera {cam} has shape {kps.shape}, expected (T, K, 2) "
                         "(or more features than x, y)")
    if kps.shape[1] != num_joints:
      raise PosejaxError(f"{path}: {where} camera {cam} has {kps.shape[1]} keypoints, "
                         f"metadata num_joints is {num_joints}")
    arrays.append(kps)
  return arrays


def normalized_2d(keypoints: np.ndarray, camera: CameraParams) -> np.ndarray:
  """(T, K, F) pixels -> float32 with x and y screen-normalized and further features (a
  confidence) kept as they are, as the reference does (reference V6.3)."""
  poses_2d = keypoints.astype(np.float32)
  poses_2d[..., :2] = normalize_screen_coordinates(poses_2d[..., :2], camera.res_w, camera.res_h)
  return poses_2d


def sequence_records(subject: str, name: str, entry_2d: Any, positions_3d: Any, num_joints: int,
                     path_2d: str, path_3d: str, *, cameras: Sequence[CameraParams],
                     camera_arrays: Callable[[Any, int, str, str], list[np.ndarray]],
                     world: Callable[[Any, str, str], np.ndarray], known_actions: Sequence[str],
                     camera_label: Callable[[int], str], no_extrinsics: str) -> list[SequenceRecord]:
  """One record per camera of one sequence (`positions_3d` None: unlabeled, uncropped).

  What differs between datasets comes in: the subject's `cameras`; `camera_arrays(entry_2d,
  num_joints, path_2d, where)`, the checked (T, K, F) 2D arrays; `world(positions_3d, path_3d,
  where)`, the checked (T, J, 3) float32 world positions; the `known_actions`; and, for messages,
  `camera_label(index)` and what `no_extrinsics` says of a subject whose cameras lack extrinsics.
  """
  where = f"{subject}/{name!r}"
  arrays = camera_arrays(entry_2d, num_joints, path_2d, where)
  joints_3d = None
  if positions_3d is not None:
    if cameras[0].orientation is None:
      raise PosejaxError(f"{path_3d}: subject {subject!r} has 3D poses but {no_extrinsics}")
    joints_3d = world(positions_3d, path_3d, where)
  records = []
  for cam, (camera, kps) in enumerate(zip(cameras, arrays)):
    poses_3d = None
    if joints_3d is not None:
      poses_3d = _camera_space_3d(joints_3d, camera)
      if kps.shape[0] < poses_3d.shape[0]:
        raise PosejaxError(f"{path_2d}: {where} camera {camera_label(cam)} has {kps.shape[0]} frames, "
                           f"fewer than the {poses_3d.shape[0]} mocap frames in {os.path.basename(path_3d)}")
      kps = kps[:poses_3d.shape[0]]  # videos may run past the mocap
    _check_finite(kps, path_2d, f"{where} camera {camera_label(cam)}")
    records.append(SequenceRecord(
        subject=subject, name=name, action=action_of(name, known_actions), camera=cam,
        poses_2d=normalized_2d(kps, camera), poses_3d=poses_3d,
        intrinsic=None if camera.intrinsic is None else camera.intrinsic.copy(),
        res_w=camera.res_w, res_h=camera.res_h))
  return records


def collect_records(subjects: Sequence[str], pos_2d: dict[str, dict[str, Any]],
                    pos_3d: dict[str, dict[str, Any]],
                    names_of: Callable[[str, dict[str, Any] | None], Sequence[str]],
                    records_of: Callable[[str, str, Any, Any], list[SequenceRecord]], *,
                    require_3d: bool, selected_actions: Sequence[str], path_3d: str,
                    path_2d: str) -> list[SequenceRecord]:
  """The records of every selected sequence of `subjects`, in subject then 2D-file order.

  `names_of(subject, its 3D sequences or None)` selects the sequence names;
  `records_of(subject, name, 2D entry, 3D positions or None)` builds their records. A sequence
  without 3D poses is an error when `require_3d`; no record at all is an error.
  """
  records: list[SequenceRecord] = []
  for subject in subjects:
    seqs_3d = pos_3d.get(subject)
    for name in names_of(subject, seqs_3d):
      positions = None
      if seqs_3d is not None:
        if name not in seqs_3d and require_3d:
          raise PosejaxError(f"{path_3d}: sequence {subject}/{name!r} of {os.path.basename(path_2d)} "
                             "has no 3D poses")
        positions = seqs_3d.get(name)
      records.extend(records_of(subject, name, pos_2d[subject][name], positions))
  if not records:
    raise PosejaxError(f"{path_2d}: no sequences of actions {', '.join(selected_actions)} for "
                       f"subjects {', '.join(subjects)}")
  return records


def load_h36m(data_dir: str, keypoints: str = "gt", subjects: Sequence[str] | str | None = None,
              actions: Sequence[str] | str | None = None, *, require_3d: bool = True) -> PoseDataset:
  """Loads and preprocesses the selected part of the Human3.6M files in `data_dir`.

  Args:
    data_dir: folder holding `data_3d_h36m.npz` and `data_2d_h36m_<keypoints>.npz`.
    keypoints: the 2D source, e.g. 'gt' or 'cpn_ft_h36m_dbb'.
    subjects: subjects in the order wanted (default: the 3D file's order).
    actions: canonical actions (see `resolve_actions`; default all). An explicitly requested
      action must have sequences for every requested subject.
    require_3d: if False, subjects without 3D (S2-S4) are allowed; their records have
      `poses_3d=None` and uncropped 2D.

  Returns:
    A `PoseDataset` with one record per (subject, sequence, camera): subjects in the given
    order, sequences in the 2D file's order, cameras 0..3. `poses_2d`: (T, K, F) with x, y
    normalized (F = 2, or more features kept as they are);
    `poses_3d`: (T, 17, 3) camera space, joint 0 = trajectory, joints 1.. root-relative.

  Raises:
    PosejaxError: missing or malformed files, mismatched 2D/3D contents, unknown selections.
  """
  path_3d, path_2d = _data_paths(data_dir, keypoints)
  selected_actions = resolve_actions(actions)
  check_actions = not _is_wildcard(actions)
  pos_3d = _load_3d(path_3d)
  pos_2d, metadata = _load_2d(path_2d)
  num_joints, kps_left, kps_right = _keypoint_metadata(path_2d, metadata)
  selected_subjects = _select_subjects(subjects, pos_3d, pos_2d, path_3d, path_2d, require_3d)
  records = collect_records(
      selected_subjects, pos_2d, pos_3d,
      lambda subject, seqs_3d: _selected_names(subject, pos_2d[subject], seqs_3d, selected_actions,
                                               check_actions, path_2d),
      lambda subject, name, entry_2d, positions: sequence_records(
          subject, name, entry_2d, positions, num_joints, path_2d, path_3d,
          cameras=h36m_cameras()[subject], camera_arrays=_camera_arrays_2d, world=_world_17,
          known_actions=ACTIONS, camera_label=str, no_extrinsics="no camera extrinsics"),
      require_3d=require_3d, selected_actions=selected_actions, path_3d=path_3d, path_2d=path_2d)
  layout_name = metadata.get("layout_name")
  return PoseDataset(
      sequences=tuple(records), keypoints_left=kps_left, keypoints_right=kps_right,
      skeleton=H36M_SKELETON, num_keypoints=num_joints, fps=H36M_FPS,
      layout_name=None if layout_name is None else str(layout_name), source=keypoints)

