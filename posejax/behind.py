"""Models behind their log point in a checkpoint saved between log points.

Within a log segment the compacted schedule runs the models with the most steps left first, so
a checkpoint saved mid-segment (SIGTERM, `checkpoint.every_minutes`) holds models at very
different fractions of their budgets: some at the segment's target, others still at the
previous log point. Their errors are not comparable, and an average over them mixes models of
different training lengths. The checkpoint records each model's own step count and the
segment's target; an evaluation names the models short of it, marks them in its tables and
leaves them out of every average unless asked to keep them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

MARK = "*"


def checkpoint_fields(positions: np.ndarray, target: np.ndarray, epoch: float, num_models: int) -> dict[str, Any]:
  """The checkpoint metadata that `models_behind` reads: own steps and the log point's targets."""
  return {"model_steps": [int(p) for p in positions[:num_models]],
          "log_point": {"epoch": float(epoch), "target_steps": [int(t) for t in target[:num_models]]}}


def models_behind(metadata: Mapping[str, Any], actions_of_slices: Sequence[str]) -> dict[str, dict[str, Any]]:
  """{action: {'own_steps', 'target_steps', 'epoch'}} of the models short of their log point's
  target ({} at a log point, for common runs' single model, and for checkpoints without the record)."""
  steps, point = metadata.get("model_steps"), metadata.get("log_point")
  if not steps or not point or len(actions_of_slices) < 2:
    return {}
  return {action: {"own_steps": int(own), "target_steps": int(target), "epoch": float(point["epoch"])}
          for action, own, target in zip(actions_of_slices, steps, point["target_steps"]) if own < target}


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
  doc["behind"] = {a: dict(v) for a, v in behind.items()}
  doc["behind_in_average"] = bool(include)
  if include:
    return doc
  if all(a in behind for a in doc["per_action"]):
    doc["behind_in_average"] = True  # nothing else to average: say so rather than print no Avg
    return doc
  _exclude(doc, behind)
  doc["routings"] = {m: dict(r) for m, r in doc.get("routings", {}).items()}
  for section in doc["routings"].values():
    _exclude(section, behind)
  doc["by_subject"] = {s: dict(r) for s, r in doc.get("by_subject", {}).items()}
  for section in doc["by_subject"].values():
    _exclude(section, behind)
  if not doc["by_subject"]:
    del doc["by_subject"]
  if not doc["routings"]:
    del doc["routings"]
  return doc


def note(document: Mapping[str, Any]) -> str:
  """One line naming the models behind and how far, and what the averages hold ('' when none)."""
  behind = document.get("behind")
  if not behind:
    return ""
  epoch = next(iter(behind.values()))["epoch"]
  names = ", ".join(f"{a} {v['own_steps']:,} of {v['target_steps']:,}" for a, v in behind.items())
  if not document.get("behind_in_average"):
    where = "left out of Avg (--include_behind keeps them)"
  elif all(a in behind for a in document.get("per_action", behind)):
    where = "kept in Avg, as no model is at the log point (an earlier checkpoint, at a log point, has none behind)"
  else:
    where = "kept in Avg (--include_behind)"

  return (f"{MARK} behind: this checkpoint lies between log points; {len(behind)} model(s) short of their "
          f"own steps at the log point of epoch {epoch:g}: {names}; {where}\n")
