"""Synthetic HumanEva-I-like data in exactly the reference's HumanEva file formats.

HumanEva-I is licensed too, so posejax can generate a stand-in shaped like the converted
release: persons S1-S3 perform trial 1 of Walking, Jog, ThrowCatch (not S3, whose mocap is
damaged in the release), Gestures and Box at 60 fps, seen by the 3 HumanEva cameras (640 x 480,
each person's real extrinsics). Bodies and motions are those of `posejax.data.synthetic` and
`posejax.data.motions` (made at 50 fps and resampled). Each trial is split as the release is:
its first part (from frame 5) is the validation split, the rest the training split; some
trials lose a few mocap frames, so that the trial falls into chunks exactly as
`posejax.data.prepare_humaneva` cuts converted files (it does the cutting here too).

Files written to `--out` (reference V4, V5.5):

* `data_3d_humaneva15.npz`: `positions_3d['Train/S1']['Walking 1 chunk0']` (T, 15, 3) float32
  world metres, for Train/S1-S3 and Validate/S1-S3.
* `data_2d_humaneva15_gt.npz`: exact projection of the 15 joints, pixels, `humaneva15` metadata.
* `data_2d_humaneva15_synthetic.npz`: detector-like COCO keypoints (like the published
  `detectron_pt_coco`), cut from whole videos as the 2D conversion does, including the
  chunks without mocap under 'Unlabeled/<split>/<S>'.
* `.posejax_synthetic.json`: the marker (see `posejax.data.synthetic`; the generator is named
  `posejax.data.synthetic_humaneva`, so the two generators never share a directory).

The reference has no HumanEva intrinsics; the projection uses an assumed pinhole camera
(`FOCAL_PX`, centred principal point, no distortion).

Usage: `python -m posejax.data.synthetic_humaneva --out DIR [--frames N] [--seed S] [--overwrite]`.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez
from posejax.data import motions, prepare_humaneva, synthetic
from posejax.data.h36m_cameras import CameraParams
from posejax.data.humaneva import FILE_2D_PATTERN, FILE_3D, HUMANEVA_FPS, humaneva_cameras

FILE_NAMES = {"positions_3d": FILE_3D, "gt": FILE_2D_PATTERN.format("gt"),
              "synthetic": FILE_2D_PATTERN.format("synthetic")}
SOURCES_2D = ("gt", "synthetic")
SUBJECTS = prepare_humaneva.SUBJECTS
PERSONS = ("S1", "S2", "S3")
TRIALS = ("Walking 1", "Jog 1", "ThrowCatch 1", "Gestures 1", "Box 1")
MISSING_TRIALS = (("S3", "ThrowCatch 1"),)
FOCAL_PX = 600.0
MIN_FRAMES = 64
FIRST_FRAME = 5  # the validation split starts here in the release
# The 15 HumanEva joints (pelvis, thorax, left arm, right arm, left leg, right leg, head) in the
# 32-joint body of `posejax.data.synthetic`.
JOINTS_OF_BODY = (0, 13, 17, 18, 19, 25, 26, 27, 6, 7, 8, 1, 2, 3, 14)
_GENERATOR = "posejax.data.synthetic_humaneva"


def projection_cameras(person: str) -> tuple[CameraParams, ...]:
  """The person's 3 cameras with the assumed pinhole intrinsics, for projecting."""
  out = []
  for cam in humaneva_cameras()[person]:
    focal = 2 * FOCAL_PX / cam.res_w
    out.append(CameraParams(cam.id, cam.res_w, cam.res_h, cam.azimuth,
                            np.asarray([focal, focal, 0, 0, 0, 0, 0, 0, 0], np.float32),
                            cam.orientation, cam.translation))
  return tuple(out)


def _rng(seed: int, person: str, *key: int) -> np.random.Generator:
  # Streams apart from the Human3.6M generator's (which uses the subject number directly).
  return np.random.default_rng([seed, 2000 + int(person[1:]), *key])


