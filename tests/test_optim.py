"""Tests for posejax.training.optim: Adam/AMSGrad against a float64 NumPy transcription of PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from posejax.training import optim


def _torch_amsgrad_reference(params, grads_seq, lrs, b1=0.9, b2=0.999, eps=1e-8):
  """torch.optim.Adam(amsgrad=True) step by step, float64 (torch/optim/adam.py, single tensor)."""
  p = params.astype(np.float64).copy()
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  v_max = np.zeros_like(p)
  for k, (g, lr) in enumerate(zip(grads_seq, lrs), start=1):
    g = g.astype(np.float64)
    m = m + (1 - b1) * (g - m)  # exp_avg.lerp_(grad, 1 - beta1)
    v = v * b2 + (1 - b2) * g * g
    v_max = np.maximum(v_max, v)
    step_size = lr / (1 - b1**k)
    denom = np.sqrt(v_max) / np.sqrt(1 - b2**k) + eps
    p = p - step_size * m / denom
  return p


def _run_optax(tx, params, grads_seq, lrs):
  state = tx.init(params)
  step = jax.jit(lambda p, s, g, lr: _apply(tx, p, s, g, lr))
  for g, lr in zip(grads_seq, lrs):
    params, state = step(params, state, g, lr)
  return params, state


def _apply(tx, params, state, grads, lr):
  state = optim.with_learning_rate(state, lr)
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state


def _grads(seed, steps, shape):
  rng = np.random.default_rng(seed)
  # Gradients shrinking over time make v decrease, so v_max (max of RAW v) matters;
  # a few exact zeros test the eps path.
  scales = np.concatenate([np.full(steps // 2, 1.0), np.full(steps - steps // 2, 0.01)])
  out = [rng.normal(size=shape).astype(np.float32) * s for s in scales]
  out[1][0] = 0.0
  return out


def test_matches_pytorch_amsgrad_float64():
  steps, shape = 12, (7, 3)
  params = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  grads = _grads(1, steps, shape)
  lrs = [1e-3 * 0.95**(k // 3) for k in range(steps)]  # the lr changes between steps
  want = _torch_amsgrad_reference(params, grads, lrs)
  got, state = _run_optax(optim.adam_amsgrad(1e-3), jnp.asarray(params), grads, lrs)
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6)
  assert int(state.inner_state[0].count) == steps
  np.testing.assert_allclose(float(optim.learning_rate_of(state)), lrs[-1], rtol=1e-6)


def test_differs_from_optax_amsgrad_which_maxes_corrected_moment():
  # Guards the reason this module exists: optax's rule gives other parameters.
  steps, shape = 8, (5,)
  params = np.ones(shape, np.float32)
  grads = _grads(2, steps, shape)
  want = _torch_amsgrad_reference(params, grads, [1e-3] * steps)
  other, _ = _run_optax(optax.inject_hyperparams(optax.amsgrad)(learning_rate=1e-3),
                        jnp.asarray(params), grads, [1e-3] * steps)
  assert np.max(np.abs(np.asarray(other) - want)) > 1e-5


def test_first_step_is_lr_times_sign():
  # k = 1: m_hat = g, sqrt(v_max)/sqrt(1-b2) = |g|, so the step is lr * sign(g) (eps aside).
  tx = optim.scale_by_amsgrad_pytorch()
  g = {"w": jnp.array([2.0, -0.5, 1e-3])}
  updates, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(updates["w"], [1.0, -1.0, 1.0], rtol=1e-4)


def test_vmapped_per_model_learning_rates():
  tx = optim.adam_amsgrad()
  params = {"w": jnp.ones((3, 4))}  # 3 stacked models
  state = jax.vmap(tx.init)(params)
  grads = {"w": jnp.ones((3, 4))}
  lrs = jnp.array([1e-3, 1e-2, 0.0])
  new, _ = jax.vmap(lambda p, s, g, lr: _apply(tx, p, s, g, lr))(params, state, grads, lrs)
  np.testing.assert_allclose(1.0 - np.asarray(new["w"][:, 0]), [1e-3, 1e-2, 0.0], rtol=1e-4)


def test_bias_corrections_are_float32_accurate():
  """1 - b^k within a few float32 ulp of float64 at every step (PyTorch computes it in float64);
  the naive float32 `1 - b^k` is off by 1.3e-5 relative at k = 1 for b = 0.999."""
  k = np.arange(1, 20001)
  for base in (0.9, 0.999):
    got = np.asarray(optim._one_minus_power(base, jnp.asarray(k, jnp.float32)), np.float64)
    want = -np.expm1(k * np.log(base))
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(np.float32).eps, atol=0)
