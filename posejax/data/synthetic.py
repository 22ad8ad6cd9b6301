"""Synthetic Human3.6M-like data in exactly the published VideoPose3D file formats.

Human3.6M itself is licensed, so posejax can generate a stand-in: the 7 subjects, the 15
actions with the sequence names of the real files, seen by the 4 real cameras (the
subject's own extrinsics). Each subject gets a body (size and proportions) and a style;
each sequence is a motion of `posejax.data.motions` given that body through forward
kinematics on the 32-joint mocap tree, so bone lengths are constant and differ between
subjects. The body is lifted so that its lowest foot point touches the floor (z = 0)
in every frame, placed on the motion's floor path around the centre of the capture
volume, and kept (by shrinking the path if needed) where all 4 cameras see it.

Files written to `--out` (reference V4):

* `data_3d_h36m.npz`: `positions_3d[subject][name]` (T, 32, 3) float32 world metres.
* `data_2d_h36m_gt.npz`: exact projection of the 17 kept joints, pixels.
* `data_2d_h36m_synthetic.npz`: detector-like 2D (correlated jitter, outliers, larger
  errors on wrists and ankles), videos a few frames longer than the mocap.
* `data_2d_custom_synthetic.npz`: two in-the-wild style videos in COCO keypoint order.
* `.posejax_synthetic.json`: the marker (generator parameters, SHA-256 of each file).

The generator never writes over files it did not write: it writes only into a missing or
empty directory, or into one that holds its marker, and there replaces only the files the
marker records unchanged. The marker is written before the files (listing them, without
digests) and again after them with their digests, so an interrupted run can be redone.

Sequence lengths (`--proportions`, see `sequence_plan`):

* 'equal' (default): every sequence about `--frames` mocap frames (+-15 %).
* 'h36m': Human3.6M's frames per action and split (`posejax.data.h36m_frames`) times
  `--scale`, so the action-based packing (slots, useful fraction, memory) is that of the real
  data; `--scale 1` gives its frame counts exactly.

Usage: `python -m posejax.data.synthetic --out DIR [--frames N | --proportions h36m [--scale F]]
[--seed S] [--overwrite]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Callable, Sequence

import numpy as np
from scipy.signal import lfilter

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez, atomic_write_text
from posejax.data import motions
from posejax.data.h36m_cameras import CameraParams, H36M_SUBJECTS, TEST_SUBJECTS, TRAIN_SUBJECTS, h36m_cameras
from posejax.data.h36m_frames import mocap_frames
from posejax.pose import camera as camera_lib
from posejax.pose.actions import ACTIONS, action_of
from posejax.pose.skeleton import H36M_KEPT_JOINTS, H36M_SKELETON_32, LAYOUTS

PARENTS = np.asarray(H36M_SKELETON_32.parents)
FOOT_JOINTS = (3, 4, 5, 8, 9, 10)

# Rest offsets of a 1.70 m body (metres, parent frame = body frame at rest: x right,
# y forward, z up), shaped after Human3.6M's mean bone lengths. Left = mirrored right.
_RIGHT_LEG = {1: (0.13, 0.0, -0.01), 2: (0.0, 0.0, -0.44), 3: (0.0, 0.0, -0.445),
              4: (0.0, 0.13, -0.06), 5: (0.0, 0.05, -0.015)}
_RIGHT_ARM = {24: (0.0, 0.0, 0.25), 25: (0.15, 0.0, -0.03), 26: (0.0, 0.0, -0.28), 27: (0.0, 0.0, -0.25),
              28: (0.0, 0.025, -0.03), 29: (0.0, 0.02, -0.02), 30: (0.0, 0.0, -0.08), 31: (0.0, 0.0, -0.02)}
_CENTRE = {11: (0.0, 0.0, 0.01), 12: (0.0, 0.005, 0.22), 13: (0.0, 0.0, 0.25), 14: (0.0, 0.025, 0.115),
           15: (0.0, -0.01, 0.115)}
# Segment of each joint's bone, for per-subject proportions.
_SEGMENTS = {"leg": (2, 3, 7, 8), "foot": (4, 5, 9, 10), "pelvis": (1, 6), "torso": (11, 12, 13, 16, 24),
             "head": (14, 15), "shoulder": (17, 25), "arm": (18, 19, 26, 27), "hand": (20, 21, 22, 23, 28, 29, 30, 31)}
_HEEL = np.array([0.0, -0.05, -0.075])  # below and behind the ankle, in the ankle's frame
_SEAT_CLEARANCE = 0.09  # the pelvis joint never comes closer to the floor than this


def _rest_offsets() -> np.ndarray:
  offsets = np.zeros((32, 3))
  for right, values in (*_RIGHT_LEG.items(), *_RIGHT_ARM.items()):
    left = H36M_SKELETON_32.joints_left[H36M_SKELETON_32.joints_right.index(right)]
    offsets[right] = values
    offsets[left] = (-values[0], values[1], values[2])
  for j, values in _CENTRE.items():
    offsets[j] = values
  return offsets


REST_OFFSETS = _rest_offsets()


def make_body(rng: np.random.Generator) -> np.ndarray:
  """Bone offsets (32, 3) of a random subject: overall scale 0.92-1.08 (1.56-1.84 m tall),
  each body segment (legs, arms, torso, ...) scaled by another 0.94-1.06 (sd 2.5%)."""
  offsets = REST_OFFSETS * rng.uniform(0.92, 1.08)
  for joints in _SEGMENTS.values():
    offsets[list(joints)] *= np.clip(rng.normal(1.0, 0.025), 0.94, 1.06)
  return offsets


def forward_kinematics(angles: np.ndarray, heading: np.ndarray, offsets: np.ndarray):
  """Joint positions relative to the root and global rotations.

  Args:
    angles: (T, 32, 3) degrees (see `motions`).
    heading: (T,) radians about z.
    offsets: (32, 3) rest bone offsets.

  Returns:
    positions (T, 32, 3) with the root at the origin, rotations (T, 32, 3, 3).
  """
  local = motions.local_rotations(angles)
  c, s = np.cos(heading), np.sin(heading)
  yaw = np.zeros(heading.shape + (3, 3))
  yaw[:, 0, 0], yaw[:, 0, 1], yaw[:, 1, 0], yaw[:, 1, 1], yaw[:, 2, 2] = c, -s, s, c, 1
  rotations = np.empty_like(local)
  positions = np.zeros(angles.shape)
  rotations[:, 0] = yaw @ local[:, 0]
  for j in range(1, len(PARENTS)):
    p = PARENTS[j]
    positions[:, j] = positions[:, p] + rotations[:, p] @ offsets[j]
    rotations[:, j] = rotations[:, p] @ local[:, j]
  return positions, rotations


def _soft_max(values: np.ndarray, tau: float) -> np.ndarray:
  """log-sum-exp over the last axis: smooth, and never below the hard maximum."""
  top = values.max(axis=-1, keepdims=True)
  return top[..., 0] + tau * np.log(np.exp((values - top) / tau).sum(axis=-1))


def place_on_floor(motion: motions.Motion, offsets: np.ndarray, centre: np.ndarray):
  """World positions (T, 32, 3) float64 and global rotations of a motion on a body.

  Horizontally, `centre + motion.floor` is where the feet's midpoint stands when the body
  stands still and where the pelvis is when it walks (blended by `motion.walking`): a
  standing body that crouches keeps its feet in place, a walking one moves smoothly.
  Vertically, the body is lifted by the soft maximum of the lifts the contact points
  (feet, virtual heels, pelvis seat) need, so the lowest touches the floor and none is below.
  """
  positions, rotations = forward_kinematics(motion.angles, motion.heading, offsets)
  scale = np.linalg.norm(offsets[2]) / 0.44
  heels = positions[:, [3, 8]] + np.einsum("tjab,b->tja", rotations[:, [3, 8]], _HEEL * scale)
  heights = np.concatenate([positions[:, FOOT_JOINTS, 2], heels[..., 2], positions[:, :1, 2] - _SEAT_CLEARANCE], 1)
  lift = _soft_max(-heights, 0.004)
  feet = positions[:, [3, 8], :2].mean(axis=1)
  root = centre + motion.floor - (1 - np.clip(motion.walking, 0, 1))[:, None] * feet
  return positions + np.concatenate([root, lift[:, None]], axis=-1)[:, None], rotations


# Sequence-name suffixes per action, in H36M_SUBJECTS order (reference H3); '' is the
# bare action name. S11 has no plain 'Directions' (dropped from the real files).
_SUFFIXES = {
    "Directions": (",1", "1,2", ",1", ",1", ",1", ",1", "1"),
    "Discussion": (",1", "2,3", ",1", ",1", ",1", "1,2", "1,2"),
    "Eating": (",2", ",1", "1,2", ",1", ",1", ",1", ",1"),
    "Greeting": (",1", "1,2", ",1", ",1", ",1", ",1", ",2"),
    "Phoning": (",1", ",1", ",1", ",2", ",1", ",1", "2,3"),
    "Photo": (",1", ",2", ",1", ",1", ",1", ",1", ",1"),
    "Posing": (",1", ",1", ",2", ",1", ",1", ",1", ",1"),
    "Purchases": (",1",) * 7,
    "Sitting": ("1,2", ",1", "1,2", ",1", ",1", ",1", ",1"),
    "SittingDown": (",2", ",1", ",1", ",1", ",1", ",1", ",1"),
    "Smoking": (",1", ",1", ",1", ",1", ",1", ",1", ",2"),
    "Waiting": (",1", "1,2", ",3", "1,2", ",1", ",1", ",1"),
    "WalkDog": (",1",) * 7,
    "Walking": (",1", ",1", ",1", "1,2", ",1", ",1", ",1"),
    "WalkTogether": (",1", ",1", ",1", ",1", "1,2", ",1", ",1"),
}


def sequence_names(subject: str) -> tuple[str, ...]:
  """The subject's sequence names in the real files ('Directions', 'Directions 1', ...)."""
  column = H36M_SUBJECTS.index(subject)
  return tuple(f"{action} {s}".strip() for action in ACTIONS for s in _SUFFIXES[action][column].split(","))


