"""Whole-sequence evaluation of one model or a stack of per-action models (spec 7.2, 9, 12).

Test sequences go through the DILATED model in fixed-shape jitted batches. Each sequence is
cut into chunks of `chunk` output frames; a chunk's `chunk + RF - 1` input frames are
gathered with clipped indices, which is exactly the reference's edge padding of the whole
sequence (`pad + shift` frames before, `pad - shift` after), so the output equals running the
whole sequence at once. Stacked variables (leading action axis) run under `jax.vmap`: slice
`a` sees only the chunks of the sequences routed to it; slices are padded to equal chunk
counts with dummy chunks whose outputs are dropped. One model is a stack of one.

Metrics follow the reference's averaging: within an action every metric is frame-weighted
over its sequences x cameras x subjects (MPJVE is a per-sequence mean weighted by the
sequence length L), and the headline number is the plain mean over actions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax import losses
from posejax.data.actions import ACTIONS
from posejax.data.dataset import PoseDataset
from posejax.errors import PosejaxError
from posejax.model import TemporalModel, causal_shift, receptive_field
from posejax.skeleton import flip_permutation

METRICS = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
COMMON_SLICE = "all"
DEFAULT_CHUNK = 512
DEFAULT_BATCH = None  # chosen per plan: about FRAMES_PER_STEP output frames over all slices
FRAMES_PER_STEP = 65536
_METRIC_BLOCK = 8192  # frames per jitted metric call (fixed shape: one compilation)

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


def _flip_array(x: jax.Array, left: tuple[int, ...], right: tuple[int, ...]) -> jax.Array:
  """Mirror (spec 7.3): negate x, swap the `left`/`right` entries of axis -2."""
  return x.at[..., 0].multiply(-1)[..., flip_permutation(x.shape[-2], left, right), :]


@functools.partial(jax.jit, static_argnames=("model", "tta", "flip"))
def _forward(model: TemporalModel, variables: Any, inputs: jax.Array, *, tta: bool,
             flip: Flip) -> jax.Array:
  """inputs: (A, B, chunk + RF - 1, K, 2) -> (A, B, chunk, J, 3); variables stacked on A."""
  kps_left, kps_right, joints_left, joints_right = flip

  def one_slice(v, x):
    if not tta:
      return model.apply(v, x, train=False)
    y = model.apply(v, jnp.concatenate([x, _flip_array(x, kps_left, kps_right)]), train=False)
    half = x.shape[0]
    return (y[:half] + _flip_array(y[half:], joints_left, joints_right)) / 2

  return jax.vmap(one_slice)(variables, inputs)


def run_plan(model: TemporalModel, stacked_variables: Any, plan: ChunkPlan, flat_2d: np.ndarray, *,
             tta: bool, flip: Flip) -> np.ndarray:
  """Predictions for every frame of the plan's flat axis.

  Args:
    flat_2d: (N, K, 2) all sequences concatenated in the plan's flat order.
  Returns:
    (N, J, 3) float32 predictions.
  """
  rf, shift, chunk = plan.receptive_field, plan.causal_shift, plan.chunk
  pad = (rf - 1) // 2
  # Always the dilated form (same variables as the strided training form); a tuple of widths
  # keeps the module hashable for jit's static argument.
  model = model.clone(strided=False, filter_widths=tuple(model.filter_widths))
  seq = np.maximum(plan.chunk_seq, 0)
  offsets, lengths = plan.offsets[seq], plan.lengths[seq]
  padding = plan.chunk_seq < 0
  lengths = np.where(padding, 1, lengths)
  in_local = plan.chunk_start[..., None] - pad - shift + np.arange(chunk + rf - 1)
  in_index = offsets[..., None] + np.clip(in_local, 0, lengths[..., None] - 1)
  out_local = plan.chunk_start[..., None] + np.arange(chunk)
  out_valid = ~padding[..., None] & (out_local < lengths[..., None])
  out_index = offsets[..., None] + out_local

  stacked_variables = jax.device_put(stacked_variables)  # once, not per batch
  outputs = []
  for b in range(0, plan.chunk_seq.shape[1], plan.batch):
    inputs = flat_2d[in_index[:, b:b + plan.batch]]  # (A, batch, chunk + RF - 1, K, 2)
    # No host sync here: dispatch runs ahead while the next batch is gathered.
    outputs.append(_forward(model, stacked_variables, inputs, tta=tta, flip=flip))
  preds = np.concatenate([np.asarray(o) for o in outputs], axis=1)  # (A, C, chunk, J, 3)
  result = np.zeros((flat_2d.shape[0],) + preds.shape[-2:], np.float32)
  result[out_index[out_valid]] = preds[out_valid]
  return result


def predict_stacked(model: TemporalModel, stacked_variables: Any,
                    per_action_inputs: Sequence[Sequence[np.ndarray]], *, tta: bool,
                    kps_left: Sequence[int], kps_right: Sequence[int], joints_left: Sequence[int],
                    joints_right: Sequence[int], chunk: int = DEFAULT_CHUNK,
                    batch: int | None = DEFAULT_BATCH) -> list[list[np.ndarray]]:
  """Each slice's model on its own sequences.

  Args:
    stacked_variables: model variables with a leading slice axis A.
    per_action_inputs: A lists of (T, K, 2) normalized 2D sequences.
  Returns:
    A lists of (T, J, 3) predictions, aligned with the inputs.
  """
  lengths = [[len(x) for x in group] for group in per_action_inputs]
  plan = plan_chunks(lengths, chunk=chunk, batch=batch,
                     receptive_field=receptive_field(model.filter_widths),
                     causal_shift=causal_shift(model.filter_widths, model.causal))
  if plan.total_frames == 0:
    return [[] for _ in per_action_inputs]
  flat = np.concatenate([np.asarray(x, np.float32) for g in per_action_inputs for x in g])
  flip = (tuple(kps_left), tuple(kps_right), tuple(joints_left), tuple(joints_right))
  flat_pred = run_plan(model, stacked_variables, plan, flat, tta=tta, flip=flip)
  pieces = iter(np.split(flat_pred, np.cumsum(plan.lengths)[:-1]))
  return [[next(pieces) for _ in group] for group in per_action_inputs]


def predict(model: TemporalModel, variables: Any, poses_2d_list: Sequence[np.ndarray], *, tta: bool,
            kps_left: Sequence[int], kps_right: Sequence[int], joints_left: Sequence[int],
            joints_right: Sequence[int], chunk: int = DEFAULT_CHUNK,
            batch: int | None = DEFAULT_BATCH) -> list[np.ndarray]:
  """One model (unstacked variables) on (T, K, 2) sequences -> list of (T, J, 3)."""
  stacked = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf)[None], variables)
  return predict_stacked(model, stacked, [poses_2d_list], tta=tta, kps_left=kps_left,
                         kps_right=kps_right, joints_left=joints_left, joints_right=joints_right,
                         chunk=chunk, batch=batch)[0]


def slice_of_sequences(dataset: PoseDataset, actions_of_slices: Sequence[str]) -> list[int]:
  """Model slice of each record: 0 in common mode (one slice 'all'), else its action's slice."""
  slices = list(actions_of_slices)
  if slices == [COMMON_SLICE]:
    return [0] * len(dataset.sequences)
  missing = sorted({s.action for s in dataset.sequences} - set(slices))
  if missing:
    raise PosejaxError(f"checkpoint has models for {', '.join(slices)}; no model for test "
                       f"action(s) {', '.join(missing)} (select them with --config.actions)")
  return [slices.index(s.action) for s in dataset.sequences]


