"""Tests for posejax.pose.losses against float64 NumPy references written from the spec."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.pose import losses


def _np_p_mpjpe_per_frame(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Reference V9.3 step by step, float64, (N, J, 3) -> (N,)."""
  mu_x = target.mean(axis=1, keepdims=True)
  mu_y = predicted.mean(axis=1, keepdims=True)
  x0, y0 = target - mu_x, predicted - mu_y
  norm_x = np.sqrt((x0 ** 2).sum(axis=(1, 2), keepdims=True))
  norm_y = np.sqrt((y0 ** 2).sum(axis=(1, 2), keepdims=True))
  x0, y0 = x0 / norm_x, y0 / norm_y
  h = np.matmul(x0.transpose(0, 2, 1), y0)
  u, s, vt = np.linalg.svd(h)
  v = vt.transpose(0, 2, 1)
  r = np.matmul(v, u.transpose(0, 2, 1))
  sign_det_r = np.sign(np.expand_dims(np.linalg.det(r), axis=1))
  v[:, :, -1] *= sign_det_r
  s[:, -1] *= sign_det_r.flatten()
  r = np.matmul(v, u.transpose(0, 2, 1))
  tr = np.expand_dims(np.sum(s, axis=1, keepdims=True), axis=2)
  a = tr * norm_x / norm_y
  t = mu_x - a * np.matmul(mu_y, r)
  aligned = a * np.matmul(predicted, r) + t
  return np.linalg.norm(aligned - target, axis=-1).mean(axis=-1)


def _rotation(seed: int) -> np.ndarray:
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
  return q * np.sign(np.linalg.det(q))  # proper rotation, det +1


@pytest.fixture
def poses():
  rng = np.random.default_rng(0)
  target = rng.normal(size=(6, 17, 3))
  pred = target + 0.1 * rng.normal(size=(6, 17, 3))
  return pred, target


def test_mpjpe_and_per_frame(poses):
  pred, target = poses
  dist = np.linalg.norm(pred - target, axis=-1)
  np.testing.assert_allclose(losses.mpjpe(jnp.asarray(pred), jnp.asarray(target)), dist.mean(), rtol=1e-5)
  np.testing.assert_allclose(losses.mpjpe_per_frame(pred, target), dist.mean(-1), rtol=1e-5)
  # Hand example: a single joint off by a (3, 4, 0) vector.
  t = np.zeros((1, 2, 3))
  p = t.copy()
  p[0, 1] = [3.0, 4.0, 0.0]
  assert float(losses.mpjpe(jnp.asarray(p), jnp.asarray(t))) == pytest.approx(2.5)


def test_mpjpe_gradient_finite_at_zero_error():
  target = jnp.zeros((2, 3, 3))
  pred = target.at[0, 1].set(jnp.array([1.0, 0.0, 0.0]))
  grad = jax.grad(losses.mpjpe)(pred, target)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad[0, 1], [1 / 6, 0, 0], rtol=1e-6)
  np.testing.assert_array_equal(grad[1], 0.0)


def test_weighted_mpjpe(poses):
  pred, target = poses
  pred, target = pred.reshape(2, 3, 17, 3)[:, :, :1], target.reshape(2, 3, 17, 3)[:, :, :1]
  w = 1 / np.abs(target[..., 2]) + 0.5  # (B, T, 1), like w = 1 / depth
  expected = np.mean(w * np.linalg.norm(pred - target, axis=-1))
  np.testing.assert_allclose(losses.weighted_mpjpe(pred, target, w), expected, rtol=1e-5)


# Compiled once per shape: op-by-op dispatch of SVD-based code compiles every primitive.
_p_mpjpe_per_frame = jax.jit(losses.p_mpjpe_per_frame)


