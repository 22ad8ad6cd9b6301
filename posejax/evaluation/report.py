"""Per-action result tables laid out like the seed's Tables I and II, and results.json.

A table has one column per action (the paper's abbreviations, table order) plus "Avg", and
one row per labelled series (a metric of one run, or one run of a comparison). It renders
to aligned text (stdout), Markdown and CSV; CSV keeps full precision.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Any, Mapping, Sequence

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_write_text
from posejax.pose.actions import ABBREVIATIONS
from posejax.workdir import behind as behind_lib

METRIC_LABELS = {
    "mpjpe": "Protocol #1 (MPJPE)",
    "p_mpjpe": "Protocol #2 (P-MPJPE)",
    "n_mpjpe": "Protocol #3 (N-MPJPE)",
    "mpjve": "Velocity (MPJVE)",
}
# Decimals as the reference prints its action-wise averages (MPJVE has 2).
METRIC_DECIMALS = {"mpjpe": 1, "p_mpjpe": 1, "n_mpjpe": 1, "mpjve": 2}


@dataclasses.dataclass(frozen=True)
class Table:
  """Header and rows of numbers; `decimals[i]` formats row i in text and Markdown."""

  header: tuple[str, ...]
  labels: tuple[str, ...]
  values: tuple[tuple[float | None, ...], ...]
  decimals: tuple[int, ...]

  def cells(self) -> list[list[str]]:
    rows = []
    for label, row, digits in zip(self.labels, self.values, self.decimals):
      rows.append([label] + ["-" if v is None else f"{v:.{digits}f}" for v in row])
    return rows


def per_action_table(series: Sequence[tuple[str, Mapping[str, float], float | None, int]],
                     actions: Sequence[str], first_column: str = "Metric") -> Table:
  """Rows `(label, {action: value}, average, decimals)` over the given action columns.

  A missing action in a row shows as '-'; the Avg column is the given average (the plain
  mean over actions computed by the evaluation), not recomputed here.
  """
  header = (first_column,) + tuple(ABBREVIATIONS.get(a, a) for a in actions) + ("Avg",)
  values = tuple(tuple(row.get(a) for a in actions) + (avg,) for _, row, avg, _ in series)
  return Table(header, tuple(s[0] for s in series), values, tuple(s[3] for s in series))


def results_table(results: Mapping[str, Any], metrics: Sequence[str] | None = None) -> Table:
  """One row per metric of an evaluation result (`evaluation.evaluate_dataset` shape)."""
  per_action = results["per_action"]
  metrics = metrics or [m for m in METRIC_LABELS if m in results["average"]]
  series = [(METRIC_LABELS[m], {a: v[m] for a, v in per_action.items()}, results["average"][m],
             METRIC_DECIMALS[m]) for m in metrics]
  table = per_action_table(series, list(per_action))
  behind = results.get("behind") or {}
  if not behind:
    return table
  # Models short of their log point (a checkpoint between log points): marked, and so is an
  # average that still holds them.
  marks = [ABBREVIATIONS.get(a, a) for a in behind]
  header = tuple(h + behind_lib.MARK if h in marks else h for h in table.header)
  if results.get("behind_in_average"):
    header = header[:-1] + (header[-1] + behind_lib.MARK,)
  return dataclasses.replace(table, header=header)


def to_text(table: Table) -> str:
  """Aligned columns for a terminal."""
  rows = [list(table.header)] + table.cells()
  widths = [max(len(r[i]) for r in rows) for i in range(len(table.header))]
  lines = [r[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(r[1:], widths[1:]))
           for r in rows]
  lines.insert(1, "-" * len(lines[0]))
  return "\n".join(lines) + "\n"


def to_markdown(table: Table) -> str:
  """A GitHub-flavoured Markdown table."""
  lines = ["| " + " | ".join(table.header) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in table.cells()]
  return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
  """CSV with full-precision numbers (empty cell for a missing value)."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(table.header)
  for label, row in zip(table.labels, table.values):
    writer.writerow([label] + ["" if v is None else repr(float(v)) for v in row])
  return buffer.getvalue()


