"""Tests for posejax.evaluation.compare and posejax.evaluation.report: the paper's TPR values, the comparison report."""

import json
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from posejax.common.errors import PosejaxError
from posejax.evaluation import compare, report
from posejax.workdir import layout

# Table III of the paper (F=243, UE=1200): 40 E and 80 E errors (mm) and TC (80 E) seconds.
PAPER = {
    "common": {"mpjpe_half": 50.27, "mpjpe_final": 48.22, "mpjve_half": 2.66, "mpjve_final": 2.49,
               "time_final_s": 176976.0},
    "ab": {"mpjpe_half": 50.49, "mpjpe_final": 50.54, "mpjve_half": 3.02, "mpjve_final": 3.08,
           "time_final_s": 56921.0},
}


def test_tpr_reproduces_the_papers_four_values():
  rates = compare.tpr_table(PAPER["common"], PAPER["ab"], k=1.2, eps0_digits=4)
  assert rates["mpjpe"]["eps0"] == pytest.approx(60.46, abs=1e-9)
  assert rates["mpjve"]["eps0"] == pytest.approx(3.408, abs=1e-9)
  # Published with three significant digits.
  assert float(f"{rates['mpjpe']['common']:.3g}") == pytest.approx(6.92e-5)
  assert float(f"{rates['mpjpe']['ab']:.3g}") == pytest.approx(17.4e-5)
  assert float(f"{rates['mpjve']['common']:.3g}") == pytest.approx(5.19e-6)
  assert float(f"{rates['mpjve']['ab']:.3g}") == pytest.approx(5.76e-6)
  # Unrounded eps_0 = 60.456 gives 6.91e-5 for the first value (reference A8).
  exact = compare.tpr_table(PAPER["common"], PAPER["ab"], k=1.2, eps0_digits=None)
  assert exact["mpjpe"]["eps0"] == pytest.approx(60.456)
  assert float(f"{exact['mpjpe']['common']:.3g}") == pytest.approx(6.91e-5)
  with pytest.raises(PosejaxError):
    compare.tpr(60.0, 50.0, 0.0)


ACTS = ("Eating", "Walking")


def fake_results(offset: float) -> dict:
  per_action = {a: {"mpjpe": 50.0 + offset + i * 3.3, "p_mpjpe": 40.0 + i, "n_mpjpe": 48.0 + offset,
                    "mpjve": 2.5 + 0.1 * i + offset / 10} for i, a in enumerate(ACTS)}
  average = {m: float(np.mean([v[m] for v in per_action.values()])) for m in per_action["Eating"]}
  return {"per_action": per_action, "average": average, "frames": {"Eating": 40, "Walking": 30, "total": 70},
          "tta": True}


def fake_workdir(root: str, name: str, mode: str, offset: float, time_per_epoch: float) -> str:
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for epoch in range(1, 5):
      per_action = {a: {"loss": 0.1 / epoch, "mpjpe_valid": (0.06 + offset / 1000) / epoch + 0.01 * i,
                        "mpjve_valid": 0.003 / epoch, "lr": 1e-3, "bn_momentum": 0.1, "action_epoch": epoch,
                        "samples": 100 * epoch, "steps": 10 * epoch} for i, a in enumerate(ACTS)}
      f.write(json.dumps({"epoch": epoch, "step": 10 * epoch, "train_time_s": time_per_epoch * epoch,
                          "wall_time_s": 2 * time_per_epoch * epoch,
                          "mpjpe_valid": float(np.mean([v["mpjpe_valid"] for v in per_action.values()])),
                          "mpjve_valid": 0.003 / epoch, "loss": 0.1 / epoch, "per_action": per_action}) + "\n")
  actions = list(ACTS)
  slices = ["all"] if mode == "common" else actions
  summary = {"mode": mode, "actions": actions, "train_time_s": 4 * time_per_epoch, "compile_time_s": 1.0,
             "eval_time_s": 1.0, "epochs": 4, "budget": "fixed", "global_steps": 40,
             "samples": {s: 400 for s in slices}, "steps": {s: 40 for s in slices}}
  with open(os.path.join(workdir, "train_summary.json"), "w") as f:
    json.dump(summary, f)
  doc = report.results_document(fake_results(offset), config={"mode": mode}, checkpoint_step=40,
                                train_time_s=4 * time_per_epoch, checkpoint="latest", checkpoint_final=True,
                                checkpoint_note="final: the end of training")
  report.write_results(layout.eval_dir(workdir, 40, layout.FINAL_EVAL), doc)
  # An earlier checkpoint's evaluation, much better on the test set: never used by the comparison.
  earlier = report.results_document(fake_results(offset - 40.0), checkpoint_step=20, checkpoint="20",
                                    checkpoint_final=False)
  report.write_results(layout.eval_dir(workdir, 20, "oracle"), earlier)
  return workdir


