"""Tests for posejax.workdir.layout: the file layout, metrics.jsonl, train_summary.json and config.json."""

import json
import os

import ml_collections
import pytest

from posejax.common.errors import PosejaxError
from posejax.workdir import layout


def test_paths(tmp_path, monkeypatch):
  w = str(tmp_path)
  assert layout.config_path(w) == os.path.join(w, "config.json")
  assert layout.metrics_path(w) == os.path.join(w, "metrics.jsonl")
  assert layout.summary_path(w) == os.path.join(w, "train_summary.json")
  assert layout.step_dir(w, 120) == os.path.join(w, "eval", "step_120")
  assert layout.eval_dir(w, 120, "final") == os.path.join(w, "eval", "step_120", "final")
  assert layout.results_path(w, 7, "oracle") == os.path.join(w, "eval", "step_7", "oracle", "results.json")
  assert layout.eval_name(["soft", "common-runs/x y", "cross_action"]) == "soft+common-runs_x_y+cross_action"
  with pytest.raises(PosejaxError, match="reserved"):
    layout.eval_name(["final"])
  monkeypatch.chdir(tmp_path)
  assert layout.checkpoint_dir("run") == os.path.join(str(tmp_path), "run", "checkpoints")  # absolute


def _records(n):
  return [{"epoch": e, "step": 10 * e, "loss": 1.0 / e} for e in range(1, n + 1)]


def test_read_metrics_filters_by_step_and_skips_a_cut_append(tmp_path):
  w = str(tmp_path)
  assert layout.read_metrics(w) == []
  with pytest.raises(PosejaxError, match="metrics.jsonl: file not found"):
    layout.read_metrics(w, required=True)
  text = "".join(json.dumps(r) + "\n" for r in _records(3))
  with open(layout.metrics_path(w), "w") as f:
    f.write(text + '{"epoch": 4, "ste')  # a run killed while appending
  assert layout.read_metrics(w) == _records(3)
  assert layout.read_metrics(w, up_to_step=20) == _records(2)
  assert layout.read_metrics(w, up_to_step=0) == []
  with pytest.raises(PosejaxError, match="no epochs logged"):
    layout.read_metrics(w, up_to_step=0, required=True)


@pytest.mark.parametrize("content, message", [
    ('{"step": 1}\n{bad\n{"step": 2}\n', r"metrics.jsonl:2: not valid JSON"),
    ('{"step": 1}\n[1, 2]\n', r"metrics.jsonl:2: not a metrics record"),
    ('{"epoch": 1}\n', r"metrics.jsonl:1: not a metrics record"),
])
def test_bad_metrics_lines_are_named(tmp_path, content, message):
  with open(layout.metrics_path(str(tmp_path)), "w") as f:
    f.write(content)
  with pytest.raises(PosejaxError, match=message):
    layout.read_metrics(str(tmp_path))


def test_summary_round_trip_and_final_step(tmp_path):
  w = str(tmp_path)
  assert layout.read_summary(w) == {} and layout.final_step(w) is None
  with pytest.raises(PosejaxError, match="train_summary.json: file not found"):
    layout.read_summary(w, required=True)
  path = layout.write_summary(w, {"global_steps": 42, "mode": "common"})
  assert path == layout.summary_path(w)
  assert layout.read_summary(w, required=True) == {"global_steps": 42, "mode": "common"}
  assert layout.final_step(w) == 42
  with open(path, "w") as f:
    f.write("[1]")
  with pytest.raises(PosejaxError, match="not a training summary"):
    layout.read_summary(w)


def test_config_round_trip_and_errors(tmp_path):
  w = str(tmp_path)
  with pytest.raises(PosejaxError, match="config.json: file not found; pass --config"):
    layout.read_config(w)
  config = ml_collections.ConfigDict({"mode": "common", "data": {"valid_subjects": ()}})
  layout.write_config(w, config.to_dict())
  assert layout.read_config(w) == {"mode": "common", "data": {"valid_subjects": []}}
  with open(layout.config_path(w), "w") as f:
    f.write("{not json")
  with pytest.raises(PosejaxError, match="config.json: not valid JSON"):
    layout.read_config(w)