def capture_centre(cameras: Sequence[CameraParams]) -> np.ndarray:
  """(2,) floor point closest (least squares) to the cameras' optical axes."""
  a, b = np.zeros((3, 3)), np.zeros(3)
  for cam in cameras:
    axis = camera_lib.qrot(cam.orientation.astype(np.float64), np.array([0.0, 0.0, 1.0]))
    projector = np.eye(3) - np.outer(axis, axis)  # distance to the line through the centre
    a += projector
    b += projector @ cam.translation
  return np.linalg.solve(a, b)[:2]


def _subject_rng(seed: int, subject: str, *key: int) -> np.random.Generator:
  # Keyed by subject number (not position) so a subset of subjects reproduces the full set.
  return np.random.default_rng([seed, int(subject[1:]), *key])


PROPORTIONS = ("equal", "h36m")
MIN_FRAMES = 16  # mocap frames of the shortest sequence
_SPLITS = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS}


def _equal_length(rng: np.random.Generator, frames: int) -> int:
  """Mocap length of an 'equal' sequence: about `frames`, drawn first from the sequence's stream."""
  return max(MIN_FRAMES, int(round(frames * rng.uniform(0.85, 1.15))))


def _video_lengths(rng: np.random.Generator, mocap: int) -> list[int]:
  """The 4 cameras' video lengths: a few frames longer than the mocap, as in the real files."""
  return [mocap + int(rng.integers(1, 9)) for _ in range(4)]


