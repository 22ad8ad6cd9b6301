"""Test sequences resident on the device and the jitted passes over them (reference V7.2, V9).

A `ResidentTestSet` holds on the device the 2D inputs and root-zeroed 3D targets of all test
sequences, concatenated along one flat frame axis, and a fixed-shape chunk plan
(`posejax.evaluation.chunk_plan`). It is built once; every pass over it reuses one compilation, and
nothing per chunk crosses to the host.

`predict` runs the chunk batches through the DILATED model, one compiled call per batch into
a donated output (a progress bar follows the calls as they complete).
Each sequence is cut into chunks of `chunk` output frames; a chunk's `chunk + RF - 1` input
frames are gathered with clipped indices, which is exactly the reference's edge padding of the
whole sequence (`pad + shift` frames before, `pad - shift` after), so the output equals running
the whole sequence at once. Stacked variables (leading slice axis A) run under `jax.vmap`:
slice `a` sees only the chunks of the sequences routed to it; slices are padded to equal
chunk counts with dummy chunks whose outputs are dropped. One model is a stack of one.

`predict_all` runs EVERY model of the stack on EVERY sequence in one vmapped pass ((A, N, J, 3):
routing without labels and the cross-action matrix), `reroute` sends the resident frames to
other slices without copying them, and `apply_all` runs any per-frame head (e.g. the action
classifier) over the resident frames with the same chunk machinery.

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

from posejax.common import progress
from posejax.common.errors import PosejaxError
from posejax.evaluation.chunk_plan import ChunkPlan, chunk_table, plan_chunks, plan_groups
from posejax.models.family import PoseModel
from posejax.pose import losses
from posejax.pose.skeleton import flip_permutation

METRIC_BLOCK = 8192  # frames per step of the metric loop (bounds its temporaries)

Flip = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclasses.dataclass(frozen=True, eq=False)
class ResidentTestSet:
  """Test sequences on the device with their chunk plan; build once, evaluate many times.

  The flat frame axis (N frames) holds the S sequences slice-major in the order of the routing
  the set was built with; `reroute` changes only `plan` and `chunks`.
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
          model: PoseModel, *, slices: Sequence[str], flip: Flip, chunk: int, batch: int | None,
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
                     receptive_field=model.receptive_field, causal_shift=model.causal_shift)

  def flat(arrays: Sequence[np.ndarray], tail: tuple[int, ...]) -> np.ndarray:
    if not records.size:
      return np.zeros((0,) + tail, np.float32)
    return np.concatenate([np.asarray(arrays[i], np.float32) for i in records])

  flat_2d = flat(poses_2d, (model.num_joints_in, model.in_features))
  flat_3d = None
  if targets is not None:
    flat_3d = flat(targets, (model.num_joints_out, 3))
    flat_3d[:, 0] = 0  # root-relative target (reference V12.1 step 4)
  host = (flat_2d, flat_3d, np.repeat(np.arange(records.size), plan.lengths).astype(np.int32),
          chunk_table(plan))
  device = jax.device_put(host)
  return ResidentTestSet(*device, plan=plan, slices=tuple(slices), flip=flip, records=records,
                         actions=tuple(actions), subjects=tuple(subjects), missing_3d=missing_3d)


def _check_inputs(resident: ResidentTestSet, model: Any) -> None:
  if tuple(resident.poses_2d.shape[1:]) != (model.num_joints_in, model.in_features):
    raise PosejaxError(f"evaluation: the test set has {resident.poses_2d.shape[1]} keypoints; the model "
                       f"expects {model.num_joints_in}")


def _stack_size(variables: Any) -> int | None:
  leaves = jax.tree_util.tree_leaves(variables)
  return int(leaves[0].shape[0]) if leaves and leaves[0].ndim else None


def check_compatible(resident: ResidentTestSet, model: PoseModel, variables: Any) -> None:
  """PosejaxError unless the model and its stacked variables fit the resident set."""
  plan = resident.plan
  rf, shift = model.receptive_field, model.causal_shift
  if (rf, shift) != (plan.receptive_field, plan.causal_shift):
    raise PosejaxError(f"evaluation: the resident test set was built for receptive field "
                       f"{plan.receptive_field} (causal shift {plan.causal_shift}); the model has {rf} ({shift})")
  _check_inputs(resident, model)
  targets = resident.targets
  if targets is not None and targets.shape[1] != model.num_joints_out:
    raise PosejaxError(f"evaluation: the test set has {targets.shape[1]} 3D joints; the model predicts "
                       f"{model.num_joints_out}")
  if _stack_size(variables) != len(resident.slices):
    found = _stack_size(variables) or "no"
    raise PosejaxError(f"evaluation: the model variables stack {found} slice(s); the test set is routed to "
                       f"{len(resident.slices)} ({', '.join(resident.slices)})")


