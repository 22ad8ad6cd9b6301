"""Temporal convolutional network of VideoPose3D (dilated and strided forms).

One module, two forms of the same function:

* dilated (`strided=False`): valid 1D convolutions with growing dilation; maps
  `T` input frames to `T - RF + 1` output frames. Used for evaluation and inference. On CPUs
  its convolutions are differentiated as matmuls on shifted time slices (`dilated_conv_impl`).
* strided (`strided=True`): the training form for windows of exactly `RF`
  frames; every block convolves with stride equal to its width, so only the
  time positions that reach the single output frame are computed.

Mixed precision (`dtype=jnp.bfloat16`): convolutions and matmuls take bf16 operands and the
activations between layers are bf16; parameters, BatchNorm statistics and the output stay
float32. Dropout masks come from a counter-based hash of the element index and the dropout
key (`hash_dropout`): elementwise integer arithmetic that XLA fuses into the surrounding
kernels, instead of a separate pass of threefry bits as large as the activation.

Both forms create the same parameter and `batch_stats` pytrees (names mirror
the PyTorch state dict: `expand_conv`, `expand_bn`, `layers_conv_{k}`,
`layers_bn_{k}`, `shrink`), so weights trained in one form evaluate in the other.
Conv kernels are stored Flax-style `(width, in, out)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _check_widths(filter_widths: Sequence[int]) -> tuple[int, ...]:
  widths = tuple(int(w) for w in filter_widths)
  if not widths or any(w < 1 or w % 2 == 0 for w in widths):
    raise ValueError(
        f"filter widths must be a non-empty list of odd positive integers, got {list(filter_widths)}")
  return widths


def dilations(filter_widths: Sequence[int]) -> tuple[int, ...]:
  """Dilation of each layer: `d_0 = 1`, `d_i = w_0 * ... * w_{i-1}` (reference V8.2)."""
  widths = _check_widths(filter_widths)
  return tuple(int(np.prod(widths[:i], dtype=np.int64)) for i in range(len(widths)))


def pads(filter_widths: Sequence[int]) -> tuple[int, ...]:
  """Half-width of each layer's receptive field: `pad_i = (w_i - 1) * d_i // 2`."""
  widths = _check_widths(filter_widths)
  return tuple((w - 1) * d // 2 for w, d in zip(widths, dilations(widths)))


def receptive_field(filter_widths: Sequence[int]) -> int:
  """Number of input frames per output frame: `1 + 2 * sum(pads)` (= product of widths)."""
  return 1 + 2 * sum(pads(filter_widths))


def causal_shift(filter_widths: Sequence[int], causal: bool) -> int:
  """Frames by which the driver shifts the input window: `pad` if causal, else 0."""
  return (receptive_field(filter_widths) - 1) // 2 if causal else 0


def count_params(params) -> int:
  """Total number of scalars in a pytree (arrays or `jax.ShapeDtypeStruct`s)."""
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def _torch_uniform(fan_in: int):
  """PyTorch's default Conv1d init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (reference V8.9)."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: a bijection with full avalanche."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _key_words(key: jax.Array) -> jax.Array:
  """The uint32 words of a PRNG key (typed or raw)."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return key.reshape(-1).astype(jnp.uint32)


def hash_dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout whose keep mask is hash(key, element index) >= rate * 2**32.

  Each element's bit is a pure function of its index and the key, so the mask is the same
  under vmap, jit or sharding, and costs a few integer operations fused into the consumer.
  """
  if rate <= 0.0:
    return x
  if rate >= 1.0:
    return jnp.zeros_like(x)
  index = jnp.zeros(x.shape, jnp.uint32)
  for axis, size in enumerate(x.shape):
    index = index * jnp.uint32(size) + jax.lax.broadcasted_iota(jnp.uint32, x.shape, axis)
  h = index
  for word in _key_words(key):
    h = _fmix32(h ^ word)
  keep = h >= jnp.uint32(min(int(round(rate * 2**32)), 2**32 - 1))
  return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


def _dilated_conv_xla(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
  """XLA's dilated convolution: (B, T, C_in), (W, C_in, C_out) -> (B, T - (W - 1) * dilation, C_out)."""
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(1,), padding="VALID", rhs_dilation=(dilation,),
      dimension_numbers=("NWC", "WIO", "NWC"))


