"""Semi-supervised loss terms against float64 NumPy written from reference V2.4, V9.2, V11.2, V11.3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.training.semi import losses as semi_losses

PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7)  # a small tree: three chains off the root


def _np_project(x: np.ndarray, cam: np.ndarray, linear: bool) -> np.ndarray:
  """Reference V2.4 point by point, float64: (B, T, J, 3), (B, 9) -> (B, T, J, 2)."""
  out = np.zeros(x.shape[:-1] + (2,))
  for b in range(x.shape[0]):
    fx, fy, cx, cy, k1, k2, k3, p1, p2 = cam[b]
    for idx in np.ndindex(*x.shape[1:-1]):
      px, py, pz = x[(b,) + idx]
      u, v = np.clip(px / pz, -1, 1), np.clip(py / pz, -1, 1)
      if linear:
        out[(b,) + idx] = (fx * u + cx, fy * v + cy)
        continue
      r2 = u * u + v * v
      radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
      tan = p1 * u + p2 * v
      out[(b,) + idx] = (fx * (u * (radial + tan) + p1 * r2) + cx, fy * (v * (radial + tan) + p2 * r2) + cy)
  return out


@pytest.fixture
def data():
  rng = np.random.default_rng(3)
  b, t, j, pad = 4, 3, len(PARENTS), 2
  pred = 0.3 * rng.normal(size=(b, t, j, 3))
  traj = np.stack([rng.normal(scale=0.5, size=(b, t)), rng.normal(scale=0.5, size=(b, t)),
                   rng.uniform(3, 7, size=(b, t))], -1)[:, :, None]
  cams = np.concatenate([rng.uniform(1.1, 1.3, (b, 2)), rng.normal(scale=0.02, size=(b, 2)),
                         rng.normal(scale=0.1, size=(b, 3)), rng.normal(scale=0.01, size=(b, 2))], -1)
  inputs = rng.normal(scale=0.3, size=(b, t + 2 * pad, j, 3))  # a 3rd feature (confidence)
  return pred, traj, cams, inputs, pad


def test_trajectory_loss_weights_by_inverse_depth(data):
  _, traj, _, _, _ = data
  pred_traj = traj + np.random.default_rng(0).normal(scale=0.1, size=traj.shape)
  dist = np.linalg.norm(pred_traj - traj, axis=-1)  # (B, T, 1)
  expected = np.mean(dist / traj[..., 2])
  got = semi_losses.trajectory_loss(jnp.asarray(pred_traj, jnp.float32), jnp.asarray(traj, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Hand example: error (0, 0, 1) at depth 4 weighs 1/4, error (3, 4, 0) at depth 5 weighs 1/5.
  t = np.array([[[[0, 0, 4.0]], [[0, 0, 5.0]]]])
  p = t + np.array([[[[0, 0, 1.0]], [[3, 4, 0.0]]]])
  assert float(semi_losses.trajectory_loss(jnp.asarray(p), jnp.asarray(t))) == pytest.approx((0.25 + 1.0) / 2)


def test_2d_target_drops_padding_and_extra_features(data):
  *_, inputs, pad = data
  got = np.asarray(semi_losses.unlabeled_2d_target(jnp.asarray(inputs), pad))
  np.testing.assert_array_equal(got, np.asarray(jnp.asarray(inputs))[:, pad:-pad, :, :2])
  assert got.shape == (inputs.shape[0], inputs.shape[1] - 2 * pad, inputs.shape[2], 2)
  # pad 0: the whole window (a plain [0:-0] slice would be empty).
  np.testing.assert_array_equal(semi_losses.unlabeled_2d_target(jnp.asarray(inputs), 0),
                                np.asarray(jnp.asarray(inputs))[..., :2])


@pytest.mark.parametrize("linear", [False, True])
def test_projection_loss_matches_numpy(data, linear):
  pred, traj, cams, inputs, pad = data
  recon = _np_project(pred + traj, cams, linear)
  np.testing.assert_allclose(
      semi_losses.reproject(jnp.asarray(pred, jnp.float32), jnp.asarray(traj, jnp.float32),
                            jnp.asarray(cams, jnp.float32), linear), recon, rtol=2e-5, atol=2e-6)
  target = inputs[:, pad:-pad, :, :2]
  expected = np.linalg.norm(recon - target, axis=-1).mean()
  got = semi_losses.projection_loss(*(jnp.asarray(a, jnp.float32) for a in (pred, traj, cams, inputs)),
                                    pad, linear)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_projections_differ_only_by_distortion(data):
  pred, traj, cams, _, _ = data
  args = [jnp.asarray(a, jnp.float32) for a in (pred, traj, cams)]
  distorted = semi_losses.reproject(*args, linear=False)
  assert float(jnp.max(jnp.abs(distorted - semi_losses.reproject(*args, linear=True)))) > 1e-3
  no_dist = args[2].at[:, 4:].set(0.0)
  np.testing.assert_allclose(semi_losses.reproject(args[0], args[1], no_dist, linear=False),
                             semi_losses.reproject(args[0], args[1], no_dist, linear=True), rtol=1e-6, atol=1e-7)


def test_bone_length_penalty_matches_numpy(data):
  pred = data[0]
  split = 1
  lengths = np.zeros((pred.shape[0], len(PARENTS) - 1))
  for b in range(pred.shape[0]):
    for j in range(1, len(PARENTS)):
      lengths[b, j - 1] = np.mean([np.linalg.norm(pred[b, t, j] - pred[b, t, PARENTS[j]])
                                   for t in range(pred.shape[1])])
  expected = np.mean(np.abs(lengths[:split].mean(0) - lengths[split:].mean(0)))
  got = semi_losses.bone_length_penalty(jnp.asarray(pred, jnp.float32), PARENTS, split)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_bone_length_penalty_of_translated_and_scaled_copies():
  rng = np.random.default_rng(1)
  pose = rng.normal(size=(1, 2, len(PARENTS), 3))
  same = np.concatenate([pose, pose + 5.0], 0)  # translated copy: identical bones
  assert float(semi_losses.bone_length_penalty(jnp.asarray(same), PARENTS, 1)) == pytest.approx(0, abs=1e-6)
  scaled = np.concatenate([pose, 0.5 * pose], 0)  # every bone half as long
  lengths = np.linalg.norm(pose[0][:, 1:] - pose[0][:, list(PARENTS[1:])], axis=-1).mean(0)
  assert float(semi_losses.bone_length_penalty(jnp.asarray(scaled), PARENTS, 1)) == pytest.approx(
      0.5 * lengths.mean(), rel=1e-5)


def test_gradients_finite_at_coincident_joints():
  pred = jnp.zeros((2, 1, len(PARENTS), 3))  # zero-length bones
  grad = jax.grad(lambda p: semi_losses.bone_length_penalty(p, PARENTS, 1))(pred)
  assert bool(jnp.all(jnp.isfinite(grad)))