def _split_lengths(rng: np.random.Generator, frames: int) -> tuple[int, int]:
  """(validation, training) mocap frames of a trial of about `frames` frames."""
  return tuple(max(MIN_FRAMES // 2, int(round(frames / 2 * rng.uniform(0.85, 1.15)))) for _ in range(2))


def _invalid_frames(rng: np.random.Generator, length: int) -> np.ndarray:
  """(length,) bool: a gap of 3-10 invalid mocap frames in about a quarter of the split parts."""
  invalid = np.zeros(length, bool)
  if rng.random() < 0.25 and length >= 48:
    size = int(rng.integers(3, 11))
    start = int(rng.integers(16, length - 16 - size))
    invalid[start:start + size] = True
  return invalid


def _trial(seed: int, person: str, index: int, offsets: np.ndarray, style: motions.Style, frames: int):
  """One trial filmed by the 3 cameras.

  Returns:
    (world (T, 15, 3) float64 metres, 3 x GT pixels (T, 15, 2), 3 x COCO pixels (T, 17, 2),
    validation and training frame ranges), T = the trial's frames up to the end of training.
  """
  rng = _rng(seed, person, 1, index)
  valid_len, train_len = _split_lengths(rng, frames)
  total = FIRST_FRAME + valid_len + train_len
  action = TRIALS[index].split(" ")[0]
  motion = motions.action_motion(action, rng, int(np.ceil((total - 1) * motions.FPS / HUMANEVA_FPS)) + 1, style)
  motion = motions.resample(motion, total, HUMANEVA_FPS)
  cams = projection_cameras(person)

  def keypoints(world: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    return np.concatenate([world[:, list(JOINTS_OF_BODY)], synthetic.coco_keypoints(world, rotations, offsets)], 1)

  world, pixels = synthetic.film(motion, offsets, synthetic.capture_centre(cams), cams, keypoints)
  joints = len(JOINTS_OF_BODY)
  ranges = ((FIRST_FRAME, FIRST_FRAME + valid_len), (FIRST_FRAME + valid_len, total))
  return (world[:, list(JOINTS_OF_BODY)].astype(np.float64), [p[:, :joints] for p in pixels],
          [p[:, joints:] for p in pixels], ranges)


def _build(frames: int, seed: int):
  """(positions_3d, gt 2D, detector 2D) dicts in the converted files' nesting."""
  positions_3d = {s: {} for s in SUBJECTS}
  gt = {s: {} for s in SUBJECTS}
  detected: dict[str, dict[str, list]] = {}
  chunks: dict[str, dict[str, list[prepare_humaneva.Chunk]]] = {}
  for person in PERSONS:
    body_rng = _rng(seed, person, 0)
    offsets = synthetic.make_body(body_rng)
    style = motions.make_style(body_rng, float(np.linalg.norm(offsets[2]) + np.linalg.norm(offsets[3])))
    videos = {}
    for index, trial in enumerate(TRIALS):
      if (person, trial) in MISSING_TRIALS:
        continue
      world, gt_pixels, coco_pixels, ranges = _trial(seed, person, index, offsets, style, frames)
      gap_rng = _rng(seed, person, 2, index)
      for split, (start, end) in zip(("Validate", "Train"), ranges):
        invalid = _invalid_frames(gap_rng, end - start)
        mocap_mm = world[start:end] * 1000
        mocap_mm[invalid] = np.nan
        views = np.stack([p[start:end] for p in gt_pixels], axis=1).astype(np.float64)  # (T, 3, 15, 2)
        views[invalid] = np.nan
        subject = f"{split}/{person}"
        seqs_3d, seqs_2d, trial_chunks = prepare_humaneva.chunk_trial(split, trial, mocap_mm, views, start, subject)
        positions_3d[subject].update(seqs_3d)
        gt[subject].update(seqs_2d)
        chunks.setdefault(person, {}).setdefault(trial, []).extend(trial_chunks)
      videos[trial] = [(p + synthetic.detector_noise(_rng(seed, person, 3, index, c), p, synthetic.COCO_NOISE))
                       .astype(np.float32) for c, p in enumerate(coco_pixels)]
    for trial, views in videos.items():
      for camera, keypoints in enumerate(views):
        prepare_humaneva.place_video(detected, person, trial, camera, keypoints, chunks, {}, "synthetic")
  return positions_3d, gt, detected


def _check_args(frames: int, seed: int) -> None:
  if int(frames) < MIN_FRAMES:
    raise PosejaxError(f"--frames: need at least {MIN_FRAMES} frames per trial, got {frames}")
  if int(seed) < 0:
    raise PosejaxError(f"--seed: must be a non-negative integer, got {seed}")


def unwritable_reason(out_dir: str) -> str | None:
  """Why `generate` may not write into `out_dir` (see `synthetic.unwritable_reason`), or None."""
  return synthetic.unwritable_reason(out_dir, list(FILE_NAMES.values()), _GENERATOR)


def read_marker(out_dir: str) -> dict | None:
  return synthetic.read_marker(out_dir, _GENERATOR)


def _summary(positions_3d: dict, paths: dict[str, str], seed: int) -> str:
  parts = []
  for split in ("Train", "Validate"):
    seqs = [x for s, v in positions_3d.items() if s.startswith(split) for x in v.values()]
    frames = sum(len(x) for x in seqs)
    parts.append(f"{split}: {len(seqs)} chunks, {frames:,} mocap frames ({3 * frames:,} camera frames)")
  return (f"Synthetic HumanEva-I-like data (seed {seed}): persons {', '.join(PERSONS)}, 5 actions, 3 cameras; "
          + "; ".join(parts) + ". Wrote " + ", ".join(paths.values()) + ".")


def generate(out_dir: str, *, frames: int = 900, seed: int = 0, overwrite: bool = False,
             log: Callable[[str], None] | None = None) -> dict[str, str]:
  """Writes the three synthetic files and the marker into `out_dir`; returns kind -> path.

  `frames` is the length of a trial (validation plus training part, each varying +-15 %).

  Raises:
    PosejaxError: bad arguments, a directory it may not write into, or a file of an earlier
      generation exists and `overwrite` is False.
  """
  _check_args(frames, seed)
  frames, seed = int(frames), int(seed)
  reason = unwritable_reason(out_dir)
  if reason is not None:
    raise PosejaxError(f"--out {out_dir}: not writing synthetic data: {reason}")
  paths = {kind: os.path.join(out_dir, name) for kind, name in FILE_NAMES.items()}
  existing = [p for p in paths.values() if os.path.exists(p)]
  if existing and not overwrite:
    raise PosejaxError(f"{existing[0]}: already exists (pass --overwrite to replace the synthetic files)")
  positions_3d, gt, detected = _build(frames, seed)
  os.makedirs(out_dir, exist_ok=True)
  synthetic.write_marker(out_dir, frames, seed, PERSONS, {name: None for name in FILE_NAMES.values()}, _GENERATOR)
  atomic_savez(paths["positions_3d"], positions_3d=positions_3d)
  atomic_savez(paths["gt"], positions_2d=gt, metadata=prepare_humaneva.layout_metadata("humaneva15"))
  atomic_savez(paths["synthetic"], positions_2d=detected, metadata=prepare_humaneva.layout_metadata("coco"))
  synthetic.write_marker(out_dir, frames, seed, PERSONS,
                         {os.path.basename(p): synthetic.file_sha256(p) for p in paths.values()}, _GENERATOR)
  if log is not None:
    log(_summary(positions_3d, paths, seed))
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  return synthetic.run_cli(argv, prog="python -m posejax.data.synthetic_humaneva", default_frames=900,
                           generate_fn=generate,
                           description="Writes synthetic HumanEva-I-like data in the VideoPose3D file formats.")


if __name__ == "__main__":
  sys.exit(main())
