"""Tests for posejax.evaluation.runs and eval.py: the final model by default, results per checkpoint."""

import importlib
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags
from PIL import Image

from posejax.common.errors import PosejaxError
from posejax.evaluation import protocols as evaluation, runs as eval_lib
from posejax.models import spec as model_spec
from posejax.tools import render_export
from posejax.training import optim, step as train_step
from posejax.workdir import checkpoints as checkpointing, layout
from pieces import pieces
from test_evaluation import FLIP, K, dataset, init_variables, random_poses, record

ACTIONS = ("Eating", "Walking")


def tiny_config(**data) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "mode": "action_based", "actions": list(ACTIONS),
      "data": {"dir": "unused", "keypoints": "gt", "train_subjects": ["S1"], "test_subjects": ["S9", "S11"],
               **data},
      "model": {"filter_widths": [3, 3], "causal": False, "dropout": 0.0, "channels": 8, "dense": False},
      "eval": {"tta": True, "by_subject": False, "chunk": 4, "batch": 2}})


def stacked_variables(config, seed: int):
  model = model_spec.build(model_spec.from_config(pieces(config).model, num_keypoints=K))
  return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *(init_variables(model, seed + i) for i in range(2)))


def sample_data():
  recs = [record("S9", "Eating 1", random_poses(9, 30), 1), record("S9", "Walking 1", random_poses(14, 31), 2),
          record("S11", "Eating 2", random_poses(6, 32), 3)]
  return recs, dataset(recs)


def write_run(workdir, config, variables_by_step, *, total_steps=None, metrics=None):
  """A workdir as the trainer leaves it: real checkpoints, config.json, train_summary.json.

  `metrics`: {step: checkpoint metrics} ({BEST_METRIC: v} in runs with a validation split).
  """
  tx = optim.adam_amsgrad()
  meta = {"config": json.loads(config.to_json()), "actions": list(ACTIONS), "dataset_fingerprint": "test",
          "model": {"channels": 8, "filter_widths": [3, 3]}}
  mngr = checkpointing.manager(str(workdir))
  for step, variables in variables_by_step.items():
    state = train_step.TrainState(params=variables["params"], batch_stats=variables["batch_stats"],
                                  opt_state=jax.vmap(tx.init)(variables["params"]),
                                  step=jnp.zeros(len(ACTIONS), jnp.int32))
    checkpointing.save(mngr, step, state, train_step.init_accumulator(len(ACTIONS)), len(ACTIONS), meta,
                       metrics=(metrics or {}).get(step))
  mngr.wait_until_finished()
  mngr.close()
  layout.write_config(str(workdir), config.to_dict())
  if total_steps is not None:
    layout.write_summary(str(workdir), {"global_steps": total_steps, "train_time_s": 12.5})
  return str(workdir)


@pytest.fixture
def finished_run(tmp_path, monkeypatch):
  """A finished two-action run with checkpoints at steps 4 and 8 (the end), no validation split."""
  config = tiny_config()
  variables = {4: stacked_variables(config, 10), 8: stacked_variables(config, 20)}
  workdir = write_run(tmp_path / "run", config, variables, total_steps=8)
  recs, data = sample_data()
  monkeypatch.setattr(eval_lib, "load_test_dataset", lambda cfg, subjects=None, actions=None: data)
  return workdir, config, variables, data