def predict_dataset(model: TemporalModel, stacked_variables: Any, dataset: PoseDataset,
                    actions_of_slices: Sequence[str], *, tta: bool, chunk: int = DEFAULT_CHUNK,
                    batch: int | None = DEFAULT_BATCH) -> list[np.ndarray]:
  """(T, J, 3) camera-space root-relative prediction of every record, in dataset order."""
  routes = slice_of_sequences(dataset, actions_of_slices)
  groups: list[list[int]] = [[] for _ in actions_of_slices]
  for i, a in enumerate(routes):
    groups[a].append(i)
  per_slice = [[dataset.sequences[i].poses_2d for i in g] for g in groups]
  preds = predict_stacked(model, stacked_variables, per_slice, tta=tta,
                          kps_left=dataset.keypoints_left, kps_right=dataset.keypoints_right,
                          joints_left=dataset.joints_left, joints_right=dataset.joints_right,
                          chunk=chunk, batch=batch)
  out: list[np.ndarray | None] = [None] * len(routes)
  for g, p in zip(groups, preds):
    for i, pred in zip(g, p):
      out[i] = pred
  return out  # type: ignore[return-value]


@functools.partial(jax.jit, static_argnames=("full",))
def _frame_errors(pred: jax.Array, target: jax.Array, *, full: bool) -> jax.Array:
  """(N, J, 3) pairs -> (M, N) per-frame errors: mpjpe[, p_mpjpe, n_mpjpe]."""
  rows = [losses.mpjpe_per_frame(pred, target)]
  if full:
    rows += [losses.p_mpjpe_per_frame(pred, target), losses.n_mpjpe_per_frame(pred, target)]
  return jnp.stack(rows)


