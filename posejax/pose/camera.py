"""Camera geometry: quaternions, world <-> camera transforms, projection, screen normalisation.

Conventions (reference V2): quaternions are (w, x, y, z), unit length, and
`R` rotates camera space into world space; camera space has x right, y down, z forward.
The projection functions take an `xp` module (NumPy or `jax.numpy`) so that the same
code prepares data in NumPy and back-projects differentiably inside training.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

Array = Any


def qrot(q: Array, v: Array, xp: ModuleType = np) -> Array:
  """Rotates vectors `v` (..., 3) by unit quaternions `q` (..., 4); shapes broadcast."""
  u = q[..., 1:]
  w = q[..., :1]
  u = xp.broadcast_to(u, v.shape)
  w = xp.broadcast_to(w, v.shape[:-1] + (1,))
  a = xp.cross(u, v)
  b = xp.cross(u, a)
  return v + 2 * (w * a + b)


def qinverse(q: Array, xp: ModuleType = np) -> Array:
  """Conjugate (= inverse for unit quaternions) of (..., 4) quaternions."""
  return xp.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def world_to_camera(x_world: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
  """(..., 3) world points (metres) -> camera space: `rotate(conj(R), X - t)`, float32."""
  q = qinverse(np.asarray(orientation, np.float32))
  return qrot(q, np.asarray(x_world, np.float32) - np.asarray(translation, np.float32)).astype(np.float32)


def camera_to_world(x_camera: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
  """(..., 3) camera-space points -> world: `rotate(R, X) + t`, float32."""
  q = np.asarray(orientation, np.float32)
  return (qrot(q, np.asarray(x_camera, np.float32)) + np.asarray(translation, np.float32)).astype(np.float32)


def normalize_screen_coordinates(x: Array, w: float, h: float) -> Array:
  """Pixels (..., 2) -> [-1, 1] in x and [-h/w, h/w] in y (both axes divided by the width)."""
  if x.shape[-1] != 2:
    raise ValueError(f"expected (..., 2) pixel coordinates, got shape {x.shape}")
  # The offset stays float64 like the reference (1002/1000 is not exact in float32).
  out = x / w * 2 - np.asarray([1, h / w])
  return out.astype(x.dtype) if isinstance(x, np.ndarray) else out


def image_coordinates(x: Array, w: float, h: float) -> Array:
  """Inverse of `normalize_screen_coordinates`."""
  if x.shape[-1] != 2:
    raise ValueError(f"expected (..., 2) normalized coordinates, got shape {x.shape}")
  out = (x + np.asarray([1, h / w])) * w / 2
  return out.astype(x.dtype) if isinstance(x, np.ndarray) else out


def _split_intrinsic(intrinsic: Array, ndim: int):
  """Broadcasts (N, 9) camera vectors over the middle axes of an (N, ..., 3) array."""
  params = intrinsic.reshape(intrinsic.shape[:1] + (1,) * (ndim - 2) + intrinsic.shape[-1:])
  return params[..., :2], params[..., 2:4], params[..., 4:7], params[..., 7:9]


def project_to_2d(x: Array, intrinsic: Array, xp: ModuleType = np) -> Array:
  """Human3.6M's non-linear projection (radial + its own tangential term), reference V2.4.

  Args:
    x: (N, ..., 3) camera-space points.
    intrinsic: (N, 9) normalized `[fx, fy, cx, cy, k1, k2, k3, p1, p2]`.
    xp: `numpy` or `jax.numpy`.

  Returns:
    (N, ..., 2) normalized screen coordinates.
  """
  f, c, k, p = _split_intrinsic(intrinsic, x.ndim)
  xy = xp.clip(x[..., :2] / x[..., 2:], -1, 1)
  r2 = xp.sum(xy**2, axis=-1, keepdims=True)
  radial = 1 + xp.sum(k * xp.concatenate([r2, r2**2, r2**3], axis=-1), axis=-1, keepdims=True)
  tangential = xp.sum(p * xy, axis=-1, keepdims=True)
  xy_distorted = xy * (radial + tangential) + p * r2
  return f * xy_distorted + c


def project_to_2d_linear(x: Array, intrinsic: Array, xp: ModuleType = np) -> Array:
  """Pinhole projection without distortion: `f * clip(X/Z) + c`; shapes as `project_to_2d`."""
  f, c, _, _ = _split_intrinsic(intrinsic, x.ndim)
  return f * xp.clip(x[..., :2] / x[..., 2:], -1, 1) + c
