"""Converts the HumanEva-I release to the VideoPose3D files, as the reference's preparation does.

    python -m posejax.data.prepare_humaneva --from-mat converted_15j --convert-3d --out data/
    python -m posejax.data.prepare_humaneva --from-mat converted_15j \
        --convert-2d detections/ --source detectron_pt_coco --out data/

`--from-mat` is the output of the reference's MATLAB `ConvertHumanEva.m` (run in the official
HumanEva code): `<split>/<S>/<Action>_<Trial>.mat` for splits Train and Validate, persons S1-S3,
trial 1, holding `poses_3d` (T, J, 3) millimetres and `poses_2d` (3, T, J, 2) pixels, NaN where
the mocap is invalid (reference V5.5). Each file must span its frame range of the
train/validation split (`FRAME_RANGES`); it is cut into maximal runs of all-finite or
not-all-finite frames, and every finite run `i` becomes sequence '<Action> <Trial> chunk<i>'
(runs counted finite or not), 3D in metres.

`--convert-3d` writes `data_3d_humaneva<J>.npz` and `data_2d_humaneva<J>_gt.npz`.
`--convert-2d DIR` reads detections `DIR/<S>/<Action>_<Trial>_(<C>).avi.npz` (Detectron
archives, or CPN's `keypoints` array, by --source) and writes `data_2d_humaneva<J>_<source>.npz`:
each chunk's frames `[start + sync, end + sync)` of the video (`SYNC_FRAMES`: frames before the
mocap starts, minus one) under `<split>/<S>`, or `Unlabeled/<split>/<S>` for a chunk without
valid mocap; videos of other trials go whole into `Unlabeled/<S>`. Everything is validated in
memory before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import itertools
import os
import re
import sys
import zipfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez
from posejax.common.safe_npz import load_member
from posejax.pose.skeleton import LAYOUTS, layout_for_source

SUBJECTS = ("Train/S1", "Train/S2", "Train/S3", "Validate/S1", "Validate/S2", "Validate/S3")
CAMERAS = ("C1", "C2", "C3")
_TRIALS = ("Walking 1", "Jog 1", "ThrowCatch 1", "Gestures 1", "Box 1")
# [start, end) mocap frames of each trial-1 sequence in the train/validation split.
FRAME_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    subject: dict(zip(_TRIALS, ranges)) for subject, ranges in {
        "Train/S1": ((590, 1203), (367, 740), (473, 945), (395, 801), (385, 789)),
        "Train/S2": ((438, 876), (398, 795), (550, 1128), (500, 901), (382, 734)),
        "Train/S3": ((448, 939), (401, 842), (493, 1027), (533, 1102), (512, 1021)),
        "Validate/S1": ((5, 590), (5, 367), (5, 473), (5, 395), (5, 385)),
        "Validate/S2": ((5, 438), (5, 398), (5, 550), (5, 500), (5, 382)),
        "Validate/S3": ((5, 448), (5, 401), (5, 493), (5, 533), (5, 512)),
    }.items()}
# Video frames before the mocap's first frame (cameras C1, C2, C3), plus one.
SYNC_FRAMES: dict[str, dict[str, tuple[int, int, int]]] = {
    person: dict(zip(_TRIALS, frames)) for person, frames in {
        "S1": ((82, 81, 82), (51, 51, 50), (61, 61, 60), (45, 45, 44), (57, 57, 56)),
        "S2": ((115, 115, 114), (100, 100, 99), (127, 127, 127), (122, 122, 121), (119, 119, 117)),
        "S3": ((80, 80, 80), (65, 65, 65), (79, 79, 79), (83, 83, 82), (1, 1, 1)),
    }.items()}


@dataclasses.dataclass(frozen=True)
class Chunk:
  """A run of frames `[start, end)` of a trial (trial frame numbers) and its sequence name."""
  start: int
  end: int
  labeled: bool  # all mocap frames valid
  split: str     # 'Train' or 'Validate'
  name: str      # e.g. 'Walking 1 chunk0'


@dataclasses.dataclass
class Converted:
  """The 3D conversion: file contents plus the chunk map the 2D conversion needs."""
  positions_3d: dict[str, dict[str, np.ndarray]]        # subject -> name -> (T, J, 3) metres
  positions_2d: dict[str, dict[str, list[np.ndarray]]]  # subject -> name -> 3 x (T, J, 2) pixels
  chunks: dict[str, dict[str, list[Chunk]]]             # person -> trial -> chunks of both splits
  num_joints: int


def finite_runs(finite: np.ndarray) -> list[tuple[int, int, bool]]:
  """Maximal runs `(start, end, finite)` of a (T,) boolean array, in order."""
  runs, start = [], 0
  for value, group in itertools.groupby(np.asarray(finite, bool).tolist()):
    length = len(list(group))
    runs.append((start, start + length, bool(value)))
    start += length
  return runs


def chunk_trial(split: str, trial: str, poses_3d: np.ndarray, poses_2d: np.ndarray, first_frame: int,
                where: str) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]], list[Chunk]]:
  """Cuts one split of one trial into chunks.

  Args:
    poses_3d: (T, J, 3) millimetres, NaN rows where the mocap is invalid.
    poses_2d: (T, 3, J, 2) pixels, invalid on the same frames.
    first_frame: trial frame number of row 0 (the split's range start).
  Returns:
    (name -> (T_i, J, 3) float32 metres, name -> 3 x (T_i, J, 2) float32 pixels, chunks), the
    two dicts holding the finite chunks only.
  """
  runs = finite_runs(np.isfinite(poses_3d).all(axis=(1, 2)))
  runs_2d = finite_runs(np.isfinite(poses_2d).all(axis=(1, 2, 3)))
  if runs != runs_2d:
    raise PosejaxError(f"{where}: poses_2d is invalid (NaN) on other frames than poses_3d")
  out_3d, out_2d, chunks = {}, {}, []
  for i, (start, end, finite) in enumerate(runs):
    name = f"{trial} chunk{i}"
    if finite:
      out_3d[name] = (poses_3d[start:end] / 1000).astype(np.float32)
      out_2d[name] = list(poses_2d[start:end].astype(np.float32).transpose(1, 0, 2, 3))
    chunks.append(Chunk(first_frame + start, first_frame + end, finite, split, name))
  return out_3d, out_2d, chunks


def read_mat(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(poses_3d (T, J, 3), poses_2d (T, 3, J, 2)) of one converted trial, shape-checked."""
  from scipy.io import loadmat  # only the converter needs SciPy's MAT reader
  try:
    contents = loadmat(path)
  except NotImplementedError:
    raise PosejaxError(f"{path}: MATLAB v7.3 (HDF5) file; save it with `save(..., '-v7')`") from None
  except (OSError, ValueError, TypeError) as e:
    raise PosejaxError(f"{path}: not a readable .mat file ({e})") from None
  missing = [k for k in ("poses_3d", "poses_2d") if k not in contents]
  if missing:
    raise PosejaxError(f"{path}: missing variable(s) {', '.join(missing)}")
  poses_3d, poses_2d = np.asarray(contents["poses_3d"], np.float64), np.asarray(contents["poses_2d"], np.float64)
  if poses_3d.ndim != 3 or poses_3d.shape[2] != 3:
    raise PosejaxError(f"{path}: poses_3d has shape {poses_3d.shape}, expected (T, J, 3)")
  expected = (len(CAMERAS),) + poses_3d.shape[:2] + (2,)
  if poses_2d.shape != expected:
    raise PosejaxError(f"{path}: poses_2d has shape {poses_2d.shape}, expected {expected} (cameras, T, J, 2)")
  return poses_3d, poses_2d.transpose(1, 0, 2, 3)


def _trial_order(name: str) -> tuple[int, str]:
  return (_TRIALS.index(name) if name in _TRIALS else len(_TRIALS), name)


def convert_3d(mat_root: str, frame_ranges: Mapping[str, Mapping[str, tuple[int, int]]] = FRAME_RANGES) -> Converted:
  """Reads every `<mat_root>/<subject>/*.mat` of `SUBJECTS` (trials in the table's order).

  Raises:
    PosejaxError: no files, an unknown trial, a length that does not match its frame range,
      inconsistent joint counts, 2D invalid on other frames than 3D.
  """
  if not os.path.isdir(mat_root):
    raise PosejaxError(f"--from-mat {mat_root}: directory not found")
  converted = Converted({}, {}, {}, 0)
  for subject in frame_ranges:
    split, person = subject.split("/")
    paths = glob.glob(os.path.join(glob.escape(mat_root), split, person, "*.mat"))
    converted.positions_3d[subject], converted.positions_2d[subject] = {}, {}
    for path in sorted(paths, key=lambda p: _trial_order(os.path.basename(p)[:-4].replace("_", " "))):
      trial = os.path.basename(path)[:-4].replace("_", " ")
      if trial not in frame_ranges[subject]:
        raise PosejaxError(f"{path}: unknown sequence {trial!r} (expected {', '.join(frame_ranges[subject])})")
      poses_3d, poses_2d = read_mat(path)
      if converted.num_joints and poses_3d.shape[1] != converted.num_joints:
        raise PosejaxError(f"{path}: {poses_3d.shape[1]} joints, other files have {converted.num_joints}")
      converted.num_joints = poses_3d.shape[1]
      start, end = frame_ranges[subject][trial]
      if len(poses_3d) != end - start:
        raise PosejaxError(f"{path}: {len(poses_3d)} frames, expected {end - start} (frames {start}-{end} of "
                           f"the {split} split)")
      seqs_3d, seqs_2d, chunks = chunk_trial(split, trial, poses_3d, poses_2d, start, path)
      converted.positions_3d[subject].update(seqs_3d)
      converted.positions_2d[subject].update(seqs_2d)
      converted.chunks.setdefault(person, {}).setdefault(trial, []).extend(chunks)
  if not converted.num_joints:
    raise PosejaxError(f"--from-mat {mat_root}: no <split>/<S>/*.mat files for {', '.join(frame_ranges)}")
  if f"humaneva{converted.num_joints}" not in LAYOUTS:
    raise PosejaxError(f"--from-mat {mat_root}: {converted.num_joints} joints; HumanEva files have 15 or 20")
  return converted


# ---------------------------------------------------------------- 2D detections


def _load_archive(path: str, keys: tuple[str, ...]) -> dict[str, Any]:
  """The given keys of a detection archive; Latin-1 unpickling, as Detectron wrote them with Python 2.

  Object members are unpickled with restrictions, so a shared archive cannot run code.
  """
  try:
    with np.load(path) as archive:
      missing = [k for k in keys if k not in archive.files]
      if missing:
        raise PosejaxError(f"{path}: missing key(s) {', '.join(missing)} (found: {', '.join(archive.files)})")
      return {k: load_member(archive, k, path, encoding="latin1") for k in keys}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise PosejaxError(f"{path}: not a readable .npz file ({e})") from None


def import_detectron(path: str) -> np.ndarray:
  """(T, K, 2) soft-argmax keypoints of the best-scoring person box of each frame.

  A Detectron archive holds per-frame `boxes[f][1]` (N, 5) and `keypoints[f][1]` (N, rows, K);
  rows 4 and 5 are the soft-argmax x, y. A frame without a box repeats the previous one.
  """
  archive = _load_archive(path, ("boxes", "keypoints"))
  results = []
  for frame, (boxes, keypoints) in enumerate(zip(archive["boxes"], archive["keypoints"])):
    if len(boxes[1]) == 0:
      if not results:
        raise PosejaxError(f"{path}: frame 0 has no person detection")
      results.append(results[-1])
      continue
    keypoints = np.asarray(keypoints[1][int(np.argmax(np.asarray(boxes[1])[:, 4]))])
    if keypoints.ndim != 2 or keypoints.shape[0] < 6:
      raise PosejaxError(f"{path}: frame {frame} keypoints have shape {keypoints.shape}, expected (6+, K)")
    results.append(keypoints.T[:, 4:6])
  if not results:
    raise PosejaxError(f"{path}: no frames")
  return np.asarray(results, np.float32)


def import_cpn(path: str) -> np.ndarray:
  """(T, K, 2): the x, y columns of a CPN archive's `keypoints` (T, K, 2+)."""
  keypoints = np.asarray(_load_archive(path, ("keypoints",))["keypoints"])
  if keypoints.ndim != 3 or keypoints.shape[2] < 2:
    raise PosejaxError(f"{path}: keypoints has shape {keypoints.shape}, expected (T, K, 2+)")
  return keypoints[:, :, :2].astype(np.float32)


IMPORTERS: dict[str, Callable[[str], np.ndarray]] = {"detectron": import_detectron, "cpn": import_cpn}


def importer_for(source: str) -> Callable[[str], np.ndarray]:
  """The archive reader of a source name, by substring (as the reference chooses it)."""
  for key, importer in IMPORTERS.items():
    if key in source:
      return importer
  raise PosejaxError(f"--source {source!r}: cannot tell the archive format (names containing "
                     f"{', '.join(IMPORTERS)})")


_VIDEO_NAME = re.compile(r"(.*) \((C\d)\)\.avi\.npz$")


def parse_video_name(file_name: str) -> tuple[str, int]:
  """'Walking_1_(C1).avi.npz' -> ('Walking 1', 0)."""
  match = _VIDEO_NAME.match(file_name.replace("_", " "))
  if match is None or match.group(2) not in CAMERAS:
    raise PosejaxError(f"{file_name}: expected a name like Walking_1_(C1).avi.npz (cameras {', '.join(CAMERAS)})")
  return match.group(1), CAMERAS.index(match.group(2))


def place_video(output: dict, person: str, trial: str, camera: int, keypoints: np.ndarray,
                chunks: Mapping[str, Mapping[str, Sequence[Chunk]]],
                sync: Mapping[str, Mapping[str, Sequence[int]]], where: str) -> None:
  """Puts one camera's (T, K, 2) keypoints into `output` (subject -> name -> 3 slots), cut
  into the trial's chunks shifted by its synchronisation offset, or whole under
  'Unlabeled/<person>' when the trial has no chunks."""
  trial_chunks = chunks.get(person, {}).get(trial)
  if trial_chunks is None:
    output.setdefault(f"Unlabeled/{person}", {}).setdefault(trial, [None] * len(CAMERAS))[camera] = keypoints
    return
  offset = sync[person][trial][camera] - 1 if trial in sync.get(person, {}) else 0
  for chunk in trial_chunks:
    kps = keypoints[chunk.start + offset:chunk.end + offset]
    if len(kps) != chunk.end - chunk.start:
      raise PosejaxError(f"{where}: {len(keypoints)} frames; chunk {chunk.name!r} needs video frames "
                         f"{chunk.start + offset}-{chunk.end + offset}")
    subject = f"{chunk.split}/{person}" if chunk.labeled else f"Unlabeled/{chunk.split}/{person}"
    output.setdefault(subject, {}).setdefault(chunk.name, [None] * len(CAMERAS))[camera] = kps


def convert_2d(detections_dir: str, source: str, converted: Converted,
               sync: Mapping[str, Mapping[str, Sequence[int]]] = SYNC_FRAMES) -> dict[str, dict[str, list]]:
  """positions_2d of the detections in `detections_dir/<S>/*.avi.npz` (module docstring)."""
  importer, layout = importer_for(source), layout_for_source(source)
  paths = sorted(glob.glob(os.path.join(glob.escape(detections_dir), "S*", "*.avi.npz")))
  if not paths:
    raise PosejaxError(f"--convert-2d {detections_dir}: no <S>/*.avi.npz detection files")
  output: dict[str, dict[str, list]] = {}
  for path in paths:
    person = os.path.basename(os.path.dirname(path))
    trial, camera = parse_video_name(os.path.basename(path))
    keypoints = importer(path)
    if keypoints.shape[1] != layout.num_joints:
      raise PosejaxError(f"{path}: {keypoints.shape[1]} keypoints, the {layout.name} layout of --source "
                         f"{source!r} has {layout.num_joints}")
    place_video(output, person, trial, camera, keypoints, converted.chunks, sync, path)
  return output


def layout_metadata(name: str) -> dict[str, Any]:
  """The reference's metadata preset of a layout: name, joint count, [left, right] keypoints."""
  layout = layout_for_source(name)
  return {"layout_name": layout.name, "num_joints": layout.num_joints,
          "keypoints_symmetry": [list(layout.left), list(layout.right)]}


def write_files(outputs: Mapping[str, Mapping[str, Any]], overwrite: bool) -> None:
  """Writes path -> npz contents, refusing existing files unless `overwrite` (checked first)."""
  for path in outputs:
    if os.path.exists(path) and not overwrite:
      raise PosejaxError(f"{path}: already exists (pass --overwrite to replace it)")
  try:
    for path, arrays in outputs.items():
      atomic_savez(path, **arrays)
  except OSError as e:
    raise PosejaxError(f"cannot write {path} ({e})") from None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m posejax.data.prepare_humaneva",
      description="HumanEva-I MATLAB conversion (+ 2D detections) -> data_3d/2d_humaneva<J>_*.npz")
  parser.add_argument("--from-mat", required=True, metavar="DIR",
                      help="ConvertHumanEva.m output: <Train|Validate>/<S>/<Action>_<Trial>.mat")
  parser.add_argument("--convert-3d", action="store_true", help="write the 3D and ground-truth 2D files")
  parser.add_argument("--convert-2d", metavar="DIR", default="", help="detections DIR/<S>/*_(C<n>).avi.npz")
  parser.add_argument("--source", default="", help="2D source name of --convert-2d, e.g. detectron_pt_coco")
  parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
  parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse_args(argv)
  try:
    if not args.convert_3d and not args.convert_2d:
      raise PosejaxError("give --convert-3d and/or --convert-2d DIR")
    if args.convert_2d and not args.source:
      raise PosejaxError("--convert-2d needs --source (e.g. detectron_pt_coco)")
    converted = convert_3d(args.from_mat)
    layout = f"humaneva{converted.num_joints}"
    outputs = {}
    if args.convert_3d:
      outputs[os.path.join(args.out, f"data_3d_{layout}.npz")] = {"positions_3d": converted.positions_3d}
      outputs[os.path.join(args.out, f"data_2d_{layout}_gt.npz")] = {
          "positions_2d": converted.positions_2d, "metadata": layout_metadata(layout)}
    if args.convert_2d:
      outputs[os.path.join(args.out, f"data_2d_{layout}_{args.source}.npz")] = {
          "positions_2d": convert_2d(args.convert_2d, args.source, converted),
          "metadata": layout_metadata(args.source)}
    write_files(outputs, args.overwrite)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sequences = sum(len(s) for s in converted.positions_3d.values())
  subjects = sum(1 for s in converted.positions_3d.values() if s)
  print(f"wrote {', '.join(outputs)} ({sequences} labeled chunks of {subjects} subjects)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
