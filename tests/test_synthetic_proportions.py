"""Tests for the synthetic generator's sequence lengths: `--proportions h36m` gives Human3.6M's
frames per action and split (times `--scale`), so the AB packing is the real data's."""

import os

import numpy as np
import pytest

from configs import ab243
from posejax.common.errors import PosejaxError
from posejax.data import loading, synthetic
from posejax.data.h36m_cameras import H36M_SUBJECTS, TEST_SUBJECTS, TRAIN_SUBJECTS
from posejax.data.h36m_frames import SPLIT_FRAMES, frames_array
from posejax.pose.actions import ACTIONS, action_of
from posejax.training import sampling, schedules, slices
from pieces import data_args

SCALE = 0.02  # about 10,500 mocap frames in all; the smallest that works is about 0.014
SPLITS = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS}
# SHA-256 of generate(frames=16, seed=0, subjects=("S1", "S11")) before proportions existed: the
# default output must stay byte-identical (these digests pin this numpy build's arithmetic).
def _expected_mocap(split: str, scale: float) -> np.ndarray:
  """(15,) mocap frames per action: the table's camera frames / 4 times `scale`, rounded."""
  return np.round(frames_array(split) // 4 * scale).astype(np.int64)


def _per_action(lengths: dict[str, dict[str, int]], subjects) -> np.ndarray:
  totals = np.zeros(len(ACTIONS), np.int64)
  for subject in subjects:
    for name, frames in lengths[subject].items():
      totals[ACTIONS.index(action_of(name))] += frames
  return totals


def _packing(examples: np.ndarray) -> tuple[int, float]:
  """(slots, useful fraction) of the seed's AB config on `examples` per action, as the trainer
  computes them (`trainer.Run`: budget, log points, targets, slot choice; one device)."""
  config = ab243.get_config()
  t = config.train
  budget = schedules.make_budget(str(t.budget), str(config.mode), int(t.epochs), int(t.unit_epochs), examples,
                                 int(t.batch_size))
  points = schedules.log_steps(budget.total_steps, budget.common_epochs, int(t.logs_per_epoch))
  targets = slices.log_targets(budget.steps, [s for _, s in points])
  layout, useful = slices.choose_slots(targets, 1, len(examples))
  return layout.slots, useful


@pytest.mark.parametrize("scale", [1.0, 0.3, SCALE])
@pytest.mark.parametrize("seed", [0, 7])
def test_plan_gives_each_split_and_action_its_exact_total(scale, seed):
  plan = synthetic.sequence_plan("h36m", scale, seed)
  assert list(plan) == list(H36M_SUBJECTS)
  for subject in H36M_SUBJECTS:
    assert list(plan[subject]) == list(synthetic.sequence_names(subject))
  for split, subjects in SPLITS.items():
    np.testing.assert_array_equal(_per_action(plan, subjects), _expected_mocap(split, scale), err_msg=split)
  lengths = [n for seqs in plan.values() for n in seqs.values()]
  assert min(lengths) >= synthetic.MIN_FRAMES
  assert len(set(lengths)) > 40  # takes differ in length, as real ones do


def test_plan_at_scale_1_is_the_table_and_depends_on_the_seed():
  plan = synthetic.sequence_plan("h36m", 1.0, 0)
  for split, subjects in SPLITS.items():
    np.testing.assert_array_equal(4 * _per_action(plan, subjects), frames_array(split))
  total = sum(n for seqs in plan.values() for n in seqs.values())
  assert 4 * total == sum(SPLIT_FRAMES["train"].values()) + sum(SPLIT_FRAMES["test"].values()) == 2_103_096
  assert synthetic.sequence_plan("h36m", 1.0, 0) == plan  # deterministic
  assert synthetic.sequence_plan("h36m", 1.0, 1) != plan


def test_split_shares_sum_exactly():
  np.testing.assert_array_equal(synthetic.split_shares(10, [1, 1, 1]), [4, 3, 3])
  rng = np.random.default_rng(0)
  for total in (0, 1, 17, 12345):
    weights = rng.uniform(0.85, 1.15, 7)
    shares = synthetic.split_shares(total, weights)
    assert shares.sum() == total
    assert np.abs(shares - total * weights / weights.sum()).max() < 1  # proportional, rounded


def test_equal_plan_is_what_the_generator_writes():
  plan = synthetic.sequence_plan("equal", frames=40, seed=3)
  written = synthetic.generate_positions_3d(40, 3, ("S11",))
  assert {n: len(x) for n, x in written["S11"].items()} == plan["S11"]


def test_default_marker_records_equal_proportions(tmp_path):
  synthetic.generate(str(tmp_path), frames=16, seed=0, subjects=("S1", "S11"))
  marker = synthetic.read_marker(str(tmp_path))
  assert (marker["frames"], marker["proportions"], marker["scale"]) == (16, "equal", None)


def test_bad_proportions_and_scales(tmp_path, capsys):
  out = str(tmp_path / "data")
  with pytest.raises(PosejaxError, match=r"^--scale 0.005: too small, .* < 16 mocap frames \(needs about --scale"):
    synthetic.generate(out, proportions="h36m", scale=0.005)
  with pytest.raises(PosejaxError, match="--scale"):
    synthetic.sequence_plan("h36m", 0.0)
  with pytest.raises(PosejaxError, match="--proportions"):
    synthetic.sequence_plan("real")
  for argv in (["--proportions", "h36m", "--scale", "0.001"], ["--scale", "0.1"],
               ["--proportions", "h36m", "--frames", "100"]):
    assert synthetic.main(["--out", out, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and err.count("\n") == 1
  assert not os.path.exists(out)  # nothing written on error


@pytest.fixture(scope="module")
def h36m_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("h36m_proportions"))
  assert synthetic.main(["--out", out, "--proportions", "h36m", "--scale", str(SCALE), "--seed", "2"]) == 0
  return out


def _loaded(data_dir):
  """(train, test) datasets of the seed's AB config on `data_dir`, as the trainer loads them."""
  config = ab243.get_config()
  config.data.dir, config.data.keypoints = data_dir, "synthetic"
  return loading.load_data(*data_args(config), loading.selected_actions(*data_args(config)))[:2]


def _camera_frames(dataset) -> np.ndarray:
  totals = np.zeros(len(ACTIONS), np.int64)
  for record in dataset.sequences:
    totals[ACTIONS.index(record.action)] += record.num_frames
  return totals


def test_loaded_frames_per_action_are_the_table_times_the_scale(h36m_dir):
  marker = synthetic.read_marker(h36m_dir)
  assert (marker["proportions"], marker["scale"], marker["seed"], marker["complete"]) == ("h36m", SCALE, 2, True)
  train, test = _loaded(h36m_dir)
  # 4 cameras, each video cropped to the mocap length.
  np.testing.assert_array_equal(_camera_frames(train), 4 * _expected_mocap("train", SCALE))
  np.testing.assert_array_equal(_camera_frames(test), 4 * _expected_mocap("test", SCALE))
  np.testing.assert_allclose(_camera_frames(train), frames_array("train") * SCALE, atol=2)


def test_seed_ab_packing_is_human36ms():
  # Scale 1 from the plan alone: the table's counts exactly, doubled by flip augmentation.
  plan = synthetic.sequence_plan("h36m", 1.0, 0)
  examples = 2 * 4 * _per_action(plan, TRAIN_SUBJECTS)
  np.testing.assert_array_equal(examples, 2 * frames_array("train"))
  slots, useful = _packing(examples)
  assert slots == 10 and useful == pytest.approx(0.982, abs=1e-3)


def test_seed_ab_packing_of_loaded_small_scale_data(h36m_dir):
  train, _ = _loaded(h36m_dir)
  config = ab243.get_config()
  table = sampling.make_window_table(train, ACTIONS, str(config.mode), bool(config.train.augment))
  np.testing.assert_array_equal(table.examples, 2 * 4 * _expected_mocap("train", SCALE))
  # The counts are proportional to Human3.6M's: the same 10 slots and 98.2 % useful.
  slots, useful = _packing(table.examples)
  assert slots == 10 and useful == pytest.approx(0.982, abs=1e-3)
