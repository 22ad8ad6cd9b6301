"""Training batches with tf.data: receptive-field windows, flips, shuffling, lock-step schedule.

Every batch carries a leading action axis A: action-based training stacks one slice per action
(slice a holds only action a's windows), common training has A = 1 (one slice with all selected
actions). Nothing but frame tables O(frames) is held in memory: the windows of a batch are
gathered from one flat table of all 2D frames with clipped indices (edge padding, videopose3d.md
7.1 with chunk_length 1), the example order comes from a stateless permutation per (seed,
action, epoch) (`RandomIndexShuffle`), so the stream can restart at any step.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np

# Every batch is a fresh buffer of tens to hundreds of MB; with the default malloc-based CPU
# allocator each one is a new mmap whose page faults cost more than the gather itself (about
# 2x the CPU time per batch). TF's BFC allocator reuses the buffers. The variable is read when
# TF first allocates, so this works as long as no TF op ran before this import.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

from posejax.data.dataset import PoseDataset, SequenceRecord  # noqa: E402
from posejax.errors import PosejaxError  # noqa: E402
from posejax.skeleton import flip_permutation  # noqa: E402
from posejax.tf_compat import tf  # noqa: E402

MODES = ("common", "action_based")
# Rounds of the shuffle cipher: the value tf.random.experimental.index_shuffle uses.
_SHUFFLE_ROUNDS = 4


def slice_records(dataset: PoseDataset, actions: Sequence[str],
                  mode: str) -> list[list[SequenceRecord]]:
  """The records of each batch slice, in the dataset's record order.

  Common mode: one slice with every record of the selected actions. Action-based mode: one
  slice per action, in the order of `actions`.
  """
  if mode not in MODES:
    raise PosejaxError(f"--config.mode: {mode!r} is not one of {', '.join(MODES)}")
  if not actions:
    raise PosejaxError("--config.actions: no actions selected")
  groups = [list(actions)] if mode == "common" else [[a] for a in actions]
  slices = [[r for r in dataset.sequences if r.action in group] for group in groups]
  for group, records in zip(groups, slices):
    if not records:
      raise PosejaxError(f"{dataset.source}: no training sequences for action(s) {', '.join(group)}")
  return slices


def examples_per_epoch(dataset: PoseDataset, actions: Sequence[str], mode: str,
                       augment: bool) -> np.ndarray:
  """n_a: examples (one per frame, twice that with flip augmentation) per slice, (A,) int64."""
  frames = [sum(r.num_frames for r in records) for records in slice_records(dataset, actions, mode)]
  return np.asarray(frames, np.int64) * (2 if augment else 1)


def schedule(step, steps_per_action, max_steps):
  """Lock-step schedule: action a's position p_a(s) and whether it trains at global step s.

  p_a(s) = floor(s * S_a / S_max); active iff floor((s + 1) * S_a / S_max) > p_a(s). Written
  with operators only so that it serves NumPy arrays and TF tensors alike.

  Args:
    step: global step s (scalar).
    steps_per_action: S_a, (A,) integers.
    max_steps: S_max = max_a S_a.
  Returns:
    positions (A,), active (A,) bool.
  """
  positions = step * steps_per_action // max_steps
  return positions, (step + 1) * steps_per_action // max_steps > positions


def example_blocks(lengths: Sequence[int], augment: bool) -> tuple[np.ndarray, ...]:
  """Example blocks of one slice, in reference order (per sequence: unflipped, then flipped).

  A block is one sequence's run of consecutive examples with one flip value.

  Args:
    lengths: frames of the slice's sequences, stored consecutively in the frame table.
  Returns:
    (example_start, frame_start, length, flip), each (num_blocks,): the first example of the
    block (relative to the slice), the frame-table row of the sequence's first frame (relative
    to the slice), the sequence length and the flip flag.
  """
  frame_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  copies = 2 if augment else 1
  lengths = np.repeat(np.asarray(lengths, np.int64), copies)
  example_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  flip = np.tile(np.arange(copies, dtype=bool), len(frame_start))
  return example_start, np.repeat(frame_start, copies), lengths, flip


def flip_poses(poses: np.ndarray, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
  """Mirror (videopose3d.md 7.3): negate x of every joint, then swap left/right columns.

  poses: (..., joints, features) -> same shape.
  """
  flipped = poses[..., flip_permutation(poses.shape[-2], left, right), :].copy()
  flipped[..., 0] *= -1
  return flipped


@dataclasses.dataclass(frozen=True)
class WindowSource:
  """Frame tables and the example lookup of the training stream.

  Attributes:
    frames_2d: (N, K, 2) float32 2D frames of all slices, slice after slice; with augment
      followed by their N mirrored copies (row N + i mirrors row i), so a flipped window is a
      plain gather.
    targets_3d: (N, J, 3) float32 3D frames with joint 0 zeroed (the pose target).
    block_start, block_frame, block_length: (num_blocks,) int64 global example index, frame
      row of the sequence start and sequence length of each example block (`example_blocks`).
    block_flip: (num_blocks,) bool.
    slice_offset: (A,) int64 global index of each slice's first example.
    examples: (A,) int64 n_a.
    num_frames: N.
    joints_left, joints_right: 3D flip lists.
  """

  frames_2d: np.ndarray
  targets_3d: np.ndarray
  block_start: np.ndarray
  block_frame: np.ndarray
  block_length: np.ndarray
  block_flip: np.ndarray
  slice_offset: np.ndarray
  examples: np.ndarray
  num_frames: int
  joints_left: tuple[int, ...]
  joints_right: tuple[int, ...]


def make_window_source(dataset: PoseDataset, actions: Sequence[str], mode: str,
                       augment: bool) -> WindowSource:
  """Flattens the selected records into frame tables (memory: O(frames))."""
  slices = slice_records(dataset, actions, mode)
  records = [r for records in slices for r in records]
  unusable = [f"{r.subject}/{r.name}/camera {r.camera}" for r in records
              if r.poses_3d is None or len(r.poses_3d) != r.num_frames]
  if unusable:
    raise PosejaxError(f"{dataset.source}: training sequences without 3D poses for every 2D "
                       f"frame: {', '.join(unusable[:3])}")
  num_frames = sum(r.num_frames for r in records)
  copies = 2 if augment else 1
  frames_2d = np.empty((copies * num_frames,) + records[0].poses_2d.shape[1:], np.float32)
  targets_3d = np.empty((num_frames,) + records[0].poses_3d.shape[1:], np.float32)
  row = 0
  for r in records:
    frames_2d[row:row + r.num_frames] = r.poses_2d
    targets_3d[row:row + r.num_frames] = r.poses_3d
    row += r.num_frames
  targets_3d[:, 0] = 0  # the trajectory is not a pose target
  if augment:
    frames_2d[num_frames:] = flip_poses(frames_2d[:num_frames], dataset.keypoints_left,
                                        dataset.keypoints_right)
  blocks, slice_offset, frame_offset, example_offset = [], [], 0, 0
  for records in slices:
    start, frame, length, flip = example_blocks([r.num_frames for r in records], augment)
    blocks.append((start + example_offset, frame + frame_offset, length, flip))
    slice_offset.append(example_offset)
    frame_offset += int(length.sum()) // copies
    example_offset += int(length.sum())
  start, frame, length, flip = (np.concatenate(column) for column in zip(*blocks))
  return WindowSource(
      frames_2d=frames_2d, targets_3d=targets_3d, block_start=start, block_frame=frame,
      block_length=length, block_flip=flip, slice_offset=np.asarray(slice_offset, np.int64),
      examples=examples_per_epoch(dataset, actions, mode, augment), num_frames=num_frames,
      joints_left=tuple(dataset.joints_left), joints_right=tuple(dataset.joints_right))


def _check_options(num_slices: int, batch_size: int, receptive_field: int, causal_shift: int,
                   steps_per_action: Sequence[int] | None, start_step: int) -> np.ndarray:
  """Validates the options; returns S_a as (A,) int64 (all ones when None)."""
  if batch_size < 1:
    raise PosejaxError(f"--config.batch_size: {batch_size} must be positive")
  if receptive_field < 1 or receptive_field % 2 == 0:
    raise PosejaxError(f"receptive field {receptive_field} must be a positive odd number")
  if abs(causal_shift) > receptive_field // 2:
    raise PosejaxError(f"causal shift {causal_shift} exceeds the half receptive field "
                       f"{receptive_field // 2}")
  if start_step < 0:
    raise PosejaxError(f"start step {start_step} is negative")
  if steps_per_action is None:
    return np.ones(num_slices, np.int64)
  steps = np.asarray(steps_per_action, np.int64)
  if steps.shape != (num_slices,) or steps.min() < 0 or steps.max() < 1:
    raise PosejaxError(f"steps per action {list(steps_per_action)}: expected {num_slices} "
                       "non-negative step counts, not all zero")
  return steps


def _batch_fn(source: WindowSource, batch_size: int, receptive_field: int, causal_shift: int,
              seed: int, steps: np.ndarray, stream_ids: np.ndarray):
  """The tf.data map function global step -> batch dict (see `train_batches`).

  The closure holds only TF tensors (eager constants, captured by the traced function rather
  than embedded in its graph), so the NumPy tables can be freed.
  """
  num_slices, num_frames = len(source.examples), source.num_frames
  flipped_rows = num_frames if len(source.frames_2d) > num_frames else 0
  if len(source.frames_2d) >= 2**31:
    raise PosejaxError(f"{len(source.frames_2d)} frame rows exceed the 2**31 rows a batch can index")
  frames_2d, targets_3d = tf.constant(source.frames_2d), tf.constant(source.targets_3d)
  block_start, block_frame, block_length, block_flip = (
      tf.constant(a) for a in (source.block_start, source.block_frame, source.block_length,
                               source.block_flip))
  slice_offset, examples = tf.constant(source.slice_offset), tf.constant(source.examples)
  steps_tf, max_steps = tf.constant(steps), int(steps.max())
  slice_ids = tf.constant(stream_ids, tf.int64)
  window_offsets = tf.range(receptive_field) - receptive_field // 2 - causal_shift
  flip_3d = tf.constant(flip_permutation(source.targets_3d.shape[1], source.joints_left,
                                         source.joints_right))
  mirror_x = tf.constant([-1, 1, 1], tf.float32)
  shape_2d = (num_slices, batch_size, receptive_field) + source.frames_2d.shape[1:]
  shape_3d = (num_slices, batch_size, 1) + source.targets_3d.shape[1:]

  def batch(step):
    positions, active = schedule(step, steps_tf, max_steps)
    stream = positions[:, None] * batch_size + tf.range(batch_size, dtype=tf.int64)  # (A, B)
    n = tf.broadcast_to(examples[:, None], stream.shape)
    seeds = tf.stack([tf.fill(stream.shape, tf.constant(seed, tf.int64)),
                      tf.broadcast_to(slice_ids[:, None], stream.shape), stream // n], axis=-1)
    example = tf.raw_ops.RandomIndexShuffle(
        index=tf.reshape(stream % n, [-1]), seed=tf.reshape(seeds, [-1, 3]),
        max_index=tf.reshape(n - 1, [-1]), rounds=_SHUFFLE_ROUNDS)
    example += tf.reshape(tf.broadcast_to(slice_offset[:, None], stream.shape), [-1])
    block = tf.searchsorted(block_start, example, side="right") - 1  # (A * B,)
    first = tf.gather(block_frame, block)
    frame = first + example - tf.gather(block_start, block)
    last = first + tf.gather(block_length, block) - 1
    flip = tf.gather(block_flip, block)
    # Edge padding = clipping to the sequence; mirrored windows come from the mirrored rows.
    # int32 rows: the (A * B * RF,) index vector is the largest intermediate besides the batch.
    first, frame, last = (tf.cast(x, tf.int32) for x in (first, frame, last))
    rows = tf.clip_by_value(frame[:, None] + window_offsets, first[:, None], last[:, None])
    rows += tf.cast(flip, tf.int32)[:, None] * flipped_rows
    poses_2d = tf.gather(frames_2d, tf.reshape(rows, [-1]))
    target = tf.gather(targets_3d, frame)
    target = tf.where(flip[:, None, None], tf.gather(target, flip_3d, axis=1) * mirror_x, target)
    return {
        "poses_2d": tf.reshape(poses_2d, shape_2d),
        "poses_3d": tf.reshape(target, shape_3d),
        "position": positions,
        "active": active,
        "epoch": tf.cast(positions * batch_size // examples, tf.int32),
        "examples_seen": positions * batch_size,
    }

  return batch


def train_batches(dataset: PoseDataset, *, actions: Sequence[str], mode: str, batch_size: int,
                  receptive_field: int, causal_shift: int = 0, augment: bool = True,
                  seed: int = 1234, steps_per_action: Sequence[int] | None = None,
                  start_step: int = 0,
                  stream_ids: Sequence[int] | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Endless training batches, one per global step s = start_step, start_step + 1, ...

  The example at stream position q = p_a * B + i of slice a is example
  index_shuffle(q % n_a, seed=(seed, id_a, q // n_a)) of the slice's reference-ordered examples,
  so a stream started at step k yields exactly what an uninterrupted one yields there.

  Args:
    dataset: records with 3D poses; only those of `actions` are used.
    actions: canonical actions; in action-based mode slice a holds `actions[a]`.
    mode: 'common' (A = 1) or 'action_based' (A = len(actions)).
    batch_size: B, windows per slice and step.
    receptive_field: RF (odd); the 2D window of centre frame f is frames
      [f - RF // 2 - causal_shift, f + RF // 2 - causal_shift], edge-padded.
    causal_shift: RF // 2 for causal models, else 0.
    augment: add the mirrored copy of every example (doubles n_a).
    seed: shuffle seed.
    steps_per_action: S_a per slice for the lock-step schedule; None: always active.
    start_step: first global step to produce.
    stream_ids: id_a of each slice in the shuffle seed (default: the slice index a). The
      trainer passes canonical action ids, so an action trained alone sees its data in the
      same order as inside a run with other actions.
  Yields:
    {'poses_2d': (A, B, RF, K, 2) float32, 'poses_3d': (A, B, 1, J, 3) float32 (joint 0 zero),
     'position': (A,) int64 p_a(s), 'active': (A,) bool, 'epoch': (A,) int32,
     'examples_seen': (A,) int64}.
  """
  steps = _check_options(len(slice_records(dataset, actions, mode)), batch_size, receptive_field,
                         causal_shift, steps_per_action, start_step)
  source = make_window_source(dataset, actions, mode, augment)
  ids = np.arange(len(source.examples)) if stream_ids is None else np.asarray(stream_ids, np.int64)
  if ids.shape != (len(source.examples),):
    raise PosejaxError(f"stream_ids: expected {len(source.examples)} ids (one per slice), got {ids.shape}")
  batch = _batch_fn(source, batch_size, receptive_field, causal_shift, seed, steps, ids)
  options = tf.data.Options()
  options.deterministic = True
  stream = (tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))
  return stream.as_numpy_iterator()
