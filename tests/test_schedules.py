"""Tests for posejax.training.schedules: budget rules, lock-step positions, lr and BN momentum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data.h36m_frames import TEST_FRAMES, TRAIN_FRAMES as FRAMES
from posejax.training import schedules

# floor(sum f / f(A)), equation (2) (reference A6).
FRAME_MATCHED = [15, 9, 14, 21, 13, 20, 22, 24, 13, 12, 11, 13, 19, 11, 17]
N = 2 * np.array(list(FRAMES.values()))  # flip augmentation doubles the examples


def test_total_frames_match_the_split():
  assert sum(FRAMES.values()) == 1559752
  assert sum(TEST_FRAMES.values()) == 543344


def test_fixed_budget_unit_epochs():
  b = schedules.make_budget("fixed", "action_based", epochs=80, unit_epochs=15,
                            examples_per_epoch=N, batch_size=1024)
  np.testing.assert_array_equal(b.epochs, 1200)
  np.testing.assert_array_equal(b.samples, 1200 * N)
  np.testing.assert_array_equal(b.steps, -(-1200 * N // 1024))
  np.testing.assert_array_equal(b.lr_exponent_per_epoch, 1.0)
  # Eating, UE = 15: 3206 steps (the reference's per-epoch short batches give 15 x 214 = 3210).
  b15 = schedules.make_budget("fixed", "action_based", 1, 15, N, 1024)
  assert b15.steps[2] == 3206


def test_frame_matched_is_equation_2():
  b = schedules.make_budget("frame_matched", "action_based", 1, 15, N, 1024)
  np.testing.assert_array_equal(b.epochs, FRAME_MATCHED)
  b80 = schedules.make_budget("frame_matched", "action_based", 80, 15, N, 1024)
  np.testing.assert_array_equal(b80.epochs, 80 * np.array(FRAME_MATCHED))


def test_equal_samples_gives_every_action_the_common_budget():
  b = schedules.make_budget("equal_samples", "action_based", 2, 15, N, 1024)
  common = schedules.make_budget("fixed", "common", 2, 15, [N.sum()], 1024)
  np.testing.assert_array_equal(b.samples, 2 * N.sum())
  np.testing.assert_array_equal(b.steps, common.steps[0])
  assert common.steps[0] == -(-2 * 3119504 // 1024)
  np.testing.assert_allclose(b.epochs * N, 2 * N.sum())
  np.testing.assert_allclose(b.lr_exponent_per_epoch, N / N.sum())


@pytest.mark.parametrize("rule", schedules.BUDGETS)
def test_common_mode_trains_e_epochs_whatever_the_rule(rule):
  b = schedules.make_budget(rule, "common", 3, 15, [1000], 64)
  assert b.epochs.tolist() == [3.0] and b.steps.tolist() == [-(-3000 // 64)]


@pytest.mark.parametrize("kw,msg", [
    (dict(rule="other"), "budget"), (dict(mode="x"), "mode"), (dict(epochs=0), "epochs"),
    (dict(examples_per_epoch=[5, 0]), "examples")])
def test_bad_budget_arguments(kw, msg):
  args = dict(rule="fixed", mode="action_based", epochs=1, unit_epochs=15,
              examples_per_epoch=[5, 6], batch_size=4) | kw
  with pytest.raises(PosejaxError, match=msg):
    schedules.make_budget(**args)


def test_log_steps():
  assert schedules.log_steps(10, 2) == [(1, 5), (2, 10)]
  assert schedules.log_steps(9, 2, logs_per_epoch=2) == [(0.5, 3), (1, 5), (1.5, 7), (2, 9)]
  assert schedules.log_steps(1, 3) == [(3, 1)]
  assert schedules.log_steps(30, 1, logs_per_epoch=3)[0] == (0.3333, 10)  # points on one step collapse to the last


def test_learning_rate_and_bn_momentum_reference_values():
  # Reference V10.5 / V10.6, E = 80: lr 1.738e-5 in epoch index 79; momentum 0.1, 0.0944, 0.01, 0.00106.
  b = schedules.make_budget("fixed", "common", 80, 15, [1000], 100)
  fn = jax.jit(schedules.hyperparams_fn(b, 1e-3, 0.95, 0.1, 0.001))
  hp = jax.vmap(fn)(jnp.array([[0], [1], [40], [79]]), jnp.zeros((4, 1), jnp.int32))
  np.testing.assert_allclose(hp["learning_rate"][:, 0], [1e-3, 9.5e-4, 1e-3 * 0.95**40, 1.7384e-5],
                             rtol=1e-4)
  np.testing.assert_allclose(hp["bn_momentum"][:, 0], [0.1, 0.094406, 0.01, 0.00105925], rtol=1e-4)


def test_hyperparams_per_action_and_padding():
  n = np.array([100, 300])
  b = schedules.make_budget("equal_samples", "action_based", 4, 15, n, 10)
  fn = schedules.hyperparams_fn(b, 1e-3, 0.95, 0.1, 0.001, num_models=3)
  hp = fn(jnp.array([4, 2, 0]), jnp.arange(3))
  # Model 0 (1/4 of the data): 4 own epochs = 1 common epoch of data; budget 16 own epochs.
  np.testing.assert_allclose(hp["learning_rate"][:2], [1e-3 * 0.95, 1e-3 * 0.95**1.5], rtol=1e-5)
  np.testing.assert_allclose(hp["bn_momentum"][:2], [0.1 * 0.01**(4 / 16), 0.1 * 0.01**(2 / (16 / 3))],
                             rtol=1e-5)
  assert hp["learning_rate"].shape == (3,)