def test_final_checkpoint_is_evaluated_by_default(finished_run, capsys):
  workdir, config, variables, data = finished_run
  model = model_spec.build(model_spec.from_config(pieces(config).model, num_keypoints=K))
  doc = eval_lib.evaluate_workdir(workdir)
  assert "evaluating checkpoint step 8 (final: the end of training)" in capsys.readouterr().out
  saved = report_at(workdir, 8)
  assert saved["checkpoint_step"] == 8 and saved["checkpoint_final"] is True and saved["checkpoint"] == "latest"
  assert saved["train_time_s"] == 12.5 and doc["average"] == saved["average"]
  for step in (8, 4):  # the final weights were evaluated, not the earlier ones
    expected = evaluation.evaluate_dataset(model, variables[step], data, list(ACTIONS), chunk=4, batch=2)
    match = saved["average"]["mpjpe"] == pytest.approx(expected["average"]["mpjpe"], rel=1e-5)
    assert match == (step == 8)
  with open(f"{layout.eval_dir(workdir, 8, 'oracle')}/results.md") as f:
    assert "Checkpoint: step 8 (final: the end of training)" in f.read()

  earlier = eval_lib.evaluate_workdir(workdir, "4", verbose=False)
  assert earlier["checkpoint_final"] is False and report_at(workdir, 4)["checkpoint_note"] == (
      "not final: training ends at step 8")
  assert report_at(workdir, 8)["average"] == saved["average"]  # each checkpoint has its own folder


def report_at(workdir, step, name="oracle"):
  with open(layout.results_path(workdir, step, name)) as f:
    return json.load(f)


def test_best_needs_a_validation_split(finished_run):
  workdir = finished_run[0]
  with pytest.raises(PosejaxError, match="held-out validation split.*never used to select") as info:
    eval_lib.restore_run(workdir, "best")
  assert "\n" not in str(info.value)


def test_best_is_the_lowest_heldout_error(tmp_path):
  config = tiny_config(valid_subjects=["S8"])
  variables = {s: stacked_variables(config, s) for s in (2, 4, 6)}
  heldout = {s: {checkpointing.BEST_METRIC: v} for s, v in ((2, 0.3), (4, 0.1), (6, 0.2))}
  workdir = write_run(tmp_path / "valid", config, variables, total_steps=6, metrics=heldout)
  best = eval_lib.restore_run(workdir, "best")
  assert best.step == 4 and best.final is False
  jax.tree.map(np.testing.assert_array_equal, best.variables, jax.tree.map(np.asarray, variables[4]))
  assert eval_lib.restore_run(workdir).step == 6


def test_test_set_metrics_never_select(tmp_path):
  """Older runs saved the per-epoch TEST MPJPE as a checkpoint metric: it is not a validation score."""
  config = tiny_config()
  workdir = write_run(tmp_path / "old", config, {3: stacked_variables(config, 1), 5: stacked_variables(config, 2)},
                      metrics={3: {"mpjpe_valid": 0.01}, 5: {"mpjpe_valid": 0.02}})
  with pytest.raises(PosejaxError, match="held-out"):
    eval_lib.restore_run(workdir, "best")
  run = eval_lib.restore_run(workdir)
  assert run.step == 5 and run.final is None and run.note == "training has not finished: no train_summary.json"


def test_heldout_subjects_must_be_held_out():
  assert eval_lib.heldout_subjects(pieces(tiny_config()).data) == ()
  assert eval_lib.heldout_subjects(pieces(tiny_config(valid_subjects=["S8"])).data) == ("S8",)
  with pytest.raises(PosejaxError, match="S9 also in config.data.test_subjects"):
    eval_lib.heldout_subjects(pieces(tiny_config(valid_subjects=["S8", "S9"])).data)
  with pytest.raises(PosejaxError, match="S1 also in config.data.train_subjects"):
    eval_lib.heldout_subjects(pieces(tiny_config(valid_subjects=["S1"])).data)


def test_checkpoint_status_sources(tmp_path):
  assert eval_lib.checkpoint_status(str(tmp_path), 0, {"imported_from": "x.bin"}) == (None, "imported from x.bin")
  assert eval_lib.checkpoint_status(str(tmp_path), 9, {"total_steps": 9})[0] is True
  assert eval_lib.checkpoint_status(str(tmp_path), 5, {"total_steps": 9}) == (
      False, "not final: training ends at step 9")
  assert eval_lib.checkpoint_status(str(tmp_path), 5, {})[0] is None


def run_cli(args):
  """eval.py's entry point in this process; returns its exit status (0 when it returns)."""
  cli = importlib.import_module("eval")
  flags.FLAGS.unparse_flags()
  argv = flags.FLAGS(["eval.py"] + list(args))
  try:
    cli.run(argv)
  except SystemExit as e:
    return e.code
  finally:
    flags.FLAGS.unparse_flags()
  return 0