def split_shares(total: int, weights: np.ndarray) -> np.ndarray:
  """`total` split in proportion to `weights` (largest remainders): integers summing to `total`."""
  shares = total * np.asarray(weights, np.float64) / np.sum(weights)
  counts = np.floor(shares).astype(np.int64)
  order = np.argsort(counts - shares, kind="stable")  # largest fractional parts first
  counts[order[:total - int(counts.sum())]] += 1
  return counts


def _h36m_plan(scale: float, seed: int) -> dict[str, dict[str, int]]:
  """Each split's per-action mocap total, spread over its sequences of that action with
  seed-drawn weights (0.85-1.15) so that lengths differ as real takes do."""
  plan: dict[str, dict[str, int]] = {s: {} for s in H36M_SUBJECTS}
  for split_index, (split, subjects) in enumerate(_SPLITS.items()):
    for action_index, action in enumerate(ACTIONS):
      names = [(s, n) for s in subjects for n in sequence_names(s) if action_of(n) == action]
      weights = np.random.default_rng([seed, 2000, split_index, action_index]).uniform(0.85, 1.15, len(names))
      for (subject, name), length in zip(names, split_shares(mocap_frames(split, action, scale), weights)):
        plan[subject][name] = int(length)
  length, subject, name = min((n, s, name) for s, seqs in plan.items() for name, n in seqs.items())
  if length < MIN_FRAMES:
    least = scale * MIN_FRAMES / max(length, 1)  # lengths are proportional to the scale
    raise PosejaxError(f"--scale {scale}: too small, {subject} {name!r} would get {length} < {MIN_FRAMES} "
                       f"mocap frames (needs about --scale {least:.2g} or more)")
  # In sequence-name order, as the files list them.
  return {s: {n: plan[s][n] for n in sequence_names(s)} for s in H36M_SUBJECTS}


