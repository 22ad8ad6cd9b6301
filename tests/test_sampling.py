"""Tests for posejax.training.sampling: TF's index shuffle in jax.numpy, and device windows that are
bit-identical to the host tf.data windows and to NumPy slicing, for any schedule rows."""

import dataclasses

import jax
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.common.tf_compat import tf
from posejax.models.family import Window
from posejax.training import input_pipeline, sampling, slices

# The input-pipeline tests' coded dataset and its NumPy references.
from test_input_pipeline import ACTIONS, DATASET, J, K, decode, reference_target, reference_window  # noqa: I001


@pytest.mark.parametrize("max_index", [0, 1, 9, 255, 65535, 65536, 65537, 218847, 2**20 + 1, 3119503,
                                       2**31 - 1])
def test_index_shuffle_equals_tensorflow(max_index):
  rng = np.random.default_rng(max_index % 1000)
  index = rng.integers(0, max_index + 1, size=300)
  key = rng.integers(0, 2**40, size=(300, 3))  # words are taken modulo 2**32
  want = tf.raw_ops.RandomIndexShuffle(index=index, seed=key, max_index=np.full_like(index, max_index),
                                       rounds=4).numpy()
  got = jax.jit(sampling.index_shuffle)(index.astype(np.uint32), key.astype(np.uint32),
                                        np.full(300, max_index, np.uint32))
  np.testing.assert_array_equal(got, want)


def test_index_shuffle_is_a_permutation_and_other_rounds_match():
  n = 1000
  out = np.asarray(sampling.index_shuffle(np.arange(n), np.array([3, 1, 4]), np.full(n, n - 1)))
  assert sorted(out.tolist()) == list(range(n))
  want = tf.raw_ops.RandomIndexShuffle(index=np.arange(n), seed=np.tile([[3, 1, 4]], (n, 1)),
                                       max_index=np.full(n, n - 1), rounds=8).numpy()
  np.testing.assert_array_equal(sampling.index_shuffle(np.arange(n), np.array([3, 1, 4]), np.full(n, n - 1),
                                                       rounds=8), want)


def _spec(table, rf, shift, ids=(2, 8, 13)):
  return sampling.window_spec(table, batch_size=5, window=Window(rf, shift), seed=11, stream_ids=ids)


@pytest.mark.parametrize("rf,shift", [(3, 0), (9, 4), (7, -2)])
def test_device_windows_equal_host_windows_and_numpy_slicing(rf, shift):
  table = sampling.make_window_table(DATASET, ACTIONS, "action_based", True)
  spec = _spec(table, rf, shift)
  # Compacted-schedule rows: slots hold any slice at any of its model's own steps.
  rows = np.array([[0, 2], [1, 0], [2, 2], [0, 1], [2, 1]], np.int32)
  positions = np.array([[0, 0], [0, 1], [1, 2], [1, 1], [3, 2]], np.int32)
  host = list(input_pipeline.host_batches(table, spec, rows, positions))
  gather = jax.jit(lambda t, r, p: sampling.device_batch(t, spec, r, p))
  tables = jax.device_put(table.arrays())
  seen = set()
  for row, pos, h in zip(rows, positions, host):
    d = jax.tree.map(np.asarray, gather(tables, row, pos))
    for key in ("poses_2d", "poses_3d"):
      assert d[key].dtype == np.float32
      np.testing.assert_array_equal(d[key].view(np.uint32), h[key].view(np.uint32))  # bit for bit
    for k, examples in enumerate(decode(d["poses_3d"])):
      for i, (rid, f, flip) in enumerate(examples):
        seen.add(flip)
        assert DATASET.sequences[rid - 1].action == ACTIONS[row[k]]
        np.testing.assert_array_equal(d["poses_2d"][k, i], reference_window(rid, f, flip, rf, shift))
        np.testing.assert_array_equal(d["poses_3d"][k, i], reference_target(rid, f, flip))
  assert seen == {False, True}


def test_a_slot_sees_its_slice_stream_at_its_models_own_step():
  """Slot data depend only on (slice, own step): the lock-step stream gives the same windows."""
  table = sampling.make_window_table(DATASET, ACTIONS, "action_based", True)
  spec = _spec(table, 5, 0)
  lockstep = list(__import__("itertools").islice(input_pipeline.train_batches(
      DATASET, actions=ACTIONS, mode="action_based", batch_size=5, receptive_field=5, seed=11,
      stream_ids=(2, 8, 13)), 4))
  tables = jax.device_put(table.arrays())
  for slice_index in range(3):
    for step in range(4):
      d = sampling.device_batch(tables, spec, np.array([slice_index]), np.array([step]))
      np.testing.assert_array_equal(d["poses_2d"][0], lockstep[step]["poses_2d"][slice_index])