def results_document(results: Mapping[str, Any], *, config: Any = None, checkpoint_step: int | None = None,
                     train_time_s: float | None = None, **extra: Any) -> dict[str, Any]:
  """The results.json object (millimetres): per_action, average, frames, tta, provenance.

  Provenance in `extra` that `checkpoint_text` reads: checkpoint_final (bool or None) and
  checkpoint_note (e.g. 'final: the end of training').
  """
  doc = {"per_action": results["per_action"], "average": results["average"], "config": config,
         "checkpoint_step": checkpoint_step, "train_time_s": train_time_s,
         "tta": results.get("tta"), "frames": results["frames"]}
  if "by_subject" in results:
    doc["by_subject"] = results["by_subject"]
  doc.update(extra)
  return doc


def trajectory_section(metrics: Mapping[str, float | None]) -> dict[str, Any]:
  """results.json's 'trajectory' entry from `posejax.evaluation.semi.metrics` on the test set: the
  trajectory models' root error in mm and the 2D reprojection error of pose + trajectory in
  normalized units (reference V11.4's traj_valid and 2d_valid; eval mode, no test-time augmentation)."""
  traj = metrics.get("traj")
  return {"traj_mpjpe": None if traj is None else 1000 * float(traj), "reprojection_2d": float(metrics["2d"]),
          "tta": False}


def trajectory_text(document: Mapping[str, Any]) -> str:
  """One line on the trajectory models' test errors ('' without trajectory models)."""
  section = document.get("trajectory")
  if not section:
    return ""
  root = "n/a" if section["traj_mpjpe"] is None else f"{section['traj_mpjpe']:.1f} mm"
  return (f"Trajectory models: root error {root}, 2D reprojection error {section['reprojection_2d']:.5f} "
          "(normalized units; reference V11.4 traj_valid and 2d_valid, without test-time augmentation)\n")


def checkpoint_text(document: Mapping[str, Any]) -> str:
  """Which checkpoint a results document comes from, e.g. 'step 120 (final: the end of training)'."""
  step = document.get("checkpoint_step")
  note = document.get("checkpoint_note")
  if not note:
    final = document.get("checkpoint_final")
    if final is None and document.get("checkpoint") == "final":  # the trainer's own final evaluation
      final = True
    note = {True: "final", False: "not final"}.get(final, "")
  return ("unknown step" if step is None else f"step {step}") + (f" ({note})" if note else "")


def write_results(out_dir: str, document: Mapping[str, Any]) -> dict[str, str]:
  """Writes results.json, results.csv and results.md (atomically); returns their paths."""
  table = results_table(document)
  paths = {name: os.path.join(out_dir, f"results.{name}") for name in ("json", "csv", "md")}
  atomic_write_text(paths["json"], json.dumps(document, indent=2, sort_keys=False) + "\n")
  atomic_write_text(paths["csv"], to_csv(table))
  markdown = [f"# Evaluation (test-time augmentation: {document.get('tta')})", "",
              f"Checkpoint: {checkpoint_text(document)}", ""]
  if document.get("routing"):
    markdown += [f"Routing: {document['routing']}", ""]
  markdown.append(to_markdown(table))
  if document.get("behind"):
    markdown.append(behind_lib.note(document))
  for subject, sub in document.get("by_subject", {}).items():
    markdown += [f"## Subject {subject}", "", to_markdown(results_table(sub))]
  markdown += _routing_markdown(document)
  if document.get("trajectory"):
    markdown.append(trajectory_text(document))
  frames = document["frames"]
  markdown.append(f"Test frames: {frames.get('total')}; per action: "
                  + ", ".join(f"{a} {n}" for a, n in frames.items() if a != "total") + "\n")
  atomic_write_text(paths["md"], "\n".join(markdown))
  return paths


def load_results(path: str) -> dict[str, Any]:
  """Reads a results.json written by `write_results`."""
  try:
    with open(path) as f:
      doc = json.load(f)
  except FileNotFoundError:
    raise PosejaxError(f"{path}: file not found (run eval.py on the workdir first)") from None
  except json.JSONDecodeError as e:
    raise PosejaxError(f"{path}: not valid JSON ({e})") from None
  if "per_action" not in doc or "average" not in doc:
    raise PosejaxError(f"{path}: not an evaluation results file (no per_action/average)")
  return doc


# --- Routing modes, the action classifier, the cross-action matrix ------------------------------


def routing_label(mode: str, entry: Mapping[str, Any]) -> str:
  return mode + (" (needs labels)" if entry.get("needs_labels") else "")