def sequence_plan(proportions: str = "equal", scale: float = 1.0, seed: int = 0,
                  frames: int = 600) -> dict[str, dict[str, int]]:
  """subject -> sequence name -> mocap frames of every subject the generator writes.

  'equal': each about `frames` (+-15 %); 'h36m': per split and action, exactly Human3.6M's
  mocap frames times `scale` (rounded; `frames` unused). Each camera's video is 1-8 frames
  longer. Pure: no poses are made.
  """
  _check_args(frames, seed, H36M_SUBJECTS, proportions, scale)
  if proportions == "h36m":
    return _h36m_plan(float(scale), int(seed))
  return {s: {n: _equal_length(_subject_rng(seed, s, 1, i), frames) for i, n in enumerate(sequence_names(s))}
          for s in H36M_SUBJECTS}


def film(motion: motions.Motion, offsets: np.ndarray, centre: np.ndarray, cams: Sequence[CameraParams],
          keypoints: Callable[[np.ndarray, np.ndarray], np.ndarray]):
  """Places a motion where every camera sees every keypoint; returns world (T, 32, 3) float32 and
  each camera's keypoint pixels (T, K, 2).

  A path that leaves some camera's image (8 px margin) is shrunk towards the centre.
  """
  for _ in range(10):
    world, rotations = place_on_floor(motion, offsets, centre)
    world = world.astype(np.float32)  # project what is stored, as the reference does
    points = keypoints(world, rotations.astype(np.float32))
    pixels = [project_to_pixels(points, cam) for cam in cams]
    if all(np.all((p >= 8) & (p <= np.array([cam.res_w, cam.res_h]) - 8)) for p, cam in zip(pixels, cams)):
      break
    motion = motion._replace(floor=0.85 * motion.floor)
  return world, pixels


def _kept_joints(world: np.ndarray, rotations: np.ndarray) -> np.ndarray:
  del rotations
  return world[:, list(H36M_KEPT_JOINTS)]


def _subject_sequences(seed: int, subject: str, frames: int, lengths: dict[str, int] | None = None):
  """Yields (name, world (T_video, 32, 3) float32, 4 x pixels (T_video, 17, 2), mocap length, video lengths).

  lengths: mocap frames per sequence name (`sequence_plan`); None: 'equal' lengths of `frames`.
  """
  body_rng = _subject_rng(seed, subject, 0)
  offsets = make_body(body_rng)
  style = motions.make_style(body_rng, leg_length=float(np.linalg.norm(offsets[2]) + np.linalg.norm(offsets[3])))
  cams = h36m_cameras()[subject]
  centre = capture_centre(cams)
  for index, name in enumerate(sequence_names(subject)):
    rng = _subject_rng(seed, subject, 1, index)
    mocap = _equal_length(rng, frames) if lengths is None else lengths[name]
    video = _video_lengths(rng, mocap)
    motion = motions.action_motion(name.split(" ")[0], rng, max(video), style)
    world, pixels = film(motion, offsets, centre, cams, _kept_joints)
    yield name, world, [p[:length] for p, length in zip(pixels, video)], mocap, video


def _lengths(proportions: str, scale: float, seed: int) -> dict[str, dict[str, int]] | None:
  """Per-subject mocap lengths for `_subject_sequences` (None: drawn there, 'equal')."""
  return sequence_plan(proportions, scale, seed) if proportions != "equal" else None


