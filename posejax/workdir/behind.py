"""Models behind the others in a checkpoint saved between log points.

At a log point every model is at the same fraction of its budget. Within a log segment the
compacted schedule runs the models with the most steps left first, so a checkpoint saved
mid-segment (SIGTERM, `checkpoint.every_minutes`) holds models at very different fractions:
some well into the segment, others not started. Their errors are not comparable, and an
average over them mixes models of different training lengths. The checkpoint records each
model's own step count and the log point's target; an evaluation names the models with under
half the training of the most advanced one, marks them in its tables and leaves them out of
every average unless asked to keep them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

MARK = "*"
# A model is behind when its share of the log point's target is below this fraction of the
# leading model's: the packing runs the models with the most steps left first, so mid-segment
# some have not started while others are well into it.
BEHIND_SHARE = 0.5


def checkpoint_fields(positions: np.ndarray, target: np.ndarray, epoch: float, num_models: int) -> dict[str, Any]:
  """The checkpoint metadata that `models_behind` reads: own steps and the log point's targets."""
  return {"model_steps": [int(p) for p in positions[:num_models]],
          "log_point": {"epoch": float(epoch), "target_steps": [int(t) for t in target[:num_models]]}}


def models_behind(metadata: Mapping[str, Any], actions_of_slices: Sequence[str]) -> dict[str, dict[str, Any]]:
  """{action: {'own_steps', 'target_steps', 'epoch', 'leader_share'}} of the models that had less
  than half the training of the most advanced one: under BEHIND_SHARE of its share of the log
  point's target ({} at a log point, where every model has the same share, for a common run's
  single model, and for checkpoints without the record)."""
  steps, point = metadata.get("model_steps"), metadata.get("log_point")
  if not steps or not point or len(actions_of_slices) < 2:
    return {}
  targets = np.asarray(point["target_steps"], np.float64)
  shares = np.asarray(steps, np.float64) / np.maximum(targets, 1.0)
  leader = float(shares.max())
  return {action: {"own_steps": int(own), "target_steps": int(target), "epoch": float(point["epoch"]),
                   "leader_share": leader}
          for action, own, target, share in zip(actions_of_slices, steps, point["target_steps"], shares)
          if share < BEHIND_SHARE * leader}


def between_log_points(metadata: Mapping[str, Any]) -> bool:
  """Whether a checkpoint was saved between log points (False when it does not record it)."""
  steps, point = metadata.get("model_steps"), metadata.get("log_point")
  return bool(steps and point and list(steps) != list(point["target_steps"]))


def _mean_over(per_action: Mapping[str, Mapping[str, float]], keep: Sequence[str]) -> dict[str, float]:
  metrics = next(iter(per_action.values())).keys()
  return {m: float(np.mean([per_action[a][m] for a in keep])) for m in metrics}


def _exclude(section: dict[str, Any], behind: Mapping[str, Any]) -> None:
  """`section`'s 'average' recomputed over the actions that are not behind (in place)."""
  keep = [a for a in section["per_action"] if a not in behind]
  if keep and len(keep) < len(section["per_action"]):
    section["average"] = _mean_over(section["per_action"], keep)


def apply(document: Mapping[str, Any], behind: Mapping[str, Any], include: bool) -> dict[str, Any]:
  """The results document with `behind` recorded and, unless `include`, every average (the
  headline's, each routing's and each subject's) over the other actions only."""
  doc = dict(document)
  if not behind:
    return doc
  marks = {"behind": {a: dict(v) for a, v in behind.items()}, "behind_in_average": bool(include)}
  doc.update(marks)
  for key in ("routings", "by_subject"):
    if key in doc:
      doc[key] = {name: dict(section) for name, section in doc[key].items()}
  if "by_subject" in doc:  # per-subject tables are printed: they carry the marks too
    for section in doc["by_subject"].values():
      section.update(marks)
  if include:
    return doc
  _exclude(doc, behind)
  for key in ("routings", "by_subject"):
    for section in doc.get(key, {}).values():
      _exclude(section, behind)
  return doc


def describe_models(behind: Mapping[str, Mapping[str, Any]]) -> str:
  """'Greeting 0 of 8,488, Photo 0 of 8,911': own steps out of the log point's target."""
  return ", ".join(f"{a} {v['own_steps']:,} of {v['target_steps']:,}" for a, v in behind.items())


def note(document: Mapping[str, Any]) -> str:
  """One line naming the models behind and how far, and what the averages hold ('' when none)."""
  behind = document.get("behind")
  if not behind:
    return ""
  epoch = next(iter(behind.values()))["epoch"]
  names = describe_models(behind)
  where = ("kept in Avg (--include_behind)" if document.get("behind_in_average")
           else "left out of Avg (--include_behind keeps them)")

  leader = next(iter(behind.values())).get("leader_share", 1.0)
  return (f"{MARK} behind: this checkpoint lies between log points; {len(behind)} model(s) with under half the "
          f"training of the most advanced ({100 * leader:.1f} % of its steps to the log point of epoch {epoch:g}), "
          f"own steps out of the log point's target: {names}; {where}\n")
