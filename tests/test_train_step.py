"""Tests for posejax.train_step: one-model step, vmapped stacked step, active masks, lock-step.

Every jitted function is built once per shape (XLA:CPU compilations dominate the run time).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import optim, schedules, train_step as ts
from posejax.model import TemporalModel, receptive_field

K, J, C, B = 4, 3, 16, 8
WIDTHS = (3, 3)
RF = receptive_field(WIDTHS)
MODEL = TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=WIDTHS, channels=C, strided=True)
TX = optim.adam_amsgrad()
STEP = jax.jit(functools.partial(ts.train_step, model=MODEL, optimizer=TX))
HP = {"learning_rate": jnp.float32(1e-3), "bn_momentum": jnp.float32(0.1)}
IDS = (3, 4, 5)


def _batch(seed, models=None):
  rng = np.random.default_rng(seed)
  lead = (models,) if models else ()
  return {"poses_2d": rng.normal(size=lead + (B, RF, K, 2)).astype(np.float32),
          "poses_3d": rng.normal(size=lead + (B, 1, J, 3)).astype(np.float32)}


def _state(seed=0):
  return ts.init_state(MODEL, TX, ts.model_key(seed, 0), (1, RF, K, 2))


@functools.lru_cache(maxsize=None)
def _multi(ids):
  """Jitted stacked step for models with 1-epoch budgets (lr 1e-3 * 0.95^e, BN 0.1 * 0.01^e)."""
  n = len(ids)
  budget = schedules.Budget("fixed", 1, B, np.full(n, 100), np.ones(n), np.full(n, B),
                            np.ones(n, np.int64), np.ones(n))
  fn = schedules.hyperparams_fn(budget, 1e-3, 0.95, 0.1, 0.001)
  return jax.jit(functools.partial(ts.multi_train_step, model=MODEL, optimizer=TX, hyperparams_fn=fn,
                                   model_ids=jnp.asarray(ids)))


def test_loss_is_mpjpe_against_root_zeroed_target():
  state, batch, rng = _state(), _batch(0), jax.random.key(1)
  _, metrics = STEP(state, batch, HP, rng)
  # The step's dropout key is the model's key with its step count (0) folded in.
  pred = jax.jit(lambda v, x: MODEL.apply(v, x, train=True, bn_momentum=0.1, mutable=["batch_stats"],
                                          rngs={"dropout": jax.random.fold_in(rng, 0)})[0])(
      state.variables, batch["poses_2d"])
  target = np.array(batch["poses_3d"])
  target[..., 0, :] = 0
  want = np.mean(np.linalg.norm(np.asarray(pred, np.float64) - target, axis=-1))
  np.testing.assert_allclose(float(metrics["loss"]), want, rtol=1e-5)
  assert metrics["learning_rate"] == pytest.approx(1e-3)


def test_step_updates_params_stats_and_counters():
  state = _state()
  new, _ = STEP(state, _batch(0), HP, jax.random.key(1))
  assert int(new.step) == 1
  assert int(new.opt_state.inner_state[0].count) == 1
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert all(jax.tree.leaves(changed))
  assert not np.allclose(new.batch_stats["expand_bn"]["mean"], 0.0)
  # BN momentum 0 leaves the running statistics alone; lr 0 the parameters.
  frozen, _ = STEP(state, _batch(0), {"learning_rate": jnp.float32(0.0), "bn_momentum": jnp.float32(0.0)},
                   jax.random.key(1))
  jax.tree.map(np.testing.assert_array_equal, frozen.batch_stats, state.batch_stats)
  jax.tree.map(np.testing.assert_array_equal, frozen.params, state.params)


def test_training_reduces_the_loss():
  state, batch = _state(), _batch(3)
  losses = []
  for i in range(40):
    state, m = STEP(state, batch, {"learning_rate": jnp.float32(3e-3), "bn_momentum": jnp.float32(0.1)},
                    jax.random.key(0))
    losses.append(float(m["loss"]))
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_vmapped_step_equals_separate_models_and_masks_inactive():
  stacked = ts.init_stacked_state(MODEL, TX, 7, jnp.asarray(IDS), (1, RF, K, 2))
  batch = _batch(1, models=3)
  batch.update(active=np.array([True, False, True]), epoch=np.array([0, 0, 2]))
  rng = jax.random.key(11)
  new, metrics = _multi(IDS)(stacked, batch, rng)
  for a in range(3):
    state_a = jax.tree.map(lambda x: x[a], stacked)
    e = int(batch["epoch"][a])
    hp = {"learning_rate": jnp.float32(1e-3 * 0.95**e), "bn_momentum": jnp.float32(0.1 * 0.01**e)}
    want, m = STEP(state_a, {k: batch[k][a] for k in ("poses_2d", "poses_3d")}, hp,
                   jax.random.fold_in(rng, IDS[a]))
    got = jax.tree.map(lambda x: x[a], new)
    if not batch["active"][a]:
      want = state_a  # bit for bit unchanged
      jax.tree.map(np.testing.assert_array_equal, got, want)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-6), got, want)
    np.testing.assert_allclose(metrics["loss"][a], m["loss"], rtol=1e-5)
  assert metrics["active"].tolist() == [True, False, True]
  # Models start from different keys, each as if initialised alone.
  assert not np.allclose(stacked.params["shrink"]["bias"][0], stacked.params["shrink"]["bias"][1])
  alone = ts.init_state(MODEL, TX, ts.model_key(7, IDS[1]), (1, RF, K, 2))
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[1], stacked), alone)


def test_lockstep_model_equals_its_independent_run():
  """A model with 2 of 4 global steps ends as the same model trained alone for 2 steps.

  The stacked run is vmapped, the lone run takes the one-model path of `multi_train_step`.
  """
  steps, total = np.array([4, 2, 3]), 4
  state = ts.init_stacked_state(MODEL, TX, 5, jnp.asarray(IDS), (1, RF, K, 2))
  alone = jax.tree.map(lambda x: x[1:2], state)
  rng = jax.random.key(2)
  seen = []
  for s in range(total):
    pos = schedules.lockstep_position(s, steps, total)
    batch = _batch(100 + int(pos[1]), models=3)  # model 1's data depends on its own position only
    batch.update(active=schedules.lockstep_active(s, steps, total), epoch=np.zeros(3, np.int32))
    state, _ = _multi(IDS)(state, batch, rng)
    if batch["active"][1]:
      seen.append(int(pos[1]))
  assert seen == [0, 1]
  for p in range(2):
    b = {k: v[1:2] for k, v in _batch(100 + p, models=3).items()}
    b.update(active=np.array([True]), epoch=np.zeros(1, np.int32))
    alone, _ = _multi(IDS[1:2])(alone, b, rng)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               jax.tree.map(lambda x: x[1:2], state), alone)
  assert state.step.tolist() == [4, 2, 3]


def test_accumulate_counts_active_models_only():
  acc = ts.init_accumulator(2)
  acc = ts.accumulate(acc, {"loss": jnp.array([1.0, 2.0]), "active": jnp.array([True, False])})
  acc = ts.accumulate(acc, {"loss": jnp.array([3.0, 4.0]), "active": jnp.array([True, True])})
  np.testing.assert_allclose(acc["loss_sum"], [4.0, 4.0])
  assert acc["steps"].tolist() == [2, 1]