def _dilated_conv_im2col(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
  """The same convolution as one matmul on the W shifted slices side by side.

  (B, T_out, W * C_in) @ (W * C_in, C_out): index k * C_in + c of a row is tap k, channel c,
  as in the kernel reshaped. Its gradients are matmuls over the T_out output frames only.
  """
  width, c_in, c_out = kernel.shape
  frames = x.shape[1] - (width - 1) * dilation
  # Slices of a float32 copy: the gradient adds the W slices' cotangents in float32 (under bf16
  # compute, as XLA's convolution accumulates); a no-op for float32 inputs.
  wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  taps = jnp.concatenate([wide[:, k * dilation:k * dilation + frames].astype(x.dtype) for k in range(width)],
                         axis=-1)
  return taps @ kernel.reshape(width * c_in, c_out)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _dilated_conv_im2col_train(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
  """XLA's convolution where nothing is differentiated (evaluation, inference, export), the
  im2col form where something is (training: its gradients are matmuls and slices)."""
  return _dilated_conv_xla(x, kernel, dilation)


@_dilated_conv_im2col_train.defjvp
def _dilated_conv_im2col_train_jvp(dilation, primals, tangents):
  (x, kernel), (dx, dkernel) = primals, tangents
  y = _dilated_conv_im2col(x, kernel, dilation)
  return y, _dilated_conv_im2col(dx, kernel, dilation) + _dilated_conv_im2col(x, dkernel, dilation)


DILATED_CONV = {"xla": _dilated_conv_xla, "im2col": _dilated_conv_im2col, "im2col_train": _dilated_conv_im2col_train}


def dilated_conv_impl(backend: str) -> str:
  """Name of the `DILATED_CONV` implementation for `backend` (jax.default_backend()).

  XLA:CPU runs the weight-gradient convolution up to ~100x slower inside a loop body (the
  training engine's fori_loop; jax-ml/jax#12868), so CPUs train with matmuls: 20-50x faster
  global steps of the dilated model (benchmarks/dilated_conv.py), while evaluation keeps XLA's
  convolution (faster there for small models; the same outputs as before). GPUs and TPUs keep
  XLA's convolution (cuDNN's kernels).
  """
  return "im2col_train" if backend == "cpu" else "xla"


def _conv1d(x: jax.Array, kernel: jax.Array, dilation: int, stride: int) -> jax.Array:
  """Valid 1D cross-correlation over time.

  Args:
    x: (B, T, C_in).
    kernel: (W, C_in, C_out).
    dilation: spacing between kernel taps (dilated form).
    stride: equal to W in the strided form (1 otherwise); T must be a multiple of W.

  Returns:
    (B, T_out, C_out), T_out = T - (W - 1) * dilation (stride 1) or T // W (stride W).
  """
  width, c_in, c_out = kernel.shape
  if width == 1:
    return jnp.einsum("btc,cd->btd", x, kernel[0])
  if stride > 1:
    # A stride-W conv of width W sees disjoint groups of W frames: one matmul on
    # the frames regrouped as (B, T // W, W * C_in); index t * C_in + c matches
    # the kernel reshaped to (W * C_in, C_out).
    batch, frames, _ = x.shape
    groups = x.reshape(batch, frames // width, width * c_in)
    return groups @ kernel.reshape(width * c_in, c_out)
  return DILATED_CONV[dilated_conv_impl(jax.default_backend())](x, kernel, dilation)


class Conv1D(nn.Module):
  """Temporal convolution with PyTorch initialisation; kernel (width, in, out)."""
  features: int
  width: int
  use_bias: bool = False
  dtype: jnp.dtype = jnp.float32  # compute dtype of the operands; parameters stay float32

  @nn.compact
  def __call__(self, x: jax.Array, *, dilation: int = 1, stride: int = 1) -> jax.Array:
    """x: (B, T, C_in) -> (B, T_out, features) in `dtype`."""
    fan_in = x.shape[-1] * self.width
    kernel = self.param("kernel", _torch_uniform(fan_in), (self.width, x.shape[-1], self.features))
    y = _conv1d(x.astype(self.dtype), kernel.astype(self.dtype), dilation, stride)
    if self.use_bias:
      y = y + self.param("bias", _torch_uniform(fan_in), (self.features,)).astype(self.dtype)
    return y


class TorchBatchNorm(nn.Module):
  """BatchNorm over all (B, T) positions with PyTorch semantics (reference V8.7).

  Training normalises with the batch mean and biased variance and updates the
  running averages with the unbiased variance, `running = (1 - m) * running + m * stat`;
  evaluation normalises with the running averages. Running statistics live in
  the `batch_stats` collection (`mean`, `var`), parameters are `scale`, `bias`.
  """
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, momentum: float | jax.Array = 0.1) -> jax.Array:
    """x: (B, T, C) -> (B, T, C) in x's dtype; statistics in float32; `momentum` may be traced."""
    channels = x.shape[-1]
    out_dtype = x.dtype
    x = x.astype(jnp.float32)
    scale = self.param("scale", nn.initializers.ones, (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
    if train:
      n = math.prod(x.shape[:-1])
      if n < 2:
        raise ValueError(f"BatchNorm in training mode needs more than one value per channel, got shape {x.shape}")
      mean = jnp.mean(x, axis=tuple(range(x.ndim - 1)))
      var = jnp.mean(jnp.square(x - mean), axis=tuple(range(x.ndim - 1)))
      if not self.is_initializing():
        m = jnp.asarray(momentum, jnp.float32)
        ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
        ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / (n - 1))
    else:
      mean, var = ra_mean.value, ra_var.value
    return ((x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias).astype(out_dtype)


class TemporalModel(nn.Module):
  """VideoPose3D temporal convolutional network (reference V8.3-8.5).

  Input poses_2d: (B, T, num_joints_in, in_features); output (B, T - RF + 1, num_joints_out, 3).
  The strided form requires T == RF (one output frame); `dense` needs the dilated form.
  The trajectory model is this module with `num_joints_out=1`.
  """
  num_joints_in: int
  in_features: int = 2
  num_joints_out: int = 17
  filter_widths: Sequence[int] = (3, 3, 3)
  causal: bool = False
  dropout: float = 0.25
  channels: int = 1024
  dense: bool = False
  strided: bool = False
  dtype: str = "float32"  # compute dtype: 'float32' or 'bfloat16' (config.model.compute_dtype)

  def __post_init__(self):
    # A tuple keeps the module hashable (jit caches on it) when configs pass lists.
    object.__setattr__(self, "filter_widths", tuple(self.filter_widths))
    super().__post_init__()

  # What consumers ask of any pose model (posejax.models.family.PoseModel).

  @property
  def receptive_field(self) -> int:
    """Input frames per output frame: the product of the filter widths."""
    return receptive_field(self.filter_widths)

  @property
  def causal_shift(self) -> int:
    """Frames by which the input window is shifted back: `pad` if causal, else 0."""
    return causal_shift(self.filter_widths, self.causal)

  @property
  def pad(self) -> int:
    """Input frames on each side of an output frame: (receptive_field - 1) // 2."""
    return (self.receptive_field - 1) // 2

  def dilated(self) -> "TemporalModel":
    """The whole-sequence (non-strided) form of this module: the same parameters, any T >= RF."""
    return self.clone(strided=False, filter_widths=tuple(self.filter_widths))

  def one_frame(self) -> "TemporalModel":
    """The form that computes one output frame from `receptive_field` input frames, with only
    the activations that reach it (the strided form; the dense variant has none and runs dilated)."""
    return self.clone(strided=not self.dense, filter_widths=tuple(self.filter_widths))

  def architecture(self) -> dict[str, Any]:
    """The hyper-parameters an exported model's metadata names (besides its shapes)."""
    return {"filter_widths": list(self.filter_widths), "causal": bool(self.causal), "channels": int(self.channels),
            "dense": bool(self.dense)}

  def _check_input(self, poses_2d: jax.Array) -> None:
    rf = receptive_field(self.filter_widths)
    expected = (self.num_joints_in, self.in_features)
    if poses_2d.ndim != 4 or tuple(poses_2d.shape[2:]) != expected:
      raise ValueError(f"poses_2d must have shape (B, T, {expected[0]}, {expected[1]}), got {poses_2d.shape}")
    frames = poses_2d.shape[1]
    if self.strided and frames != rf:
      raise ValueError(f"the strided model needs exactly RF = {rf} frames, got {frames}")
    if frames < rf:
      raise ValueError(f"poses_2d has {frames} frames, fewer than the receptive field {rf}")
    if self.dense and self.strided:
      raise ValueError("the dense variant has no strided form (use strided=False)")

  @nn.compact
  def __call__(self, poses_2d: jax.Array, *, train: bool,
               bn_momentum: float | jax.Array = 0.1) -> jax.Array:
    """poses_2d: (B, T, K, F) -> (B, T - RF + 1, J_out, 3)."""
    widths = _check_widths(self.filter_widths)
    self._check_input(poses_2d)
    batch, frames = poses_2d.shape[:2]
    x = poses_2d.reshape(batch, frames, self.num_joints_in * self.in_features)
    dtype = jnp.dtype(self.dtype)

    def bn_relu_dropout(y: jax.Array, name: str) -> jax.Array:
      y = nn.relu(TorchBatchNorm(name=name)(y, train=train, momentum=bn_momentum))
      if not train or self.dropout <= 0:
        return y
      return hash_dropout(y, self.dropout, self.make_rng("dropout"))

    w0 = widths[0]
    # The first and last layers stay float32: they are a few percent of the FLOPs, and bf16
    # would round the 2D input coordinates (8-bit mantissa: pixels at 1000-pixel resolution).
    x = Conv1D(self.channels, w0, name="expand_conv")(x, stride=w0 if self.strided else 1)
    x = bn_relu_dropout(x, "expand_bn").astype(dtype)

    blocks = zip(widths[1:], dilations(widths)[1:], pads(widths)[1:])
    for block, (w, d, pad) in enumerate(blocks):
      k = 2 * block  # conv A / BN A of this block; conv B / BN B are k + 1
      if self.strided:
        # Centre of each group of w frames, or its last frame when causal.
        start = (w // 2) * (2 if self.causal else 1)
        res = x[:, start::w]
        conv_width, conv_kw = w, dict(stride=w)
      else:
        shift = (w // 2) * d if self.causal else 0
        res = x[:, pad + shift: x.shape[1] - pad + shift]
        if self.dense:
          conv_width, conv_kw = 2 * pad + 1, dict(dilation=1)
        else:
          conv_width, conv_kw = w, dict(dilation=d)
      y = Conv1D(self.channels, conv_width, dtype=dtype, name=f"layers_conv_{k}")(x, **conv_kw)
      y = bn_relu_dropout(y, f"layers_bn_{k}")
      y = Conv1D(self.channels, 1, dtype=dtype, name=f"layers_conv_{k + 1}")(y)
      y = bn_relu_dropout(y, f"layers_bn_{k + 1}")
      x = res + y

    x = Conv1D(self.num_joints_out * 3, 1, use_bias=True, name="shrink")(x)
    return x.reshape(batch, x.shape[1], self.num_joints_out, 3)
