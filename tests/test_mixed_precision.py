"""bfloat16 compute: the step and a short run agree with float32; dropout masks from the hash."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from posejax import trainer
from posejax.data import synthetic
from posejax.models.tcn import TemporalModel, hash_dropout, receptive_field
from posejax.training import optim, step as ts

K, J, C, B = 5, 4, 32, 16
WIDTHS = (3, 3)
RF = receptive_field(WIDTHS)


def _step(dtype):
  model = TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=WIDTHS, channels=C, strided=True,
                        dropout=0.0, dtype=dtype)
  return model, jax.jit(functools.partial(ts.train_step, model=model, optimizer=optim.adam_amsgrad()))


def test_bf16_step_matches_float32_within_bf16_precision():
  rng = np.random.default_rng(0)
  batch = {"poses_2d": rng.normal(size=(B, RF, K, 2)).astype(np.float32),
           "poses_3d": rng.normal(size=(B, 1, J, 3)).astype(np.float32)}
  hp = {"learning_rate": jnp.float32(1e-3), "bn_momentum": jnp.float32(0.1)}
  model32, step32 = _step("float32")
  _, step16 = _step("bfloat16")
  state = ts.init_state(model32, optim.adam_amsgrad(), ts.model_key(0, 0), (1, RF, K, 2))
  new32, m32 = step32(state, batch, hp, jax.random.key(0))
  new16, m16 = step16(state, batch, hp, jax.random.key(0))
  # Parameters, optimizer state and BatchNorm statistics stay float32 in both.
  assert {x.dtype for x in jax.tree.leaves((new16.params, new16.batch_stats))} == {jnp.dtype(jnp.float32)}
  # bf16 operands (8-bit mantissa): the loss to ~1e-2 relative, BN statistics likewise.
  np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=2e-2)
  for a, b in zip(jax.tree.leaves(new16.batch_stats), jax.tree.leaves(new32.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=5e-2, atol=5e-3)
  # Adam's first step moves every weight by about lr * sign(grad): the same direction.
  moved32 = jax.tree.map(lambda n, o: np.sign(n - o), new32.params["layers_conv_0"], state.params["layers_conv_0"])
  moved16 = jax.tree.map(lambda n, o: np.sign(n - o), new16.params["layers_conv_0"], state.params["layers_conv_0"])
  agree = np.mean(moved32["kernel"] == moved16["kernel"])
  assert agree > 0.9


def test_hash_dropout_rate_scale_and_determinism():
  x = jnp.ones((64, 9, 128), jnp.float32)
  key = jax.random.key(3)
  y = np.asarray(hash_dropout(x, 0.25, key))
  kept = y != 0
  assert abs(kept.mean() - 0.75) < 0.01
  np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
  np.testing.assert_array_equal(hash_dropout(x, 0.25, key), y)
  assert not np.array_equal(np.asarray(hash_dropout(x, 0.25, jax.random.key(4))) != 0, kept)
  # Neighbouring elements are independent (no stripes along any axis).
  for axis in range(3):
    same = np.mean(kept == np.roll(kept, 1, axis=axis))
    assert abs(same - (0.75**2 + 0.25**2)) < 0.02
  # vmap over keys equals a loop: each model's mask depends on its own key only.
  keys = jax.random.split(key, 3)
  stacked = jax.vmap(lambda k: hash_dropout(x, 0.25, k))(keys)
  for i in range(3):
    np.testing.assert_array_equal(stacked[i], hash_dropout(x, 0.25, keys[i]))
  assert hash_dropout(x, 0.0, key) is x


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.generate(path, frames=32, seed=0)
  return path


def test_a_short_bf16_run_ends_within_the_seed_spread_of_float32(data_dir, tmp_path):
  """A short run is chaotic: its final MPJPE moves with the seed by more than with the dtype.

  Measured on this config (seeds 1234, 1, 2): float32 129.6, 134.5, 125.3 mm (±3.6 %), bfloat16
  132.9, 132.9, 130.5 mm. The step itself is checked to bf16 precision above; here the bf16 run
  must land within about three times float32's seed-to-seed spread (10 %).
  """
  results = {}
  for dtype in ("float32", "bfloat16"):
    config = default.get_config()
    config.mode = "common"
    config.actions = "Eating,Walking,Sitting"
    config.data.dir = data_dir
    config.data.keypoints = "synthetic"
    config.model.filter_widths = (3, 3)
    config.model.channels = 64
    config.model.compute_dtype = dtype
    config.train.epochs = 3
    config.train.batch_size = 64
    config.train.progress = False
    config.eval.validate = False
    config.checkpoint.every_epochs = 3
    summary = trainer.train_and_evaluate(config, str(tmp_path / dtype))
    results[dtype] = summary["final"]["average"]["mpjpe"]
    assert summary["compute_dtype"] == dtype
  assert results["bfloat16"] == pytest.approx(results["float32"], rel=0.10)
