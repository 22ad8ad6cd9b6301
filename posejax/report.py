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

from posejax.data.actions import ABBREVIATIONS
from posejax.errors import PosejaxError
from posejax.io_utils import atomic_write_text

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
  return per_action_table(series, list(per_action))


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
              f"Checkpoint: {checkpoint_text(document)}", "", to_markdown(table)]
  for subject, sub in document.get("by_subject", {}).items():
    markdown += [f"## Subject {subject}", "", to_markdown(results_table(sub))]
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
