"""Tests for the host tf.data windows (posejax.training.input_pipeline) against NumPy references written here.

Every frame carries a recognisable code = 1000 * record_id + t: 2D keypoint k of frame t is
(code, k), 3D joint j is (code, j, 0.5). The 3D target's joint 3 (in no flip list) therefore
names the example: |x| = code, x < 0 iff mirrored.
"""

import itertools

import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data.dataset import PoseDataset, SequenceRecord
from posejax.pose.skeleton import Skeleton
from posejax.training import input_pipeline as ip, sampling, slices

K, J = 5, 4
KPS_LEFT, KPS_RIGHT = (1, 2), (3, 4)
SKELETON = Skeleton(parents=(-1, 0, 0, 0), joints_left=(1,), joints_right=(2,))
# (action, frames) in record order; Posing is never selected.
LAYOUT = (("Walking", 7), ("Eating", 5), ("Walking", 4), ("Posing", 6), ("Sitting", 3),
          ("Sitting", 6))
ACTIONS = ("Eating", "Sitting", "Walking")


def _record(record_id: int, action: str, frames: int) -> SequenceRecord:
  code = 1000.0 * record_id + np.arange(frames, dtype=np.float32)
  poses_2d = np.stack(np.broadcast_arrays(code[:, None], np.arange(K)[None]), -1)
  poses_3d = np.stack(np.broadcast_arrays(code[:, None], np.arange(J)[None], 0.5), -1)
  return SequenceRecord(subject="S1", name=f"{action} {record_id}", action=action, camera=0,
                        poses_2d=poses_2d.astype(np.float32), poses_3d=poses_3d.astype(np.float32),
                        intrinsic=None, res_w=1000, res_h=1000)


DATASET = PoseDataset(
    sequences=tuple(_record(i + 1, a, n) for i, (a, n) in enumerate(LAYOUT)),
    keypoints_left=KPS_LEFT, keypoints_right=KPS_RIGHT, skeleton=SKELETON, num_keypoints=K,
    fps=50.0, layout_name=None, source="test")
RECORDS = {i + 1: r for i, r in enumerate(DATASET.sequences)}


def reference_examples(actions, augment):
  """(record_id, frame, flip) in reference order: per sequence unflipped, then flipped."""
  out = []
  for rid, r in RECORDS.items():
    if r.action in actions:
      for flip in (False, True) if augment else (False,):
        out += [(rid, t, flip) for t in range(r.num_frames)]
  return out


def reference_flip(x, left, right):
  x = x.copy()
  x[..., 0] *= -1
  x[..., list(left) + list(right), :] = x[..., list(right) + list(left), :]
  return x


def reference_window(rid, f, flip, rf, shift):
  """reference V7.1: copy the in-range frames, replicate edges to length RF."""
  poses, pad = RECORDS[rid].poses_2d, rf // 2
  s, e = f - pad - shift, f + pad - shift + 1
  lo, hi = max(s, 0), min(e, len(poses))
  window = np.pad(poses[lo:hi], ((lo - s, e - hi), (0, 0), (0, 0)), mode="edge")
  return reference_flip(window, KPS_LEFT, KPS_RIGHT) if flip else window


def reference_target(rid, f, flip):
  target = RECORDS[rid].poses_3d[f:f + 1].copy()
  if flip:
    target = reference_flip(target, SKELETON.joints_left, SKELETON.joints_right)
  target[:, 0] = 0
  return target


