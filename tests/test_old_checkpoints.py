"""Checkpoints written by an earlier version still load and evaluate to the same numbers.

tests/fixtures/main_2026_12_07 holds two tiny workdirs written by main on 2026-12-07 (an
action-based run with its action classifier, and a common run), trained on
`synthetic.generate(DIR, frames=16, seed=0)`, each with the final evaluation that version
computed (eval/step_N/final/results.json). Today's code re-evaluates a copy of each on freshly
generated data of the same arguments (the shared `synthetic_h36m_dir`) and must find the recorded
per-action errors.
"""

import json
import os
import shutil

import numpy as np
import pytest

from posejax.evaluation import classifier, runs as eval_lib

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "main_2026_12_07")
# Protocol #1 (MPJPE), #2 (P-MPJPE), N-MPJPE and MPJVE, in mm (results.json: metres x 1000).
METRICS = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
JOINTS = 17


def _copy(name, tmp_path):
  """A copy of the fixture workdir (the evaluation writes into its workdir; never into tests/)."""
  workdir = str(tmp_path / name)
  shutil.copytree(os.path.join(FIXTURES, name), workdir)
  return workdir


def _recorded(workdir):
  (step,) = os.listdir(os.path.join(workdir, "eval"))
  with open(os.path.join(workdir, "eval", step, "final", "results.json")) as f:
    return json.load(f)


def _evaluate(workdir, data_dir, out_dir, **options):
  """eval.py --workdir WORKDIR --config WORKDIR/config.json --config.data.dir=DATA_DIR."""
  config = eval_lib.load_workdir_config(workdir)
  assert config["data"]["dir"] == "data"  # relative to where that version ran: replaced here
  config["data"]["dir"] = data_dir
  return eval_lib.evaluate_workdir(workdir, config=config, out_dir=str(out_dir), verbose=False, **options)


def _assert_same_errors(got, want, frames):
  """Each action's errors: the sums over its frames x joints of float32 per-joint errors (one
  float32 reduction of that length per sequence, then averaged), so equal up to float32 epsilon
  times the reduction length, relative; the same frames counted."""
  assert set(got) == set(want)
  for action, recorded in want.items():
    rel = float(np.finfo(np.float32).eps) * frames[action] * JOINTS
    for metric in METRICS:
      assert got[action][metric] == pytest.approx(recorded[metric], rel=rel), (action, metric)


def test_action_based_run_of_2026_12_07_evaluates_to_its_recorded_results(synthetic_h36m_dir, tmp_path):
  workdir = _copy("action_based", tmp_path)
  recorded = _recorded(workdir)
  restored = classifier.restore(workdir)
  assert restored is not None and restored.classes == ("Eating", "Walking")
  got = _evaluate(workdir, synthetic_h36m_dir, tmp_path / "eval", routing="oracle")
  assert got["checkpoint_step"] == recorded["checkpoint_step"] == 42 and got["checkpoint_final"]
  assert got["actions_of_slices"] == recorded["actions_of_slices"] == ["Eating", "Walking"]
  assert got["frames"] == recorded["frames"]
  assert got["routing_mode"] == recorded["routing_mode"] == "oracle"
  _assert_same_errors(got["per_action"], recorded["per_action"], recorded["frames"])
  # The restored classifier routes as it did: every routing of the recorded evaluation.
  assert list(got["routings"]) == list(recorded["routings"]) == ["oracle", "predicted", "soft"]
  for mode, routed in recorded["routings"].items():
    _assert_same_errors(got["routings"][mode]["per_action"], routed["per_action"], recorded["frames"])
  assert got["classifier"]["classes"] == ["Eating", "Walking"]
  assert got["classifier"]["sequence_accuracy"] == recorded["classifier"]["sequence_accuracy"]


def test_common_run_of_2026_12_07_evaluates_to_its_recorded_results(synthetic_h36m_dir, tmp_path):
  workdir = _copy("common", tmp_path)
  recorded = _recorded(workdir)
  assert classifier.restore(workdir) is None
  got = _evaluate(workdir, synthetic_h36m_dir, tmp_path / "eval")
  assert got["checkpoint_step"] == recorded["checkpoint_step"] == 83 and got["checkpoint_final"]
  assert got["mode"] == "common" and got["actions_of_slices"] == ["all"]
  assert got["frames"] == recorded["frames"]
  _assert_same_errors(got["per_action"], recorded["per_action"], recorded["frames"])