def table_row(markdown: str, title: str, label: str) -> list[str]:
  section = markdown.split(title, 1)[1]
  line = next(l for l in section.splitlines() if l.startswith(f"| {label} |"))
  return [c.strip() for c in line.strip("|").split("|")][1:]


def test_compare_report_has_all_tables_and_figures(tmp_path):
  common = fake_workdir(str(tmp_path), "common", "common", 0.0, 100.0)
  ab = fake_workdir(str(tmp_path), "ab", "action_based", 2.0, 30.0)
  doc = compare.compare_runs(common, ab, verbose=False)
  out = os.path.join(str(tmp_path), "comparison")
  md = open(os.path.join(out, "report.md")).read()
  for title in ("Table I.", "Table II.", "Table III.", "Table IV.", "oracle routing"):
    assert title in md
  # Every table says which checkpoint it comes from.
  assert "## Table I. Protocol #1, MPJPE (mm), final checkpoints (Common: step 40, AB: step 40)" in md
  assert "## Table II. Velocity error MPJVE (mm), final checkpoints (Common: step 40, AB: step 40)" in md
  assert md.count("checkpoint step 40 (final: the end of training)") == 2
  assert "no checkpoint is chosen by them" in md
  assert doc["common"]["checkpoint_step"] == doc["ab"]["checkpoint_step"] == 40
  for name in compare.FIGURES.values():
    assert f"]({name})" in md
    with Image.open(os.path.join(out, name)) as im:
      assert im.size[0] > 100 and im.size[1] > 100

  # Table I/II cells equal results.json, rounded as printed.
  for key, label in (("common", compare.LABELS["common"]), ("ab", compare.LABELS["ab"])):
    results = report.load_results(layout.results_path(os.path.join(str(tmp_path), key), 40, layout.FINAL_EVAL))
    cells = table_row(md, "Table I.", label)
    assert cells == [f"{results['per_action'][a]['mpjpe']:.1f}" for a in ACTS] + [
        f"{results['average']['mpjpe']:.1f}"]
    cells = table_row(md, "Table II.", label)
    assert cells == [f"{results['per_action'][a]['mpjve']:.2f}" for a in ACTS] + [
        f"{results['average']['mpjve']:.2f}"]

  # Table III from the logs: half-way epoch 2 and final epoch 4, TPR by the definition.
  c, a = doc["common"]["properties"], doc["ab"]["properties"]
  assert (c["half_epoch"], c["final_epoch"]) == (2, 4)
  assert c["time_final_s"] == 400.0 and a["time_final_s"] == 120.0
  half_c, half_a = 1000 * (0.06 / 2 + 0.005), 1000 * (0.062 / 2 + 0.005)  # action-wise means, epoch 2
  assert c["mpjpe_half"] == pytest.approx(half_c) and a["mpjpe_half"] == pytest.approx(half_a)
  e0 = compare.eps0(half_c, half_a, digits=4)
  assert doc["tpr"]["mpjpe"]["ab"] == pytest.approx((e0 - a["mpjpe_final"]) / 120.0)
  assert a["models"] == 2 and a["samples"] == 800 and c["samples"] == 400
  assert table_row(md, "Table III.", "TC (4 E)") == ["400.0 s", "120.0 s"]
  # One TPR format (3 significant digits, mm/s in the row label), errors in mm with 2 decimals.
  assert table_row(md, "Table III.", "MPJPE TPR (mm/s)") == [
      compare.tpr_text(doc["tpr"]["mpjpe"]["common"]), compare.tpr_text(doc["tpr"]["mpjpe"]["ab"])]
  assert table_row(md, "Table III.", "Velocity-M") == [f"{1000 * 0.003 / 2:.2f} mm"] * 2
  assert table_row(md, "Table III.", "MPJPE ϵ_0") == [f"{e0:.4g} mm"] * 2
  assert "the paper reports ϵ_0 = 60.46 mm for MPJPE" in md and "(60.46)" not in md
  assert "test-time augmentation on, 70 test frames" in md

  # Table IV: every epoch, average and Eating columns.
  assert len(doc["table4"]) == 4
  assert table_row(md, "Table IV.", "4") == ["20.00", "20.50", "15.00", "15.50"]
  saved = json.load(open(os.path.join(out, "comparison.json")))
  assert saved["tpr"]["mpjpe"]["common"] == pytest.approx(doc["tpr"]["mpjpe"]["common"])


