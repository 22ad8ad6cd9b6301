"""The dilated convolution's implementations (model.DILATED_CONV) against XLA's and NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models import tcn as model_lib
from posejax.models.tcn import TemporalModel, receptive_field

K, J = 5, 4
# (width, dilation, C_in, C_out, output frames)
SHAPES = [(3, 1, 4, 6, 5), (3, 3, 1, 1, 1), (3, 9, 8, 3, 4), (5, 2, 6, 7, 3), (2, 4, 3, 5, 2), (7, 1, 2, 2, 1)]
MATMUL_IMPLS = [name for name in model_lib.DILATED_CONV if name != "xla"]


def _numpy_conv(x: np.ndarray, kernel: np.ndarray, dilation: int) -> np.ndarray:
  """Valid dilated cross-correlation in float64: y[b, t] = sum_k x[b, t + k * d] @ kernel[k]."""
  width = kernel.shape[0]
  frames = x.shape[1] - (width - 1) * dilation
  return sum(x[:, k * dilation:k * dilation + frames] @ kernel[k] for k in range(width))


def _lax_conv(x, kernel, dilation):
  return jax.lax.conv_general_dilated(x, kernel, (1,), "VALID", rhs_dilation=(dilation,),
                                      dimension_numbers=("NWC", "WIO", "NWC"))


def _draw(shape, seed):
  return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
@pytest.mark.parametrize("width,dilation,c_in,c_out,frames", SHAPES)
def test_matches_xla_conv_forward_and_gradients_float64(impl, width, dilation, c_in, c_out, frames):
  x = _draw((2, frames + (width - 1) * dilation, c_in), 0)
  kernel = _draw((width, c_in, c_out), 1)
  cotangent = _draw((2, frames, c_out), 2)
  with jax.enable_x64(True):
    conv = model_lib.DILATED_CONV[impl]
    y, vjp = jax.vjp(lambda x, k: conv(x, k, dilation), jnp.asarray(x), jnp.asarray(kernel))
    y_ref, vjp_ref = jax.vjp(lambda x, k: _lax_conv(x, k, dilation), jnp.asarray(x), jnp.asarray(kernel))
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, _numpy_conv(x, kernel, dilation), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for grad, grad_ref in zip(vjp(jnp.asarray(cotangent)), vjp_ref(jnp.asarray(cotangent))):
      np.testing.assert_allclose(grad, grad_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
def test_vmapped_over_stacked_kernels_matches_xla_float32(impl):
  # Training vmaps the step over stacked models: a batch of kernels (the slow case of XLA:CPU's convolution).
  x = jnp.asarray(_draw((3, 2, 20, 16), 3), jnp.float32)  # (models, B, T, C_in)
  kernel = jnp.asarray(_draw((3, 3, 16, 8), 4) / 7, jnp.float32)
  loss = lambda conv: lambda x, k: jnp.sum(jnp.sin(jax.vmap(lambda x, k: conv(x, k, 9))(x, k)))
  value, grads = jax.jit(jax.value_and_grad(loss(model_lib.DILATED_CONV[impl]), argnums=(0, 1)))(x, kernel)
  value_ref, grads_ref = jax.jit(jax.value_and_grad(loss(_lax_conv), argnums=(0, 1)))(x, kernel)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  for grad, grad_ref in zip(grads, grads_ref):
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", MATMUL_IMPLS)
@pytest.mark.parametrize("width,dilation,frames", [(3, 9, 4), (7, 1, 10), (19, 1, 4)])
def test_bfloat16_within_bfloat16_precision_of_float64(impl, width, dilation, frames):
  x = _draw((6, frames + (width - 1) * dilation, 16), 7)
  kernel = _draw((width, 16, 16), 8) / np.sqrt(width * 16)
  cotangent = _draw((6, frames, 16), 9)
  with jax.enable_x64(True):
    grads = jax.vjp(lambda x, k: _lax_conv(x, k, dilation), x, kernel)[1](cotangent)
    ref = [_numpy_conv(x, kernel, dilation)] + [np.asarray(g) for g in grads]
  bf16 = lambda a: jnp.asarray(a, jnp.bfloat16)
  y, vjp = jax.vjp(lambda x, k: model_lib.DILATED_CONV[impl](x, k, dilation), bf16(x), bf16(kernel))
  for value, expected in zip((y,) + vjp(bf16(cotangent)), ref):
    assert value.dtype == jnp.bfloat16
    error = np.linalg.norm(np.asarray(value, np.float64) - expected) / np.linalg.norm(expected)
    assert error < 2 ** -8  # bf16's 8-bit mantissa: one rounding of each operand and of the result


def _with_impl(monkeypatch, name):
  monkeypatch.setattr(model_lib, "dilated_conv_impl", lambda backend: name)


def _model_loss_and_grads(model, variables, x, y):
  def loss(params):
    pred, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                          rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"])
    return jnp.mean(jnp.square(pred.astype(jnp.float32) - y))
  # A fresh jit per call: the implementation is read when the model is traced.
  loss, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
  assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}  # parameters stay float32
  return np.asarray(loss), np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads)])


@pytest.mark.parametrize("dense", [False, True])
def test_dilated_model_same_loss_and_gradients_per_implementation(monkeypatch, dense):
  widths = (3, 3, 3)
  chunk, rf = 4, receptive_field(widths)
  kw = dict(num_joints_in=K, num_joints_out=J, filter_widths=widths, channels=16, dense=dense, dropout=0.0)
  model32, model16 = TemporalModel(**kw), TemporalModel(**kw, dtype="bfloat16")
  x = jnp.asarray(_draw((32, chunk + rf - 1, K, 2), 5), jnp.float32)
  y = jnp.asarray(_draw((32, chunk, J, 3), 6), jnp.float32)
  variables = jax.jit(functools.partial(model32.init, train=False))(jax.random.key(0), x[:1])
  _with_impl(monkeypatch, "xla")
  loss32, grads32 = _model_loss_and_grads(model32, variables, x, y)
  _, grads_xla16 = _model_loss_and_grads(model16, variables, x, y)
  error_xla16 = np.linalg.norm(grads_xla16 - grads32)
  for impl in MATMUL_IMPLS:
    _with_impl(monkeypatch, impl)
    loss, grads = _model_loss_and_grads(model32, variables, x, y)
    np.testing.assert_allclose(loss, loss32, rtol=1e-5)
    np.testing.assert_allclose(grads, grads32, rtol=1e-4, atol=1e-5 * np.abs(grads32).max())
    # bf16 compute: roundings through BatchNorm and ReLU add up to a few percent, as with XLA's convolution.
    loss, grads = _model_loss_and_grads(model16, variables, x, y)
    np.testing.assert_allclose(loss, loss32, rtol=2e-2)
    error = np.linalg.norm(grads - grads32)
    assert error < min(0.1 * np.linalg.norm(grads32), 2 * error_xla16)


def test_cpu_trains_with_matmuls_accelerators_keep_xla():
  assert model_lib.dilated_conv_impl("cpu") == "im2col_train"
  assert model_lib.dilated_conv_impl("gpu") == model_lib.dilated_conv_impl("tpu") == "xla"


def test_im2col_train_evaluates_with_xla_and_differentiates_with_matmuls():
  x = jnp.asarray(_draw((2, 30, 8), 10), jnp.float32)
  kernel = jnp.asarray(_draw((3, 8, 4), 11), jnp.float32)
  conv = functools.partial(model_lib.DILATED_CONV["im2col_train"], dilation=9)
  # Undifferentiated: XLA's convolution itself (evaluation's outputs do not change).
  np.testing.assert_array_equal(jax.jit(conv)(x, kernel), jax.jit(_lax_conv, static_argnums=2)(x, kernel, 9))
  # Differentiated: no convolution left in the compiled gradient.
  grad = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1)))
  hlo = grad.lower(x, kernel).as_text()
  assert "convolution" not in hlo and "dot_general" in hlo
  assert "convolution" in jax.jit(conv).lower(x, kernel).as_text()
