"""Which model lifts which test sequence: routing modes, the classifier's scores, the cross-action matrix.

An action-based run has one pose model per action. Routing modes (results side by side in
results.json/md, `routings`):

* oracle: each sequence to the model of its ground-truth action (the seed paper; needs labels).
* predicted: each sequence to the model of the action the classifier predicts for it, the
  argmax of the mean of its windows' log-probabilities (no labels).
* soft: per frame, the mixture of all models' 3D predictions weighted by the classifier's
  probabilities for the window centred on the frame (no labels).
* common: the common model of another run, one model for every action (no labels).

A common run has one routing, 'none'. The cross-action matrix evaluates every model on every
action's test frames (one vmapped pass): its diagonal is oracle routing, its per-row minimum
the best any per-action routing could do. Everything runs on the resident test set
(`device_eval`); the classifier is `posejax.evaluation.classifier`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_save_figure, replace_folder
from posejax.evaluation import (
    classifier as classifier_lib, protocols as evaluation, report, resident as device_eval,
    trajectory as trajectory_lib)
from posejax.pose.actions import ABBREVIATIONS
from posejax.workdir import layout as workdir_lib

MODES = ("oracle", "predicted", "soft", "common", "none")
NEEDS_LABELS = {"oracle": True, "predicted": False, "soft": False, "common": False, "none": False}
DESCRIPTIONS = {
    "oracle": "oracle (ground-truth action labels)",
    "predicted": "predicted (the classifier's action per sequence; no labels)",
    "soft": "soft (per frame, all models weighted by the classifier's probabilities; no labels)",
    "common": "common (the common model for every action; no labels)",
    "none": "none (one model)"}
CONFUSION_FIGURE = "confusion.png"
CROSS_ACTION_FIGURE = "cross_action.png"
TOP_K = 3


@dataclasses.dataclass(frozen=True)
class ActionScores:
  """The classifier's log-probabilities on a resident set.

  frame_log_probs: (N, C) device, the flat frame order of the resident set.
  sequence_log_probs: (S, C) host float64, input record order: the mean over the frames.
  """
  classes: tuple[str, ...]
  frame_log_probs: jax.Array
  sequence_log_probs: np.ndarray


def score_actions(classifier: classifier_lib.Classifier, resident: device_eval.ResidentTestSet, *,
                  tta: bool) -> ActionScores:
  log_probs = classifier_lib.frame_log_probs(classifier, resident, tta=tta)
  return ActionScores(classifier.classes, log_probs, device_eval.sequence_means(log_probs, resident))


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts: row = true class, column = predicted class."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (np.asarray(true, np.int64), np.asarray(predicted, np.int64)), 1)
  return counts


def top_k_hits(log_probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """(n,) whether each label is among its row's k highest scores (ties count as hits)."""
  log_probs = np.asarray(log_probs)
  own = log_probs[np.arange(len(labels)), labels]
  return np.sum(log_probs > own[:, None], axis=1) < k


def _class_index(classes: Sequence[str], actions: Sequence[str], what: str) -> np.ndarray:
  missing = sorted(set(actions) - set(classes))
  if missing:
    raise PosejaxError(f"the action classifier knows {', '.join(classes)}; {what} {', '.join(missing)} "
                       "(train it with the same config.actions as the pose models)")
  return np.asarray([list(classes).index(a) for a in actions], np.int64)