def test_p_mpjpe_matches_numpy(poses):
  pred, target = poses
  expected = _np_p_mpjpe_per_frame(pred.copy(), target.copy())
  np.testing.assert_allclose(_p_mpjpe_per_frame(pred, target), expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(jax.jit(losses.p_mpjpe)(pred, target), expected.mean(), rtol=1e-4)


def test_p_mpjpe_similarity_invariance_and_reflection(poses):
  _, target = poses
  similar = 1.7 * target @ _rotation(1) + np.array([0.3, -1.0, 2.0])
  assert np.max(_p_mpjpe_per_frame(similar, target)) < 1e-5
  reflected = target * np.array([-1.0, 1.0, 1.0])
  err = _p_mpjpe_per_frame(reflected, target)
  assert np.min(err) > 0.1
  np.testing.assert_allclose(err, _np_p_mpjpe_per_frame(reflected, target.copy()), rtol=1e-4)


def test_n_mpjpe(poses):
  pred, target = poses
  pred, target = pred.reshape(2, 3, 17, 3), target.reshape(2, 3, 17, 3)
  scale = (target * pred).sum(-1).mean(-1) / (pred ** 2).sum(-1).mean(-1)
  per_frame = np.linalg.norm(scale[..., None, None] * pred - target, axis=-1).mean(-1)
  np.testing.assert_allclose(losses.n_mpjpe_per_frame(pred, target), per_frame, rtol=1e-5)
  np.testing.assert_allclose(losses.n_mpjpe(pred, target), per_frame.mean(), rtol=1e-5)
  np.testing.assert_allclose(losses.n_mpjpe(3.5 * pred, target), per_frame.mean(), rtol=1e-5)
  assert float(losses.n_mpjpe(jnp.asarray(0.4 * target), jnp.asarray(target))) < 1e-6


def test_mean_velocity_error_hand_example():
  # One joint; the prediction moves 1 along x per frame, the target stays: error 1 per step.
  target = np.zeros((4, 1, 3))
  pred = np.zeros((4, 1, 3))
  pred[:, 0, 0] = [0.0, 1.0, 2.0, 3.0]
  assert float(losses.mean_velocity_error(pred, target)) == pytest.approx(1.0)
  # Velocity error ignores a constant offset.
  assert float(losses.mean_velocity_error(target + 5.0, target)) == 0.0
  # Two joints: velocities (3, 4, 0) and 0 in the single step -> mean 2.5.
  pred2 = np.zeros((2, 2, 3))
  pred2[1, 0] = [3.0, 4.0, 0.0]
  assert float(losses.mean_velocity_error(pred2, np.zeros((2, 2, 3)))) == pytest.approx(2.5)


def test_mean_velocity_error_matches_numpy_and_batched(poses):
  pred, target = poses
  expected = np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1).mean()
  np.testing.assert_allclose(losses.mean_velocity_error(pred, target), expected, rtol=1e-5)
  batched_pred, batched_target = np.stack([pred, 2 * pred]), np.stack([target, 2 * target])
  per_frame = losses.velocity_error_per_frame(batched_pred, batched_target, time_axis=1)
  assert per_frame.shape == (2, 5)
  np.testing.assert_allclose(per_frame.mean(-1), [expected, 2 * expected], rtol=1e-5)


def test_losses_vmap_over_leading_axis(poses):
  """Leading axes are frames: vmapping over one equals the flat per-frame result."""
  pred, target = (np.asarray(a, np.float32).reshape(2, 3, 17, 3) for a in poses)
  expected = _np_p_mpjpe_per_frame(pred.reshape(6, 17, 3).astype(np.float64), target.reshape(6, 17, 3))
  np.testing.assert_allclose(jax.vmap(_p_mpjpe_per_frame)(pred, target), expected.reshape(2, 3),
                             rtol=1e-4, atol=1e-6)
  velocity = jax.jit(jax.vmap(losses.mean_velocity_error))(pred, target)
  expected = np.linalg.norm(np.diff(pred, axis=1) - np.diff(target, axis=1), axis=-1).mean(axis=(1, 2))
  np.testing.assert_allclose(velocity, expected, rtol=1e-5)
