"""Action motion library for the synthetic Human3.6M-like and HumanEva-I-like data.

A motion is what a body does, independent of its size: per-frame joint angles of the
32-joint mocap tree, a heading, and where on the floor the body is. Every action is
a function `(rng, frames, style) -> Motion` built from a few smooth ingredients:
key poses blended by activation curves (hand to mouth, waving, pointing), held-pose
schedules with smooth cross-fades (Posing, Waiting), and a gait whose amplitude and
cadence follow the floor speed, so walking, stepping and turning look alike for every
action. Angles are in degrees, channels (flex, abduct, twist) per joint:

* flex: hip, shoulder, elbow, knee, spine and neck flexion (positive bends the joint the
  way anatomy does: knee back, trunk forward, forearm up); ankle dorsiflexion.
* abduct: limb away from the body (mirrored for the right side); spine: lean right;
  clavicle: shrug.
* twist: about the parent bone's vertical; on the elbow it is the humeral rotation.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter1d

FPS = 50.0
NUM_JOINTS = 32
JOINTS = {
    "root": 0, "r_hip": 1, "r_knee": 2, "r_ankle": 3, "l_hip": 6, "l_knee": 7, "l_ankle": 8,
    "low_back": 11, "up_back": 12, "neck": 13, "head": 14,
    "l_clav": 16, "l_shoulder": 17, "l_elbow": 18, "l_wrist": 19,
    "r_clav": 24, "r_shoulder": 25, "r_elbow": 26, "r_wrist": 27,
}
_PAIRS = {"hips": "hip", "knees": "knee", "ankles": "ankle", "clavs": "clav", "shoulders": "shoulder",
          "elbows": "elbow", "wrists": "wrist"}
_RIGHT = (1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31)


def _channel_signs() -> np.ndarray:
  """(32, 3) signs turning anatomical channels into rotations about the body x, y, z axes."""
  signs = np.ones((NUM_JOINTS, 3))
  signs[[0, 2, 7, 11, 12, 13, 14], 0] = -1  # knees flex backwards, trunk and head forwards
  signs[list(_RIGHT), 1:] = -1  # mirror abduction and twist so one value means both sides
  return signs


CHANNEL_SIGNS = _channel_signs()

Pose = dict[int, np.ndarray]


def pose(side: str = "R", **parts: tuple[float, float, float]) -> Pose:
  """A partial pose: joint index -> (flex, abduct, twist) degrees.

  Keys are joint names ('neck'), pair names setting both sides ('knees'), or 'arm_*' /
  'off_*' for the arm on `side` ('R' or 'L') and the other arm.
  """
  out = {}
  other = "L" if side == "R" else "R"
  for name, value in parts.items():
    if name in _PAIRS:
      names = ("l_" + _PAIRS[name], "r_" + _PAIRS[name])
    elif name.startswith(("arm_", "off_")):
      chosen = side if name.startswith("arm_") else other
      names = (chosen.lower() + "_" + name.split("_", 1)[1],)
    else:
      names = (name,)
    for n in names:
      out[JOINTS[n]] = np.asarray(value, np.float64)
  return out


def local_rotations(angles: np.ndarray) -> np.ndarray:
  """Joint angles (..., 32, 3) degrees -> local rotation matrices (..., 32, 3, 3).

  Order: flex about x first, then abduct about y, then twist about z (R = Rz Ry Rx), in the
  body frame x = right, y = forward, z = up.
  """
  a = np.deg2rad(angles * CHANNEL_SIGNS)
  cx, cy, cz = np.moveaxis(np.cos(a), -1, 0)
  sx, sy, sz = np.moveaxis(np.sin(a), -1, 0)
  rows = (cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx,
          sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx,
          -sy, cy * sx, cy * cx)
  return np.stack(rows, axis=-1).reshape(angles.shape[:-1] + (3, 3))


@dataclasses.dataclass(frozen=True)
class Style:
  """How one subject moves: size-dependent gait, tempo, posture and handedness."""

  stride: float  # metres per gait cycle at full amplitude (two steps)
  walk_speed: float  # m/s of ordinary walking
  arm_swing: float  # multiplier of the gait's arm swing
  tempo: float  # > 1: quicker gestures and shorter holds
  posture: np.ndarray  # (32, 3) degrees added to every frame
  noise: float  # degrees of smooth per-joint wobble
  side: str  # dominant hand, 'R' or 'L'


def make_style(rng: np.random.Generator, leg_length: float) -> Style:
  """A random subject style; `leg_length` (hip to ankle, metres) sets the stride."""
  posture = np.zeros((NUM_JOINTS, 3))
  for joint, sd in (("root", 2), ("low_back", 2.5), ("up_back", 3), ("neck", 4), ("head", 3)):
    posture[JOINTS[joint], 0] = rng.normal(0, sd)
  for joint, sd in (("shoulder", 3), ("elbow", 5), ("hip", 1.5), ("knee", 2)):
    posture[[JOINTS["l_" + joint], JOINTS["r_" + joint]], 0] = rng.normal(0, sd)
  posture[[JOINTS["l_shoulder"], JOINTS["r_shoulder"]], 1] = rng.normal(0, 2.5)
  return Style(stride=1.27 * leg_length * rng.uniform(0.93, 1.07), walk_speed=rng.uniform(1.0, 1.3),
               arm_swing=rng.uniform(0.6, 1.3), tempo=rng.uniform(0.85, 1.2), posture=posture,
               noise=rng.uniform(1.5, 3.0), side="R" if rng.random() < 0.85 else "L")


class Motion(NamedTuple):
  """One sequence of one action, before it is given a body.

  angles: (T, 32, 3) degrees; heading: (T,) radians, rotation about z of the body's
  forward (+y) axis; floor: (T, 2) metres relative to the centre of the capture volume,
  where the body is; walking: (T,) in [0, 1], 0 when `floor` is the point between the
  ankles (standing), 1 when it is under the pelvis (walking).
  """

  angles: np.ndarray
  heading: np.ndarray
  floor: np.ndarray
  walking: np.ndarray


# ---------------------------------------------------------------- smooth signals


def _quintic(x: np.ndarray) -> np.ndarray:
  """0 -> 1 ramp with zero velocity and acceleration at both ends."""
  x = np.clip(x, 0.0, 1.0)
  return x**3 * (10 - 15 * x + 6 * x**2)


def _noise(rng: np.random.Generator, frames: int, shape: tuple[int, ...] = (), seconds: float = 1.0):
  """Unit-variance Gaussian noise low-passed at a time scale of `seconds`: (frames, *shape).

  Filtered in the frequency domain (a circular Gaussian filter), which keeps it cheap for
  long kernels; the wrap-around only makes the noise periodic, not less smooth.
  """
  sigma = seconds * FPS
  white = rng.standard_normal((frames,) + shape)
  gain = np.exp(-2 * (np.pi * np.fft.rfftfreq(frames) * sigma) ** 2)
  smooth = np.fft.irfft(np.fft.rfft(white, axis=0) * gain.reshape((-1,) + (1,) * len(shape)), n=frames, axis=0)
  # Exact variance of a circular filter on white noise: mean squared gain over all frequencies.
  variance = np.mean(np.exp(-4 * (np.pi * np.fft.fftfreq(frames) * sigma) ** 2))
  return smooth / np.sqrt(variance)


def _episodes(rng: np.random.Generator, frames: int, gap: float, length: float,
              first: float | None = None) -> list[tuple[float, float]]:
  """Non-overlapping (start, end) frame intervals of about `length` s every `gap` s."""
  out = []
  t = (rng.uniform(0.1, 0.8) * gap if first is None else first) * FPS
  while t < frames:
    d = length * rng.uniform(0.75, 1.3) * FPS
    out.append((t, t + d))
    t += d + gap * rng.uniform(0.6, 1.4) * FPS
  return out


def _activation(frames: int, episodes: list[tuple[float, float]], ramp: float) -> np.ndarray:
  """(frames,) in [0, 1]: 1 inside each episode, quintic ramps of `ramp` s at its ends."""
  t = np.arange(frames, dtype=np.float64)
  w = np.zeros(frames)
  for start, end in episodes:
    r = min(ramp * FPS, (end - start) / 2)
    w = np.maximum(w, _quintic((t - start) / r) * _quintic((end - t) / r))
  return w


def _schedule(rng: np.random.Generator, frames: int, count: int, hold: float, fade: float) -> np.ndarray:
  """(frames, count) convex weights: one of `count` choices held ~`hold` s, cross-faded."""
  onehot = np.zeros((frames, count))
  t, current = 0, int(rng.integers(count))
  while t < frames:
    d = max(1, int(hold * rng.uniform(0.6, 1.4) * FPS))
    onehot[t:t + d, current] = 1
    t += d
    current = (current + int(rng.integers(1, count))) % count if count > 1 else current
  return gaussian_filter1d(onehot, fade * FPS / 2.5, axis=0, mode="nearest")


# ---------------------------------------------------------------- building blocks


def _constant(frames: int, *poses: Pose) -> np.ndarray:
  angles = np.zeros((frames, NUM_JOINTS, 3))
  for p in poses:
    for j, v in p.items():
      angles[:, j] = v
  return angles


def _blend(angles: np.ndarray, target: Pose, weight: np.ndarray | float) -> None:
  """In place: moves the joints of `target` towards it by `weight` (frames,) in [0, 1]."""
  w = np.broadcast_to(np.asarray(weight, np.float64), angles.shape[:1])[:, None]
  for j, v in target.items():
    angles[:, j] += w * (v - angles[:, j])


def _mix(angles: np.ndarray, poses: list[Pose], weights: np.ndarray) -> None:
  """In place: convex combination (weights (frames, K)) of partial poses; absent joints keep their value."""
  for j in set().union(*poses):
    angles[:, j] = sum(weights[:, k, None] * p.get(j, angles[:, j]) for k, p in enumerate(poses))


def _add(angles: np.ndarray, joint: str, channel: int, values: np.ndarray | float) -> None:
  for name in ("l_" + _PAIRS[joint], "r_" + _PAIRS[joint]) if joint in _PAIRS else (joint,):
    angles[:, JOINTS[name], channel] += values


# Sagittal angles (hip flexion, knee flexion, ankle dorsiflexion; degrees) over one gait
# cycle from heel strike, after the normative curves of clinical gait analysis.
_GAIT_TABLE = np.array([
    (20, 3, 0), (17, 10, -7), (11, 12, 1), (4, 12, 8), (-4, 12, 12),
    (-10, 24, 8), (-2, 40, -12), (15, 60, -4), (26, 45, 2), (27, 16, 2), (20, 3, 0)], np.float64)
_GAIT = CubicSpline(np.linspace(0, 1, len(_GAIT_TABLE)), _GAIT_TABLE, axis=0, bc_type="periodic")


def gait(phase: np.ndarray, amplitude: np.ndarray, arm_swing: float = 1.0) -> np.ndarray:
  """Walking-cycle angle offsets (frames, 32, 3) for gait `phase` (cycles, left heel strike at 0).

  Legs follow `_GAIT_TABLE` (the right leg half a cycle later), arms swing opposite to
  the legs, the pelvis and the chest counter-rotate; everything scales with `amplitude`
  (frames,), so slow walking takes small steps.
  """
  out = np.zeros(phase.shape + (NUM_JOINTS, 3))
  for side, offset in (("l", 0.0), ("r", 0.5)):
    legs = _GAIT((phase + offset) % 1.0)
    for k, joint in enumerate(("_hip", "_knee", "_ankle")):
      out[:, JOINTS[side + joint], 0] = legs[:, k]
    # The arm swings forwards while the same-side leg swings back.
    swing = np.cos(2 * np.pi * (phase + offset - 0.05))
    out[:, JOINTS[side + "_shoulder"], 0] = -16 * arm_swing * swing
    out[:, JOINTS[side + "_elbow"], 0] = 9 * arm_swing * (1 - swing) / 2
  left_forward = np.cos(2 * np.pi * phase)
  out[:, 0, 2] = -5 * left_forward
  out[:, 12, 2] = 7 * left_forward
  out[:, 0, 1] = 2.5 * np.sin(2 * np.pi * phase)
  out[:, 11, 0] = 3  # slight forward lean when walking
  return out * amplitude[:, None, None]


def _locomotion(rng: np.random.Generator, floor: np.ndarray, heading: np.ndarray,
                style: Style) -> tuple[np.ndarray, np.ndarray]:
  """Gait offsets (frames, 32, 3) matching the floor speed and turning rate of a path, and
  the gait amplitude (frames,)."""
  speed = np.linalg.norm(np.gradient(floor, axis=0), axis=-1) * FPS
  turning = np.abs(np.gradient(np.unwrap(heading))) * FPS
  drive = speed + 0.2 * turning  # turning on the spot takes small steps too
  amplitude = np.clip(drive / style.walk_speed, 0, 1.2) ** 0.6
  cycles_per_s = drive / (style.stride * np.maximum(amplitude, 0.05))
  phase = rng.random() + np.cumsum(cycles_per_s) / FPS
  return gait(phase, amplitude, style.arm_swing), amplitude


def _loop_path(rng: np.random.Generator, speed: np.ndarray, radii: tuple[float, float],
               wobble: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """Walks around a rotated ellipse at `speed` (frames,) m/s: floor (frames, 2), heading (frames,)."""
  theta = np.linspace(0, 2 * np.pi, 721)
  a, b = radii
  radius = 1 + wobble * np.sin(3 * theta + rng.uniform(0, 2 * np.pi))
  pts = np.stack([a * np.cos(theta) * radius, b * np.sin(theta) * radius], -1)
  rot = rng.uniform(-0.4, 0.4)
  pts = pts @ np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]])
  if rng.random() < 0.5:
    pts = pts[::-1]
  arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=-1))])
  s = (rng.uniform(0, arc[-1]) + np.cumsum(speed) / FPS) % arc[-1]
  floor = np.stack([np.interp(s, arc, pts[:, 0]), np.interp(s, arc, pts[:, 1])], -1)
  tangent = np.gradient(floor, axis=0)
  tangent[np.linalg.norm(tangent, axis=-1) < 1e-9] = (0.0, 1e-9)
  direction = np.arctan2(-tangent[:, 0], tangent[:, 1])
  # Rotation about z by h maps the body forward +y to (-sin h, cos h).
  return floor, np.unwrap(direction)


def _wander(rng: np.random.Generator, frames: int, *, moves_every: float, radius: float = 0.5,
            turns_every: float = 6.0, max_turn: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
  """Mostly standing: occasional short relocations and turns. floor (frames, 2), heading (frames,)."""
  t = np.arange(frames, dtype=np.float64)
  start = rng.uniform(-0.3, 0.3, 2)
  floor = np.tile(start, (frames, 1))
  for s, e in _episodes(rng, frames, moves_every, 1.2):
    target = rng.uniform(-radius, radius, 2)
    floor += (target - floor[min(int(s), frames - 1)]) * _quintic((t - s) / (e - s))[:, None]
  heading = np.full(frames, rng.uniform(-np.pi, np.pi))
  for s, e in _episodes(rng, frames, turns_every, 1.0):
    heading += np.deg2rad(rng.uniform(-max_turn, max_turn)) * _quintic((t - s) / (e - s))
  return floor, heading


def _weight_shift(angles: np.ndarray, shift: np.ndarray) -> None:
  """Moves the pelvis sideways over the feet; `shift` (frames,) in about [-1, 1] (positive: left)."""
  _add(angles, "l_hip", 1, -4 * shift)
  _add(angles, "r_hip", 1, 4 * shift)
  _add(angles, "root", 1, -2 * shift)
  _add(angles, "r_knee", 0, 6 * np.clip(shift, 0, None))  # the unloaded knee relaxes
  _add(angles, "l_knee", 0, 6 * np.clip(-shift, 0, None))


# ---------------------------------------------------------------- poses

STAND = pose(hips=(2, 3, 0), knees=(4, 0, 0), ankles=(2, 0, 0), up_back=(2, 0, 0), neck=(3, 0, 0),
             shoulders=(2, 8, 0), elbows=(12, 0, 0))
CHAIR = pose(hips=(88, 8, 3), knees=(88, 0, 0), ankles=(0, 0, 0), low_back=(-4, 0, 0), up_back=(4, 0, 0),
             neck=(8, 0, 0), shoulders=(15, 10, 0), elbows=(55, 0, 0))
LOW_SEAT = pose(hips=(112, 12, 5), knees=(135, 0, 0), ankles=(12, 0, 0), low_back=(8, 0, 0),
                up_back=(8, 0, 0), neck=(4, 0, 0), shoulders=(35, 12, 0), elbows=(45, 0, 0))


def _other(side: str) -> str:
  return "L" if side == "R" else "R"


# Arm poses, solved once for a 1.70 m body (wrist and elbow placed at the target spots).
def _arm(side: str, shoulder, elbow) -> Pose:
  return pose(side, arm_shoulder=shoulder, arm_elbow=elbow)


def _mouth(side: str) -> Pose:
  return {**_arm(side, (49, 15, -19), (140, 0, -15)), **pose(side, arm_wrist=(25, 0, 0))}


def _ear(side: str) -> Pose:
  return {**_arm(side, (42, 44, 0), (165, 0, 0)), **pose(neck=(6, 7 if side == "R" else -7, 0))}


ARMS_DOWN = pose(shoulders=(2, 8, 0), elbows=(12, 0, 0))
ARMS_CROSSED = {**_arm("R", (21, 14, -40), (100, 0, -38)), **_arm("L", (26, 14, -40), (100, 0, -38))}
HANDS_ON_HIPS = pose(shoulders=(-33, 23, -36), elbows=(81, 0, -32))
HANDS_BEHIND = pose(shoulders=(-25, -9, -34), elbows=(46, 0, -31))
HANDS_CLASPED = pose(shoulders=(6, 12, -29), elbows=(55, 0, -29))
CAMERA_AT_FACE = pose(shoulders=(68, 33, 6), elbows=(126, 0, -11), neck=(-4, 0, 0))
CAMERA_AT_CHEST = pose(shoulders=(20, 16, -15), elbows=(112, 0, -15), neck=(12, 0, 0))
GESTURE = pose(shoulders=(25, 14, -12), elbows=(80, 0, -10))


def _chin(side: str) -> Pose:
  """Hand at the chin, the other forearm across the belly supporting its elbow."""
  return {**_arm(side, (35, 15, -20), (137, 0, -18)), **_arm(_other(side), (16, 13, -38), (89, 0, -38))}


def _wave(side: str) -> Pose:
  return _arm(side, (112, -10, 76), (65, 0, -12))


def _handshake(side: str) -> Pose:
  return {**_arm(side, (42, 15, -3), (41, 0, -4)), **pose(up_back=(12, 0, 0), neck=(10, 0, 0))}


def _point(side: str, rng: np.random.Generator) -> Pose:
  out = _arm(side, (rng.uniform(65, 95), 0, rng.uniform(-10, 60)), (8, 0, 0))
  out.update(pose(up_back=(0, 0, rng.uniform(-15, 15)), neck=(0, 0, rng.uniform(0, 25) * (-1 if side == "R" else 1))))
  return out


# ---------------------------------------------------------------- actions


def _standing(rng: np.random.Generator, frames: int, style: Style, *, moves_every: float = 8.0,
              radius: float = 0.5, turns_every: float = 6.0, sway: float = 0.6) -> Motion:
  """Standing with weight shifts, occasional steps and turns; the base of most actions."""
  floor, heading = _wander(rng, frames, moves_every=moves_every, radius=radius, turns_every=turns_every)
  steps, amplitude = _locomotion(rng, floor, heading, style)
  angles = _constant(frames, STAND) + steps
  _weight_shift(angles, sway * _noise(rng, frames, seconds=2.5 / style.tempo))
  _add(angles, "neck", 2, 15 * _noise(rng, frames, seconds=2.0))
  return Motion(angles, heading, floor, amplitude)


def _seated(rng: np.random.Generator, frames: int, style: Style) -> Motion:
  floor = np.tile(rng.uniform(-0.3, 0.3, 2), (frames, 1))
  heading = np.full(frames, rng.uniform(-np.pi, np.pi))
  angles = _constant(frames, STAND, CHAIR)
  _add(angles, "neck", 2, 20 * _noise(rng, frames, seconds=2.0))
  return Motion(angles, heading, floor, np.zeros(frames))


def _walks(rng, frames, style, pace, radii, wobble=0.0) -> Motion:
  floor, heading = _loop_path(rng, style.walk_speed * pace, radii, wobble)
  steps, amplitude = _locomotion(rng, floor, heading, style)
  angles = _constant(frames, STAND) + steps
  _add(angles, "neck", 2, 10 * _noise(rng, frames, seconds=2.0))
  return Motion(angles, heading, floor, amplitude)


def _walking(rng, frames, style):
  pace = 1 + 0.06 * _noise(rng, frames, seconds=2.0)
  return _walks(rng, frames, style, pace, (rng.uniform(1.1, 1.4), rng.uniform(0.8, 1.05)))


def _walk_dog(rng, frames, style):
  stops = _activation(frames, _episodes(rng, frames, 5.0, 1.0), 0.4)
  pace = np.clip(0.75 + 0.3 * _noise(rng, frames, seconds=1.0), 0.2, 1.3) * (1 - 0.9 * stops)
  m = _walks(rng, frames, style, pace, (rng.uniform(1.0, 1.3), rng.uniform(0.7, 0.95)), wobble=0.12)
  leash = _arm(style.side, (28, 6, 0), (28, 0, 0))
  _blend(m.angles, leash, 0.85)
  _add(m.angles, style.side.lower() + "_shoulder", 0, 8 * _noise(rng, frames, seconds=0.3))  # tugs
  _add(m.angles, "low_back", 0, 5 + 3 * _noise(rng, frames, seconds=1.5))
  _add(m.angles, "low_back", 1, 4 * _noise(rng, frames, seconds=2.0))
  _add(m.angles, "neck", 0, 10)  # watching the dog
  return m


def _walk_together(rng, frames, style):
  m = _walks(rng, frames, style, 0.75 + 0.04 * _noise(rng, frames), (rng.uniform(1.1, 1.4), rng.uniform(0.85, 1.05)))
  partner = rng.choice([-1.0, 1.0])  # partner on the left (+) or right (-)
  talk = _activation(frames, _episodes(rng, frames, 2.5, 2.5), 0.5)
  _add(m.angles, "neck", 2, partner * (10 + 25 * talk))
  _add(m.angles, "up_back", 2, partner * 6 * talk)
  near = "l_shoulder" if partner > 0 else "r_shoulder"
  m.angles[:, JOINTS[near], 0] *= 0.4  # the arm next to the partner hardly swings
  return m


def _sitting(rng, frames, style):
  m = _seated(rng, frames, style)
  # Elbows towards the knees, the head raised to keep looking ahead.
  lean_forward = pose(low_back=(16, 0, 0), up_back=(12, 0, 0), neck=(-14, 0, 0), shoulders=(45, 10, -10),
                      elbows=(70, 0, 0))
  lean_back = {**pose(low_back=(-10, 0, 0), up_back=(-4, 0, 0), neck=(12, 0, 0)), **ARMS_CROSSED}
  turned = pose(up_back=(4, 0, rng.uniform(-30, 30)), neck=(4, 0, rng.uniform(-40, 40)))
  upper = [pose(), lean_forward, lean_back, _chin(style.side), turned, {**GESTURE, **pose(up_back=(6, 0, 0))}]
  _mix(m.angles, upper, _schedule(rng, frames, len(upper), 3.5 / style.tempo, 1.2))
  stretch = _activation(frames, _episodes(rng, frames, 6.0, 3.0), 0.8)
  _blend(m.angles, pose(knees=(45, 0, 0), ankles=(-10, 0, 0), hips=(82, 6, 3)), 0.8 * stretch)
  return m


def _sitting_down(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=1e9, turns_every=1e9, sway=0.3)
  seat = _activation(frames, _episodes(rng, frames, 2.5 / style.tempo, 6.0 / style.tempo,
                                       first=rng.uniform(0.5, 1.5)), 1.3)
  _blend(m.angles, LOW_SEAT, seat)
  # People lean forward over their feet while lowering and rising.
  transit = 4 * seat * (1 - seat)
  _add(m.angles, "low_back", 0, 28 * transit)
  _add(m.angles, "shoulders", 0, 30 * transit)
  upper = [pose(), pose(low_back=(-14, 0, 0), shoulders=(-30, 20, 0), elbows=(10, 0, 0)),
           {**pose(low_back=(18, 0, 0)), **pose(shoulders=(55, 5, -20), elbows=(60, 0, -20))}]
  weights = _schedule(rng, frames, len(upper), 3.0, 1.0)
  weights[:, 1:] *= (seat**4)[:, None]
  weights[:, 0] = 1 - weights[:, 1:].sum(axis=1)
  _mix(m.angles, upper, weights)
  return m


def _eating(rng, frames, style):
  m = _seated(rng, frames, style)
  _blend(m.angles, pose(shoulders=(30, 8, -12), elbows=(80, 0, -8), up_back=(8, 0, 0)), 1.0)  # at a table
  bites = _episodes(rng, frames, 1.6 / style.tempo, 1.3 / style.tempo, first=rng.uniform(0.0, 1.0))
  dominant = rng.random(len(bites)) < 0.75
  for hand, mine in ((style.side, dominant), (_other(style.side), ~dominant)):
    w = _activation(frames, [e for e, m in zip(bites, mine) if m], 0.45)
    _blend(m.angles, _mouth(hand), w)
    _add(m.angles, "neck", 0, 10 * w)
  return m


def _smoking(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=9.0)
  # Cigarette hand in front of the chest, the other forearm across the belly.
  holding = {**_arm(style.side, (6, 11, -10), (113, 0, -10)), **_arm(_other(style.side), (16, 13, -38), (89, 0, -38))}
  arm_down = _activation(frames, _episodes(rng, frames, 6.0, 3.0), 0.7)
  _blend(m.angles, holding, 1 - arm_down)
  puffs = _activation(frames, _episodes(rng, frames, 4.0 / style.tempo, 1.6, first=rng.uniform(0.0, 1.5)), 0.45)
  _blend(m.angles, _mouth(style.side), puffs)
  return m


def _phoning(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=3.5, radius=0.8, turns_every=3.5)
  lowered = _activation(frames, _episodes(rng, frames, 8.0, 2.0), 0.6)
  off = _other(style.side)
  other = [pose(), _arm(off, (-33, 23, -36), (81, 0, -32)), _arm(off, (25, 14, -12), (80, 0, -10))]
  _mix(m.angles, other, _schedule(rng, frames, len(other), 3.0, 0.8))
  _blend(m.angles, _ear(style.side), 1 - lowered)
  _blend(m.angles, _arm(style.side, (20, 16, -15), (100, 0, -15)), lowered)
  return m


def _photo(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=3.0, radius=0.8, turns_every=3.0)
  _blend(m.angles, CAMERA_AT_CHEST, 1.0)
  shots = _activation(frames, _episodes(rng, frames, 1.5, 2.5, first=rng.uniform(0.0, 0.4)), 0.4)
  _blend(m.angles, CAMERA_AT_FACE, shots)
  crouch = _activation(frames, _episodes(rng, frames, 7.0, 3.0), 0.8) * rng.uniform(0.4, 1.0)
  _blend(m.angles, pose(hips=(55, 8, 0), knees=(75, 0, 0), ankles=(22, 0, 0), low_back=(12, 0, 0)), crouch)
  return m


def _greeting(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=4.0, radius=0.6)
  episodes = _episodes(rng, frames, 1.5, 2.5, first=rng.uniform(0.0, 1.0))
  wave = _activation(frames, episodes[0::2], 0.45)
  shake = _activation(frames, episodes[1::2], 0.45)
  _blend(m.angles, _wave(style.side), wave)
  elbow = JOINTS[style.side.lower() + "_elbow"]
  m.angles[:, elbow, 2] += 28 * wave * np.sin(2 * np.pi * 2.2 * np.arange(frames) / FPS)
  _blend(m.angles, _handshake(style.side), shake)
  m.angles[:, elbow, 0] += 8 * shake * np.sin(2 * np.pi * 1.8 * np.arange(frames) / FPS)
  return m


def _directions(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=5.0, radius=0.7, turns_every=4.0)
  gestures = [pose(), GESTURE, _point(style.side, rng), _point(style.side, rng), HANDS_CLASPED]
  _mix(m.angles, gestures, _schedule(rng, frames, len(gestures), 2.2 / style.tempo, 0.8))
  _add(m.angles, "elbows", 0, 10 * _noise(rng, frames, seconds=0.4))
  return m


def _discussion(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=6.0, turns_every=5.0, sway=0.9)
  talking = [GESTURE, ARMS_CROSSED, HANDS_ON_HIPS, _chin(style.side), ARMS_DOWN, _point(style.side, rng)]
  weights = _schedule(rng, frames, len(talking), 3.0 / style.tempo, 0.9)
  _mix(m.angles, talking, weights)
  hands = weights[:, 0] + 0.5 * weights[:, 5]
  _add(m.angles, "shoulders", 0, 10 * hands * _noise(rng, frames, seconds=0.35))
  _add(m.angles, "elbows", 0, 18 * hands * _noise(rng, frames, seconds=0.3))
  _add(m.angles, "neck", 0, 6 * _noise(rng, frames, seconds=0.5))
  return m


def _purchases(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=3.0, radius=0.8, turns_every=3.5)
  carry = _activation(frames, _episodes(rng, frames, 4.0, 3.0), 0.5)
  _blend(m.angles, _arm(style.side, (6, 11, -10), (113, 0, -10)), carry)
  bend = _activation(frames, _episodes(rng, frames, 2.5, 2.0, first=rng.uniform(0.0, 1.5)), 0.6)
  depth = rng.uniform(0.6, 1.0)
  reach = {**pose(root=(30, 0, 0), hips=(38, 6, 0), knees=(25, 0, 0), ankles=(14, 0, 0), low_back=(22, 0, 0),
                  up_back=(12, 0, 0), neck=(-10, 0, 0)), **_arm(style.side, (60, 5, -5), (10, 0, 0))}
  _blend(m.angles, reach, bend * depth)
  return m


def _waiting(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=12.0, turns_every=8.0, sway=0.4)
  period = rng.uniform(4.0, 8.0)
  _weight_shift(m.angles, 0.8 * np.sin(2 * np.pi * np.arange(frames) / FPS / period + rng.uniform(0, 6.3)))
  arms = [ARMS_DOWN, HANDS_BEHIND, ARMS_CROSSED, HANDS_CLASPED, HANDS_ON_HIPS]
  _mix(m.angles, arms, _schedule(rng, frames, len(arms), 5.0, 1.2))
  _add(m.angles, "neck", 2, 20 * _noise(rng, frames, seconds=3.0))
  return m


def _posing(rng, frames, style):
  m = _standing(rng, frames, style, moves_every=1e9, turns_every=5.0, sway=0.2)
  side, leg = style.side, style.side.lower()
  poses = [
      {**HANDS_ON_HIPS, **pose(hips=(2, 12, 5))},
      pose(shoulders=(155, 0, 70), elbows=(10, 0, 0), neck=(-10, 0, 0)),  # arms up in a V
      {**_arm(side, (170, -5, 0), (5, 0, 0)), **pose(side, off_shoulder=(0, 40, 0), off_elbow=(10, 0, 0))},
      pose(**{leg + "_hip": (40, 5, 0), leg + "_knee": (50, 0, 0)}, shoulders=(0, 85, 0), elbows=(5, 0, 0)),
      {**ARMS_CROSSED, **pose(up_back=(-5, 0, 20))},
      {**_chin(side), **pose(up_back=(10, 0, 0), neck=(12, 0, 0))},
      pose(shoulders=(88, 5, 0), elbows=(5, 0, 0), low_back=(-5, 0, 0)),
  ]
  _mix(m.angles, poses, _schedule(rng, frames, len(poses), 3.0 / style.tempo, 0.8))
  return m


# ---------------------------------------------------------------- HumanEva-I actions

GUARD = pose(shoulders=(30, 28, -35), elbows=(125, 0, -25), low_back=(8, 0, 0), neck=(-6, 0, 0))
CATCH = pose(shoulders=(48, 12, -20), elbows=(65, 0, -20), up_back=(6, 0, 0))


def _jog(rng, frames, style):
  """Running laps: twice the walking speed, higher knees, forearms carried at ~90 degrees."""
  pace = 2.1 + 0.08 * _noise(rng, frames, seconds=2.0)
  floor, heading = _loop_path(rng, style.walk_speed * pace, (rng.uniform(1.1, 1.4), rng.uniform(0.8, 1.05)))
  steps, amplitude = _locomotion(rng, floor, heading, style)
  legs = [JOINTS[j] for j in ("l_hip", "r_hip", "l_knee", "r_knee")]
  steps[:, legs, 0] *= 1.35
  steps[:, [JOINTS["l_shoulder"], JOINTS["r_shoulder"]], 0] *= 1.6
  angles = _constant(frames, STAND, pose(elbows=(85, 0, -10), low_back=(6, 0, 0))) + steps
  _add(angles, "neck", 2, 6 * _noise(rng, frames, seconds=2.0))
  return Motion(angles, heading, floor, amplitude)


def _box(rng, frames, style):
  """Shadow boxing: a guard, knees bent, quick straight punches of either hand, light footwork."""
  m = _standing(rng, frames, style, moves_every=2.5, radius=0.3, turns_every=3.0, sway=1.0)
  _blend(m.angles, GUARD, 1.0)
  _add(m.angles, "hips", 0, 14)
  _add(m.angles, "knees", 0, 22)
  _add(m.angles, "ankles", 0, 8)
  punches = _episodes(rng, frames, 0.5 / style.tempo, 0.3 / style.tempo, first=rng.uniform(0.0, 0.5))
  lead = rng.random(len(punches)) < 0.5
  for hand, mine in (("R", lead), ("L", ~lead)):
    w = _activation(frames, [e for e, m_ in zip(punches, mine) if m_], 0.1)
    _blend(m.angles, _arm(hand, (88, 8, -5), (8, 0, 0)), w)
    _add(m.angles, "up_back", 2, (-14 if hand == "R" else 14) * w)  # the shoulder follows the fist
  return m


def _gestures(rng, frames, style):
  """Standing and gesturing: waving, beckoning, pointing, arms spread, arms down."""
  m = _standing(rng, frames, style, moves_every=10.0, turns_every=8.0, sway=0.4)
  side = style.side
  gestures = [ARMS_DOWN, _wave(side), _arm(side, (55, 5, 0), (95, 0, 0)), _point(side, rng),
              pose(shoulders=(70, 55, 0), elbows=(15, 0, 0))]
  weights = _schedule(rng, frames, len(gestures), 2.0 / style.tempo, 0.6)
  _mix(m.angles, gestures, weights)
  elbow = JOINTS[side.lower() + "_elbow"]
  t = np.arange(frames) / FPS
  m.angles[:, elbow, 2] += 25 * weights[:, 1] * np.sin(2 * np.pi * 2.0 * t)  # waving
  m.angles[:, elbow, 0] += 30 * weights[:, 2] * np.sin(2 * np.pi * 1.5 * t)  # come here
  return m


def _throw_catch(rng, frames, style):
  """Catching a ball with both hands at the chest, then an overhand throw, facing a partner."""
  m = _standing(rng, frames, style, moves_every=6.0, radius=0.3, turns_every=1e9, sway=0.5)
  side = style.side
  cycles = _episodes(rng, frames, 1.2 / style.tempo, 1.6 / style.tempo, first=rng.uniform(0.0, 1.0))
  catch = _activation(frames, [(s, s + 0.55 * (e - s)) for s, e in cycles], 0.25)
  windup = _activation(frames, [(s + 0.5 * (e - s), s + 0.8 * (e - s)) for s, e in cycles], 0.12)
  release = _activation(frames, [(s + 0.78 * (e - s), e) for s, e in cycles], 0.1)
  _blend(m.angles, CATCH, catch)
  _blend(m.angles, {**_arm(side, (150, 35, 40), (100, 0, 0)), **pose(up_back=(-6, 0, 0))}, windup)
  _blend(m.angles, {**_arm(side, (75, 10, -10), (20, 0, 0)), **pose(up_back=(14, 0, 0))}, release)
  _add(m.angles, "up_back", 2, (20 if side == "R" else -20) * (windup - release))
  return m


ACTION_MOTIONS: dict[str, Callable[[np.random.Generator, int, Style], Motion]] = {
    "Directions": _directions, "Discussion": _discussion, "Eating": _eating, "Greeting": _greeting,
    "Phoning": _phoning, "Photo": _photo, "Posing": _posing, "Purchases": _purchases, "Sitting": _sitting,
    "SittingDown": _sitting_down, "Smoking": _smoking, "Waiting": _waiting, "WalkDog": _walk_dog,
    "Walking": _walking, "WalkTogether": _walk_together,
    # HumanEva-I
    "Jog": _jog, "Box": _box, "Gestures": _gestures, "ThrowCatch": _throw_catch,
}


def resample(motion: Motion, frames: int, fps: float) -> Motion:
  """The motion (sampled at `FPS`) at another frame rate: its first `frames` frames at `fps`,
  by linear interpolation (all channels are smooth and unwrapped).

  Raises:
    ValueError: the motion is shorter than `(frames - 1) * FPS / fps + 1` frames.
  """
  times = np.arange(frames) * FPS / fps
  source = np.arange(len(motion.heading), dtype=np.float64)
  if times[-1] > source[-1]:
    raise ValueError(f"a {len(source)}-frame motion cannot give {frames} frames at {fps} fps")

  def interp(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    columns = [np.interp(times, source, flat[:, k]) for k in range(flat.shape[1])]
    return np.stack(columns, axis=-1).reshape((frames,) + x.shape[1:])

  return Motion(*(interp(np.asarray(field, np.float64)) for field in motion))


def action_motion(action: str, rng: np.random.Generator, frames: int, style: Style) -> Motion:
  """One sequence of `action` for a subject of `style`, with its posture and wobble added."""
  motion = ACTION_MOTIONS[action](rng, frames, style)
  angles = motion.angles + style.posture
  wobble = style.noise * _noise(rng, frames, (NUM_JOINTS, 3), seconds=0.6)
  wobble[:, [4, 5, 9, 10, 15, 20, 21, 22, 23, 28, 29, 30, 31]] = 0  # bones without their own motion
  angles += wobble
  # Feet rest flat on the floor unless walking: the ankle cancels the foot's pitch, which
  # is (sagittal approximation) -trunk pitch + hip flexion - knee flexion + dorsiflexion.
  standing = 1 - np.clip(motion.walking, 0, 1)
  for hip, knee, ankle in ((1, 2, 3), (6, 7, 8)):
    pitch = -angles[:, 0, 0] + angles[:, hip, 0] - angles[:, knee, 0] + angles[:, ankle, 0]
    angles[:, ankle, 0] -= standing * pitch
  return motion._replace(angles=angles)