def generate_positions_3d(frames: int = 600, seed: int = 0, subjects: Sequence[str] = H36M_SUBJECTS, *,
                          proportions: str = "equal", scale: float = 1.0) -> dict[str, dict[str, np.ndarray]]:
  """subject -> sequence name -> (T, 32, 3) float32 world metres (the 3D file's content)."""
  subjects = _check_args(frames, seed, subjects, proportions, scale)
  plan = _lengths(proportions, scale, seed)
  return {s: {name: world[:mocap] for name, world, _, mocap, _ in
              _subject_sequences(seed, s, frames, None if plan is None else plan[s])}
          for s in subjects}


def _check_args(frames: int, seed: int, subjects: Sequence[str], proportions: str = "equal",
                scale: float = 1.0) -> tuple[str, ...]:
  if proportions not in PROPORTIONS:
    raise PosejaxError(f"--proportions: {proportions!r} is not one of {', '.join(PROPORTIONS)}")
  if not 0 < float(scale) < float("inf"):
    raise PosejaxError(f"--scale: must be a positive fraction of Human3.6M's size, got {scale}")
  if int(frames) < MIN_FRAMES:
    raise PosejaxError(f"--frames: need at least {MIN_FRAMES} frames per sequence, got {frames}")
  if int(seed) < 0:
    raise PosejaxError(f"--seed: must be a non-negative integer, got {seed}")
  unknown = [s for s in subjects if s not in H36M_SUBJECTS]
  if unknown or not subjects:
    raise PosejaxError(f"subjects: unknown {unknown or 'empty list'} (known: {', '.join(H36M_SUBJECTS)})")
  return tuple(s for s in H36M_SUBJECTS if s in subjects)


# ---------------------------------------------------------------- cameras and 2D keypoints


def project_to_pixels(points: np.ndarray, cam: CameraParams) -> np.ndarray:
  """World points (T, K, 3) -> (T, K, 2) float32 pixels, as the reference makes GT 2D."""
  in_camera = camera_lib.world_to_camera(points, cam.orientation, cam.translation)
  normalized = camera_lib.project_to_2d(in_camera[None], cam.intrinsic[None])[0]
  return camera_lib.image_coordinates(normalized, cam.res_w, cam.res_h).astype(np.float32)


# Detector error per keypoint relative to the torso: extremities are found less reliably.
_H36M_NOISE = np.array([1.3, 1.3, 1.2, 1.8, 1.3, 1.2, 1.8, 1.2, 1.0, 0.9, 1.1, 1.0, 1.3, 2.0, 1.0, 1.3, 2.0])
COCO_NOISE = np.array([0.8, 0.7, 0.7, 0.9, 0.9, 1.0, 1.0, 1.3, 1.3, 2.0, 2.0, 1.4, 1.4, 1.2, 1.2, 1.8, 1.8])


def detector_noise(rng: np.random.Generator, keypoints: np.ndarray, joint_scale: np.ndarray) -> np.ndarray:
  """Detector-like errors (T, K, 2) pixels for clean keypoints (T, K, 2).

  A constant per-keypoint bias plus AR(1) jitter (correlation 0.85 frame to frame),
  both about 2.5 px for a 400 px tall person times `joint_scale` (K,), plus rare
  outliers: one keypoint jumps 20-60 px for 2-8 frames.
  """
  frames, k, _ = keypoints.shape
  height = np.median(keypoints[..., 1].max(axis=1) - keypoints[..., 1].min(axis=1))
  sigma = 2.5 * np.clip(height / 400.0, 0.5, 2.0) * joint_scale[:, None]
  rho = 0.85
  start = rng.standard_normal((1, k, 2))  # drawn from the stationary distribution
  innovations = rng.standard_normal((frames, k, 2)) * np.sqrt(1 - rho**2)
  jitter, _ = lfilter([1.0], [1.0, -rho], innovations, axis=0, zi=rho * start)
  errors = (jitter + 0.5 * rng.standard_normal((k, 2))) * sigma
  for j in np.repeat(np.arange(k), rng.poisson(frames * 8e-4 * joint_scale**2)):
    start, length = int(rng.integers(frames)), int(rng.integers(2, 9))
    angle = rng.uniform(0, 2 * np.pi)
    errors[start:start + length, j] += rng.uniform(20, 60) * np.array([np.cos(angle), np.sin(angle)])
  return errors