def test_the_order_contract_and_epochs():
  """Example q of a slice is index_shuffle(q % n, key=(seed, id, q // n)): each epoch a permutation."""
  table = sampling.make_window_table(DATASET, ACTIONS, "action_based", True)
  spec = _spec(table, 3, 0)
  tables = jax.device_put(table.arrays())
  n = int(table.examples[1])  # Sitting: 18 examples
  where = sampling.example_indices(tables, spec, np.array([1] * 8), np.arange(8))
  frames = np.asarray(where["frame"]).ravel()[:2 * n]
  flips = np.asarray(where["flip"]).ravel()[:2 * n]
  for epoch in range(2):
    pairs = sorted(zip(frames[epoch * n:(epoch + 1) * n].tolist(), flips[epoch * n:(epoch + 1) * n].tolist()))
    assert len(set(pairs)) == n  # every example once per epoch
  q = np.arange(2 * n)
  order = tf.raw_ops.RandomIndexShuffle(index=q % n, seed=np.stack([np.full_like(q, 11), np.full_like(q, 8), q // n], -1),
                                        max_index=np.full_like(q, n - 1), rounds=4).numpy()
  start, frame, _, flip = sampling.example_blocks([3, 6], True)  # Sitting's two sequences
  block = np.searchsorted(start, order, side="right") - 1
  offset = int(table.block_frame[np.searchsorted(table.block_start, table.slice_offset[1], side="right") - 1])
  np.testing.assert_array_equal(frames, offset + frame[block] + order - start[block])
  np.testing.assert_array_equal(flips, flip[block])


def test_table_and_spec_errors():
  table = sampling.make_window_table(DATASET, ACTIONS, "common", False)
  assert table.examples.tolist() == [25] and table.frames_2d.shape == (25, 5, 2)
  assert slices.examples_per_epoch(DATASET, ACTIONS, "common", False).tolist() == [25]
  with pytest.raises(PosejaxError, match="odd"):
    _spec(table, 4, 0, ids=(1,))
  with pytest.raises(PosejaxError, match="stream_ids"):
    _spec(table, 3, 0, ids=(1, 2))


# --- Chunks (the reference's --stride): ChunkedGenerator stated in NumPy -----------------------


def with_confidence(dataset):
  """The coded dataset with a third feature per keypoint (a positive 'confidence': never mirrored)."""
  records = []
  for r in dataset.sequences:
    confidence = 0.5 + 0.1 * np.broadcast_to(np.arange(r.poses_2d.shape[1], dtype=np.float32), r.poses_2d.shape[:2])
    records.append(dataclasses.replace(r, poses_2d=np.concatenate([r.poses_2d, confidence[..., None]], -1)))
  return dataclasses.replace(dataset, sequences=tuple(records))


def reference_pairs(dataset, actions, chunk, augment):
  """reference V7.1: (record, start, end, flip) in the generator's order over a slice's records."""
  pairs = []
  for rid, r in enumerate(dataset.sequences):
    if r.action not in actions:
      continue
    n = -(-r.num_frames // chunk)
    offset = (n * chunk - r.num_frames) // 2
    bounds = [k * chunk - offset for k in range(n + 1)]
    for flip in (False, True) if augment else (False,):
      pairs += [(rid, s, e, flip) for s, e in zip(bounds[:-1], bounds[1:])]
  return pairs


def reference_flip(x, left, right):
  x = x.copy()
  x[..., 0] *= -1  # x only: y and any further feature keep their sign
  x[..., list(left) + list(right), :] = x[..., list(right) + list(left), :]
  return x


def edge_slice(array, start, end):
  """array[start:end] with the first/last frame repeated where the range sticks out."""
  lo, hi = max(start, 0), min(end, len(array))
  return np.pad(array[lo:hi], ((lo - start, end - hi),) + ((0, 0),) * (array.ndim - 1), mode="edge")


def reference_chunk(dataset, pair, rf, shift):
  """(2D window (C + RF - 1, K, F), 3D target (C, J, 3) with joint 0 zeroed) of one pair."""
  rid, s, e, flip = pair
  r, pad = dataset.sequences[rid], (rf - 1) // 2
  window = edge_slice(r.poses_2d, s - pad - shift, e + pad - shift)
  target = edge_slice(r.poses_3d, s, e)
  if flip:
    window = reference_flip(window, dataset.keypoints_left, dataset.keypoints_right)
    target = reference_flip(target, dataset.joints_left, dataset.joints_right)
  target[:, 0] = 0
  return window, target


@pytest.mark.parametrize("chunk,rf,shift,features", [(3, 3, 0, 2), (4, 9, 4, 2), (2, 7, -2, 3), (1, 5, 2, 3)])
def test_chunk_windows_equal_host_windows_and_the_reference_generator(chunk, rf, shift, features):
  """A whole epoch of every slice: device == host bit for bit == the NumPy ChunkedGenerator, each
  example at the stream position the order contract (TF's index shuffle) gives it."""
  dataset = DATASET if features == 2 else with_confidence(DATASET)
  table = sampling.make_window_table(dataset, ACTIONS, "action_based", True, chunk)
  pairs = [reference_pairs(dataset, (a,), chunk, True) for a in ACTIONS]
  assert table.examples.tolist() == [len(p) for p in pairs]
  assert table.chunk_length == chunk and table.frames_2d.shape[-1] == features
  spec = _spec(table, rf, shift)
  b, steps = spec.batch_size, -(-max(len(p) for p in pairs) // spec.batch_size)
  rows = np.tile(np.arange(3, dtype=np.int32), (steps, 1))
  positions = np.repeat(np.arange(steps, dtype=np.int32)[:, None], 3, axis=1)
  host = list(input_pipeline.host_batches(table, spec, rows, positions))
  gather = jax.jit(lambda t, r, p: sampling.device_batch(t, spec, r, p))
  tables = jax.device_put(table.arrays())
  seen = [set() for _ in ACTIONS]
  for row, pos, h in zip(rows, positions, host):
    d = jax.tree.map(np.asarray, gather(tables, row, pos))
    assert d["poses_2d"].shape == (3, b, chunk + rf - 1, K, features)
    assert d["poses_3d"].shape == (3, b, chunk, J, 3)
    for key in ("poses_2d", "poses_3d"):
      np.testing.assert_array_equal(d[key].view(np.uint32), h[key].view(np.uint32))  # bit for bit
    for a in range(3):
      n = len(pairs[a])
      q = pos[a] * b + np.arange(b)
      example = tf.raw_ops.RandomIndexShuffle(
          index=q % n, seed=np.stack([np.full_like(q, 11), np.full_like(q, (2, 8, 13)[a]), q // n], -1),
          max_index=np.full_like(q, n - 1), rounds=4).numpy()
      for i, e in enumerate(example):
        window, target = reference_chunk(dataset, pairs[a][e], rf, shift)
        np.testing.assert_array_equal(d["poses_2d"][a, i], window)
        np.testing.assert_array_equal(d["poses_3d"][a, i], target)
        if q[i] < n:
          seen[a].add(int(e))
  assert all(s == set(range(len(p))) for s, p in zip(seen, pairs))  # every chunk once in the first epoch


def test_chunk_counts_and_grid_by_hand():
  # Lengths 7, 4 (Walking): chunks of 3 -> ceil 3 and 2, grids offset by 1 and 1.
  start, frame, length, flip = sampling.example_blocks([7, 4], augment=True, chunk_length=3)
  assert start.tolist() == [0, 3, 6, 8] and frame.tolist() == [0, 0, 7, 7] and length.tolist() == [7, 7, 4, 4]
  assert flip.tolist() == [False, True, False, True]
  assert sampling.chunk_offset(np.array([7, 4, 6, 5]), 3).tolist() == [1, 1, 0, 0]
  assert reference_pairs(DATASET, ("Walking",), 3, False) == [(0, -1, 2, False), (0, 2, 5, False), (0, 5, 8, False),
                                                             (2, -1, 2, False), (2, 2, 5, False)]
  table = sampling.make_window_table(DATASET, ACTIONS, "common", False, 4)
  assert table.examples.tolist() == [sum(-(-r.num_frames // 4) for r in DATASET.sequences if r.action in ACTIONS)]
  # One-frame chunks: the examples are the frames (slices' count).
  one = sampling.make_window_table(DATASET, ACTIONS, "action_based", True)
  np.testing.assert_array_equal(one.examples, slices.examples_per_epoch(DATASET, ACTIONS, "action_based", True))
  with pytest.raises(PosejaxError, match="train.stride"):
    sampling.make_window_table(DATASET, ACTIONS, "common", False, 0)
