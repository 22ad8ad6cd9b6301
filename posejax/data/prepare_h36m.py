"""Converts Human3.6M D3_Positions CDF files to `data_3d_h36m.npz` and `data_2d_h36m_gt.npz`.

    python -m posejax.data.prepare_h36m --from-cdf /path/to/h36m --out data/

reads `<from-cdf>/<S>/MyPoseFeatures/D3_Positions/*.cdf` for S1, S5, S6, S7, S8, S9, S11
(reference V5.1, `--from-source-cdf`): 30 sequences per subject, S11 'Directions'
dropped (its video is corrupted), names canonicalised ('TakingPhoto 1' -> 'Photo 1'),
millimetres -> metres. The ground-truth 2D file is the projection of the 17 kept joints into
each camera with the full distortion model, in pixels. Both files are validated and built in
memory first and only then written, so an error never leaves one of them behind.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Sequence

import cdflib
import numpy as np

from posejax.common import cli
from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez
from posejax.common.workdir_lock import check_writable
from posejax.data.h36m import FILE_2D_PATTERN, FILE_3D
from posejax.data.h36m_cameras import H36M_SUBJECTS, h36m_cameras
from posejax.pose.actions import action_of, canonical_sequence_name
from posejax.pose.camera import image_coordinates, project_to_2d, world_to_camera
from posejax.pose.skeleton import H36M_KEPT_JOINTS, H36M_SKELETON

SEQUENCES_PER_SUBJECT = 30
# S11 'Directions' is dropped everywhere in the reference: its video is corrupted.
SKIPPED_SEQUENCES = (("S11", "Directions"),)
GT_METADATA = {
    "num_joints": H36M_SKELETON.num_joints,
    "keypoints_symmetry": [list(H36M_SKELETON.joints_left), list(H36M_SKELETON.joints_right)],
}


def read_cdf_pose(path: str) -> np.ndarray:
  """The CDF variable 'Pose' (1, T, 96) millimetres as a (T, 32, 3) float32 array in metres."""
  try:
    pose = np.asarray(cdflib.CDF(path).varget("Pose"))
  except Exception as e:  # cdflib raises many types for a damaged or foreign file
    raise PosejaxError(f"{path}: cannot read CDF variable 'Pose' ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from None
  if pose.size == 0 or pose.size % 96:
    raise PosejaxError(f"{path}: 'Pose' has shape {pose.shape}, expected (1, T, 96) (32 joints x 3)")
  return (pose.reshape(-1, 32, 3) / 1000).astype(np.float32)


def collect_positions_3d(cdf_root: str,
                         allow_partial: bool = False) -> dict[str, dict[str, np.ndarray]]:
  """subject -> canonical sequence name -> (T, 32, 3) world metres, from the CDF tree.

  Files are read in sorted name order (the reference's glob order is filesystem-dependent),
  which fixes the dict order and hence the data order downstream.

  Args:
    cdf_root: folder holding `<S>/MyPoseFeatures/D3_Positions/*.cdf`.
    allow_partial: accept subjects with fewer than 30 files and skip subjects without any
      (for small test trees); at least one file is still required.
  """
  if not os.path.isdir(cdf_root):
    raise PosejaxError(f"--from-cdf {cdf_root}: directory not found")
  positions: dict[str, dict[str, np.ndarray]] = {}
  for subject in H36M_SUBJECTS:
    folder = os.path.join(cdf_root, subject, "MyPoseFeatures", "D3_Positions")
    paths = sorted(glob.glob(os.path.join(glob.escape(folder), "*.cdf")))
    partial_ok = allow_partial and len(paths) < SEQUENCES_PER_SUBJECT
    if len(paths) != SEQUENCES_PER_SUBJECT and not partial_ok:
      raise PosejaxError(
          f"{folder}: subject {subject} has {len(paths)} .cdf files, expected {SEQUENCES_PER_SUBJECT}"
          + ("" if allow_partial else " (pass --allow-partial for an incomplete set)"))
    if not paths:
      continue
    sequences: dict[str, np.ndarray] = {}
    for path in paths:
      stem = os.path.splitext(os.path.basename(path))[0]
      if (subject, stem) in SKIPPED_SEQUENCES:
        continue
      name = canonical_sequence_name(stem)
      try:
        action_of(name)
      except PosejaxError as e:
        raise PosejaxError(f"{path}: {e}") from None
      if name in sequences:
        raise PosejaxError(f"{path}: a second spelling of sequence {subject}/{name!r}")
      sequences[name] = read_cdf_pose(path)
    positions[subject] = sequences
  if not positions:
    raise PosejaxError(f"--from-cdf {cdf_root}: no <S>/MyPoseFeatures/D3_Positions/*.cdf files found")
  return positions


def _kept_joints(positions: np.ndarray, where: str) -> np.ndarray:
  """(T, 32, 3) or (T, 17, 3) world positions -> (T, 17, 3) float32."""
  positions = np.asarray(positions)
  if positions.ndim != 3 or positions.shape[1:] not in ((32, 3), (17, 3)):
    raise PosejaxError(f"{where}: shape {positions.shape}, expected (T, 32, 3) or (T, 17, 3)")
  if positions.shape[1] == 32:
    positions = positions[:, list(H36M_KEPT_JOINTS)]
  return positions.astype(np.float32)


def build_gt_2d(
    positions_3d: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list[np.ndarray]]]:
  """Ground-truth 2D by projection: subject -> name -> 4 x (T, 17, 2) float32 pixels.

  For each camera: world -> camera, Human3.6M non-linear projection with the normalized
  intrinsic vector, back to pixels of that camera (reference V5.1).

  Raises:
    PosejaxError: a subject without camera extrinsics, or an array of the wrong shape.
  """
  cameras = h36m_cameras()
  out: dict[str, dict[str, list[np.ndarray]]] = {}
  for subject, sequences in positions_3d.items():
    if subject not in cameras or cameras[subject][0].orientation is None:
      raise PosejaxError(f"positions_3d[{subject!r}]: no camera extrinsics for this subject "
                         f"(subjects with 3D: {', '.join(H36M_SUBJECTS)})")
    out[subject] = {}
    for name, positions in sequences.items():
      world = _kept_joints(positions, f"positions_3d[{subject!r}][{name!r}]")
      views = []
      for cam in cameras[subject]:
        camera_space = world_to_camera(world, cam.orientation, cam.translation)
        normalized = project_to_2d(camera_space[None], cam.intrinsic[None])[0]
        views.append(image_coordinates(normalized, cam.res_w, cam.res_h).astype(np.float32))
      out[subject][name] = views
  return out


def _output_paths(out_dir: str) -> tuple[str, str]:
  return os.path.join(out_dir, FILE_3D), os.path.join(out_dir, FILE_2D_PATTERN.format("gt"))


def _refuse_existing(out_dir: str, overwrite: bool) -> None:
  for path in _output_paths(out_dir):
    if os.path.exists(path) and not overwrite:
      raise PosejaxError(f"{path}: already exists (pass --overwrite to replace it)")


def write_h36m_files(positions_3d: dict[str, dict[str, np.ndarray]], out_dir: str,
                     overwrite: bool = False) -> tuple[str, str]:
  """Writes `data_3d_h36m.npz` and `data_2d_h36m_gt.npz` (projected) to `out_dir`.

  Everything is computed first; both files are then staged next to their targets and renamed
  only once both are complete, so a failure leaves neither a new nor a half-written file.

  Args:
    positions_3d: subject -> sequence name -> (T, 32, 3) world metres ((T, 17, 3) accepted).

  Returns:
    The paths of the 3D and the 2D file.
  """
  _refuse_existing(out_dir, overwrite)
  if not positions_3d:
    raise PosejaxError(f"{out_dir}: no 3D sequences to write")
  positions_3d = {s: {n: np.asarray(p, np.float32) for n, p in seqs.items()}
                  for s, seqs in positions_3d.items()}
  outputs = dict(zip(_output_paths(out_dir), (
      {"positions_3d": positions_3d},
      {"positions_2d": build_gt_2d(positions_3d), "metadata": GT_METADATA})))
  staged: list[tuple[str, str]] = []
  try:
    for path, arrays in outputs.items():
      staging = os.path.join(os.path.dirname(path) or ".", "." + os.path.basename(path) + ".staged")
      atomic_savez(staging, **arrays)
      staged.append((staging, path))
    for staging, path in staged:
      os.replace(staging, path)
  except (OSError, PosejaxError) as e:  # io_utils names its temporary file; name the folder
    raise PosejaxError(f"{out_dir}: cannot write the output files ({e})") from None
  finally:
    for staging, _ in staged:
      if os.path.exists(staging):
        os.remove(staging)
  return tuple(outputs)  # type: ignore[return-value]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = cli.ArgumentParser(
      prog="python -m posejax.data.prepare_h36m",
      description="Human3.6M D3_Positions CDF files -> data_3d_h36m.npz + data_2d_h36m_gt.npz")
  parser.add_argument("--from-cdf", required=True, metavar="DIR",
                      help="folder with <S>/MyPoseFeatures/D3_Positions/*.cdf for S1, S5-S9, S11")
  parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
  parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
  parser.add_argument("--allow-partial", action="store_true",
                      help="accept fewer than 30 sequences per subject and missing subjects")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  """Exit status 0, 2 for a user error (one line on stderr), 1 for an operating-system error."""
  cli.quiet_environment()
  cli.quiet_logging()
  args = _parse_args(argv)
  created = not os.path.exists(args.out)
  try:
    _refuse_existing(args.out, args.overwrite)  # before the slow CDF reading
    check_writable(args.out, "--out")
    positions_3d = collect_positions_3d(args.from_cdf, args.allow_partial)
    path_3d, path_2d = write_h36m_files(positions_3d, args.out, args.overwrite)
  except (PosejaxError, OSError) as e:
    if created and os.path.isdir(args.out) and not os.listdir(args.out):
      os.rmdir(args.out)  # no empty folder left by a failed run
    print(f"error: {cli.one_line(e) if isinstance(e, PosejaxError) else e}", file=sys.stderr)
    return 2 if isinstance(e, PosejaxError) else 1
  sequences = sum(len(s) for s in positions_3d.values())
  frames = sum(p.shape[0] for s in positions_3d.values() for p in s.values())
  print(f"wrote {path_3d} ({len(positions_3d)} subjects, {sequences} sequences, {frames} mocap "
        f"frames) and {path_2d}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