def coco_keypoints(positions: np.ndarray, rotations: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """COCO's 17 keypoints (T, 17, 3) from the 32-joint body (nose, eyes, ears from the head)."""
  head = np.linalg.norm(offsets[15]) / 0.115
  # In the head's frame (x right, y forward, z up) relative to the Head joint.
  face = np.array([(0, 0.085, -0.01), (-0.032, 0.07, 0.025), (0.032, 0.07, 0.025),
                   (-0.075, -0.01, 0.01), (0.075, -0.01, 0.01)]) * head
  face_points = positions[:, 14, None] + np.einsum("tab,kb->tka", rotations[:, 14], face)
  body = positions[:, [17, 25, 18, 26, 19, 27, 6, 1, 7, 2, 8, 3]]
  return np.concatenate([face_points, body], axis=1)


# ---------------------------------------------------------------- files

FILE_NAMES = {"positions_3d": "data_3d_h36m.npz", "gt": "data_2d_h36m_gt.npz",
              "synthetic": "data_2d_h36m_synthetic.npz", "custom": "data_2d_custom_synthetic.npz"}
SOURCES_2D = ("gt", "synthetic")  # the `data_2d_h36m_<source>.npz` files written
MARKER = ".posejax_synthetic.json"
_GENERATOR = "posejax.data.synthetic"
CUSTOM_VIDEOS = {"walk_demo.mp4": "Walking", "wave_demo.mp4": "Greeting"}
_H36M_LAYOUT, _COCO_LAYOUT = LAYOUTS["h36m"], LAYOUTS["coco"]


def _symmetry(layout) -> list[list[int]]:
  return [list(layout.left), list(layout.right)]


def _custom_videos(seed: int, frames: int) -> dict[str, np.ndarray]:
  """In-the-wild style clips: video name -> (T, 17, 2) float32 COCO keypoints, pixels.

  Bodies that are none of the subjects, filmed by a camera placed like S1's first one.
  """
  cam = h36m_cameras()["S1"][0]
  videos = {}
  for k, (video, action) in enumerate(CUSTOM_VIDEOS.items()):
    rng = np.random.default_rng([seed, 1000, k])
    offsets = make_body(rng)
    style = motions.make_style(rng, float(np.linalg.norm(offsets[2]) + np.linalg.norm(offsets[3])))
    length = max(16, int(round(frames * rng.uniform(0.85, 1.15))))
    motion = motions.action_motion(action, rng, length, style)
    _, (clean,) = film(motion, offsets, capture_centre(h36m_cameras()["S1"]), (cam,),
                        lambda world, rotations: coco_keypoints(world, rotations, offsets))
    videos[video] = (clean + detector_noise(rng, clean, COCO_NOISE)).astype(np.float32)
  return videos


def _build(frames: int, seed: int, subjects: tuple[str, ...], plan: dict[str, dict[str, int]] | None = None):
  """(positions_3d, gt 2D, detector 2D) dicts in the published nesting."""
  positions_3d, gt, detected = {}, {}, {}
  for subject in subjects:
    positions_3d[subject], gt[subject], detected[subject] = {}, {}, {}
    lengths = None if plan is None else plan[subject]
    for index, (name, world, pixels, mocap, _) in enumerate(_subject_sequences(seed, subject, frames, lengths)):
      positions_3d[subject][name] = world[:mocap]
      gt[subject][name] = [p[:mocap] for p in pixels]
      detected[subject][name] = [
          (p + detector_noise(_subject_rng(seed, subject, 2, index, c), p, _H36M_NOISE)).astype(np.float32)
          for c, p in enumerate(pixels)]
  return positions_3d, gt, detected


def _summary(positions_3d: dict, paths: dict[str, str], seed: int, proportions: str = "equal",
             scale: float = 1.0) -> str:
  splits = {"training": [s for s in positions_3d if s in TRAIN_SUBJECTS],
            "test": [s for s in positions_3d if s not in TRAIN_SUBJECTS]}
  parts = []
  for split, subjects in splits.items():
    if subjects:
      seqs = [v for s in subjects for v in positions_3d[s].values()]
      frames = sum(len(v) for v in seqs)
      parts.append(f"{split} {'+'.join(subjects)}: {len(seqs)} sequences, {frames:,} mocap frames "
                   f"({4 * frames:,} camera frames, {frames / motions.FPS / 60:.1f} min)")
  sizes = f", Human3.6M's proportions at scale {scale:g}" if proportions == "h36m" else ""
  return (f"Synthetic Human3.6M-like data (seed {seed}{sizes}): {len(positions_3d)} subjects, 15 actions, "
          "4 cameras; "
          + "; ".join(parts) + ". Wrote " + ", ".join(paths.values()) + ".")


def file_sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def read_marker(out_dir: str, generator: str = _GENERATOR) -> dict | None:
  """The marker of `out_dir` ({'frames', 'seed', 'subjects', 'complete', 'files'}, and for this
  module 'proportions' and 'scale'), or None.

  Raises:
    PosejaxError: a marker of another generator (`generator` names the expected one).
  """
  path = os.path.join(out_dir, MARKER)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      marker = json.load(f)
  except (OSError, ValueError) as e:
    raise PosejaxError(f"{path}: unreadable synthetic-data marker ({e})") from None
  if not isinstance(marker, dict) or marker.get("generator") != generator or not isinstance(
      marker.get("files"), dict):
    raise PosejaxError(f"{path}: not a marker written by {generator}")
  return marker


def unwritable_reason(out_dir: str, file_names: Sequence[str] | None = None,
                      generator: str = _GENERATOR) -> str | None:
  """Why `generator` may not write `file_names` (default: this module's `FILE_NAMES`) into
  `out_dir`, or None when it may.

  It may write into a missing or empty directory, or into one holding its marker where every
  file of `file_names` present is recorded in the marker (with its digest, unchanged, when the
  generation completed). Other files of a marked directory are left alone.
  """
  if not os.path.exists(out_dir):
    return None
  if not os.path.isdir(out_dir):
    return f"{out_dir} is not a directory"
  marker = read_marker(out_dir, generator)
  if marker is None:
    entries = sorted(os.listdir(out_dir))
    if not entries:
      return None
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    return (f"{out_dir} holds files {generator} did not write ({shown}); it writes only into an "
            f"empty directory or one it generated (marked by {MARKER})")
  for name in (FILE_NAMES.values() if file_names is None else file_names):
    path = os.path.join(out_dir, name)
    if not os.path.lexists(path):
      continue
    if name not in marker["files"] or not os.path.isfile(path):
      return f"{path} was not written by {generator} (not recorded in {MARKER})"
    digest = marker["files"][name]
    if marker.get("complete") and digest != file_sha256(path):
      return f"{path} changed since {generator} wrote it (SHA-256 differs from {MARKER})"
  return None


def write_marker(out_dir: str, frames: int, seed: int, subjects: tuple[str, ...],
                 digests: dict[str, str | None], generator: str = _GENERATOR,
                 params: dict[str, object] | None = None) -> None:
  """Records the generation in `out_dir` (`params`: further generator parameters); complete
  when every file has its digest."""
  marker = {"generator": generator, "frames": frames, "seed": seed, **(params or {}), "subjects": list(subjects),
            "complete": all(d is not None for d in digests.values()), "files": digests}
  atomic_write_text(os.path.join(out_dir, MARKER), json.dumps(marker, indent=1) + "\n")


def generate(out_dir: str, *, frames: int = 600, seed: int = 0, subjects: Sequence[str] = H36M_SUBJECTS,
             proportions: str = "equal", scale: float = 1.0, overwrite: bool = False,
             log: Callable[[str], None] | None = None) -> dict[str, str]:
  """Writes the four synthetic files and the marker into `out_dir`; returns kind -> path.

  Kinds: 'positions_3d', 'gt', 'synthetic', 'custom' (file names in `FILE_NAMES`). `overwrite`
  replaces files of an earlier generation (see `unwritable_reason`), never other files.
  Sequence lengths follow `sequence_plan(proportions, scale, seed, frames)`; `frames` also sets
  the custom videos' length.

  Raises:
    PosejaxError: bad arguments, a directory it may not write into, or a file of an earlier
      generation exists and `overwrite` is False.
  """
  subjects = _check_args(frames, seed, subjects, proportions, scale)
  frames, seed = int(frames), int(seed)
  plan = _lengths(proportions, float(scale), seed)  # before writing: a too small scale is an error
  params = {"proportions": proportions, "scale": float(scale) if proportions == "h36m" else None}
  reason = unwritable_reason(out_dir)
  if reason is not None:
    raise PosejaxError(f"--out {out_dir}: not writing synthetic data: {reason}")
  paths = {kind: os.path.join(out_dir, name) for kind, name in FILE_NAMES.items()}
  existing = [p for p in paths.values() if os.path.exists(p)]
  if existing and not overwrite:
    raise PosejaxError(f"{existing[0]}: already exists (pass --overwrite to replace the synthetic files)")
  positions_3d, gt, detected = _build(frames, seed, subjects, plan)
  h36m_meta = {"num_joints": 17, "keypoints_symmetry": _symmetry(_H36M_LAYOUT)}
  videos = _custom_videos(seed, frames)
  custom_meta = {"layout_name": "coco", "num_joints": 17, "keypoints_symmetry": _symmetry(_COCO_LAYOUT),
                 "video_metadata": {v: {"w": 1000, "h": 1002} for v in videos}}
  os.makedirs(out_dir, exist_ok=True)
  write_marker(out_dir, frames, seed, subjects, {name: None for name in FILE_NAMES.values()}, params=params)
  atomic_savez(paths["positions_3d"], positions_3d=positions_3d)
  atomic_savez(paths["gt"], positions_2d=gt, metadata=h36m_meta)
  atomic_savez(paths["synthetic"], positions_2d=detected, metadata={"layout_name": "h36m", **h36m_meta})
  atomic_savez(paths["custom"], positions_2d={v: {"custom": [k]} for v, k in videos.items()}, metadata=custom_meta)
  write_marker(out_dir, frames, seed, subjects, {os.path.basename(p): file_sha256(p) for p in paths.values()},
               params=params)
  if log is not None:
    log(_summary(positions_3d, paths, seed, proportions, float(scale)))
  return paths


def _size_args(args: argparse.Namespace, default_frames: int) -> dict[str, object]:
  """generate()'s length keywords from --frames / --proportions / --scale, each option only
  where it applies."""
  proportions = getattr(args, "proportions", "equal")
  if proportions == "equal" and getattr(args, "scale", None) is not None:
    raise PosejaxError("--scale: applies to --proportions h36m only (use --frames for equal lengths)")
  if proportions != "equal" and args.frames is not None:
    raise PosejaxError(f"--frames: applies to --proportions equal only (use --scale with {proportions})")
  size = {"frames": default_frames if args.frames is None else args.frames}
  if proportions != "equal":
    size |= {"proportions": proportions, "scale": 1.0 if args.scale is None else args.scale}
  return size


def run_cli(argv: Sequence[str] | None, *, prog: str, description: str, default_frames: int,
            generate_fn: Callable[..., dict[str, str]], proportions: Sequence[str] = ()) -> int:
  """The command line of a synthetic generator: --out, --frames, --seed, --overwrite, and
  --proportions / --scale when `proportions` names the generator's choices."""
  parser = argparse.ArgumentParser(prog=prog, description=description)
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--frames", type=int, default=None,
                      help=f"mocap frames per sequence (varies +-15%%; default {default_frames})")
  if proportions:
    parser.add_argument("--proportions", choices=proportions, default=proportions[0],
                        help="sequence lengths: about --frames each (equal) or Human3.6M's per action and split")
    parser.add_argument("--scale", type=float, default=None,
                        help="with --proportions h36m: fraction of Human3.6M's frames (default 1: exactly its counts)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--overwrite", action="store_true",
                      help="replace the files of an earlier generation in --out (never other files)")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  try:
    generate_fn(args.out, **_size_args(args, default_frames), seed=args.seed, overwrite=args.overwrite, log=print)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"done in {time.perf_counter() - start:.1f} s")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  return run_cli(argv, prog="python -m posejax.data.synthetic", default_frames=600, generate_fn=generate,
                 proportions=PROPORTIONS,
                 description="Writes synthetic Human3.6M-like data in the VideoPose3D file formats.")


if __name__ == "__main__":
  sys.exit(main())
