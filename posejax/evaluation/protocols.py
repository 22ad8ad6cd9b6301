"""Whole-sequence evaluation of one model or a stack of per-action models (reference V7.2, V9, V12).

The test sequences are put on the device once (`resident_test_set`, posejax.evaluation.resident):
prediction runs as one jitted loop over fixed-shape chunk batches through the DILATED model,
and the metrics are reduced on the device to per-sequence sums; only those come back. The
trainer builds the resident set once and validates with it at every log point; the functions
here also accept a PoseDataset and build the set on the fly.

Metrics follow the reference's averaging: within an action every metric is frame-weighted
over its sequences x cameras x subjects (MPJVE is a per-sequence mean weighted by the
sequence length L), and the headline number is the plain mean over actions.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.data.dataset import PoseDataset
from posejax.evaluation import resident as device_eval
from posejax.evaluation.chunk_plan import FRAMES_PER_STEP, ChunkPlan, plan_chunks  # noqa: F401
from posejax.evaluation.resident import ResidentTestSet
from posejax.models.family import PoseModel
from posejax.pose.actions import ACTIONS
from posejax.training import slices as slices_lib

METRICS = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
COMMON_SLICE = slices_lib.COMMON
DEFAULT_CHUNK = 512
DEFAULT_BATCH = None  # chosen per plan: about chunk_plan.frames_per_step() output frames over all slices


def slice_of_sequences(dataset: PoseDataset, actions_of_slices: Sequence[str]) -> list[int]:
  """Model slice of each record: 0 in common mode (one slice 'all'), else its action's slice."""
  return slices_lib.route([s.action for s in dataset.sequences], actions_of_slices)


def _dataset_flip(dataset: PoseDataset) -> device_eval.Flip:
  return (tuple(dataset.keypoints_left), tuple(dataset.keypoints_right), tuple(dataset.joints_left),
          tuple(dataset.joints_right))


def resident_test_set(dataset: PoseDataset, actions_of_slices: Sequence[str], model: PoseModel, *,
                      chunk: int = DEFAULT_CHUNK, batch: int | None = DEFAULT_BATCH,
                      with_targets: bool = True) -> ResidentTestSet:
  """The test set on the device, its records routed to the slices `actions_of_slices`.

  Build it once per (dataset, routing, model receptive field and causality, chunk, batch) and
  pass it to `validation_metrics` / `evaluate_dataset` in place of the dataset: every call
  then reuses the device arrays and one compilation.
  """
  records = dataset.sequences
  missing = next((f"{s.subject} {s.name} camera {s.camera}: no 3D ground truth to evaluate"
                  for s in records if s.poses_3d is None), None)
  targets = [s.poses_3d for s in records] if with_targets and missing is None else None
  return device_eval.build([s.poses_2d for s in records], targets, slice_of_sequences(dataset, actions_of_slices),
                           model, slices=actions_of_slices, flip=_dataset_flip(dataset), chunk=chunk,
                           batch=batch, actions=[s.action for s in records],
                           subjects=[s.subject for s in records], missing_3d=missing or "")


def _as_resident(data: PoseDataset | ResidentTestSet, actions_of_slices: Sequence[str], model: PoseModel,
                 chunk: int, batch: int | None) -> ResidentTestSet:
  """`data` itself if already resident (its own chunk and batch apply), else built now."""
  if isinstance(data, ResidentTestSet):
    if tuple(actions_of_slices) != data.slices:
      raise PosejaxError(f"evaluation: the resident test set is routed to {', '.join(data.slices)}, "
                         f"not {', '.join(actions_of_slices)}")
    return data
  return resident_test_set(data, actions_of_slices, model, chunk=chunk, batch=batch)


def _host_predictions(model: PoseModel, stacked_variables: Any, resident: ResidentTestSet, *,
                      tta: bool) -> list[np.ndarray]:
  """(T, J, 3) prediction of every input record, in input order (one device-to-host copy)."""
  return split_records(device_eval.predict(model, stacked_variables, resident, tta=tta), resident)


def split_records(flat: jax.Array, resident: ResidentTestSet) -> list[np.ndarray]:
  """Per-frame values (N, ...) of the flat frame axis -> one (T, ...) array per input record."""
  flat = np.asarray(flat)
  pieces = np.split(flat, np.cumsum(resident.plan.lengths)[:-1]) if resident.num_sequences else []
  out: list[np.ndarray] = [np.empty(0)] * resident.num_sequences
  for record, piece in zip(resident.records, pieces):
    out[record] = piece
  return out


