"""Tests for posejax.sharding: mesh shapes, padding, and 8 fake devices == 1 device."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from posejax import sharding
from posejax.errors import PosejaxError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("models,devices,want", [
    (1, 1, (1, 1)), (15, 1, (1, 1)), (1, 8, (1, 8)), (15, 8, (8, 1)), (3, 8, (2, 4)),
    (2, 8, (2, 4)), (16, 8, (8, 1)), (5, 6, (3, 2))])
def test_mesh_shape(models, devices, want):
  assert sharding.mesh_shape(models, devices) == want


def test_mesh_shape_forced_and_invalid():
  assert sharding.mesh_shape(15, 8, action_devices=1) == (1, 8)
  with pytest.raises(PosejaxError, match="action_devices"):
    sharding.mesh_shape(15, 8, action_devices=3)


def test_single_device_layout_and_padding():
  layout = sharding.make_layout(3, 10)
  assert (layout.action_size, layout.data_size, layout.padded_models) == (1, 1, 3)
  tree = {"w": np.arange(6.0).reshape(3, 2)}
  padded = sharding.pad_models(tree, 5)
  np.testing.assert_array_equal(padded["w"][3:], [[0, 1], [0, 1]])
  np.testing.assert_array_equal(sharding.unpad_models(padded, 3)["w"], tree["w"])
  batch = sharding.pad_batch({"x": np.ones((3, 4), np.float32), "active": np.ones(3, bool)}, 4)
  assert batch["active"].tolist() == [True, True, True, False]
  assert batch["x"].shape == (4, 4) and batch["x"][3].sum() == 0


# Runs in a subprocess: the device count must be set before jax initialises.
_WORKER = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from posejax import optim, schedules, sharding, train_step as ts
from posejax.model import TemporalModel, receptive_field

assert len(jax.devices()) == 8, jax.devices()
K, J, WIDTHS, B, STEPS = 4, 3, (3, 3), 16, 3
RF = receptive_field(WIDTHS)
model = TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=WIDTHS, channels=16,
                      strided=True)
tx = optim.adam_amsgrad()
# Models are independent under vmap: model 0 of a 3-model run equals a 1-model run.
init = jax.jit(lambda: ts.init_stacked_state(model, tx, 0, jnp.arange(4), (1, RF, K, 2)))()
data = np.random.default_rng(0)
batches = [{"poses_2d": data.normal(size=(3, B, RF, K, 2)).astype(np.float32),
            "poses_3d": data.normal(size=(3, B, 1, J, 3)).astype(np.float32),
            "active": np.array([True, s < 2, True]), "epoch": np.array([0, 1, 2], np.int32)}
           for s in range(STEPS)]

def run(num_models, devices):
  layout = sharding.make_layout(num_models, B, devices=devices)
  a = layout.padded_models
  budget = schedules.make_budget("fixed", "action_based", 1, 15, [50] * num_models, B)
  hp = schedules.hyperparams_fn(budget, 1e-3, 0.95, 0.1, 0.001, num_models=a)
  ids = jnp.arange(a)
  def fn(state, acc, batch, rng):
    state, metrics = ts.multi_train_step(state, batch, rng, model=model, optimizer=tx,
                                         hyperparams_fn=hp, model_ids=ids)
    return state, ts.accumulate(acc, metrics), metrics
  state = jax.device_put(jax.tree.map(lambda x: x[:a], init), layout.model_sharding)
  acc = jax.device_put(ts.init_accumulator(a), layout.model_sharding)
  losses, step = [], None
  for batch in batches:
    batch = sharding.pad_batch({k: v[:num_models] for k, v in batch.items()}, a)
    step = step or sharding.jit_step(fn, layout, batch)
    state, acc, metrics = step(state, acc, sharding.put_batch(batch, layout), jax.random.key(1))
    losses.append(sharding.fetch(metrics["loss"])[:num_models].tolist())
  variables = sharding.unpad_models(sharding.fetch(state.variables), num_models)
  bias = state.params["shrink"]["bias"]
  return (np.array(losses), variables, sharding.fetch(acc["steps"])[:num_models],
          (layout.action_size, layout.data_size, a), bias.sharding.shard_shape(bias.shape))

close = lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
l_ref, v_ref, steps_ref, mesh_ref, _ = run(3, jax.devices()[:1])
out = {"mesh_ref": mesh_ref, "steps": steps_ref.tolist()}
for num_models in (1, 3):
  l8, v8, steps8, mesh8, shard8 = run(num_models, jax.devices())
  close(l8, l_ref[:, :num_models])
  jax.tree.map(close, v8, jax.tree.map(lambda x: x[:num_models], v_ref))
  np.testing.assert_array_equal(steps8, steps_ref[:num_models])
  out[num_models] = {"mesh": mesh8, "shard": list(shard8)}
print(json.dumps(out))
"""


def test_eight_devices_match_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", _WORKER], env=env, cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["mesh_ref"] == [1, 1, 3]
  assert out["1"]["mesh"] == [1, 8, 1]   # common: the batch is split over 8 devices
  assert out["3"]["mesh"] == [2, 4, 4]   # 3 models padded to 4, 2 per action shard
  assert out["3"]["shard"] == [2, 9]
  assert out["steps"] == [3, 2, 3]
