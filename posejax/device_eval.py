"""Test sequences resident on the device and the jitted passes over them (spec 7.2, 9).

A `ResidentTestSet` holds on the device the 2D inputs and root-zeroed 3D targets of all test
sequences, concatenated along one flat frame axis, and a fixed-shape chunk plan. It is built
once; every pass over it reuses one compilation, and nothing per chunk crosses to the host.

`predict` is one jitted loop (`lax.scan`) over the chunk batches through the DILATED model.
Each sequence is cut into chunks of `chunk` output frames; a chunk's `chunk + RF - 1` input
frames are gathered with clipped indices, which is exactly the reference's edge padding of the
whole sequence (`pad + shift` frames before, `pad - shift` after), so the output equals running
the whole sequence at once. Stacked variables (leading slice axis A) run under `jax.vmap`:
slice `a` sees only the chunks of the sequences routed to it; slices are padded to equal
chunk counts with dummy chunks whose outputs are dropped. One model is a stack of one.

`sequence_sums` reduces per-frame errors to per-sequence sums on the device; only those (S,)
sums come back.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax import losses
from posejax.errors import PosejaxError
from posejax.model import TemporalModel, causal_shift, receptive_field
from posejax.skeleton import flip_permutation

FRAMES_PER_STEP = 65536  # output frames per chunk batch over all slices when `batch` is None
METRIC_BLOCK = 8192  # frames per step of the metric loop (bounds its temporaries)

Flip = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
  """Fixed-shape chunking of sequences routed to model slices.

  Sequences live in one flat frame axis (`offsets`, `lengths`); chunk `c` of slice `a` reads
  sequence `chunk_seq[a, c]` from output frame `chunk_start[a, c]` on. `chunk_seq == -1`
  marks padding chunks (they read frame 0 and their outputs are dropped).
  """

  offsets: np.ndarray      # (S,) int64 first flat frame of each sequence
  lengths: np.ndarray      # (S,) int64
  chunk_seq: np.ndarray    # (A, C) int64, C a multiple of `batch`
  chunk_start: np.ndarray  # (A, C) int64
  chunk: int
  batch: int
  receptive_field: int
  causal_shift: int

  @property
  def total_frames(self) -> int:
    return int(self.lengths.sum())


def plan_chunks(lengths_per_slice: Sequence[Sequence[int]], *, chunk: int, batch: int | None,
                receptive_field: int, causal_shift: int = 0) -> ChunkPlan:
  """Chunks for sequences grouped by slice; flat order is slice-major, then list order.

  `batch` = chunks per slice and step; None picks about FRAMES_PER_STEP output frames per step
  over all slices, at most the largest slice's chunk count (little padding on small sets).
  """
  if chunk < 1 or (batch is not None and batch < 1):
    raise PosejaxError(f"evaluation chunk ({chunk}) and batch ({batch}) must be positive")
  lengths = np.asarray([int(n) for group in lengths_per_slice for n in group], np.int64)
  if np.any(lengths < 1):
    raise PosejaxError("evaluation: every sequence needs at least one frame")
  max_chunks = max([sum(-(-int(n) // chunk) for n in group) for group in lengths_per_slice] + [1])
  if batch is None:
    batch = max(1, min(max_chunks, FRAMES_PER_STEP // (chunk * max(len(lengths_per_slice), 1))))
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  per_slice, seq = [], 0
  for group in lengths_per_slice:
    entries = []
    for n in group:
      entries += [(seq, start) for start in range(0, int(n), chunk)]
      seq += 1
    per_slice.append(entries)
  count = -(-max_chunks // batch) * batch
  chunk_seq = np.full((len(per_slice), count), -1, np.int64)
  chunk_start = np.zeros((len(per_slice), count), np.int64)
  for a, entries in enumerate(per_slice):
    if entries:
      chunk_seq[a, :len(entries)], chunk_start[a, :len(entries)] = np.asarray(entries).T
  return ChunkPlan(offsets, lengths, chunk_seq, chunk_start, chunk, batch, receptive_field, causal_shift)


@dataclasses.dataclass(frozen=True, eq=False)
class ResidentTestSet:
  """Test sequences on the device with their chunk plan; build once, evaluate many times.

  The flat frame axis (N frames) holds the S sequences slice-major (the plan's order).
  Device arrays:
    poses_2d: (N, K, 2) float32 normalized 2D inputs.
    targets: (N, J, 3) float32 root-zeroed 3D ground truth, or None (prediction only).
    frame_sequence: (N,) int32 flat sequence index of each frame.
    chunks: (steps, A, batch, 3) int32, per chunk: its sequence's first flat frame, the
      sequence's length (0 marks a padding chunk), its first output frame in the sequence.
  Host metadata:
    plan: the chunk plan behind `chunks` (offsets, lengths, RF, causal shift, chunk, batch).
    slices: name of each model slice; flip: (kps_left, kps_right, joints_left, joints_right).
    records: (S,) input index (dataset record) of each flat sequence.
    actions, subjects: per input record, in input order.
    missing_3d: why targets is None, shown when an evaluation needs them.
  """

  poses_2d: jax.Array
  targets: jax.Array | None
  frame_sequence: jax.Array
  chunks: jax.Array
  plan: ChunkPlan
  slices: tuple[str, ...]
  flip: Flip
  records: np.ndarray
  actions: tuple[str, ...]
  subjects: tuple[str, ...]
  missing_3d: str = ""

  @property
  def num_sequences(self) -> int:
    return int(self.records.size)


def build(poses_2d: Sequence[np.ndarray], targets: Sequence[np.ndarray] | None, routes: Sequence[int],
          model: TemporalModel, *, slices: Sequence[str], flip: Flip, chunk: int, batch: int | None,
          actions: Sequence[str] = (), subjects: Sequence[str] = (),
          missing_3d: str = "") -> ResidentTestSet:
  """Puts sequences on the device, routed to model slices.

  Args:
    poses_2d: per record (T, K, 2) normalized 2D keypoints.
    targets: per record (T, J, 3) camera-space 3D poses (joint 0 is zeroed here), or None.
    routes: per record the index of its model slice in `slices`.
    missing_3d: why `targets` is None (the error an evaluation then raises).
  """
  groups = [[i for i, a in enumerate(routes) if a == s] for s in range(len(slices))]
  records = np.asarray([i for g in groups for i in g], np.int64)
  plan = plan_chunks([[len(poses_2d[i]) for i in g] for g in groups], chunk=chunk, batch=batch,
                     receptive_field=receptive_field(model.filter_widths),
                     causal_shift=causal_shift(model.filter_widths, model.causal))

  def flat(arrays: Sequence[np.ndarray], tail: tuple[int, ...]) -> np.ndarray:
    if not records.size:
      return np.zeros((0,) + tail, np.float32)
    return np.concatenate([np.asarray(arrays[i], np.float32) for i in records])

  flat_2d = flat(poses_2d, (model.num_joints_in, model.in_features))
  flat_3d = None
  if targets is not None:
    flat_3d = flat(targets, (model.num_joints_out, 3))
    flat_3d[:, 0] = 0  # root-relative target (spec 12.1 step 4)
  padding = plan.chunk_seq < 0
  seq = np.maximum(plan.chunk_seq, 0)
  offset = np.append(plan.offsets, 0)[seq]
  length = np.where(padding, 0, np.append(plan.lengths, 0)[seq])
  steps = plan.chunk_seq.shape[1] // plan.batch
  chunks = np.stack([offset, length, plan.chunk_start], -1).reshape(len(slices), steps, plan.batch, 3)
  host = (flat_2d, flat_3d, np.repeat(np.arange(records.size), plan.lengths).astype(np.int32),
          chunks.transpose(1, 0, 2, 3).astype(np.int32))
  device = jax.device_put(host)
  return ResidentTestSet(*device, plan=plan, slices=tuple(slices), flip=flip, records=records,
                         actions=tuple(actions), subjects=tuple(subjects), missing_3d=missing_3d)


def check_compatible(resident: ResidentTestSet, model: TemporalModel, variables: Any) -> None:
  """PosejaxError unless the model and its stacked variables fit the resident set."""
  plan = resident.plan
  rf, shift = receptive_field(model.filter_widths), causal_shift(model.filter_widths, model.causal)
  if (rf, shift) != (plan.receptive_field, plan.causal_shift):
    raise PosejaxError(f"evaluation: the resident test set was built for receptive field "
                       f"{plan.receptive_field} (causal shift {plan.causal_shift}); the model has {rf} ({shift})")
  if tuple(resident.poses_2d.shape[1:]) != (model.num_joints_in, model.in_features):
    raise PosejaxError(f"evaluation: the test set has {resident.poses_2d.shape[1]} keypoints; the model "
                       f"expects {model.num_joints_in}")
  targets = resident.targets
  if targets is not None and targets.shape[1] != model.num_joints_out:
    raise PosejaxError(f"evaluation: the test set has {targets.shape[1]} 3D joints; the model predicts "
                       f"{model.num_joints_out}")
  leaves = jax.tree_util.tree_leaves(variables)
  if not leaves or leaves[0].shape[:1] != (len(resident.slices),):
    found = leaves[0].shape[:1] if leaves else "no"
    raise PosejaxError(f"evaluation: the model variables stack {found} slice(s); the test set is routed to "
                       f"{len(resident.slices)} ({', '.join(resident.slices)})")


def _flip_array(x: jax.Array, left: tuple[int, ...], right: tuple[int, ...]) -> jax.Array:
  """Mirror (spec 7.3): negate x, swap the `left`/`right` entries of axis -2."""
  return x.at[..., 0].multiply(-1)[..., flip_permutation(x.shape[-2], left, right), :]


def _forward(model: TemporalModel, variables: Any, inputs: jax.Array, tta: bool, flip: Flip) -> jax.Array:
  """inputs: (A, B, T, K, 2) -> (A, B, T - RF + 1, J, 3); variables stacked on A."""
  kps_left, kps_right, joints_left, joints_right = flip

  def one_slice(v, x):
    if not tta:
      return model.apply(v, x, train=False)
    y = model.apply(v, jnp.concatenate([x, _flip_array(x, kps_left, kps_right)]), train=False)
    half = x.shape[0]
    return (y[:half] + _flip_array(y[half:], joints_left, joints_right)) / 2

  return jax.vmap(one_slice)(variables, inputs)


@functools.partial(jax.jit, static_argnames=("model", "tta", "flip", "chunk"))
def _predict(model: TemporalModel, variables: Any, poses_2d: jax.Array, chunks: jax.Array, *, tta: bool,
             flip: Flip, chunk: int) -> jax.Array:
  """poses_2d: (N, K, 2), chunks: (steps, A, batch, 3) -> (N, J, 3) predictions."""
  rf = receptive_field(model.filter_widths)
  window = jnp.arange(chunk + rf - 1) - (rf - 1) // 2 - causal_shift(model.filter_widths, model.causal)
  n = poses_2d.shape[0]

  def step(out: jax.Array, batch: jax.Array) -> tuple[jax.Array, None]:
    offset, length, start = (batch[..., i, None] for i in range(3))  # (A, batch, 1) each
    # Clipping to the sequence repeats its edge frames: the reference's edge padding.
    inputs = poses_2d[offset + jnp.clip(start + window, 0, jnp.maximum(length, 1) - 1)]
    local = start + jnp.arange(chunk)
    index = jnp.where(local < length, offset + local, n)  # n is out of bounds: dropped
    return out.at[index].set(_forward(model, variables, inputs, tta, flip), mode="drop"), None

  out = jnp.zeros((n, model.num_joints_out, 3), jnp.float32)
  return jax.lax.scan(step, out, chunks)[0]


def predict(model: TemporalModel, variables: Any, resident: ResidentTestSet, *, tta: bool) -> jax.Array:
  """(N, J, 3) device predictions of the dilated form of `model` for the flat frame axis."""
  check_compatible(resident, model, variables)
  if resident.plan.total_frames == 0:
    return jnp.zeros((0, model.num_joints_out, 3), jnp.float32)
  # A tuple of widths keeps the module hashable for jit's static argument.
  model = model.clone(strided=False, filter_widths=tuple(model.filter_widths))
  return _predict(model, variables, resident.poses_2d, resident.chunks, tta=tta, flip=resident.flip,
                  chunk=resident.plan.chunk)


@functools.partial(jax.jit, static_argnames=("num_sequences", "full", "block"))
def _sums(pred: jax.Array, target: jax.Array, frame_sequence: jax.Array, *, num_sequences: int,
          full: bool, block: int) -> jax.Array:
  """(N, J, 3) pairs, (N,) sequence ids -> (S, M) sums of mpjpe[, p_mpjpe, n_mpjpe], velocity error."""
  n = pred.shape[0]
  block = min(block, n)

  def step(acc: jax.Array, b: jax.Array) -> tuple[jax.Array, None]:
    # The last block is moved back to end at frame n; frames of the block before are masked.
    frames = jnp.minimum(b * block, n - block) + jnp.arange(block)
    fresh = frames >= b * block
    p, t, seq = pred[frames], target[frames], frame_sequence[frames]
    rows = [losses.mpjpe_per_frame(p, t)]
    if full:
      rows += [losses.p_mpjpe_per_frame(p, t), losses.n_mpjpe_per_frame(p, t)]
    rows = [jnp.where(fresh, r, 0.0) for r in rows]
    # Velocities are first differences within a sequence: none across its first frame.
    prev = jnp.maximum(frames - 1, 0)
    moving = fresh & (frames > 0) & (frame_sequence[prev] == seq)
    velocity = losses.mpjpe_per_frame(p - pred[prev], t - target[prev])
    rows.append(jnp.where(moving, velocity, 0.0))
    return acc + jax.ops.segment_sum(jnp.stack(rows, -1), seq, num_sequences, indices_are_sorted=True), None

  acc = jnp.zeros((num_sequences, 4 if full else 2), jnp.float32)
  return jax.lax.scan(step, acc, jnp.arange(-(-n // block)))[0]


def sequence_sums(pred: jax.Array, target: jax.Array, frame_sequence: jax.Array, lengths: np.ndarray, *,
                  full: bool, block: int = METRIC_BLOCK) -> dict[str, np.ndarray]:
  """Per-sequence frame-weighted error sums in metres, reduced on the device.

  Args:
    pred, target: (N, J, 3) flat frames; targets root-zeroed.
    frame_sequence: (N,) int32 sequence index of each frame (sequences contiguous, ascending).
    lengths: (S,) frames per sequence.
    full: also P-MPJPE and N-MPJPE (final evaluation), else MPJPE and MPJVE only.
    block: frames per step of the on-device loop.
  Returns:
    {'frames': (S,), metric: (S,) float64 sum over the sequence's frames}; MPJVE's sum is
    L x (mean velocity error over the L - 1 differences), the reference's weighting (0 for a
    single-frame sequence).
  """
  lengths = np.asarray(lengths, np.int64)
  names = ("mpjpe", "p_mpjpe", "n_mpjpe") if full else ("mpjpe",)
  if pred.shape[0] == 0:
    raw = np.zeros((lengths.size, len(names) + 1))
  else:
    # Full float32 matmuls: the GPU default (TF32) would shift P-MPJPE by tenths of a millimetre.
    with jax.default_matmul_precision("highest"):
      raw = _sums(pred, target, frame_sequence, num_sequences=lengths.size, full=full, block=block)
    raw = np.asarray(raw, np.float64)
  sums = {"frames": lengths, **{name: raw[:, i] for i, name in enumerate(names)}}
  sums["mpjve"] = np.where(lengths > 1, raw[:, -1] / np.maximum(lengths - 1, 1) * lengths, 0.0)
  return sums
