"""Tests for posejax.models.tcn: strided == dilated, parameter counts, BatchNorm, dropout, vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models import tcn as model_lib
from posejax.models.tcn import TemporalModel, TorchBatchNorm, causal_shift, count_params, receptive_field

K, C = 5, 16


@pytest.fixture(autouse=True)
def _fast_rng_compile():
  # Partitionable threefry (JAX's default) takes seconds to compile on CPU; every
  # test compares paths that draw their random numbers the same way.
  with jax.threefry_partitionable(False):
    yield


def _random_variables(m: TemporalModel, frames: int, seed: int = 0, actions: int | None = None):
  """Variables of `m` with random kernels, BN parameters and running statistics.

  Drawn with NumPy from the shapes of `m.init` (traced only, never run), so tests
  do not pay for compiling JAX's random number generator.
  """
  x = jnp.zeros((1, frames, m.num_joints_in, m.in_features))
  shapes = jax.eval_shape(lambda: m.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    shape = leaf.shape if actions is None else (actions, *leaf.shape)
    name = path[-1].key
    if name == "kernel":
      bound = 1 / np.sqrt(leaf.shape[0] * leaf.shape[1])
      value = rng.uniform(-bound, bound, shape)
    elif name in ("var", "scale"):
      value = rng.uniform(0.5, 1.5, shape)
    else:  # mean, bias
      value = 0.1 * rng.normal(size=shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _inputs(batch: int, frames: int, seed: int = 2) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, frames, K, 2)), jnp.float32)


WIDTHS = [(1,), (3,), (3, 3), (3, 3, 3), (3, 5, 3), (5, 3)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("widths", WIDTHS)
def test_strided_equals_dilated(widths, causal):
  rf = receptive_field(widths)
  kw = dict(num_joints_in=K, num_joints_out=4, filter_widths=widths, causal=causal, channels=C)
  dilated, strided = TemporalModel(**kw), TemporalModel(**kw, strided=True)
  variables = _random_variables(dilated, rf)
  # Same pytree structure and shapes from both forms.
  shapes_d = jax.tree.map(jnp.shape, variables)
  shapes_s = jax.tree.map(jnp.shape, jax.eval_shape(
      lambda: strided.init(jax.random.key(5), _inputs(1, rf), train=False)))
  assert shapes_d == shapes_s

  # Dilated model on a long sequence == strided model on every RF window.
  x = _inputs(2, rf + 6)
  out_d = jax.jit(dilated.apply, static_argnames="train")(variables, x, train=False)
  assert out_d.shape == (2, 7, 4, 3)
  windows = jnp.stack([x[:, t:t + rf] for t in range(7)], axis=1).reshape(14, rf, K, 2)
  out_s = jax.jit(strided.apply, static_argnames="train")(variables, windows, train=False)
  assert out_s.shape == (14, 1, 4, 3)
  np.testing.assert_allclose(out_s.reshape(2, 7, 4, 3), out_d, atol=2e-5, rtol=1e-5)


def test_dense_same_rf_and_shapes():
  m = TemporalModel(num_joints_in=K, filter_widths=(3, 3), channels=C, dense=True)
  variables = _random_variables(m, 9)
  assert variables["params"]["layers_conv_0"]["kernel"].shape == (7, C, C)
  assert m.apply(variables, _inputs(1, 12), train=False).shape == (1, 4, 17, 3)
  with pytest.raises(ValueError, match="dense"):
    TemporalModel(num_joints_in=K, filter_widths=(3, 3), channels=C, dense=True,
                  strided=True).init(jax.random.key(0), _inputs(1, 9), train=False)


@pytest.mark.parametrize("widths,joints_out,expected", [
    ((1,), 17, 89_139), ((3,), 17, 158_771), ((3, 3), 17, 4_357_171), ((3, 3, 3), 17, 8_555_571),
    ((3, 3, 7), 17, 12_749_875), ((3, 5, 5), 17, 12_749_875), ((3, 3, 3, 3), 17, 12_753_971),
    ((3, 3, 3, 3, 3), 17, 16_952_371), ((3, 3, 3, 3, 3), 1, 16_903_171), ((1,), 1, 39_939),
])
def test_parameter_counts(widths, joints_out, expected):
  c = 1024
  formula = 17 * 2 * c * widths[0] + 2 * c + sum(c * c * w + 2 * c + c * c + 2 * c for w in widths[1:])
  formula += c * 3 * joints_out + 3 * joints_out
  assert formula == expected
  m = TemporalModel(num_joints_in=17, num_joints_out=joints_out, filter_widths=widths, strided=True)
  rf = receptive_field(widths)
  shapes = jax.eval_shape(lambda k: m.init(k, jnp.zeros((1, rf, 17, 2)), train=False), jax.random.key(0))
  assert count_params(shapes["params"]) == expected


def test_receptive_field_and_shift():
  assert receptive_field((1,)) == 1
  assert receptive_field((3, 3, 3)) == 27
  assert receptive_field((3, 5, 5)) == 75
  assert receptive_field((3, 3, 3, 3, 3)) == 243
  assert model_lib.pads((3, 5, 5)) == (1, 6, 30)
  assert model_lib.pads((3, 3, 3, 3, 3)) == (1, 3, 9, 27, 81)
  assert causal_shift((3, 3, 3), causal=True) == 13
  assert causal_shift((3, 3, 3), causal=False) == 0
  # Lists from configs are stored as tuples so the module stays hashable for jit.
  assert TemporalModel(num_joints_in=K, filter_widths=[3, 3]).filter_widths == (3, 3)
  hash(TemporalModel(num_joints_in=K, filter_widths=[3, 3]))


@pytest.mark.parametrize("widths", [(3, 4), (2,), (), (3, 0)])
def test_even_or_empty_width_raises(widths):
  with pytest.raises(ValueError, match="odd"):
    receptive_field(widths)
  with pytest.raises(ValueError, match=str(list(widths)).replace("[", r"\[").replace("]", r"\]")):
    TemporalModel(num_joints_in=K, filter_widths=widths, channels=C).init(
        jax.random.key(0), _inputs(1, 30), train=False)


def test_bad_input_shape_raises():
  m = TemporalModel(num_joints_in=K, filter_widths=(3, 3), channels=C)
  with pytest.raises(ValueError, match="shape"):
    m.init(jax.random.key(0), jnp.zeros((1, 9, K + 1, 2)), train=False)
  with pytest.raises(ValueError, match="receptive field"):
    m.init(jax.random.key(0), jnp.zeros((1, 8, K, 2)), train=False)
  with pytest.raises(ValueError, match="exactly RF"):
    m.clone(strided=True).init(jax.random.key(0), jnp.zeros((1, 10, K, 2)), train=False)


def test_batchnorm_matches_numpy_float64():
  x = np.random.default_rng(0).normal(1.0, 2.0, size=(3, 7, 6)).astype(np.float32)
  bn = TorchBatchNorm()
  variables = bn.init(jax.random.key(0), x, train=True)
  scale = np.linspace(0.5, 1.5, 6)
  bias = np.linspace(-0.2, 0.3, 6)
  ra_mean, ra_var = np.full(6, 0.3), np.full(6, 1.7)
  variables = {"params": {"scale": jnp.asarray(scale, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)},
               "batch_stats": {"mean": jnp.asarray(ra_mean, jnp.float32), "var": jnp.asarray(ra_var, jnp.float32)}}
  apply = jax.jit(lambda v, x, m: bn.apply(v, x, train=True, momentum=m, mutable=["batch_stats"]))
  y, updates = apply(variables, x, jnp.float32(0.3))

  x64 = x.astype(np.float64).reshape(-1, 6)
  mean, var = x64.mean(0), x64.var(0)
  expected = (x64 - mean) / np.sqrt(var + 1e-5) * scale + bias
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 6), expected, atol=1e-5)
  n = x64.shape[0]
  np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.7 * ra_mean + 0.3 * mean, rtol=1e-5)
  np.testing.assert_allclose(updates["batch_stats"]["var"], 0.7 * ra_var + 0.3 * var * n / (n - 1), rtol=1e-5)

  y_eval = bn.apply(variables, x, train=False)
  expected_eval = (x64 - ra_mean) / np.sqrt(ra_var + 1e-5) * scale + bias
  np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 6), expected_eval, atol=1e-5)


@pytest.mark.parametrize("strided", [False, True])
def test_expand_bn_running_stats_in_model(strided):
  """Running stats of expand_bn follow the positions each form evaluates (reference V8.5)."""
  widths = (3, 3)
  m = TemporalModel(num_joints_in=K, filter_widths=widths, channels=C, dropout=0.0, strided=strided)
  variables = _random_variables(m, 9)
  x = _inputs(4, 9)
  _, updates = m.apply(variables, x, train=True, bn_momentum=0.25, mutable=["batch_stats"])

  kernel = np.asarray(variables["params"]["expand_conv"]["kernel"], np.float64)  # (3, K*2, C)
  flat = np.asarray(x, np.float64).reshape(4, 9, K * 2)
  starts = range(0, 7, 3) if strided else range(7)
  conv = np.stack([np.einsum("btc,tcd->bd", flat[:, s:s + 3], kernel) for s in starts], axis=1)
  conv = conv.reshape(-1, C)
  n = conv.shape[0]
  old = variables["batch_stats"]["expand_bn"]
  np.testing.assert_allclose(updates["batch_stats"]["expand_bn"]["mean"],
                             0.75 * np.asarray(old["mean"]) + 0.25 * conv.mean(0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["expand_bn"]["var"],
                             0.75 * np.asarray(old["var"]) + 0.25 * conv.var(0) * n / (n - 1), rtol=1e-4)


def test_batchnorm_train_needs_two_values():
  m = TemporalModel(num_joints_in=K, filter_widths=(3,), channels=C, strided=True)
  with pytest.raises(ValueError, match="more than one value"):
    m.init(jax.random.key(0), _inputs(1, 3), train=True)


def test_dropout_only_in_training():
  kw = dict(num_joints_in=K, filter_widths=(3, 3), channels=C)
  m, m0 = TemporalModel(**kw, dropout=0.5), TemporalModel(**kw, dropout=0.0)
  variables = _random_variables(m, 9)
  x = _inputs(2, 11)
  np.testing.assert_array_equal(m.apply(variables, x, train=False), m0.apply(variables, x, train=False))

  @jax.jit
  def train(rng):
    return m.apply(variables, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])[0]

  out_a, out_b = train(jax.random.key(3)), train(jax.random.key(4))
  assert not np.allclose(out_a, out_b)
  np.testing.assert_array_equal(out_a, train(jax.random.key(3)))


def test_init_matches_pytorch_defaults():
  m = TemporalModel(num_joints_in=K, filter_widths=(3, 3), channels=64)
  params = jax.jit(lambda key: m.init(key, _inputs(1, 9), train=False))(jax.random.key(0))["params"]
  for name, fan_in in [("expand_conv", 3 * K * 2), ("layers_conv_0", 3 * 64), ("layers_conv_1", 64)]:
    kernel = np.asarray(params[name]["kernel"])
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.9 * bound
  assert np.abs(np.asarray(params["shrink"]["bias"])).max() <= 1 / np.sqrt(64)
  np.testing.assert_array_equal(params["expand_bn"]["scale"], 1.0)
  np.testing.assert_array_equal(params["expand_bn"]["bias"], 0.0)


def test_vmap_over_stacked_actions():
  m = TemporalModel(num_joints_in=K, filter_widths=(3, 3), channels=C, strided=True)
  actions = 3
  x = jnp.asarray(np.random.default_rng(7).normal(size=(actions, 4, 9, K, 2)), jnp.float32)
  stacked = _random_variables(m, 9, actions=actions)
  momenta = jnp.array([0.1, 0.2, 0.3])
  rngs = jax.random.split(jax.random.key(9), actions)

  @jax.jit
  def apply(v, xa, mom, rng):
    return m.apply(v, xa, train=True, bn_momentum=mom, rngs={"dropout": rng}, mutable=["batch_stats"])

  out, updates = jax.jit(jax.vmap(apply))(stacked, x, momenta, rngs)
  assert out.shape == (actions, 4, 1, 17, 3)
  for a in range(actions):
    va = jax.tree.map(lambda leaf: leaf[a], stacked)
    out_a, upd_a = apply(va, x[a], momenta[a], rngs[a])
    np.testing.assert_allclose(out[a], out_a, atol=1e-5)
    jax.tree.map(lambda u, ua: np.testing.assert_allclose(u[a], ua, rtol=1e-5, atol=1e-6),
                 updates, upd_a)