def classifier_metrics(scores: ActionScores, resident: device_eval.ResidentTestSet) -> dict[str, Any]:
  """Per-frame and per-sequence accuracy, top-3 and confusion counts on the test set."""
  c = len(scores.classes)
  sequence_true = _class_index(scores.classes, resident.actions, "no class for test action(s)")
  frame_record = resident.records[np.asarray(resident.frame_sequence)]
  frame_true = sequence_true[frame_record]
  frame_lp = np.asarray(scores.frame_log_probs)
  frame_pred, sequence_pred = frame_lp.argmax(-1), scores.sequence_log_probs.argmax(-1)
  k = min(TOP_K, c)
  return {"classes": list(scores.classes), "frames": int(frame_true.size), "sequences": int(sequence_true.size),
          "frame_accuracy": float(np.mean(frame_pred == frame_true)),
          "sequence_accuracy": float(np.mean(sequence_pred == sequence_true)),
          "frame_top3": float(np.mean(top_k_hits(frame_lp, frame_true, k))),
          "sequence_top3": float(np.mean(top_k_hits(scores.sequence_log_probs, sequence_true, k))),
          "confusion_sequences": confusion_matrix(sequence_true, sequence_pred, c).tolist(),
          "confusion_frames": confusion_matrix(frame_true, frame_pred, c).tolist()}


def predicted_routes(scores: ActionScores, slices: Sequence[str]) -> np.ndarray:
  """(S,) per input record the slice of its most probable action among the slices' actions."""
  own = _class_index(scores.classes, slices, "no class for model(s)")
  return np.argmax(scores.sequence_log_probs[:, own], axis=-1)


def slice_weights(scores: ActionScores, slices: Sequence[str]) -> jax.Array:
  """(N, A) device: each frame's probabilities of the slices' actions (renormalised over them)."""
  own = jnp.asarray(_class_index(scores.classes, slices, "no class for model(s)"))
  return jax.nn.softmax(scores.frame_log_probs[:, own], axis=-1)


def cross_summary(matrix: Mapping[str, Any]) -> dict[str, Any]:
  """Adds the oracle (own model) and best (per-row minimum) Protocol #1 of each test action."""
  mpjpe, models = np.asarray(matrix["mpjpe"]), list(matrix["models"])
  oracle = {a: float(row[models.index(a)]) for a, row in zip(matrix["actions"], mpjpe) if a in models}
  best = {a: float(row.min()) for a, row in zip(matrix["actions"], mpjpe)}
  out = dict(matrix, oracle=oracle, best=best,
             best_model={a: models[int(row.argmin())] for a, row in zip(matrix["actions"], mpjpe)},
             best_average=float(np.mean(list(best.values()))))
  if oracle:
    out["oracle_average"] = float(np.mean(list(oracle.values())))
  return out