def test_compare_evaluates_the_final_checkpoint_when_its_results_are_missing(tmp_path, monkeypatch):
  from posejax.evaluation import runs as eval_lib
  common = fake_workdir(str(tmp_path), "common", "common", 0.0, 100.0)
  ab = fake_workdir(str(tmp_path), "ab", "action_based", 2.0, 30.0)
  os.remove(layout.results_path(ab, 40, layout.FINAL_EVAL))
  calls = []

  def evaluate(workdir, which, verbose=True):
    calls.append((workdir, which))
    return report.results_document(fake_results(7.0), checkpoint_step=which, checkpoint_final=True)

  monkeypatch.setattr(eval_lib, "evaluate_workdir", evaluate)
  doc = compare.compare_runs(common, ab, verbose=False)
  assert calls == [(ab, 40)]  # the final step of train_summary.json, not the better step-20 results
  assert doc["ab"]["final"]["mpjpe"] == pytest.approx(fake_results(7.0)["average"]["mpjpe"])
  assert doc["common"]["final"]["mpjpe"] == pytest.approx(fake_results(0.0)["average"]["mpjpe"])


def test_compare_rejects_swapped_modes(tmp_path):
  common = fake_workdir(str(tmp_path), "common", "common", 0.0, 100.0)
  ab = fake_workdir(str(tmp_path), "ab", "action_based", 2.0, 30.0)
  with pytest.raises(PosejaxError, match="common workdir then an action-based"):
    compare.compare_runs(ab, common, str(tmp_path / "out"), verbose=False)


def test_report_formats_agree():
  results = fake_results(1.0)
  table = report.results_table(results)
  text, markdown, csv_text = report.to_text(table), report.to_markdown(table), report.to_csv(table)
  assert table.header == ("Metric", "Eat", "Walk", "Avg")
  assert "Protocol #1 (MPJPE)" in text and "| Velocity (MPJVE) |" in markdown
  rows = [line.split(",") for line in csv_text.strip().splitlines()]
  assert rows[0] == ["Metric", "Eat", "Walk", "Avg"]
  assert float(rows[1][1]) == results["per_action"]["Eating"]["mpjpe"]
  assert float(rows[4][3]) == results["average"]["mpjve"]
  with pytest.raises(PosejaxError, match="results.json"):
    report.load_results("/nonexistent/results.json")
  assert report.checkpoint_text({"checkpoint_step": 9, "checkpoint_final": False}) == "step 9 (not final)"
  assert report.checkpoint_text({"checkpoint_step": 9, "checkpoint": "final"}) == "step 9 (final)"
  assert report.checkpoint_text({"checkpoint_step": 0, "checkpoint_note": "imported from x.bin"}) == (
      "step 0 (imported from x.bin)")


def test_tpr_text_has_three_significant_digits_at_every_magnitude():
  assert compare.tpr_text(6.9246e-5) == "6.92 · 10^-5"
  assert compare.tpr_text(0.97) == "9.70 · 10^-1"  # trailing zero kept
  assert compare.tpr_text(1.2) == "1.20 · 10^0"
  assert compare.tpr_text(9.999) == "1.00 · 10^1"  # rounding carries into the exponent
  assert compare.tpr_text(-2.5e-3) == "-2.50 · 10^-3"


def _runs(tmp_path) -> dict:
  common = fake_workdir(str(tmp_path), "common", "common", 0.0, 100.0)
  ab = fake_workdir(str(tmp_path), "ab", "action_based", 2.0, 30.0)
  return {"common": layout.read_metrics(common, required=True), "ab": layout.read_metrics(ab, required=True)}


def _line_colors(ax) -> dict:
  return {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()}


def test_error_curve_panels_show_the_same_series_in_the_same_colours(tmp_path):
  fig = compare.curve_figure(_runs(tmp_path), "Eating", models=2)
  by_epoch, by_time = fig.axes
  assert set(_line_colors(by_epoch)) == {"Common-Avg", "Common-Eat", "AB-Avg", "AB-Eat"}
  assert _line_colors(by_epoch) == _line_colors(by_time)
  assert _line_colors(by_epoch)["AB-Avg"] == _line_colors(by_epoch)["AB-Eat"] != _line_colors(by_epoch)["Common-Avg"]
  for ax in fig.axes:
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
  assert "2 models" in by_time.get_xlabel()
  plt.close(fig)


