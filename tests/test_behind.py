"""Checkpoints between log points: the models behind are named, marked and kept out of averages."""

import json
import os
import signal

import numpy as np
import pytest

from posejax import trainer
from posejax.common.errors import PosejaxError
from posejax.data import synthetic
from posejax.evaluation import compare, report, routing, runs as eval_lib
from posejax.training import engine
from posejax.workdir import behind
from tests.test_trainer import _config, _records


def _document(per_action, routings=True):
  doc = {"per_action": per_action, "average": {"mpjpe": float(np.mean([v["mpjpe"] for v in per_action.values()]))}}
  if routings:
    doc["routings"] = {"oracle": {"per_action": per_action, "average": dict(doc["average"])}}
  return doc


def test_averages_leave_out_the_models_behind():
  per_action = {"Eating": {"mpjpe": 50.0}, "Smoking": {"mpjpe": 442.6}, "Walking": {"mpjpe": 40.0}}
  lag = {"Smoking": {"own_steps": 0, "target_steps": 624, "epoch": 0.125}}
  doc = behind.apply(_document(per_action), lag, include=False)
  assert doc["average"]["mpjpe"] == pytest.approx(45.0)  # (50 + 40) / 2, by hand
  assert doc["routings"]["oracle"]["average"]["mpjpe"] == pytest.approx(45.0)
  assert doc["behind"] == lag and doc["behind_in_average"] is False
  text = report.to_text(report.results_table(doc))
  assert "Smoke*" in text and "Eat*" not in text and "Avg*" not in text
  line = behind.note(doc)
  assert "Smoking 0 of 624" in line and "left out of Avg (--include_behind keeps them)" in line

  with_subjects = dict(_document(per_action), by_subject={"S9": _document(per_action, routings=False)})
  subject = behind.apply(with_subjects, lag, include=False)["by_subject"]["S9"]
  assert subject["average"]["mpjpe"] == pytest.approx(45.0) and "Smoke*" in report.to_text(report.results_table(subject))
  assert with_subjects["by_subject"]["S9"]["average"]["mpjpe"] == pytest.approx((50 + 442.6 + 40) / 3)  # not mutated

  kept = behind.apply(_document(per_action), lag, include=True)
  assert kept["average"]["mpjpe"] == pytest.approx((50 + 442.6 + 40) / 3)
  assert "Avg*" in report.to_text(report.results_table(kept)) and "kept in Avg" in behind.note(kept)

  assert behind.apply(_document(per_action), {}, include=False) == _document(per_action)


def test_models_behind_from_the_checkpoint_record():
  # Shares of the log point's target: 0.5, 0, 0.25 (half the leader's: not behind), 0.2.
  fields = behind.checkpoint_fields(np.array([312, 0, 150, 120, 7]), np.array([624, 624, 600, 600, 9]), 0.125,
                                    num_models=4)
  assert behind.models_behind(fields, ("Eating", "Smoking", "Walking", "Sitting")) == {
      "Smoking": {"own_steps": 0, "target_steps": 624, "epoch": 0.125, "leader_share": 0.5},
      "Sitting": {"own_steps": 120, "target_steps": 600, "epoch": 0.125, "leader_share": 0.5}}
  at_log_point = behind.checkpoint_fields(np.array([624, 600]), np.array([624, 600]), 1.0, num_models=2)
  assert behind.models_behind(at_log_point, ("Eating", "Walking")) == {}
  assert behind.models_behind(fields, ("all",)) == {}  # one common model: nothing to compare
  assert behind.models_behind({}, ("Eating", "Smoking")) == {}  # checkpoints without the record


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """Actions of Human3.6M's proportions: Discussion has 2.5 times Purchases' frames."""
  path = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.generate(path, proportions="h36m", scale=0.016, seed=0)
  return path


def test_eval_of_a_checkpoint_saved_mid_segment(data_dir, tmp_path, monkeypatch, capsys):
  """SIGTERM after the first compiled call: the two slots run the two models with most steps
  left, Purchases waits. eval.py's document names exactly the models with under half the
  leader's share of the first log point (whose own steps the finished run logs) and averages the
  others; compare refuses the checkpoint; --routing=predicted says that the classifier comes at
  the end of training."""
  config = _config(data_dir, slots=2)
  config.actions = "Discussion,Purchases,Walking"
  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(config, straight)
  first = _records(straight)[0]["per_action"]
  targets = {a: int(v["steps"]) for a, v in first.items()}

  run_device = engine.run_segment_device

  sent = []

  def interrupted(*args, **kwargs):
    def on_chunk(n, inner=kwargs["on_chunk"]):
      if not sent:  # once: a second signal would end the process
        sent.append(n)
        os.kill(os.getpid(), signal.SIGTERM)
      inner(n)
    kwargs["on_chunk"] = on_chunk
    return run_device(*args, **kwargs)

  workdir = str(tmp_path / "stopped")
  monkeypatch.setattr(engine, "run_segment_device", interrupted)
  assert trainer.train_and_evaluate(config, workdir)["interrupted"]
  monkeypatch.setattr(engine, "run_segment_device", run_device)

  capsys.readouterr()
  document = eval_lib.evaluate_workdir(workdir, "latest")
  out = capsys.readouterr().out
  run = eval_lib.restore_run(workdir, "latest")
  own = dict(zip(run.actions_of_slices, run.metadata["model_steps"]))
  assert sum(own.values()) == 2 * document["checkpoint_step"]  # two slots, both real models
  leader = max(own[a] / targets[a] for a in targets)
  want = {a: (own[a], targets[a]) for a in targets if own[a] / targets[a] < 0.5 * leader}
  assert "Purchases" in want and len(want) < len(targets)
  assert {a: (v["own_steps"], v["target_steps"]) for a, v in document["behind"].items()} == want
  assert "behind: this checkpoint lies between log points" in out
  for action in want:
    assert f"{action} {own[action]:,} of {targets[action]:,}" in out
  per_action = document["per_action"]
  expected = np.mean([per_action[a]["mpjpe"] for a in per_action if a not in want])
  assert document["average"]["mpjpe"] == pytest.approx(expected, rel=1e-12)
  with open(os.path.join(eval_lib.layout.eval_dir(workdir, document["checkpoint_step"], "oracle"),
                         "results.md")) as f:
    assert "Purch.*" in f.read()
  kept = eval_lib.evaluate_workdir(workdir, "latest", include_behind=True, verbose=False)
  assert kept["average"]["mpjpe"] == pytest.approx(np.mean([v["mpjpe"] for v in per_action.values()]), rel=1e-12)

  with pytest.raises(PosejaxError, match="saved between log points"):
    compare.final_results(workdir)
  with pytest.raises(PosejaxError, match="trains after the pose models finish"):
    routing.check_mode("predicted", action_based=True, has_classifier=False, has_common=False)
  with open(os.path.join(straight, "train_summary.json")) as f:
    assert json.load(f)["slots"] == 2
