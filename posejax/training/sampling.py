"""Training windows from tables of frames: the sampling order and the device-side gather.

No TensorFlow here: this module runs wherever JAX runs. The training frames of all slices live
in one flat table (on the device in the default input mode); a batch is described by indices
only, and the windows are gathered and mirrored where the table lives.

An example is a chunk of C = `chunk_length` consecutive output frames (the reference's
`--stride`, its ChunkedGenerator, reference V7.1): a sequence of L frames is cut into
ceil(L / C) chunks on a grid centred on the sequence, so the first and last chunks may stick
out of it; the example's input window is its C + RF - 1 frames of 2D and its target its C
frames of 3D, both edge-replicated where they stick out. C = 1 (the default) is one example
per frame with an RF-frame window.

The order (the contract of the tf.data pipeline, kept bit for bit): the example at stream
position q = p * B + i of a slice whose model is at its own step p is example
`index_shuffle(q % n, key=(seed, id, q // n))` of the slice's n examples in reference order
(per sequence: unflipped chunks, then flipped), where `index_shuffle` is TensorFlow's
`random_index_shuffle` (a Simon-cipher permutation with cycle walking, 4 rounds), written
here in `jax.numpy` so that it runs on the device.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.data.dataset import PoseDataset
from posejax.models.family import Window
from posejax.pose.skeleton import flip_permutation
from posejax.training import slices as slices_lib

SHUFFLE_ROUNDS = 4  # the value tf.random.experimental.index_shuffle uses
_MIN_BLOCK_BITS = 16


# --- TensorFlow's random_index_shuffle in jax.numpy --------------------------------------------


def _rotl(x: jax.Array, r: int, width: jax.Array, mask: jax.Array) -> jax.Array:
  return ((x << r) | (x >> (width - r))) & mask


def _rotr(x: jax.Array, r: int, width: jax.Array, mask: jax.Array) -> jax.Array:
  return ((x >> r) | (x << (width - r))) & mask


def index_shuffle(index: jax.Array, key: jax.Array, max_index: jax.Array,
                  rounds: int = SHUFFLE_ROUNDS) -> jax.Array:
  """Position of `index` in a pseudo-random permutation of [0, max_index] (elementwise).

  Equal to `tf.raw_ops.RandomIndexShuffle(index, seed=key, max_index, rounds)` for
  max_index < 2**31: a Simon block cipher of 2W bits (2W = the bit length of max_index
  rounded up to even, at least 16) keyed by the three key words, applied until the value falls
  in range (cycle walking).

  Args:
    index: (...,) integers in [0, max_index].
    key: (..., 3) integers; each word is taken modulo 2**32 (as TF does).
    max_index: (...,) integers < 2**31.
  Returns:
    (...,) int32.
  """
  if rounds < 4 or rounds % 2:
    raise ValueError(f"rounds must be an even number >= 4, got {rounds}")
  index = jnp.asarray(index).astype(jnp.uint32)
  max_index = jnp.broadcast_to(jnp.asarray(max_index).astype(jnp.uint32), index.shape)
  key = jnp.broadcast_to(jnp.asarray(key).astype(jnp.uint32), index.shape + (3,))
  # ceil(log2(max_index)) = bit length of max_index - 1, exact in integers.
  bits = (32 - jax.lax.clz(jnp.maximum(max_index, 1) - 1)).astype(jnp.uint32)
  block = jnp.maximum(bits + bits % 2, _MIN_BLOCK_BITS)
  width = block // 2
  mask = (jnp.uint32(1) << width) - 1
  keys = [key[..., 0] & mask, key[..., 1] & mask, key[..., 2] & mask]
  c = jnp.uint32(0xFFFFFFFC) & mask
  z = jnp.uint32(0x192C0EF5) & mask  # the low 32 bits of Simon's z constant
  for _ in range(3, rounds):
    keys.append(c ^ (z & 1) ^ keys[-3] ^ _rotr(keys[-1], 3, width, mask) ^ _rotr(keys[-1], 4, width, mask))
    z = z >> 1

  def f(x):
    return (_rotl(x, 1, width, mask) & _rotl(x, 8, width, mask)) ^ _rotl(x, 2, width, mask)

  def encrypt(value):
    left, right = (value >> width) & mask, value & mask
    for i in range(0, rounds, 2):
      left = left ^ f(right) ^ keys[i]
      right = right ^ f(left) ^ keys[i + 1]
    return (left << width) | right

  def walk(value):
    return jnp.where(value > max_index, encrypt(value), value)

  first = encrypt(index)
  out = jax.lax.while_loop(lambda v: jnp.any(v > max_index), walk, first)
  return jnp.where(max_index == 0, 0, out).astype(jnp.int32)


# --- Frame tables ----------------------------------------------------------------------------


def num_chunks(lengths, chunk_length: int):
  """Chunks of the reference's grid over sequences of `lengths` frames: ceil(L / C)."""
  return -(-lengths // chunk_length)


def chunk_offset(lengths, chunk_length: int):
  """How far the centred chunk grid starts before the sequence: (ceil(L / C) * C - L) // 2.

  Chunk k of a sequence covers its output frames [k * C - offset, (k + 1) * C - offset).
  Works on NumPy and jax.numpy integers alike.
  """
  return (num_chunks(lengths, chunk_length) * chunk_length - lengths) // 2


def example_blocks(lengths: Sequence[int], augment: bool, chunk_length: int = 1) -> tuple[np.ndarray, ...]:
  """Example blocks of one slice, in reference order (per sequence: unflipped, then flipped).

  A block is one sequence's run of consecutive examples (chunks) with one flip value.

  Args:
    lengths: frames of the slice's sequences, stored consecutively in the frame table.
    chunk_length: output frames per example (C).
  Returns:
    (example_start, frame_start, length, flip), each (num_blocks,): the first example of the
    block (relative to the slice), the frame-table row of the sequence's first frame (relative
    to the slice), the sequence length (frames) and the flip flag. The block holds
    ceil(length / C) examples.
  """
  frame_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  copies = 2 if augment else 1
  lengths = np.repeat(np.asarray(lengths, np.int64), copies)
  chunks = num_chunks(lengths, int(chunk_length))
  example_start = np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
  flip = np.tile(np.arange(copies, dtype=bool), len(frame_start))
  return example_start, np.repeat(frame_start, copies), lengths, flip


def flip_poses(poses: np.ndarray, left: Sequence[int], right: Sequence[int]) -> np.ndarray:
  """Mirror (reference V7.3): negate x of every joint, then swap left/right columns.

  poses: (..., joints, features) -> same shape.
  """
  flipped = poses[..., flip_permutation(poses.shape[-2], left, right), :].copy()
  flipped[..., 0] *= -1
  return flipped


@dataclasses.dataclass(frozen=True)
class WindowTable:
  """Frame tables and the example lookup of the training stream (host NumPy arrays).

  Attributes:
    frames_2d: (N, K, F) float32 2D frames of all slices, slice after slice (F = 2 or more).
    targets_3d: (N, J, 3) float32 3D frames with joint 0 zeroed (the pose target); None in an
      unlabeled table.
    block_start, block_frame, block_length: (num_blocks,) int32 global example index, frame
      row of the sequence start and sequence length of each example block (`example_blocks`).
    block_flip: (num_blocks,) bool.
    slice_offset: (A,) int32 global index of each slice's first example.
    examples: (A,) int32 n_a, examples (chunks) per epoch.
    keypoints_left, keypoints_right, joints_left, joints_right: flip lists.
    chunk_length: output frames per example (C; the example counts depend on it).
    trajectory_3d: (N, 1, 3) float32 camera-space root of each frame (semi-supervised
      training's trajectory target), or None.
    cameras: (N, 9) float32 intrinsics of each frame's sequence (unlabeled tables), or None.
  """

  frames_2d: np.ndarray
  targets_3d: np.ndarray
  block_start: np.ndarray
  block_frame: np.ndarray
  block_length: np.ndarray
  block_flip: np.ndarray
  slice_offset: np.ndarray
  examples: np.ndarray
  keypoints_left: tuple[int, ...]
  keypoints_right: tuple[int, ...]
  joints_left: tuple[int, ...]
  joints_right: tuple[int, ...]
  chunk_length: int = 1
  trajectory_3d: np.ndarray | None = None
  cameras: np.ndarray | None = None

  @property
  def num_frames(self) -> int:
    return int(self.frames_2d.shape[0])

  def arrays(self) -> dict[str, np.ndarray]:
    """The arrays the device gather reads (what goes to the device); absent ones left out."""
    names = ("frames_2d", "targets_3d", "block_start", "block_frame", "block_length", "block_flip",
             "slice_offset", "examples", "trajectory_3d", "cameras")
    return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

  def nbytes(self) -> int:
    return int(sum(a.nbytes for a in self.arrays().values()))


def make_window_table(dataset: PoseDataset, actions: Sequence[str], mode: str,
                      augment: bool, chunk_length: int = 1, *, trajectory: bool = False,
                      labeled: bool = True) -> WindowTable:
  """Flattens the selected records into frame tables (memory: O(frames)).

  chunk_length: output frames per example (the reference's `--stride`).
  trajectory: also keep each frame's camera-space root (`trajectory_3d`).
  labeled: False for an unlabeled table: 2D frames and each frame's camera, no 3D.
  """
  if chunk_length < 1:
    raise PosejaxError(f"--config.train.stride: {chunk_length} must be a positive number of frames")
  groups = slices_lib.slice_records(dataset, actions, mode)
  records = [r for group in groups for r in group]
  if labeled:
    unusable = [f"{r.subject}/{r.name}/camera {r.camera}" for r in records
                if r.poses_3d is None or len(r.poses_3d) != r.num_frames]
    what = "3D poses for every 2D frame"
  else:
    unusable = [f"{r.subject}/{r.name}/camera {r.camera}" for r in records if r.intrinsic is None]
    what = "camera intrinsics"
  if unusable:
    raise PosejaxError(f"{dataset.source}: training sequences without {what}: {', '.join(unusable[:3])}")
  frames_2d = np.concatenate([r.poses_2d for r in records]).astype(np.float32, copy=False)
  extra = {}
  if labeled:
    targets_3d = np.concatenate([r.poses_3d for r in records]).astype(np.float32)
    if trajectory:
      extra["trajectory_3d"] = targets_3d[:, :1].copy()
    targets_3d[:, 0] = 0  # the trajectory is not a pose target
  else:
    targets_3d = None
    extra["cameras"] = np.concatenate([np.broadcast_to(np.asarray(r.intrinsic, np.float32), (r.num_frames, 9))
                                       for r in records])
  copies = 2 if augment else 1
  if copies * len(frames_2d) >= 2**31:
    raise PosejaxError(f"{len(frames_2d):,} training frames exceed the 2**31 examples a stream can index")
  blocks, slice_offset, examples, frame_offset, example_offset = [], [], [], 0, 0
  for group in groups:
    start, frame, length, flip = example_blocks([r.num_frames for r in group], augment, chunk_length)
    blocks.append((start + example_offset, frame + frame_offset, length, flip))
    slice_offset.append(example_offset)
    examples.append(int(num_chunks(length, chunk_length).sum()))
    frame_offset += int(length.sum()) // copies
    example_offset += examples[-1]
  start, frame, length, flip = (np.concatenate(column) for column in zip(*blocks))
  return WindowTable(
      frames_2d=frames_2d, targets_3d=targets_3d, block_start=start.astype(np.int32),
      block_frame=frame.astype(np.int32), block_length=length.astype(np.int32), block_flip=flip,
      slice_offset=np.asarray(slice_offset, np.int32), examples=np.asarray(examples, np.int32),
      keypoints_left=tuple(dataset.keypoints_left), keypoints_right=tuple(dataset.keypoints_right),
      joints_left=tuple(dataset.joints_left), joints_right=tuple(dataset.joints_right),
      chunk_length=int(chunk_length), **extra)


# --- Indices and windows on the device -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """Static description of a batch: hashable, so it can be closed over by jitted steps.

  batch_size counts examples (chunks of `chunk_length` output frames), as the reference's
  `batch_size // stride`.
  """
  batch_size: int
  receptive_field: int
  causal_shift: int
  seed: int
  stream_ids: tuple[int, ...]  # id of each slice in the shuffle key (canonical action ids)
  keypoints_left: tuple[int, ...]
  keypoints_right: tuple[int, ...]
  joints_left: tuple[int, ...]
  joints_right: tuple[int, ...]
  chunk_length: int = 1

  @property
  def window_frames(self) -> int:
    """Input frames of an example: C + RF - 1."""
    return self.chunk_length + self.receptive_field - 1


def window_spec(table: WindowTable, *, batch_size: int, window: Window, seed: int,
                stream_ids: Sequence[int]) -> WindowSpec:
  """The spec of `table`'s stream (its chunk length) for a model reading `window`; batch_size in
  examples (chunks).

  A clip model (`window.output_frames`) reads as many frames as it returns: its examples are
  chunks of that many frames, read with no frames of context (a receptive field of 1).
  """
  receptive_field, causal_shift = window.receptive_field, window.causal_shift
  if window.output_frames is not None:
    if table.chunk_length != window.output_frames:
      raise PosejaxError(f"the model predicts clips of {window.output_frames} frames; the training examples are "
                         f"chunks of {table.chunk_length} (--config.train.stride={window.output_frames})")
    receptive_field = 1
  if batch_size < 1:
    raise PosejaxError(f"--config.train.batch_size: {batch_size} must be positive")
  if receptive_field < 1 or receptive_field % 2 == 0:
    raise PosejaxError(f"receptive field {receptive_field} must be a positive odd number")
  if abs(causal_shift) > receptive_field // 2:
    raise PosejaxError(f"causal shift {causal_shift} exceeds the half receptive field {receptive_field // 2}")
  if len(stream_ids) != len(table.examples):
    raise PosejaxError(f"stream_ids: expected {len(table.examples)} ids (one per slice), got {len(stream_ids)}")
  return WindowSpec(int(batch_size), int(receptive_field), int(causal_shift), int(seed),
                    tuple(int(i) for i in stream_ids), table.keypoints_left, table.keypoints_right,
                    table.joints_left, table.joints_right, table.chunk_length)


def example_indices(tables: dict[str, jax.Array], spec: WindowSpec, slice_index: jax.Array,
                    position: jax.Array) -> dict[str, jax.Array]:
  """Where each window of the batches of K slots lies in the frame table.

  Args:
    tables: `WindowTable.arrays()` as (device) arrays.
    slice_index: (K,) int32 slice of each slot (any valid slice for empty slots).
    position: (K,) int32 own step count of each slot's model.
  Returns:
    {'frame', 'first', 'last': (K, B) int32 frame rows of the chunk's first output frame (the
     window centre when C = 1; before 'first' for a chunk sticking out of its sequence) and of
     its sequence's ends; 'flip': (K, B) bool}.
  """
  b = spec.batch_size
  n = tables["examples"][slice_index][:, None]  # (K, 1)
  stream = position[:, None] * b + jnp.arange(b, dtype=jnp.int32)[None]  # (K, B)
  ids = jnp.asarray(spec.stream_ids, jnp.uint32)[slice_index][:, None]
  seed = jnp.uint32(spec.seed % 2**32)  # key words are taken modulo 2**32, as TF does
  key = jnp.stack(jnp.broadcast_arrays(seed, ids, (stream // n).astype(jnp.uint32)), axis=-1)
  example = index_shuffle(stream % n, key, n - 1) + tables["slice_offset"][slice_index][:, None]
  block = jnp.searchsorted(tables["block_start"], example, side="right", method="compare_all") - 1
  first, length = tables["block_frame"][block], tables["block_length"][block]
  c = spec.chunk_length
  frame = first + (example - tables["block_start"][block]) * c - chunk_offset(length, c)
  return {"frame": frame, "first": first, "last": first + length - 1, "flip": tables["block_flip"][block]}


def _mirror(x: jax.Array, flip: jax.Array, left: tuple[int, ...], right: tuple[int, ...]) -> jax.Array:
  """x (..., joints, F) mirrored where `flip` (broadcast over the trailing two axes)."""
  sign = jnp.ones(x.shape[-1], x.dtype).at[0].set(-1)
  mirrored = x[..., flip_permutation(x.shape[-2], left, right), :] * sign
  return jnp.where(flip[..., None, None], mirrored, x)


def gather_windows(tables: dict[str, jax.Array], spec: WindowSpec,
                   where: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The windows and targets at `example_indices` (edge padding = clipping to the sequence).

  Returns:
    {'poses_2d': (K, B, C + RF - 1, Kp, F), 'poses_3d': (K, B, C, J, 3)} float32; with a
    trajectory table also 'trajectory' (K, B, C, 1, 3) (mirrored: x negated), with a camera
    table 'cameras' (K, B, 9) (mirrored: cx and p1 negated, reference V7.3), without 3D targets no
    'poses_3d'.
  """
  rf, c = spec.receptive_field, spec.chunk_length
  first, last, flip = where["first"][..., None], where["last"][..., None], where["flip"][..., None]
  offsets = jnp.arange(spec.window_frames, dtype=jnp.int32) - rf // 2 - spec.causal_shift
  rows = jnp.clip(where["frame"][..., None] + offsets, first, last)
  out = {"poses_2d": _mirror(tables["frames_2d"][rows], flip, spec.keypoints_left, spec.keypoints_right)}
  target_rows = jnp.clip(where["frame"][..., None] + jnp.arange(c, dtype=jnp.int32), first, last)
  if "targets_3d" in tables:
    out["poses_3d"] = _mirror(tables["targets_3d"][target_rows], flip, spec.joints_left, spec.joints_right)
  if "trajectory_3d" in tables:
    out["trajectory"] = _mirror(tables["trajectory_3d"][target_rows], flip, (), ())
  if "cameras" in tables:
    cameras = tables["cameras"][jnp.clip(where["frame"], where["first"], where["last"])]
    sign = jnp.ones(9, cameras.dtype).at[jnp.asarray([2, 7])].set(-1)
    out["cameras"] = jnp.where(where["flip"][..., None], cameras * sign, cameras)
  return out


def device_batch(tables: dict[str, jax.Array], spec: WindowSpec, slice_index: jax.Array,
                 position: jax.Array) -> dict[str, jax.Array]:
  """The batches of K slots, computed where `tables` live (jit-friendly)."""
  return gather_windows(tables, spec, example_indices(tables, spec, slice_index, position))