def test_loss_legend_names_the_trained_models_not_a_routing(tmp_path):
  fig = compare.loss_figure(_runs(tmp_path), models=2)
  (ax,) = fig.axes
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert labels == ["Common: one model on all actions", "Action-based: mean over its 2 per-action models"]
  assert not any("routing" in label or "labels" in label for label in labels)
  assert ax.get_title() and "mm" in ax.get_ylabel()
  plt.close(fig)


def test_bar_figures_have_titles_axis_labels_and_one_tick_per_action(tmp_path):
  results = {"common": fake_results(0.0), "ab": fake_results(2.0)}
  figures = compare.figures(results, _runs(tmp_path), "Eating", models=2)
  assert set(figures) == set(compare.FIGURES)
  for name in ("mpjpe_bars", "mpjve_bars"):
    (ax,) = figures[name].axes
    assert ax.get_title().startswith("Table I") and "mm" in ax.get_ylabel() and ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Eat", "Walk", "Avg"]
  # A run's bars keep one colour: that of its error curves.
  bars = {c.get_label(): matplotlib.colors.to_hex(c.patches[0].get_facecolor())
          for c in figures["mpjpe_bars"].axes[0].containers}
  assert bars[compare.LABELS["ab"]] == _line_colors(figures["curves"].axes[0])["AB-Avg"]
  for fig in figures.values():
    plt.close(fig)


def test_half_way_point_of_runs_shorter_than_two_epochs():
  """UE=15 runs train 1 common epoch: the half point is the last log point at or before 0.5."""
  records = [{"epoch": e, "train_time_s": 10.0 * e, "mpjpe_valid": 0.1 / e, "mpjve_valid": 0.01 / e}
             for e in (1 / 3, 2 / 3, 1)]
  props = compare.properties(records, {"epochs": 1})
  assert props["half_epoch"] == pytest.approx(1 / 3) and props["final_epoch"] == 1
  assert props["time_half_s"] == pytest.approx(10 / 3) and props["mpjpe_half"] == pytest.approx(300.0)
  eighty = [{"epoch": e, "train_time_s": float(e), "mpjpe_valid": 0.05, "mpjve_valid": 0.003}
            for e in range(1, 81)]
  assert compare.properties(eighty, {"epochs": 80})["half_epoch"] == 40


def test_compare_adds_label_free_rows_and_says_which_rows_need_labels(tmp_path):
  common = fake_workdir(str(tmp_path), "common", "common", 0.0, 100.0)
  ab = fake_workdir(str(tmp_path), "ab", "action_based", 2.0, 30.0)
  path = layout.results_path(ab, 40, layout.FINAL_EVAL)
  doc = report.load_results(path)
  # As eval.py leaves it with a classifier: headline predicted, every routing side by side.
  routings = {mode: {**fake_results(offset), "needs_labels": mode == "oracle"}
              for mode, offset in (("oracle", 2.0), ("predicted", 5.0), ("soft", 3.0))}
  doc.update(routings=routings, routing_mode="predicted", per_action=routings["predicted"]["per_action"],
             average=routings["predicted"]["average"],
             classifier={"classes": list(ACTS), "sequences": 4, "frames": 8, "sequence_accuracy": 0.75,
                         "frame_accuracy": 0.625, "sequence_top3": 1.0, "frame_top3": 1.0,
                         "confusion_sequences": [[2, 0], [1, 1]], "confusion_frames": [[4, 0], [3, 1]]})
  report.write_results(layout.eval_dir(ab, 40, layout.FINAL_EVAL), doc)
  os.makedirs(os.path.join(ab, "classifier"))  # has a classifier, and its routings are in the file

  out = compare.compare_runs(common, ab, verbose=False)
  md = open(os.path.join(str(tmp_path), "comparison", "report.md")).read()
  for key, mode in (("ab", "oracle"), ("ab_predicted", "predicted"), ("ab_soft", "soft")):
    for title, metric, digits in (("Table I.", "mpjpe", 1), ("Table II.", "mpjve", 2)):
      cells = table_row(md, title, compare.LABELS[key])
      assert cells == [f"{routings[mode]['per_action'][a][metric]:.{digits}f}" for a in ACTS] + [
          f"{routings[mode]['average'][metric]:.{digits}f}"]
  assert "needs labels" in compare.LABELS["ab"] and "**Needs labels:**" in md and "**No labels:**" in md
  assert "75.0% per sequence and 62.5% per frame" in md
  # Tables I-IV's AB run is the oracle-routed one, as in the paper.
  assert out["ab"]["final"] == routings["oracle"]["average"]
  assert out["ab_predicted"]["final"] == routings["predicted"]["average"] and out["needs_labels"] == ["ab"]
  assert "confusion_frames" not in out["classifier"]
