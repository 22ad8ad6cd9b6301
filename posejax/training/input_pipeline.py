"""Training windows gathered on the host with tf.data (the `train.input='host'` path).

The default input path keeps the frame tables on the device and gathers windows inside the
step (`posejax.training.sampling`). This module is for tables that do not fit the device: tf.data
gathers the same windows (bit for bit, same order: `sampling`'s contract) from the same
`WindowTable` on the host, one batch per global step of the schedule, and the step receives
them ready-made. The stream is stateless: the batch of a row depends only on the row (the
slot's slice and its model's own step count), so it can restart anywhere.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

# Every batch is a fresh buffer of tens to hundreds of MB; with the default malloc-based CPU
# allocator each one is a new mmap whose page faults cost more than the gather itself. TF's
# BFC allocator reuses the buffers. Read when TF first allocates.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

from posejax.common.tf_compat import tf  # noqa: E402
from posejax.data.dataset import PoseDataset  # noqa: E402
from posejax.models.family import Window  # noqa: E402
from posejax.pose.skeleton import flip_permutation  # noqa: E402
from posejax.training import sampling  # noqa: E402


def _batch_fn(table: sampling.WindowTable, spec: sampling.WindowSpec):
  """The tf.data map function (slice_index (K,), position (K,)) -> batch dict.

  The closure holds only TF tensors (eager constants, captured by the traced function rather
  than embedded in its graph).
  """
  t = {k: tf.constant(v) for k, v in table.arrays().items()}
  b, rf, c = spec.batch_size, spec.receptive_field, spec.chunk_length
  ids = tf.constant(spec.stream_ids, tf.int64)
  offsets = tf.range(spec.window_frames) - rf // 2 - spec.causal_shift
  perm_2d = tf.constant(flip_permutation(table.frames_2d.shape[1], spec.keypoints_left, spec.keypoints_right))
  perm_3d = tf.constant(flip_permutation(table.targets_3d.shape[1], spec.joints_left, spec.joints_right))
  sign_2d = tf.constant([-1.0] + [1.0] * (table.frames_2d.shape[2] - 1), tf.float32)
  sign_3d = tf.constant([-1.0, 1.0, 1.0], tf.float32)

  def mirror(x, flip, perm, sign):
    mirrored = tf.gather(x, perm, axis=-2) * sign
    return tf.where(flip, mirrored, x)

  def batch(slice_index, position):
    n = tf.cast(tf.gather(t["examples"], slice_index), tf.int64)[:, None]
    stream = tf.cast(position, tf.int64)[:, None] * b + tf.range(b, dtype=tf.int64)  # (K, B)
    n = tf.broadcast_to(n, tf.shape(stream))
    key = tf.stack([tf.fill(tf.shape(stream), tf.constant(spec.seed, tf.int64)),
                    tf.broadcast_to(tf.gather(ids, slice_index)[:, None], tf.shape(stream)), stream // n], -1)
    example = tf.raw_ops.RandomIndexShuffle(index=tf.reshape(stream % n, [-1]), seed=tf.reshape(key, [-1, 3]),
                                            max_index=tf.reshape(n - 1, [-1]), rounds=sampling.SHUFFLE_ROUNDS)
    example = tf.reshape(tf.cast(example, tf.int32), tf.shape(stream))
    example += tf.gather(t["slice_offset"], slice_index)[:, None]
    block = tf.searchsorted(t["block_start"], tf.reshape(example, [-1]), side="right") - 1
    block = tf.reshape(block, tf.shape(stream))
    first, length = tf.gather(t["block_frame"], block), tf.gather(t["block_length"], block)
    frame = first + (example - tf.gather(t["block_start"], block)) * c - sampling.chunk_offset(length, c)
    first, last = first[..., None], (first + length - 1)[..., None]
    flip = tf.gather(t["block_flip"], block)[..., None, None, None]
    rows = tf.clip_by_value(frame[..., None] + offsets, first, last)
    poses_2d = mirror(tf.gather(t["frames_2d"], rows), flip, perm_2d, sign_2d)
    target_rows = tf.clip_by_value(frame[..., None] + tf.range(c), first, last)
    target = mirror(tf.gather(t["targets_3d"], target_rows), flip, perm_3d, sign_3d)
    return {"poses_2d": poses_2d, "poses_3d": target}

  return batch


def _stream(elements, table: sampling.WindowTable, spec: sampling.WindowSpec):
  options = tf.data.Options()
  options.deterministic = True
  return (elements.map(_batch_fn(table, spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE).with_options(options).as_numpy_iterator())


def host_batches(table: sampling.WindowTable, spec: sampling.WindowSpec,
                 rows: np.ndarray, positions: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
  """One batch per schedule row, gathered by tf.data on the host.

  Args:
    rows: (T, K) slice index of each slot (any valid slice for empty slots).
    positions: (T, K) own step count of each slot's model.
  Yields:
    {'poses_2d': (K, B, C + RF - 1, Kp, F) float32, 'poses_3d': (K, B, C, J, 3) float32}.
  """
  elements = tf.data.Dataset.from_tensor_slices((np.asarray(rows, np.int32), np.asarray(positions, np.int32)))
  return _stream(elements, table, spec)


def train_batches(dataset: PoseDataset, *, actions: Sequence[str], mode: str, batch_size: int,
                  receptive_field: int, causal_shift: int = 0, augment: bool = True,
                  seed: int = 1234, start_step: int = 0, stream_ids: Sequence[int] | None = None,
                  chunk_length: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of every slice at once, slice a at its own step p = start_step, ...

  The lock-step view of the stream (all slices step together), for inspection and benchmarks:
  {'poses_2d': (A, B, C + RF - 1, Kp, F), 'poses_3d': (A, B, C, J, 3)} per step (B chunks of
  C = chunk_length output frames).
  """
  table = sampling.make_window_table(dataset, actions, mode, augment, chunk_length)
  count = len(table.examples)
  ids = range(count) if stream_ids is None else stream_ids
  spec = sampling.window_spec(table, batch_size=batch_size, window=Window(receptive_field, causal_shift), seed=seed,
                              stream_ids=ids)
  slice_index = tf.range(count, dtype=tf.int32)
  elements = tf.data.Dataset.range(start_step, np.iinfo(np.int32).max).map(
      lambda s: (slice_index, tf.fill([count], tf.cast(s, tf.int32))))
  return _stream(elements, table, spec)
