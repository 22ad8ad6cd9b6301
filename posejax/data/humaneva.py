"""Loading the HumanEva-I files (`data_3d_humaneva15.npz`, `data_2d_humaneva15_<source>.npz`).

The files are those of the reference's `prepare_data_humaneva.py` (posejax.data.prepare_humaneva
writes the same): subjects are split-prefixed ('Train/S1', 'Validate/S2', and for 2D-only
video also 'Unlabeled/Train/S1', 'Unlabeled/S4'), sequences are the finite mocap chunks of
trial 1 ('Walking 1 chunk0'), 3D is (T, 15, 3) world metres at 60 fps and 2D a list of the
3 cameras' (T, K, 2) pixels.

The preprocessing is the reference's (reference V3.3, V6.2-6.3): each camera of the
subject's person (S1-S3) takes its orientation and its translation in metres, there are no
intrinsics (so no projection and no semi-supervision), 3D is moved into each camera's frame
with joint 0 keeping the trajectory and joints 1.. made root-relative, 2D is cropped to the
mocap length and normalized with the 640 x 480 resolution. As for Human3.6M, selection is by
canonical action (the text before the first space); `posejax.data.loading` adds the
reference's prefix filter.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from posejax.data.dataset import PoseDataset
from posejax.pose.actions import HUMANEVA_ACTIONS, action_of, resolve_actions
# The checks and the per-sequence records are the Human3.6M loader's, shared as they are.
from posejax.common.errors import PosejaxError
from posejax.common.io_utils import load_npz_dict
from posejax.data.h36m import _check_finite, _keypoint_metadata, collect_records, sequence_records
from posejax.data.h36m_cameras import CameraParams, HUMANEVA_EXTRINSICS, HUMANEVA_INTRINSICS
from posejax.data.npz_files import FileLayout
from posejax.pose.skeleton import HUMANEVA15_SKELETON

FILE_3D = "data_3d_humaneva15.npz"
FILE_2D_PATTERN = "data_2d_humaneva15_{}.npz"
PUBLISHED_SOURCES = ("gt", "detectron_pt_coco")
HUMANEVA_FPS = 60.0
NUM_CAMERAS = 3
PERSONS = ("S1", "S2", "S3", "S4")  # S4 has video only (no extrinsics)
TRAIN_SUBJECTS = ("Train/S1", "Train/S2", "Train/S3")
TEST_SUBJECTS = ("Validate/S1", "Validate/S2", "Validate/S3")
# Each person's cameras are registered under these prefixes (the bare 'S1' keys are not).
SUBJECT_PREFIXES = ("Train/", "Validate/", "Unlabeled/Train/", "Unlabeled/Validate/", "Unlabeled/")
HOW_TO_GET_FILES = (
    "convert the HumanEva-I release with `python -m posejax.data.prepare_humaneva --from-mat DIR "
    "--convert-3d --out DIR` (DIR: the MATLAB converter's converted_15j folder), or generate the "
    "synthetic dataset with `python -m posejax.data.synthetic_humaneva --out DIR`")


@functools.lru_cache(maxsize=None)
def humaneva_cameras() -> dict[str, tuple[CameraParams, ...]]:
  """Person ('S1') -> its 3 cameras: resolution, azimuth, orientation, translation in metres.

  `intrinsic` is None: the reference carries no HumanEva intrinsics.
  """
  cameras = {}
  for person in PERSONS:
    extrinsics = HUMANEVA_EXTRINSICS.get(person, (None,) * NUM_CAMERAS)
    cameras[person] = tuple(
        CameraParams(cam_id, res_w, res_h, float(azimuth), intrinsic=None,
                     orientation=None if ext is None else np.asarray(ext[0], np.float32),
                     translation=None if ext is None else (np.asarray(ext[1], np.float32) / 1000).astype(np.float32))
        for (cam_id, res_w, res_h, azimuth), ext in zip(HUMANEVA_INTRINSICS, extrinsics))
  return cameras


def person_of(subject: str) -> str | None:
  """'Train/S1' -> 'S1', 'Unlabeled/S4' -> 'S4'; None for a key that is not a prefixed person."""
  for prefix in SUBJECT_PREFIXES:
    if subject.startswith(prefix) and subject[len(prefix):] in PERSONS:
      return subject[len(prefix):]
  return None


FILES = FileLayout(FILE_3D, FILE_2D_PATTERN, PUBLISHED_SOURCES, HOW_TO_GET_FILES)
available_sources = FILES.available_sources  # the 2D sources X of the data_2d_humaneva15_X.npz files
_data_paths = FILES.paths
dataset_fingerprint = FILES.fingerprint  # 16 hex digits of SHA-256 over the 3D then the 2D file


def _nested_dict(path: str, key: str, what: str) -> dict[str, dict[str, Any]]:
  """`key` of the file as a dict subject -> dict sequence name -> value, checked."""
  loaded = load_npz_dict(path, (key,))[key]
  if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
    raise PosejaxError(f"{path}: {key} is not a dict subject -> sequence -> {what}")
  return {str(s): {str(n): v for n, v in seqs.items()} for s, seqs in loaded.items()}


def _select_subjects(subjects: Sequence[str] | str | None, pos_3d: dict, pos_2d: dict,
                     path_3d: str, path_2d: str, require_3d: bool) -> tuple[str, ...]:
  """Requested subjects in the given order (default: the 3D file's), each checked."""
  if isinstance(subjects, str):
    subjects = [s.strip() for s in subjects.split(",") if s.strip()]
  selected = tuple(dict.fromkeys(subjects)) if subjects is not None else tuple(pos_3d)
  if not selected:
    raise PosejaxError(f"{path_3d}: no subjects selected")
  for subject in selected:
    if subject not in pos_2d:
      raise PosejaxError(f"{path_2d}: subject {subject!r} is not in the file (subjects: {', '.join(pos_2d)})")
    if subject not in pos_3d and require_3d:
      raise PosejaxError(
          f"{path_3d}: requested subject {subject!r} has no 3D poses (subjects with 3D: "
          f"{', '.join(pos_3d)}); subjects without 3D can only be loaded unlabeled")
    if person_of(subject) is None:
      raise PosejaxError(f"{path_2d}: subject {subject!r} is not a HumanEva-I person with a split prefix "
                         f"({', '.join(p + 'S1' for p in SUBJECT_PREFIXES)}, ...; persons {', '.join(PERSONS)})")
  return selected


def _selected_names(subject: str, seqs_2d: dict[str, Any], seqs_3d: dict[str, Any] | None,
                    actions: tuple[str, ...], path_2d: str) -> list[str]:
  """The subject's 2D sequence names (file order) whose action is selected."""
  for name in seqs_3d or ():
    if name not in seqs_2d:
      raise PosejaxError(f"{path_2d}: sequence {subject}/{name!r} of {FILE_3D} is missing")
  names = []
  for name in seqs_2d:
    try:
      action = action_of(name, HUMANEVA_ACTIONS)
    except PosejaxError as e:
      raise PosejaxError(f"{path_2d}: {subject}: {e}") from None
    if action in actions:
      names.append(name)
  return names


def _world_15(positions: Any, path: str, where: str) -> np.ndarray:
  """World (T, 15, 3) positions, float32, checked."""
  positions = np.asarray(positions)
  if positions.ndim == 3 and positions.shape[1:] == (20, 3):
    raise PosejaxError(f"{path}: {where} has 20 joints; the reference's HumanEva model uses the 15-joint "
                       "skeleton (convert with the 15-joint MATLAB output)")
  if positions.ndim != 3 or positions.shape[1:] != (15, 3):
    raise PosejaxError(f"{path}: {where} has shape {positions.shape}, expected (T, 15, 3)")
  _check_finite(positions, path, where)
  return positions.astype(np.float32)


def _camera_arrays_2d(entry: Any, num_joints: int, path: str, where: str) -> list[np.ndarray]:
  """The 3 per-camera (T, K, 2) arrays of one sequence, shape-checked."""
  if not isinstance(entry, (list, tuple)) or len(entry) != NUM_CAMERAS:
    count = len(entry) if isinstance(entry, (list, tuple)) else type(entry).__name__
    raise PosejaxError(f"{path}: {where} has {count} camera arrays, expected a list of {NUM_CAMERAS}")
  arrays = []
  for cam, kps in enumerate(entry):
    if kps is None:
      raise PosejaxError(f"{path}: {where} camera C{cam + 1} is None (no video detections)")
    kps = np.asarray(kps)
    if kps.ndim != 3 or kps.shape[-1] != 2 or kps.shape[1] != num_joints:
      raise PosejaxError(f"{path}: {where} camera C{cam + 1} has shape {kps.shape}, expected "
                         f"(T, {num_joints}, 2) (metadata num_joints {num_joints})")
    arrays.append(kps)
  return arrays


def load_humaneva(data_dir: str, keypoints: str = "gt", subjects: Sequence[str] | str | None = None,
                  actions: Sequence[str] | str | None = None, *, require_3d: bool = True) -> PoseDataset:
  """Loads and preprocesses the selected part of the HumanEva-I files in `data_dir`.

  Args:
    data_dir: folder holding `data_3d_humaneva15.npz` and `data_2d_humaneva15_<keypoints>.npz`.
    keypoints: the 2D source, e.g. 'gt' or 'detectron_pt_coco'.
    subjects: prefixed subjects in the order wanted (default: the 3D file's order).
    actions: canonical HumanEva actions (default all). Unlike Human3.6M, an action need not
      exist for every subject (S3 has no ThrowCatch).
    require_3d: if False, 2D-only subjects ('Unlabeled/S4') are allowed; their records have
      `poses_3d=None` and uncropped 2D.

  Returns:
    A `PoseDataset` with one record per (subject, sequence, camera): subjects in the given
    order, sequences in the 2D file's order, cameras C1..C3. `poses_2d`: (T, K, 2) normalized;
    `poses_3d`: (T, 15, 3) camera space, joint 0 = trajectory, joints 1.. root-relative.

  Raises:
    PosejaxError: missing or malformed files, mismatched 2D/3D contents, unknown selections.
  """
  path_3d, path_2d = _data_paths(data_dir, keypoints)
  selected_actions = resolve_actions(actions, HUMANEVA_ACTIONS)
  pos_3d = _nested_dict(path_3d, "positions_3d", "(T, 15, 3) array")
  pos_2d = _nested_dict(path_2d, "positions_2d", f"list of {NUM_CAMERAS} arrays")
  metadata = load_npz_dict(path_2d, ("metadata",))["metadata"]
  if not isinstance(metadata, dict):
    raise PosejaxError(f"{path_2d}: metadata is a {type(metadata).__name__}, expected a dict")
  num_joints, kps_left, kps_right = _keypoint_metadata(path_2d, metadata)
  selected_subjects = _select_subjects(subjects, pos_3d, pos_2d, path_3d, path_2d, require_3d)
  records = collect_records(
      selected_subjects, pos_2d, pos_3d,
      lambda subject, seqs_3d: _selected_names(subject, pos_2d[subject], seqs_3d, selected_actions, path_2d),
      lambda subject, name, entry_2d, positions: sequence_records(
          subject, name, entry_2d, positions, num_joints, path_2d, path_3d,
          cameras=humaneva_cameras()[person_of(subject)], camera_arrays=_camera_arrays_2d,
          world=_world_15, known_actions=HUMANEVA_ACTIONS, camera_label=lambda cam: f"C{cam + 1}",
          no_extrinsics="its person has no camera extrinsics"),
      require_3d=require_3d, selected_actions=selected_actions, path_3d=path_3d, path_2d=path_2d)
  layout_name = metadata.get("layout_name")
  return PoseDataset(
      sequences=tuple(records), keypoints_left=kps_left, keypoints_right=kps_right,
      skeleton=HUMANEVA15_SKELETON, num_keypoints=num_joints, fps=HUMANEVA_FPS,
      layout_name=None if layout_name is None else str(layout_name), source=keypoints)