def reroute(resident: ResidentTestSet, routes: Sequence[int]) -> ResidentTestSet:
  """The same device frames sent to other slices: record i to slice `routes[i]` (no copy).

  Args:
    routes: (records,) slice index of each input record (e.g. its predicted action's model).
  """
  routes = np.asarray(routes, np.int64)
  if routes.shape != (resident.num_sequences,) or np.any((routes < 0) | (routes >= len(resident.slices))):
    raise PosejaxError(f"evaluation: routing needs one slice in [0, {len(resident.slices)}) per test "
                       f"sequence ({resident.num_sequences}), got {routes.tolist()[:8]}")
  flat_routes = routes[resident.records]
  groups = [np.flatnonzero(flat_routes == a).tolist() for a in range(len(resident.slices))]
  old = resident.plan
  plan = plan_groups(old.offsets, old.lengths, groups, chunk=old.chunk, batch=old.batch,
                     receptive_field=old.receptive_field, causal_shift=old.causal_shift)
  return dataclasses.replace(resident, plan=plan, chunks=jax.device_put(chunk_table(plan)))


def _shared_chunks(resident: ResidentTestSet, models: int) -> np.ndarray:
  """(steps, models, batch, 3) chunk rows in which each of `models` slices runs every sequence.

  The batch keeps the output frames per step of the routed plan (batch x its slices)."""
  old = resident.plan
  everything = list(range(resident.num_sequences))
  total = sum(-(-int(n) // old.chunk) for n in old.lengths)
  batch = max(1, min(max(total, 1), old.batch * max(len(resident.slices), 1) // models))
  plan = plan_groups(old.offsets, old.lengths, [everything] * models, chunk=old.chunk, batch=batch,
                     receptive_field=old.receptive_field, causal_shift=old.causal_shift)
  return chunk_table(plan)


def flip_array(x: jax.Array, left: tuple[int, ...], right: tuple[int, ...]) -> jax.Array:
  """Mirror (reference V7.3): negate x, swap the `left`/`right` entries of axis -2."""
  return x.at[..., 0].multiply(-1)[..., flip_permutation(x.shape[-2], left, right), :]


@dataclasses.dataclass(frozen=True)
class PoseForward:
  """Stacked pose models on chunk windows, with flip test-time augmentation (reference V7.2).

  Hashable (a static argument of the jitted pass); `model` is the dilated form."""
  model: PoseModel
  tta: bool
  flip: Flip

  @property
  def tail(self) -> tuple[int, ...]:
    return (self.model.num_joints_out, 3)

  def __call__(self, variables: Any, inputs: jax.Array) -> jax.Array:
    """inputs: (A, B, T, K, 2) -> (A, B, T - RF + 1, J, 3); variables stacked on A."""
    kps_left, kps_right, joints_left, joints_right = self.flip
    model = self.model

    def one_slice(v, x):
      if not self.tta:
        return model.apply(v, x, train=False)
      y = model.apply(v, jnp.concatenate([x, flip_array(x, kps_left, kps_right)]), train=False)
      half = x.shape[0]
      return (y[:half] + flip_array(y[half:], joints_left, joints_right)) / 2

    return jax.vmap(one_slice)(variables, inputs)


@functools.partial(jax.jit, static_argnames=("forward", "chunk"), donate_argnames=("out",))
def _predict(forward: Any, variables: Any, poses_2d: jax.Array, chunks: jax.Array, out: jax.Array, step: jax.Array,
             *, chunk: int) -> tuple[jax.Array, jax.Array]:
  """Chunk batch `step` of chunks (steps, A, batch, 3) written into out (rows, N, *forward.tail).

  `forward(variables, windows (A, batch, chunk + RF - 1, K, 2)) -> (A, batch, chunk, *tail)`
  runs the A stacked models; with rows == 1 every slice writes the one output (each frame is
  routed to one slice), with rows == A slice a writes row a (every slice runs every frame).
  Returns (out, step + 1): the scalar tells when this call has completed.
  """
  model = forward.model
  rf = model.receptive_field
  window = jnp.arange(chunk + rf - 1) - (rf - 1) // 2 - model.causal_shift
  n = poses_2d.shape[0]
  row = (jnp.arange(chunks.shape[1]) if out.shape[0] > 1 else jnp.zeros(chunks.shape[1], jnp.int32))[:, None, None]
  batch = jax.lax.dynamic_index_in_dim(chunks, step, keepdims=False)
  offset, length, start = (batch[..., i, None] for i in range(3))  # (A, batch, 1) each
  # Clipping to the sequence repeats its edge frames: the reference's edge padding.
  inputs = poses_2d[offset + jnp.clip(start + window, 0, jnp.maximum(length, 1) - 1)]
  local = start + jnp.arange(chunk)
  index = jnp.where(local < length, offset + local, n)  # n is out of bounds: dropped
  return out.at[row, index].set(forward(variables, inputs), mode="drop"), step + 1


def _step_frames(table: np.ndarray, chunk: int) -> np.ndarray:
  """(steps,) output frames computed for real sequences in each chunk batch of a chunk table."""
  length, start = table[..., 1].astype(np.int64), table[..., 2].astype(np.int64)
  return np.where(length > 0, np.minimum(chunk, length - start), 0).sum(axis=(1, 2))


def _run_chunks(forward: Any, variables: Any, poses_2d: jax.Array, chunks: jax.Array, table: np.ndarray, *,
                chunk: int, rows: int, desc: str) -> jax.Array:
  """(rows, N, *forward.tail): every chunk batch, one call each, a progress bar advancing as
  calls complete (`table`: the host copy of `chunks`)."""
  out = jnp.zeros((rows, poses_2d.shape[0]) + tuple(forward.tail), jnp.float32)
  with progress.Bar(_step_frames(table, chunk), desc, unit="frames", step_unit="batch") as bar:
    completions = progress.Completions(bar.update)
    for step in range(chunks.shape[0]):
      out, done = _predict(forward, variables, poses_2d, chunks, out, np.int32(step), chunk=chunk)
      completions.dispatched(done, 1)
    completions.drain()
  return out


def predict(model: PoseModel, variables: Any, resident: ResidentTestSet, *, tta: bool) -> jax.Array:
  """(N, J, 3) device predictions of the dilated form of `model` for the flat frame axis."""
  check_compatible(resident, model, variables)
  if resident.plan.total_frames == 0:
    return jnp.zeros((0, model.num_joints_out, 3), jnp.float32)
  forward = PoseForward(model.dilated(), bool(tta), resident.flip)
  return _run_chunks(forward, variables, resident.poses_2d, resident.chunks, chunk_table(resident.plan),
                     chunk=resident.plan.chunk, rows=1, desc="evaluation")[0]


def apply_all(forward: Any, variables: Any, resident: ResidentTestSet,
              desc: str = "every model, every frame") -> jax.Array:
  """(M, N, *forward.tail): each of the M stacked models (variables (M, ...)) on every frame.

  `forward` is a hashable head like `PoseForward` (`model` with receptive_field, causal_shift,
  num_joints_in, in_features; `tail`; called on stacked variables and windows). Its receptive
  field may differ from the one the set was planned for: windows are cut per call.
  """
  _check_inputs(resident, forward.model)
  models = _stack_size(variables)
  if not models:
    raise PosejaxError("evaluation: no stacked model variables")
  if resident.plan.total_frames == 0:
    return jnp.zeros((models, 0) + tuple(forward.tail), jnp.float32)
  table = _shared_chunks(resident, models)
  return _run_chunks(forward, variables, resident.poses_2d, jax.device_put(table), table, chunk=resident.plan.chunk,
                     rows=models, desc=desc)


def predict_all(model: PoseModel, variables: Any, resident: ResidentTestSet, *, tta: bool) -> jax.Array:
  """(A, N, J, 3): every slice's model on every test frame, one vmapped pass."""
  check_compatible(resident, model, variables)
  return apply_all(PoseForward(model.dilated(), bool(tta), resident.flip), variables, resident)


@jax.jit
def take_models(outputs: jax.Array, frame_model: jax.Array) -> jax.Array:
  """outputs (A, N, ...), frame_model (N,) int -> (N, ...): frame n from model frame_model[n]."""
  return outputs[frame_model, jnp.arange(outputs.shape[1])]


@jax.jit
def mix_models(outputs: jax.Array, weights: jax.Array) -> jax.Array:
  """outputs (A, N, J, 3), weights (N, A) -> (N, J, 3) sum_a weights[n, a] outputs[a, n]
  (elementwise in float32: no reduced-precision matmul)."""
  return jnp.sum(jnp.moveaxis(weights, 1, 0)[:, :, None, None] * outputs, axis=0)


@functools.partial(jax.jit, static_argnames=("num_sequences",))
def _sequence_means(values: jax.Array, frame_sequence: jax.Array, *, num_sequences: int) -> jax.Array:
  sums = jax.ops.segment_sum(values, frame_sequence, num_sequences, indices_are_sorted=True)
  counts = jax.ops.segment_sum(jnp.ones_like(frame_sequence, jnp.float32), frame_sequence, num_sequences,
                               indices_are_sorted=True)
  return sums / jnp.maximum(counts, 1.0)[:, None]


def sequence_means(values: jax.Array, resident: ResidentTestSet) -> np.ndarray:
  """values (N, C) per flat frame -> (S, C) float64 mean over each sequence's frames, in INPUT
  record order (host)."""
  means = np.asarray(_sequence_means(values, resident.frame_sequence, num_sequences=resident.num_sequences),
                     np.float64)
  out = np.empty_like(means)
  out[resident.records] = means
  return out


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
