"""Tests for posejax.training.step: one-model step, the slot step over stacked models, accumulators.

Every jitted function is built once per shape (XLA:CPU compilations dominate the run time).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models.tcn import TemporalModel, receptive_field
from posejax.training import optim, schedules, slices, step as ts

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
def _slot_step(ids, slots):
  """Jitted slot step for models with 1-epoch budgets (lr 1e-3 * 0.95^e, BN 0.1 * 0.01^e)."""
  n = len(ids)
  budget = schedules.Budget("fixed", 1, B, np.full(n, 100), np.ones(n), np.full(n, B),
                            np.ones(n, np.int64), np.ones(n))
  fn = schedules.hyperparams_fn(budget, 1e-3, 0.95, 0.1, 0.001)
  layout = slices.SlotLayout(groups=1, models_per_group=n, slots_per_group=slots)
  return jax.jit(functools.partial(ts.slot_step, model=MODEL, optimizer=TX, hyperparams_fn=fn,
                                   model_ids=jnp.asarray(ids), layout=layout))


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


def test_slot_step_steps_the_slot_models_and_leaves_the_others_bit_for_bit():
  stacked = ts.init_stacked_state(MODEL, TX, 7, jnp.asarray(IDS), (1, RF, K, 2))
  batch = _batch(1, models=2)
  slots = {"model": jnp.array([2, 0], jnp.int32), "epoch": jnp.array([2, 0], jnp.int32)}
  rng = jax.random.key(11)
  new, metrics = _slot_step(IDS, 2)(stacked, batch, slots, rng)
  for k, a in enumerate([2, 0]):
    state_a = jax.tree.map(lambda x: x[a], stacked)
    e = int(slots["epoch"][k])
    hp = {"learning_rate": jnp.float32(1e-3 * 0.95**e), "bn_momentum": jnp.float32(0.1 * 0.01**e)}
    want, m = STEP(state_a, {key: batch[key][k] for key in ("poses_2d", "poses_3d")}, hp,
                   jax.random.fold_in(rng, IDS[a]))
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-6),
                 jax.tree.map(lambda x: x[a], new), want)
    np.testing.assert_allclose(metrics["loss"][k], m["loss"], rtol=1e-5)
  # Model 1 is in no slot: untouched.
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[1], new),
               jax.tree.map(lambda x: x[1], stacked))
  # Models start from different keys, each as if initialised alone.
  assert not np.allclose(stacked.params["shrink"]["bias"][0], stacked.params["shrink"]["bias"][1])
  alone = ts.init_state(MODEL, TX, ts.model_key(7, IDS[1]), (1, RF, K, 2))
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[1], stacked), alone)


def test_empty_slots_change_nothing():
  stacked = ts.init_stacked_state(MODEL, TX, 7, jnp.asarray(IDS), (1, RF, K, 2))
  slots = {"model": jnp.array([1, 3], jnp.int32), "epoch": jnp.zeros(2, jnp.int32)}  # 3 = empty
  new, _ = _slot_step(IDS, 2)(stacked, _batch(2, models=2), slots, jax.random.key(0))
  for a in (0, 2):
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[a], new),
                 jax.tree.map(lambda x: x[a], stacked))
  assert new.step.tolist() == [0, 1, 0]


def test_a_scheduled_model_equals_its_independent_run():
  """Model 1, packed into slots beside others, ends as the same model trained alone."""
  counts, slot_count = np.array([4, 2, 3]), 2
  rows = slices.pack_segment(counts, slot_count)
  state = ts.init_stacked_state(MODEL, TX, 5, jnp.asarray(IDS), (1, RF, K, 2))
  alone = jax.tree.map(lambda x: x[1:2], state)
  rng = jax.random.key(2)
  positions = slices.row_positions(rows, np.zeros(3, np.int64))
  seen = []
  for row, pos in zip(rows, positions):
    # A slot's data depend on its model's own step only.
    batch = {k: np.stack([_batch(100 * m + p)[k] for m, p in zip(row, pos)]) for k in ("poses_2d", "poses_3d")}
    slots = {"model": jnp.asarray(row), "epoch": jnp.zeros(slot_count, jnp.int32)}
    state, _ = _slot_step(IDS, slot_count)(state, batch, slots, rng)
    seen += [int(p) for m, p in zip(row, pos) if m == 1]
  assert seen == [0, 1]
  for p in range(2):
    b = {k: v[None] for k, v in _batch(100 + p).items()}
    alone, _ = _slot_step(IDS[1:2], 1)(alone, b, {"model": jnp.zeros(1, jnp.int32),
                                                  "epoch": jnp.zeros(1, jnp.int32)}, rng)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               jax.tree.map(lambda x: x[1:2], state), alone)
  assert state.step.tolist() == [4, 2, 3]


def test_accumulate_adds_slot_losses_to_their_models_and_flags_non_finite():
  acc = ts.init_accumulator(3)
  acc = ts.accumulate(acc, jnp.array([0, 3]), jnp.array([1.0, 9.0]), 0)  # slot 2 empty
  acc = ts.accumulate(acc, jnp.array([2, 0]), jnp.array([3.0, 4.0]), 1)
  acc = ts.accumulate(acc, jnp.array([1, 2]), jnp.array([jnp.nan, jnp.inf]), 2)
  acc = ts.accumulate(acc, jnp.array([1, 2]), jnp.array([jnp.nan, 1.0]), 3)
  np.testing.assert_allclose(acc["loss_sum"][0], 5.0)
  assert acc["steps"].tolist() == [2, 2, 3]
  assert acc["first_nonfinite"].tolist() == [-1, 2, 2]


def test_slot_step_updates_the_donated_state_in_place():
  """The compiled AB step gathers, steps and scatters without copying state-sized buffers."""
  import re
  n = len(IDS)
  budget = schedules.Budget("fixed", 1, B, np.full(n, 100), np.ones(n), np.full(n, B),
                            np.ones(n, np.int64), np.ones(n))
  step = jax.jit(functools.partial(
      ts.slot_step, model=MODEL, optimizer=TX, hyperparams_fn=schedules.hyperparams_fn(budget, 1e-3, 0.95, 0.1, 0.001),
      model_ids=jnp.asarray(IDS), layout=slices.SlotLayout(1, n, 2)), donate_argnums=(0,))
  state = ts.init_stacked_state(MODEL, TX, 7, jnp.asarray(IDS), (1, RF, K, 2))
  slots = {"model": jnp.array([0, 2], jnp.int32), "epoch": jnp.zeros(2, jnp.int32)}
  hlo = step.lower(state, _batch(1, models=2), slots, jax.random.key(0)).compile().as_text()
  assert "input_output_alias" in hlo  # the state is donated
  kernel = rf"f32\[{n},(3|1),{C},{C}\]"  # a stacked conv kernel (or Adam moment) of the state
  copies = [line for line in hlo.splitlines() if re.search(kernel + r"\S* copy\(", line)]
  assert not copies, copies[:3]
