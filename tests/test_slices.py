"""Tests for posejax.training.slices: slices and routing, log targets, the compacted schedule."""

import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data.h36m_frames import frames_array
from posejax.training import schedules, slices

H36M_FRAMES = frames_array("train")  # Human3.6M training frames per action, canonical order


def test_slice_names_ids_and_routing():
  assert slices.slice_names("common", ["Walking", "Eating"]) == ["all"]
  assert slices.slice_names("action_based", ["Walking", "Eating"]) == ["Walking", "Eating"]
  # Canonical ids: Eating is action 2, Walking 13; the common model 15; padding from 100.
  assert slices.model_ids(["Walking", "Eating"], 4).tolist() == [13, 2, 100, 101]
  assert slices.model_ids(["all"]).tolist() == [15]
  assert slices.route(["Eating", "Walking", "Eating"], ["Walking", "Eating"]) == [1, 0, 1]
  assert slices.route(["Eating", "Posing"], ["all"]) == [0, 0]
  with pytest.raises(PosejaxError, match="no model for test action"):
    slices.route(["Posing"], ["Walking"])
  with pytest.raises(PosejaxError, match="config.mode"):
    slices.slice_names("joint", ["Walking"])


def test_log_targets_by_hand():
  # S = (10, 4, 7), 2 log points at s = 5, 10: floor(5 * S / 10) = (5, 2, 3), then S.
  np.testing.assert_array_equal(slices.log_targets([10, 4, 7], [5, 10]), [[5, 2, 3], [10, 4, 7]])


def _check_packing(counts, slots, rows):
  m = len(counts)
  assert rows.shape == (slices.segment_length(counts, slots), slots)
  for row in rows:
    used = row[row < m]
    assert len(set(used.tolist())) == len(used)  # a model at most once per global step
  np.testing.assert_array_equal(np.bincount(rows.ravel(), minlength=m + 1)[:m], counts)


@pytest.mark.parametrize("seed", range(5))
def test_pack_segment_is_optimal_and_exact(seed):
  rng = np.random.default_rng(seed)
  counts = rng.integers(0, 30, size=rng.integers(1, 9))
  for slots in range(1, len(counts) + 1):
    rows = slices.pack_segment(counts, slots)
    _check_packing(counts, slots, rows)
    # Optimal: max(max m, ceil(sum m / K)) global steps, the lower bound.
    assert len(rows) == max(int(counts.max()), -(-int(counts.sum()) // slots))


def test_packing_depends_only_on_the_steps_left():
  """A run resumed after any row continues with exactly the rows of the uninterrupted run."""
  counts, slots = np.array([9, 4, 7, 7, 1]), 3
  rows = slices.pack_segment(counts, slots)
  for done in range(len(rows)):
    left = counts - np.bincount(rows[:done].ravel(), minlength=6)[:5]
    np.testing.assert_array_equal(slices.pack_segment(left, slots), rows[done:])


def test_pack_rows_keeps_each_group_on_its_models():
  layout = slices.SlotLayout(groups=2, models_per_group=3, slots_per_group=2)
  counts = np.array([4, 1, 3, 2, 2, 0])
  rows = slices.pack_rows(counts, layout)
  assert rows.shape == (4, 4)
  assert set(rows[:, :2].ravel()) <= {0, 1, 2, 6} and set(rows[:, 2:].ravel()) <= {3, 4, 5, 6}
  np.testing.assert_array_equal(np.bincount(rows.ravel(), minlength=7)[:6], counts)


def test_row_positions_by_hand():
  rows = np.array([[0, 1], [0, 2], [1, 3]])  # 3 models + empty slot index 3
  np.testing.assert_array_equal(slices.row_positions(rows, np.array([5, 0, 2])), [[5, 0], [6, 2], [1, 0]])


def test_run_length_and_useful_fraction():
  targets = slices.log_targets([10, 4, 7], [5, 10])  # segments (5, 2, 3) and (5, 2, 4)
  lengths, useful = slices.run_length(targets, slices.SlotLayout(1, 3, 2), 3)
  np.testing.assert_array_equal(lengths, [5, 6])
  assert useful == pytest.approx(21 / (2 * 11))
  lengths, useful = slices.run_length(targets, slices.SlotLayout(1, 3, 3), 3)
  assert useful == pytest.approx(21 / 30)  # lock-step: every model computed every step


@pytest.mark.parametrize("name,epochs", [("ab243", 80), ("ab27", 15), ("ab1", 15)])
def test_seed_configs_compute_at_least_97_percent_useful_model_steps(name, epochs):
  budget = schedules.make_budget("fixed", "action_based", epochs, 15, 2 * H36M_FRAMES, 1024)
  points = schedules.log_steps(budget.total_steps, epochs, 1)
  targets = slices.log_targets(budget.steps, [s for _, s in points])
  layout, useful = slices.choose_slots(targets, groups=1, padded=15)
  assert useful >= 0.97
  assert layout.slots == 10  # sum S / max S = 9.8: ten slots, about S_max global steps
  # The seed's lock-step schedule computed all 15 models at every step: 65.5 % useful.
  _, lockstep = slices.run_length(targets, slices.SlotLayout(1, 15, 15), 15)
  assert lockstep == pytest.approx(0.655, abs=1e-3)


def test_choose_slots_on_a_mesh_and_forced():
  targets = slices.log_targets([100, 100, 100, 100], [50, 100])
  layout, useful = slices.choose_slots(targets, groups=2, padded=4)
  assert (layout.groups, layout.slots_per_group, useful) == (2, 2, 1.0)
  layout, _ = slices.choose_slots(targets, groups=2, padded=4, slots=3)  # rounded up to the mesh
  assert layout.slots == 4