def predict_stacked(model: PoseModel, stacked_variables: Any,
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
  inputs = [x for group in per_action_inputs for x in group]
  routes = [a for a, group in enumerate(per_action_inputs) for _ in group]
  flip = (tuple(kps_left), tuple(kps_right), tuple(joints_left), tuple(joints_right))
  resident = device_eval.build(inputs, None, routes, model, slices=[str(a) for a in range(len(per_action_inputs))],
                               flip=flip, chunk=chunk, batch=batch)
  preds = iter(_host_predictions(model, stacked_variables, resident, tta=tta))
  return [[next(preds) for _ in group] for group in per_action_inputs]


def predict(model: PoseModel, variables: Any, poses_2d_list: Sequence[np.ndarray], *, tta: bool,
            kps_left: Sequence[int], kps_right: Sequence[int], joints_left: Sequence[int],
            joints_right: Sequence[int], chunk: int = DEFAULT_CHUNK,
            batch: int | None = DEFAULT_BATCH) -> list[np.ndarray]:
  """One model (unstacked variables) on (T, K, 2) sequences -> list of (T, J, 3)."""
  stacked = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf)[None], variables)
  return predict_stacked(model, stacked, [poses_2d_list], tta=tta, kps_left=kps_left,
                         kps_right=kps_right, joints_left=joints_left, joints_right=joints_right,
                         chunk=chunk, batch=batch)[0]


def predict_dataset(model: PoseModel, stacked_variables: Any, dataset: PoseDataset,
                    actions_of_slices: Sequence[str], *, tta: bool, chunk: int = DEFAULT_CHUNK,
                    batch: int | None = DEFAULT_BATCH) -> list[np.ndarray]:
  """(T, J, 3) camera-space root-relative prediction of every record, in dataset order."""
  resident = resident_test_set(dataset, actions_of_slices, model, chunk=chunk, batch=batch, with_targets=False)
  return _host_predictions(model, stacked_variables, resident, tta=tta)


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
  frame_sequence = np.repeat(np.arange(lengths.size, dtype=np.int32), lengths)
  flat = lambda arrays: jnp.asarray(np.concatenate([np.asarray(a, np.float32) for a in arrays]))
  return device_eval.sequence_sums(flat(predictions), flat(targets), jnp.asarray(frame_sequence), lengths,
                                   full=full)


def _check_scorable(resident: ResidentTestSet) -> None:
  if resident.num_sequences == 0:
    raise PosejaxError("evaluation: the test set is empty (check subjects and actions)")
  if resident.targets is None:
    raise PosejaxError(resident.missing_3d or "evaluation: no 3D ground truth to evaluate")


def _prediction_sums(pred: jax.Array, resident: ResidentTestSet, *, full: bool) -> dict[str, np.ndarray]:
  """sequence_error_sums of device predictions (N, J, 3) of the flat frames, in record order."""
  _check_scorable(resident)
  sums = device_eval.sequence_sums(pred, resident.targets, resident.frame_sequence, resident.plan.lengths,
                                   full=full)
  order = np.argsort(resident.records)
  return {k: v[order] for k, v in sums.items()}


def _resident_sums(model: PoseModel, stacked_variables: Any, resident: ResidentTestSet, *, tta: bool,
                   full: bool) -> dict[str, np.ndarray]:
  """sequence_error_sums of the model's predictions, computed on the device, in record order."""
  _check_scorable(resident)
  return _prediction_sums(device_eval.predict(model, stacked_variables, resident, tta=tta), resident, full=full)


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


def _tables(sums: dict[str, np.ndarray], actions: Sequence[str], subjects: Sequence[str], *,
            by_subject: bool, metrics: Sequence[str]) -> dict[str, Any]:
  """Per-action table in millimetres (+ per-subject tables, subjects in first-seen order)."""
  result = aggregate(sums, actions, metrics=metrics)
  if by_subject:
    subject_of = np.asarray(subjects)
    result["by_subject"] = {}
    for subject in dict.fromkeys(subjects):
      keep = subject_of == subject
      result["by_subject"][subject] = aggregate({k: v[keep] for k, v in sums.items()},
                                                [a for a, k in zip(actions, keep) if k], metrics=metrics)
  return result


def _targets(dataset: PoseDataset) -> list[np.ndarray]:
  """Root-zeroed 3D targets (reference V12.1 step 4)."""
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
  sums = sequence_error_sums(predictions, _targets(dataset), full=full)
  return _tables(sums, [s.action for s in dataset.sequences], [s.subject for s in dataset.sequences],
                 by_subject=by_subject, metrics=METRICS if full else ("mpjpe", "mpjve"))


def evaluate_dataset(model: PoseModel, stacked_variables: Any, data: PoseDataset | ResidentTestSet,
                     actions_of_slices: Sequence[str], *, tta: bool = True, by_subject: bool = False,
                     chunk: int = DEFAULT_CHUNK, batch: int | None = DEFAULT_BATCH) -> dict[str, Any]:
  """Final evaluation (reference V12): per-action MPJPE, P-MPJPE, N-MPJPE, MPJVE in mm.

  `data` is the test dataset or its `resident_test_set` (whose own chunk and batch apply).

  Returns:
    {'per_action': {action: {metric: mm}}, 'average': {metric: mm}, 'frames': {action: n,
     'total': n}, 'tta': bool[, 'by_subject': {subject: same without 'tta'}]}.
  """
  resident = _as_resident(data, actions_of_slices, model, chunk, batch)
  sums = _resident_sums(model, stacked_variables, resident, tta=tta, full=True)
  return {**_tables(sums, resident.actions, resident.subjects, by_subject=by_subject, metrics=METRICS),
          "tta": bool(tta)}