def evaluate_routings(model: Any, variables: Any, resident: device_eval.ResidentTestSet, *, tta: bool,
                      by_subject: bool = False, classifier: classifier_lib.Classifier | None = None,
                      common: Mapping[str, Any] | None = None, cross_action: bool = False,
                      known: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
  """Every available routing mode's evaluation (`evaluate_dataset` tables).

  Args:
    common: the common model's results on the same test set (the 'common' row), if any.
    known: results already computed (e.g. the trainer's oracle evaluation), by mode.
  Returns:
    {'routings': {mode: results}, 'classifier': metrics or None, 'cross_action': matrix or None}.
  """
  action_based = list(resident.slices) != [evaluation.COMMON_SLICE]
  known = dict(known or {})
  first = "oracle" if action_based else "none"
  routings = {first: known.get(first) or evaluation.evaluate_dataset(model, variables, resident, resident.slices,
                                                                      tta=tta, by_subject=by_subject)}
  metrics, everything = None, None
  if classifier is not None:
    scores = score_actions(classifier, resident, tta=tta)
    metrics = classifier_metrics(scores, resident)
    metrics.update({k: classifier.metadata[k] for k in ("train_time_s", "steps") if k in classifier.metadata})
    if action_based:
      # One pass of every model over every frame serves both label-free routings.
      everything = evaluation.predict_all(model, variables, resident, tta=tta)
      routings["predicted"] = evaluation.evaluate_routed(everything, predicted_routes(scores, resident.slices),
                                                         resident, tta=tta, by_subject=by_subject)
      routings["soft"] = evaluation.evaluate_mixture(everything, slice_weights(scores, resident.slices), resident,
                                                     tta=tta, by_subject=by_subject)
  if common is not None:
    routings["common"] = dict(common)
  cross = None
  if cross_action:
    if everything is None:
      everything = evaluation.predict_all(model, variables, resident, tta=tta)
    cross = cross_summary(evaluation.cross_action_matrix(everything, resident))
  return {"routings": routings, "classifier": metrics, "cross_action": cross}


def default_mode(available: Sequence[str]) -> str:
  """The headline routing: predicted when there is a classifier (no labels), else oracle."""
  return next(m for m in ("predicted", "oracle", "none") if m in available)


def check_mode(mode: str | None, *, action_based: bool, has_classifier: bool, has_common: bool) -> None:
  """PosejaxError unless `mode` (--routing) can be evaluated for this run."""
  if mode is None:
    return
  if mode not in MODES[:4]:
    raise PosejaxError(f"--routing={mode}: expected one of {', '.join(MODES[:4])}")
  if not action_based and mode != "oracle":
    raise PosejaxError(f"--routing={mode}: a common run has one model; routing applies to action-based runs")
  if mode in ("predicted", "soft") and not has_classifier:
    raise PosejaxError(f"--routing={mode}: this workdir has no action classifier (WORKDIR/classifier): it trains "
                       "after the pose models finish their budgets, so a finished run with "
                       "config.classifier.enabled (on by default in action-based mode) has one; rerun the training "
                       "command to finish an interrupted run")
  if mode == "common" and not has_common:
    raise PosejaxError("--routing=common needs --common DIR, the workdir of a common run")


def merge(document: Mapping[str, Any], section: Mapping[str, Any], mode: str | None = None) -> dict[str, Any]:
  """The results document with every routing side by side and `mode`'s as its headline
  (per_action, average[, by_subject]); mode None: `default_mode`."""
  routings = section["routings"]
  if mode == "oracle" and "none" in routings:
    mode = "none"  # a common run: its one model is what oracle routing would use
  mode = mode or default_mode(list(routings))
  if mode not in routings:
    raise PosejaxError(f"--routing={mode}: not evaluated here (available: {', '.join(routings)})")
  doc = {k: v for k, v in document.items() if k not in ("routings", "classifier", "cross_action", "by_subject")}
  head = routings[mode]
  doc.update(per_action=head["per_action"], average=head["average"], routing=DESCRIPTIONS[mode], routing_mode=mode)
  if "by_subject" in head:
    doc["by_subject"] = head["by_subject"]
  doc["routings"] = {m: {"per_action": r["per_action"], "average": r["average"], "needs_labels": NEEDS_LABELS[m],
                         "description": DESCRIPTIONS[m], **{k: r[k] for k in ("workdir", "checkpoint_step") if k in r}}
                     for m, r in routings.items()}
  for key in ("classifier", "cross_action"):
    if section.get(key) is not None:
      doc[key] = section[key]
  return doc


# --- Figures ---------------------------------------------------------------------------------


def _heatmap(ax, values: np.ndarray, rows: Sequence[str], columns: Sequence[str], fmt: str, title: str):
  image = ax.imshow(values, cmap="viridis")
  ax.set_xticks(range(len(columns)), [ABBREVIATIONS.get(c, c) for c in columns], rotation=60, ha="right")
  ax.set_yticks(range(len(rows)), [ABBREVIATIONS.get(r, r) for r in rows])
  ax.set_title(title)
  if values.size and len(rows) * len(columns) <= 400:
    low, high = float(np.min(values)), float(np.max(values))
    for (i, j), v in np.ndenumerate(values):  # dark text on the bright end of viridis
      ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6 if len(columns) > 8 else 9,
              color="black" if v - low > 0.6 * (high - low) else "white")
  return image


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def confusion_plot(metrics: Mapping[str, Any]) -> Any:
  """The Figure of sequence counts and row-normalised frame shares, true action down, predicted across."""
  plt = _pyplot()
  classes = metrics["classes"]
  frames = np.asarray(metrics["confusion_frames"], np.float64)
  share = frames / np.maximum(frames.sum(1, keepdims=True), 1)
  size = max(5.0, 0.45 * len(classes) + 2)
  fig, (left, right) = plt.subplots(1, 2, figsize=(2 * size + 1.5, size + 0.8), layout="constrained")
  counts = _heatmap(left, np.asarray(metrics["confusion_sequences"]), classes, classes, "d",
                    f"test sequences (accuracy {100 * metrics['sequence_accuracy']:.1f}%)")
  shares = _heatmap(right, share, classes, classes, ".2f",
                    f"test frames, row share (accuracy {100 * metrics['frame_accuracy']:.1f}%)")
  fig.colorbar(counts, ax=left, fraction=0.046, pad=0.02, label="test sequences (count)")
  fig.colorbar(shares, ax=right, fraction=0.046, pad=0.02, label="fraction of the true action's test frames")
  for ax in (left, right):
    ax.set_xlabel("predicted action")
    ax.set_ylabel("true action")
  fig.suptitle("Action classifier on the test set: true action (rows) against predicted action (columns)")
  return fig