def routing_table(document: Mapping[str, Any], metric: str = "mpjpe") -> Table | None:
  """One row per routing mode of a results document (None when it records fewer than two)."""
  routings = document.get("routings")
  if not routings or len(routings) < 2:
    return None
  actions = list(document["per_action"])
  series = [(routing_label(mode, r), {a: r["per_action"][a][metric] for a in actions if a in r["per_action"]},
             r["average"][metric], METRIC_DECIMALS[metric]) for mode, r in routings.items()]
  return per_action_table(series, actions, first_column="Routing")


def classifier_text(metrics: Mapping[str, Any]) -> str:
  return (f"Action classifier: per-sequence accuracy {100 * metrics['sequence_accuracy']:.1f}% "
          f"(top-3 {100 * metrics['sequence_top3']:.1f}%, {metrics['sequences']} sequences), per-frame accuracy "
          f"{100 * metrics['frame_accuracy']:.1f}% (top-3 {100 * metrics['frame_top3']:.1f}%, {metrics['frames']} frames)")


def cross_action_table(cross: Mapping[str, Any]) -> Table:
  """Rows: test actions (and Avg); columns: each model, then Oracle (own model) and Best (row minimum)."""
  models, actions = list(cross["models"]), list(cross["actions"])
  header = ("Test action",) + tuple(ABBREVIATIONS.get(m, m) for m in models) + ("Oracle", "Best")
  rows = [tuple(row) + (cross["oracle"].get(a), cross["best"][a]) for a, row in zip(actions, cross["mpjpe"])]
  mean = lambda column: float(sum(column) / len(column))
  rows.append(tuple(mean([row[j] for row in cross["mpjpe"]]) for j in range(len(models)))
              + (cross.get("oracle_average"), cross["best_average"]))
  labels = tuple(ABBREVIATIONS.get(a, a) for a in actions) + ("Avg",)
  return Table(header, labels, tuple(rows), (1,) * len(rows))


def routing_text(document: Mapping[str, Any]) -> str:
  """Terminal summary of the routings, the classifier and the cross-action matrix."""
  parts = []
  table = routing_table(document)
  if table is not None:
    parts.append(f"Routing (Protocol #1 MPJPE, mm; headline: {document.get('routing_mode')}):\n" + to_text(table))
  if document.get("classifier"):
    parts.append(classifier_text(document["classifier"]) + "\n")
  if document.get("cross_action"):
    cross = document["cross_action"]
    parts.append("Cross-action Protocol #1 (mm; rows: test action, columns: model):\n"
                 + to_text(cross_action_table(cross)))
  return "".join(parts)


def _routing_markdown(document: Mapping[str, Any]) -> list[str]:
  lines = []
  if routing_table(document) is not None:
    lines += [f"## Routing modes (headline: {document.get('routing_mode')})", "",
              "Rows marked *needs labels* use the ground-truth action of each test sequence (the seed "
              "paper's oracle routing); the others use none.", ""]
    for metric in ("mpjpe", "mpjve"):
      lines += [f"{METRIC_LABELS[metric]}, mm:", "", to_markdown(routing_table(document, metric))]
  if document.get("classifier"):
    lines += ["## Action classifier", "", classifier_text(document["classifier"]) + ".", "",
              "Confusion matrices: true action down, predicted action across; left the count of test "
              "sequences, right the fraction of each true action's test frames (rows sum to 1).", "",
              "![confusion matrix](confusion.png)", ""]
  if document.get("cross_action"):
    cross = document["cross_action"]
    lines += ["## Cross-action matrix (Protocol #1, mm)", "",
              "Each model (column) on each action's test sequences (row). Oracle = the action's own model "
              "(oracle routing); Best = the row minimum, the best any per-action routing could do. In the "
              "figure, red boxes mark the Oracle cells and red dots the Best ones.", "",
              to_markdown(cross_action_table(cross)), "![cross-action matrix](cross_action.png)", ""]
  return lines


def routing_results(document: Mapping[str, Any], mode: str) -> dict[str, Any] | None:
  """The document with `mode`'s per_action/average as its own (None when not evaluated). Files
  without routings (older runs) hold one routing, their headline."""
  routings = document.get("routings")
  if not routings:
    own = document.get("routing_mode") or str(document.get("routing", "oracle")).split(" ")[0]
    return dict(document) if own == mode else None
  if mode not in routings:
    return None
  return {**document, "per_action": routings[mode]["per_action"], "average": routings[mode]["average"],
          "routing_mode": mode, "routing": routings[mode].get("description", mode)}