def validation_metrics(model: PoseModel, stacked_variables: Any, data: PoseDataset | ResidentTestSet,
                       actions_of_slices: Sequence[str], *, chunk: int = DEFAULT_CHUNK,
                       batch: int | None = DEFAULT_BATCH) -> dict[str, Any]:
  """Per-epoch validation (no TTA), in metres, shaped for metrics.jsonl.

  Pass the `resident_test_set` (whose own chunk and batch apply) to reuse its device arrays
  and one compilation at every call; a PoseDataset is put on the device for this call only.

  Returns:
    {'mpjpe_valid': m, 'mpjve_valid': m (plain means over actions),
     'per_action': {action: {'mpjpe_valid': m, 'mpjve_valid': m}}, 'frames': {action: n},
     'frame_weighted': {'mpjpe_valid': m, 'mpjve_valid': m} (over all test frames: the
     reference's per-epoch 3d_valid)}.
  """
  resident = _as_resident(data, actions_of_slices, model, chunk, batch)
  sums = _resident_sums(model, stacked_variables, resident, tta=False, full=False)
  table = aggregate(sums, resident.actions, scale=1.0, metrics=("mpjpe", "mpjve"))
  per_action = {a: {"mpjpe_valid": v["mpjpe"], "mpjve_valid": v["mpjve"]}
                for a, v in table["per_action"].items()}
  total = max(int(sums["frames"].sum()), 1)
  frame_weighted = {"mpjpe_valid": float(sums["mpjpe"].sum() / total),
                    "mpjve_valid": float(sums["mpjve"].sum() / total)}
  return {"mpjpe_valid": table["average"]["mpjpe"], "mpjve_valid": table["average"]["mpjve"],
          "per_action": per_action, "frames": table["frames"], "frame_weighted": frame_weighted}


# --- Routing without labels and the cross-action matrix ---------------------------------------


def evaluate_predictions(pred: jax.Array, resident: ResidentTestSet, *, tta: bool,
                         by_subject: bool = False) -> dict[str, Any]:
  """`evaluate_dataset`'s tables for device predictions (N, J, 3) of the resident flat frames
  (e.g. a mixture of models); `tta` only records how they were made."""
  sums = _prediction_sums(pred, resident, full=True)
  return {**_tables(sums, resident.actions, resident.subjects, by_subject=by_subject, metrics=METRICS),
          "tta": bool(tta)}


def predict_all(model: PoseModel, stacked_variables: Any, resident: ResidentTestSet, *,
                tta: bool) -> jax.Array:
  """(A, N, J, 3) device predictions of every slice's model for every flat frame."""
  return device_eval.predict_all(model, stacked_variables, resident, tta=tta)


def evaluate_routed(all_predictions: jax.Array, routes: Sequence[int], resident: ResidentTestSet, *, tta: bool,
                    by_subject: bool = False) -> dict[str, Any]:
  """Test record i lifted by slice `routes[i]` (instead of its action's) evaluated.

  Args:
    all_predictions: (A, N, J, 3) from `predict_all`.
    routes: (records,) slice index of each input record.
  """
  flat_routes = jnp.asarray(np.asarray(routes, np.int32)[resident.records])
  return evaluate_predictions(device_eval.take_models(all_predictions, flat_routes[resident.frame_sequence]),
                              resident, tta=tta, by_subject=by_subject)


def evaluate_mixture(all_predictions: jax.Array, weights: jax.Array, resident: ResidentTestSet, *, tta: bool,
                     by_subject: bool = False) -> dict[str, Any]:
  """Per frame n, the mixture sum_a weights[n, a] * all_predictions[a, n] evaluated.

  Args:
    all_predictions: (A, N, J, 3) from `predict_all`.
    weights: (N, A) per flat frame (e.g. the classifier's probabilities of each slice's action).
  """
  return evaluate_predictions(device_eval.mix_models(all_predictions, jnp.asarray(weights, jnp.float32)),
                              resident, tta=tta, by_subject=by_subject)


def cross_action_matrix(all_predictions: jax.Array, resident: ResidentTestSet) -> dict[str, Any]:
  """Every slice's model on every action's test frames: Protocol #1 and MPJVE in mm.

  Returns:
    {'actions': test actions (rows, table order), 'models': slice names (columns),
     'mpjpe', 'mpjve': (rows x columns) lists of frame-weighted errors, 'frames': per action}.
  """
  _check_scorable(resident)
  columns = []
  for a in range(len(resident.slices)):
    sums = _prediction_sums(all_predictions[a], resident, full=False)
    columns.append(aggregate(sums, resident.actions, metrics=("mpjpe", "mpjve")))
  actions = list(columns[0]["per_action"])
  matrix = {m: [[c["per_action"][action][m] for c in columns] for action in actions] for m in ("mpjpe", "mpjve")}
  return {"actions": actions, "models": list(resident.slices), **matrix,
          "frames": {a: columns[0]["frames"][a] for a in actions}}