def decode(poses_3d):
  """(A, B, 1, J, 3) targets -> (A, B) lists of (record_id, frame, flip)."""
  x = poses_3d[:, :, 0, 3, 0]
  code = np.abs(x).astype(np.int64)
  return [[(int(c // 1000), int(c % 1000), bool(v < 0)) for c, v in zip(cs, xs)]
          for cs, xs in zip(code, x)]


def batches(n, **kwargs):
  kwargs = dict(dict(actions=ACTIONS, mode="action_based", batch_size=4, receptive_field=5),
                **kwargs)
  return list(itertools.islice(ip.train_batches(DATASET, **kwargs), n))


def stream(batch_list, slice_index):
  """The examples of one slice, in stream order, over consecutive batches."""
  return [e for b in batch_list for e in decode(b["poses_3d"])[slice_index]]


@pytest.mark.parametrize("rf,shift", [(3, 0), (9, 0), (9, 4), (7, -2)])
def test_windows_and_targets_match_numpy_slicing(rf, shift):
  out = batches(8, receptive_field=rf, causal_shift=shift, batch_size=5)
  seen = set()
  for b in out:
    assert b["poses_2d"].shape == (3, 5, rf, K, 2) and b["poses_2d"].dtype == np.float32
    assert b["poses_3d"].shape == (3, 5, 1, J, 3) and b["poses_3d"].dtype == np.float32
    for a, examples in enumerate(decode(b["poses_3d"])):
      for i, (rid, f, flip) in enumerate(examples):
        seen.add((rid, f, flip))
        np.testing.assert_array_equal(b["poses_2d"][a, i], reference_window(rid, f, flip, rf, shift))
        np.testing.assert_array_equal(b["poses_3d"][a, i], reference_target(rid, f, flip))
  # A whole epoch of every slice: both ends of every sequence, mirrored and not, were checked.
  assert seen == set(reference_examples(ACTIONS, True))


def test_flip_mirrors_x_and_swaps_columns():
  poses = np.arange(2 * K * 2, dtype=np.float32).reshape(2, K, 2)
  flipped = sampling.flip_poses(poses, KPS_LEFT, KPS_RIGHT)
  np.testing.assert_array_equal(flipped[:, 0], poses[:, 0] * [-1, 1])
  np.testing.assert_array_equal(flipped[:, [1, 2, 3, 4]], poses[:, [3, 4, 1, 2]] * [-1, 1])
  np.testing.assert_array_equal(sampling.flip_poses(flipped, KPS_LEFT, KPS_RIGHT), poses)
  b = batches(6, batch_size=3)
  flips = [(b_["poses_3d"][a, i], e) for b_ in b for a, row in enumerate(decode(b_["poses_3d"]))
           for i, e in enumerate(row) if e[2]]
  assert flips
  for target, (rid, f, _) in flips:
    joints = RECORDS[rid].poses_3d[f]
    np.testing.assert_array_equal(target[0, 0], 0)  # root zeroed
    np.testing.assert_array_equal(target[0, 1], joints[2] * [-1, 1, 1])  # left <- right
    np.testing.assert_array_equal(target[0, 2], joints[1] * [-1, 1, 1])
    np.testing.assert_array_equal(target[0, 3], joints[3] * [-1, 1, 1])


@pytest.mark.parametrize("augment", [True, False])
def test_each_slice_is_a_fresh_permutation_of_its_action_every_epoch(augment):
  n = slices.examples_per_epoch(DATASET, ACTIONS, "action_based", augment)
  batch_size = 4
  out = batches(int(np.ceil(3 * n.max() / batch_size)), augment=augment, batch_size=batch_size)
  for a, action in enumerate(ACTIONS):
    expected = sorted(reference_examples((action,), augment))
    assert len(expected) == n[a]
    examples = stream(out, a)
    epochs = [examples[e * n[a]:(e + 1) * n[a]] for e in range(3)]
    for epoch in epochs:
      assert sorted(epoch) == expected  # only its own action, each example once
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_order_is_the_contract_index_shuffle_per_seed_action_epoch():
  """Example q of slice a is index_shuffle(q % n_a, seed=(seed, a, q // n_a)) (DESIGN.md)."""
  from posejax.common.tf_compat import tf
  out = batches(6, batch_size=4, seed=11)
  q = np.arange(24, dtype=np.int64)
  for a, action in enumerate(ACTIONS):
    examples = reference_examples((action,), True)
    n = len(examples)
    seeds = np.stack([np.full_like(q, 11), np.full_like(q, a), q // n], axis=-1)
    order = tf.raw_ops.RandomIndexShuffle(index=q % n, seed=seeds, max_index=np.full_like(q, n - 1),
                                          rounds=4).numpy()
    assert stream(out, a) == [examples[i] for i in order]


def test_common_mode_mixes_all_selected_actions_in_one_slice():
  n = slices.examples_per_epoch(DATASET, ACTIONS, "common", True)
  out = batches(int(np.ceil(n[0] / 8)) + 1, mode="common", batch_size=8)
  assert out[0]["poses_2d"].shape == (1, 8, 5, K, 2)
  epoch = stream(out, 0)[:n[0]]
  assert sorted(epoch) == sorted(reference_examples(ACTIONS, True))
  actions_in_first_batch = {RECORDS[rid].action for rid, _, _ in decode(out[0]["poses_3d"])[0]}
  assert len(actions_in_first_batch) > 1


def test_deterministic_for_a_seed_and_seeds_differ():
  first, again, other = (batches(3, seed=s) for s in (7, 7, 8))
  for x, y in zip(first, again):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert any(not np.array_equal(x["poses_2d"], z["poses_2d"]) for x, z in zip(first, other))


def test_start_step_resumes_the_uninterrupted_stream():
  straight = batches(9, batch_size=3)
  for k in (1, 5):
    resumed = batches(9 - k, start_step=k, batch_size=3)
    for x, y in zip(straight[k:], resumed):
      for key in x:
        np.testing.assert_array_equal(x[key], y[key])


def test_examples_per_epoch_by_hand():
  np.testing.assert_array_equal(slices.examples_per_epoch(DATASET, ACTIONS, "action_based", False),
                                [5, 9, 11])
  np.testing.assert_array_equal(slices.examples_per_epoch(DATASET, ACTIONS, "action_based", True),
                                [10, 18, 22])
  np.testing.assert_array_equal(slices.examples_per_epoch(DATASET, ACTIONS, "common", True), [50])
  np.testing.assert_array_equal(slices.examples_per_epoch(DATASET, ("Walking",), "common", False), [11])


def test_example_blocks_by_hand():
  start, frame, length, flip = sampling.example_blocks([3, 2], augment=True)
  np.testing.assert_array_equal(start, [0, 3, 6, 8])
  np.testing.assert_array_equal(frame, [0, 0, 3, 3])
  np.testing.assert_array_equal(length, [3, 3, 2, 2])
  np.testing.assert_array_equal(flip, [False, True, False, True])


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="joint"), "mode"),
    (dict(actions=("Eating", "Greeting")), "Greeting"),
    (dict(receptive_field=4), "odd"),
    (dict(batch_size=0), "batch_size"),
])
def test_user_errors(kwargs, match):
  with pytest.raises(PosejaxError, match=match):
    batches(1, **kwargs)


def test_stream_ids_make_an_action_alone_see_the_order_it_sees_beside_others():
  together = batches(4, stream_ids=(2, 8, 13))  # Eating, Sitting, Walking ids
  alone = batches(4, actions=("Sitting",), stream_ids=(8,))
  assert stream(together, 1) == stream(alone, 0)
  default_alone = batches(4, actions=("Sitting",))  # slice index 0 != id 8: another order
  assert stream(default_alone, 0) != stream(alone, 0)
  with pytest.raises(PosejaxError, match="stream_ids"):
    batches(1, stream_ids=(1, 2))