def test_eval_cli_final_by_default_and_one_line_errors(finished_run, capsys):
  workdir = finished_run[0]
  assert run_cli(["--workdir", workdir]) == 0
  out = capsys.readouterr().out
  assert "evaluating checkpoint step 8 (final: the end of training)" in out
  assert f"wrote {layout.eval_dir(workdir, 8, 'oracle')}/results.json, results.csv, results.md\n" in out
  assert run_cli(["--workdir", workdir, "--checkpoint=best"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and "config.data.valid_subjects" in err
  assert run_cli(["--compare", workdir, workdir, "--checkpoint=4"]) == 2
  assert "final checkpoint" in capsys.readouterr().err


def test_evaluate_and_render_a_workdir(tmp_path, monkeypatch):
  config = tiny_config()
  config.eval.by_subject = True
  model = model_spec.build(model_spec.from_config(pieces(config).model, num_keypoints=K))
  stacked = stacked_variables(config, 5)
  recs, data = sample_data()
  workdir = tmp_path / "run"
  workdir.mkdir()
  layout.write_summary(str(workdir), {"train_time_s": 12.5})
  monkeypatch.setattr(eval_lib, "_restore_for_eval",
                      lambda w, which: (config, stacked, list(ACTIONS), 77, {}))
  monkeypatch.setattr(eval_lib, "load_test_dataset", lambda cfg, subjects=None, actions=None: data)

  doc = eval_lib.evaluate_workdir(str(workdir), "latest", verbose=False)
  expected = evaluation.evaluate_dataset(model, stacked, data, list(ACTIONS), by_subject=True, chunk=4, batch=2)
  saved = report_at(str(workdir), 77, "oracle+by_subject")
  for action in ACTIONS:
    for m in evaluation.METRICS:
      assert saved["per_action"][action][m] == pytest.approx(expected["per_action"][action][m])
  assert saved["checkpoint_step"] == 77 and saved["train_time_s"] == 12.5 and saved["tta"] is True
  assert saved["mode"] == "action_based" and saved["routing"].startswith("oracle")
  assert set(saved["by_subject"]) == {"S9", "S11"} and doc["frames"]["total"] == 29
  out = workdir / "eval" / "step_77" / "oracle+by_subject"
  assert (out / "results.csv").read_text().startswith("Metric,Eat,Walk,Avg")
  assert "| Protocol #1 (MPJPE) |" in (out / "results.md").read_text()

  gif, npz = str(tmp_path / "walk.gif"), str(tmp_path / "walk.npz")
  options = render_export.RenderOptions(subject="S9", action="Walking 1", camera=0, output=gif, size=1.0,
                                   limit=3, export=npz)
  render_export.render_workdir(str(workdir), options)
  with Image.open(gif) as im:
    assert im.n_frames == 3
  with np.load(npz, allow_pickle=True) as f:
    exported = f["positions_3d"].item()["S9"]["Walking 1"][0]
  own = evaluation.predict(model, jax.tree_util.tree_map(lambda x: x[1], stacked), [recs[1].poses_2d],
                           tta=True, chunk=4, batch=2, **FLIP)[0]
  np.testing.assert_allclose(exported, own, atol=1e-6)
  np.testing.assert_allclose(np.load(str(tmp_path / "walk.npy")), own, atol=1e-6)  # the reference's .npy
  no_gt = str(tmp_path / "walk_pred_only.gif")
  render_export.render_workdir(str(workdir), render_export.RenderOptions(subject="S9", action="Walking 1", output=no_gt,
                                                               size=1.0, limit=2, ground_truth=False))
  with Image.open(no_gt) as im, Image.open(gif) as with_gt:
    assert im.size[0] < with_gt.size[0]  # one 3D panel fewer
  with pytest.raises(PosejaxError, match="--viz_action"):
    render_export.render_workdir(str(workdir), render_export.RenderOptions(subject="S9", action="Walking 2", output=gif))
