"""Pose losses and evaluation metrics (reference V9), pure jax.numpy, jit/vmap friendly.

Every function takes `pred` and `target` of identical shape `(..., J, D)` (D = 3,
or 2 for reprojection) and averages Euclidean distances over the last axis. The
`*_per_frame` variants average over joints only and return `(...,)`, so callers
can mask padded frames and weight frames when accumulating over batches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _euclidean(x: jax.Array) -> jax.Array:
  """||x||_2 over the last axis with gradient 0 at 0 (as torch.norm), not NaN.

  The training target's root joint is exactly 0, and masked entries can match
  exactly, so a plain sqrt would poison gradients.
  """
  sq = jnp.sum(jnp.square(x), axis=-1)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def mpjpe_per_frame(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean per-joint position error of each frame: (..., J, D) -> (...,)."""
  return jnp.mean(_euclidean(pred - target), axis=-1)


def mpjpe(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Protocol #1: mean over all leading axes and joints of ||pred - target|| (reference V9.1)."""
  return jnp.mean(_euclidean(pred - target))


def weighted_mpjpe(pred: jax.Array, target: jax.Array, w: jax.Array) -> jax.Array:
  """mean(w * ||pred - target||) (reference V9.2), not normalised by sum(w).

  Args:
    pred, target: (..., J, D).
    w: broadcastable (NumPy rules) against the norm array (..., J), e.g. (B, T, 1)
      for the trajectory loss with w = 1 / depth.
  """
  return jnp.mean(w * _euclidean(pred - target))


def _procrustes_align(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Aligns each frame of pred to target by similarity transform (reference V9.3).

  Args:
    pred, target: (..., J, 3).

  Returns:
    (..., J, 3): a * pred R + t per frame, reflections excluded.
  """
  mu_x = jnp.mean(target, axis=-2, keepdims=True)
  mu_y = jnp.mean(pred, axis=-2, keepdims=True)
  x0 = target - mu_x
  y0 = pred - mu_y
  norm_x = jnp.sqrt(jnp.sum(jnp.square(x0), axis=(-2, -1), keepdims=True))
  norm_y = jnp.sqrt(jnp.sum(jnp.square(y0), axis=(-2, -1), keepdims=True))
  x0 = x0 / norm_x
  y0 = y0 / norm_y

  h = jnp.swapaxes(x0, -1, -2) @ y0
  u, s, vt = jnp.linalg.svd(h)
  v = jnp.swapaxes(vt, -1, -2)
  ut = jnp.swapaxes(u, -1, -2)
  # A rotation must have det +1: flip the last singular direction otherwise.
  sign_det = jnp.sign(jnp.linalg.det(v @ ut))
  v = v.at[..., :, -1].multiply(sign_det[..., None])
  s = s.at[..., -1].multiply(sign_det)
  r = v @ ut

  a = jnp.sum(s, axis=-1)[..., None, None] * norm_x / norm_y
  t = mu_x - a * (mu_y @ r)
  return a * (pred @ r) + t


def p_mpjpe_per_frame(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Protocol #2 per frame: MPJPE after Procrustes alignment; (..., J, 3) -> (...,)."""
  return mpjpe_per_frame(_procrustes_align(pred, target), target)


def p_mpjpe(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Protocol #2: P-MPJPE averaged over all frames and joints (reference V9.3)."""
  return jnp.mean(p_mpjpe_per_frame(pred, target))


def _scale_to_target(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Optimal least-squares scale of each frame's prediction (reference V9.4); (..., J, 3)."""
  norm_pred = jnp.mean(jnp.sum(jnp.square(pred), axis=-1, keepdims=True), axis=-2, keepdims=True)
  norm_target = jnp.mean(jnp.sum(target * pred, axis=-1, keepdims=True), axis=-2, keepdims=True)
  return (norm_target / norm_pred) * pred


def n_mpjpe_per_frame(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Protocol #3 per frame: MPJPE after scaling pred per frame; (..., J, 3) -> (...,)."""
  return mpjpe_per_frame(_scale_to_target(pred, target), target)


def n_mpjpe(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Protocol #3: MPJPE of the per-frame optimally scaled prediction (reference V9.4)."""
  return mpjpe(_scale_to_target(pred, target), target)


def velocity_error_per_frame(pred: jax.Array, target: jax.Array, time_axis: int = 0) -> jax.Array:
  """Per-joint-averaged error of first differences along `time_axis`.

  Args:
    pred, target: (N, J, 3) ordered in time, or with extra leading axes and
      `time_axis` naming the time axis (e.g. (S, N, J, 3) with time_axis=1).

  Returns:
    The input shape without (J, 3), with N - 1 along `time_axis`.
  """
  axis = time_axis % (pred.ndim - 2)
  v_pred = jnp.diff(pred, axis=axis)
  v_target = jnp.diff(target, axis=axis)
  return mpjpe_per_frame(v_pred, v_target)


def mean_velocity_error(pred: jax.Array, target: jax.Array, time_axis: int = 0) -> jax.Array:
  """MPJVE (reference V9.5): mean ||v_pred - v_target|| over N - 1 velocities and joints."""
  return jnp.mean(velocity_error_per_frame(pred, target, time_axis))