def confusion_figure(path: str, metrics: Mapping[str, Any]) -> None:
  atomic_save_figure(confusion_plot(metrics), path)


def cross_action_plot(cross: Mapping[str, Any]) -> Any:
  """The Figure of the MPJPE of every model (columns) on every action (rows); boxes: oracle, dots: row minimum."""
  plt = _pyplot()
  values, rows, columns = np.asarray(cross["mpjpe"]), cross["actions"], cross["models"]
  size = max(5.0, 0.5 * len(columns) + 2)
  fig, ax = plt.subplots(figsize=(size + 1.5, max(4.0, 0.5 * len(rows) + 2.5)), layout="constrained")
  image = _heatmap(ax, values, rows, columns, ".0f", "Protocol #1 MPJPE (mm) of each model on each action")
  for i, action in enumerate(rows):
    if action in columns:
      ax.add_patch(plt.Rectangle((columns.index(action) - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    ax.plot(int(np.argmin(values[i])), i + 0.32, marker="o", color="red", markersize=3, linestyle="none")
  ax.set_xlabel("model (trained on)")
  ax.set_ylabel("test action")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="MPJPE (mm)")
  # Proxy artists: the marks are drawn per cell, the legend explains them once.
  legend = [plt.Rectangle((0, 0), 1, 1, fill=False, edgecolor="red", lw=1.5,
                          label="red box: the test action's own model (oracle routing)"),
            plt.Line2D([], [], marker="o", color="red", markersize=4, linestyle="none",
                       label="red dot: the best model for the test action (lowest MPJPE in the row)")]
  fig.legend(handles=legend, loc="outside lower center", ncol=1, fontsize="small", frameon=False)
  return fig


def cross_action_figure(path: str, cross: Mapping[str, Any]) -> None:
  atomic_save_figure(cross_action_plot(cross), path)


def write_evaluation(out_dir: str, document: Mapping[str, Any]) -> list[str]:
  """results.{json,csv,md} and the figures the document has data for, replacing `out_dir` as a
  whole (`io_utils.replace_folder`); returns the paths written."""
  write = lambda tmp: list(report.write_results(tmp, document).values()) + write_figures(tmp, document)
  return replace_folder(out_dir, write, owned=workdir_lib.EVAL_FILES)


def write_figures(out_dir: str, document: Mapping[str, Any]) -> list[str]:
  """The confusion and cross-action figures the document has data for; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  if document.get("classifier"):
    paths.append(os.path.join(out_dir, CONFUSION_FIGURE))
    confusion_figure(paths[-1], document["classifier"])
  if document.get("cross_action"):
    paths.append(os.path.join(out_dir, CROSS_ACTION_FIGURE))
    cross_action_figure(paths[-1], document["cross_action"])
  return paths


def finish_document(document: Mapping[str, Any], model: Any, variables: Any, resident: device_eval.ResidentTestSet,
                    *, out_dir: str, tta: bool, classifier: classifier_lib.Classifier | None = None,
                    mode: str | None = None, common: Mapping[str, Any] | None = None, cross_action: bool = False,
                    by_subject: bool = False, write: bool = True, log=print) -> dict[str, Any]:
  """Adds every routing mode (and the classifier's metrics, the cross-action matrix) to a
  results document whose own per_action/average came from the run's one routing (oracle, or
  'none' for a common run); with `write`, replaces the folder `out_dir` with its results.{json,csv,md}
  and figures (`write_evaluation`)."""
  action_based = list(resident.slices) != [evaluation.COMMON_SLICE]
  known = {"oracle" if action_based else "none": document}
  section = evaluate_routings(model, variables, resident, tta=tta, by_subject=by_subject, classifier=classifier,
                              common=common, cross_action=cross_action, known=known)
  doc = merge(document, section, mode)
  if write:
    write_evaluation(out_dir, doc)
  log(report.routing_text(doc))
  return doc


class Lifted(NamedTuple):
  """Sequences lifted by `lift`, in input order."""
  poses: list[np.ndarray]             # per sequence (T, J, 3) camera-space root-relative poses
  used: np.ndarray                    # (S,) slice of each sequence (-1: the soft mixture)
  probabilities: np.ndarray | None    # (S, C) the classifier's sequence probabilities (None without one)
  roots: list[np.ndarray] | None      # per sequence (T, 1, 3) camera-space roots (None without trajectory models)


def lift(model: Any, stacked_variables: Any, slices: Sequence[str], inputs: Sequence[np.ndarray], *,
         mode: str, flip: device_eval.Flip, tta: bool, chunk: int, batch: int | None,
         classifier: classifier_lib.Classifier | None = None, fixed_slice: int = 0,
         trajectory: trajectory_lib.Trajectory | None = None) -> Lifted:
  """Sequences without labels (e.g. custom keypoints) lifted with a routing mode.

  Args:
    inputs: per sequence (T, K, 2) normalised 2D keypoints.
    mode: 'predicted' or 'soft' (need `classifier`), or 'fixed' (slice `fixed_slice` for all).
    trajectory: the run's trajectory models, routed as the pose models (`posejax.evaluation.trajectory`).
  """
  if mode not in ("predicted", "soft", "fixed"):
    raise PosejaxError(f"--routing={mode}: expected predicted or soft (custom keypoints have no action labels)")
  if mode != "fixed" and classifier is None:
    raise PosejaxError(f"--routing={mode}: this workdir has no action classifier (WORKDIR/classifier)")
  resident = device_eval.build(inputs, None, [fixed_slice] * len(inputs), model, slices=slices, flip=flip,
                               chunk=chunk, batch=batch)
  scores = score_actions(classifier, resident, tta=tta) if classifier is not None else None
  used = np.full(len(inputs), fixed_slice, np.int64)
  weights = None
  if mode == "soft":
    weights = slice_weights(scores, slices)
    flat = device_eval.mix_models(device_eval.predict_all(model, stacked_variables, resident, tta=tta), weights)
    used[:] = -1
  else:
    if mode == "predicted":
      used = predicted_routes(scores, slices)
      resident = device_eval.reroute(resident, used)
    flat = device_eval.predict(model, stacked_variables, resident, tta=tta)
  roots = None
  if trajectory is not None:
    roots = evaluation.split_records(trajectory_lib.roots(trajectory, resident, tta=tta, weights=weights), resident)
  probabilities = None
  if scores is not None:
    logits = scores.sequence_log_probs
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
  return Lifted(evaluation.split_records(flat, resident), used, probabilities, roots)