def _blocked_errors(pred: np.ndarray, target: np.ndarray, full: bool) -> np.ndarray:
  """`_frame_errors` over fixed-size blocks (last block edge-padded: no NaN from zero poses)."""
  n = pred.shape[0]
  if n == 0:
    return np.zeros((3 if full else 1, 0), np.float64)
  index = np.minimum(np.arange(-(-n // _METRIC_BLOCK) * _METRIC_BLOCK), n - 1)
  # Full float32 matmuls: the GPU default (TF32) would shift P-MPJPE by tenths of a millimetre.
  with jax.default_matmul_precision("highest"):
    out = [_frame_errors(pred[index[i:i + _METRIC_BLOCK]], target[index[i:i + _METRIC_BLOCK]], full=full)
           for i in range(0, index.size, _METRIC_BLOCK)]
  return np.concatenate([np.asarray(o, np.float64) for o in out], axis=1)[:, :n]


def sequence_error_sums(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                        full: bool = True) -> dict[str, np.ndarray]:
  """Per-sequence frame-weighted error sums in metres.

  Args:
    predictions, targets: per sequence (L, J, 3); targets already root-zeroed.
    full: also P-MPJPE and N-MPJPE (final evaluation), else MPJPE and MPJVE only.
  Returns:
    {'frames': (S,), metric: (S,) sum over the sequence's frames}; MPJVE's sum is
    L x (mean velocity error over the L - 1 differences), the reference's weighting
    (0 for a single-frame sequence).
  """
  lengths = np.asarray([len(p) for p in predictions], np.int64)
  pred, target = np.concatenate(predictions), np.concatenate(targets)
  frame = _blocked_errors(pred, target, full)
  bounds = np.concatenate([[0], np.cumsum(lengths)])
  sums = {"frames": lengths}
  names = ("mpjpe", "p_mpjpe", "n_mpjpe") if full else ("mpjpe",)
  for name, row in zip(names, frame):
    sums[name] = np.add.reduceat(row, bounds[:-1]) if row.size else np.zeros(len(lengths))
  # Velocities are first differences within each sequence only.
  v_pred = np.concatenate([np.diff(p, axis=0) for p in predictions])
  v_target = np.concatenate([np.diff(t, axis=0) for t in targets])
  v_err = _blocked_errors(v_pred, v_target, False)[0]
  v_bounds = np.concatenate([[0], np.cumsum(lengths - 1)])
  v_sums = np.asarray([v_err[s:e].sum() for s, e in zip(v_bounds[:-1], v_bounds[1:])])
  sums["mpjve"] = np.where(lengths > 1, v_sums / np.maximum(lengths - 1, 1) * lengths, 0.0)
  return sums


def _ordered_actions(actions: Sequence[str]) -> list[str]:
  """Table order of the paper, then unknown names in first-seen order."""
  present = list(dict.fromkeys(actions))
  return [a for a in ACTIONS if a in present] + [a for a in present if a not in ACTIONS]


def aggregate(sums: dict[str, np.ndarray], actions: Sequence[str], *, scale: float = 1000.0,
              metrics: Sequence[str] = METRICS) -> dict[str, Any]:
  """Frame-weighted per-action means (x scale) and their plain mean over actions."""
  per_action, frames = {}, {}
  for action in _ordered_actions(actions):
    mask = np.asarray([a == action for a in actions])
    n = int(sums["frames"][mask].sum())
    frames[action] = n
    per_action[action] = {m: float(sums[m][mask].sum() / n * scale) for m in metrics}
  average = {m: float(np.mean([v[m] for v in per_action.values()])) for m in metrics}
  frames["total"] = int(sums["frames"].sum())
  return {"per_action": per_action, "average": average, "frames": frames}


def _targets(dataset: PoseDataset) -> list[np.ndarray]:
  """Root-zeroed 3D targets (spec 12.1 step 4)."""
  out = []
  for s in dataset.sequences:
    if s.poses_3d is None:
      raise PosejaxError(f"{s.subject} {s.name} camera {s.camera}: no 3D ground truth to evaluate")
    t = np.array(s.poses_3d, np.float32)
    t[:, 0] = 0
    out.append(t)
  return out


def score(dataset: PoseDataset, predictions: Sequence[np.ndarray], *, by_subject: bool = False,
          full: bool = True) -> dict[str, Any]:
  """Per-action table in millimetres (+ per-subject tables) from precomputed predictions."""
  if not dataset.sequences:
    raise PosejaxError("evaluation: the test set is empty (check subjects and actions)")
  metrics = METRICS if full else ("mpjpe", "mpjve")
  sums = sequence_error_sums(predictions, _targets(dataset), full=full)
  actions = [s.action for s in dataset.sequences]
  result = aggregate(sums, actions, metrics=metrics)
  if by_subject:
    subjects = np.asarray([s.subject for s in dataset.sequences])
    result["by_subject"] = {}
    for subject in dataset.subjects:
      keep = subjects == subject
      sub = {k: v[keep] for k, v in sums.items()}
      result["by_subject"][subject] = aggregate(sub, [a for a, k in zip(actions, keep) if k],
                                                metrics=metrics)
  return result


def evaluate_dataset(model: TemporalModel, stacked_variables: Any, dataset: PoseDataset,
                     actions_of_slices: Sequence[str], *, tta: bool = True, by_subject: bool = False,
                     chunk: int = DEFAULT_CHUNK, batch: int | None = DEFAULT_BATCH) -> dict[str, Any]:
  """Final evaluation (spec 12): per-action MPJPE, P-MPJPE, N-MPJPE, MPJVE in mm.

  Returns:
    {'per_action': {action: {metric: mm}}, 'average': {metric: mm}, 'frames': {action: n,
     'total': n}, 'tta': bool[, 'by_subject': {subject: same without 'tta'}]}.
  """
  preds = predict_dataset(model, stacked_variables, dataset, actions_of_slices, tta=tta,
                          chunk=chunk, batch=batch)
  return {**score(dataset, preds, by_subject=by_subject), "tta": bool(tta)}


def validation_metrics(model: TemporalModel, stacked_variables: Any, dataset: PoseDataset,
                       actions_of_slices: Sequence[str], *, chunk: int = DEFAULT_CHUNK,
                       batch: int | None = DEFAULT_BATCH) -> dict[str, Any]:
  """Per-epoch validation (no TTA), in metres, shaped for metrics.jsonl.

  Every call with the same dataset and model shapes reuses one compilation of the forward
  pass and one of the metric kernel.

  Returns:
    {'mpjpe_valid': m, 'mpjve_valid': m (plain means over actions),
     'per_action': {action: {'mpjpe_valid': m, 'mpjve_valid': m}}, 'frames': {action: n}}.
  """
  preds = predict_dataset(model, stacked_variables, dataset, actions_of_slices, tta=False,
                          chunk=chunk, batch=batch)
  sums = sequence_error_sums(preds, _targets(dataset), full=False)
  table = aggregate(sums, [s.action for s in dataset.sequences], scale=1.0, metrics=("mpjpe", "mpjve"))
  per_action = {a: {"mpjpe_valid": v["mpjpe"], "mpjve_valid": v["mpjve"]}
                for a, v in table["per_action"].items()}
  return {"mpjpe_valid": table["average"]["mpjpe"], "mpjve_valid": table["average"]["mpjve"],
          "per_action": per_action, "frames": table["frames"]}

