"""Semi-supervised training end to end on tiny synthetic data: files, warm-up, resume, bad input."""

import dataclasses
import json
import os
import signal

import jax
import numpy as np
import pytest

from posejax import trainer
from posejax.common.errors import PosejaxError
from posejax.data.loading import load_subjects
from posejax.evaluation import runs as eval_lib
from posejax.models.family import Window
from posejax.pose import camera
from posejax.tools import render_export
from posejax.training import engine, sampling, schedules
from posejax.training.semi import data as semi_data
from posejax.workdir import checkpoints as checkpointing, layout as workdir_lib
from pieces import data_args, pieces
from conftest import tiny_config


@pytest.fixture(scope="module")
def data_dir(synthetic_h36m_dir):
  return synthetic_h36m_dir  # read only


def _config(data_dir, mode="common", unlabeled=("S5", "S6"), **train):
  """The tiny run config on S1, `unlabeled` the unlabeled subjects, no classifier; `train`:
  config.train fields."""
  return tiny_config(data_dir, mode, **{"data.train_subjects": ("S1",), "data.unlabeled_subjects": unlabeled,
                                        "classifier.enabled": False},
                     **{f"train.{key}": value for key, value in train.items()})


def _records(workdir):
  return workdir_lib.read_metrics(workdir, required=True)


@pytest.fixture(scope="module")
def ab_workdir(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("semi_ab"))
  trainer.train_and_evaluate(_config(data_dir, mode="action_based"), workdir)
  return workdir


def test_common_run_writes_losses_and_the_trajectory_model(data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "w")
  trainer.train_and_evaluate(_config(data_dir), workdir)
  out = capsys.readouterr().out
  assert "INFO: Semi-supervision on" in out and " traj_train " in out and " 2d_train " in out
  first, second = _records(workdir)
  assert first["2d_train"] == 0.0 and second["2d_train"] > 0  # epoch 1 is warm-up
  assert first["traj_train"] > 0 and second["per_action"]["all"]["traj_train"] == second["traj_train"]
  for key in ("traj_valid", "2d_valid", "traj_eval", "2d_train_sup", "2d_train_unsup"):
    assert np.isfinite(second[key]) and second[key] > 0, key
  assert " traj_valid " in out and " 2d_train_unsup " in out and "Trajectory models: root error" in out
  traj = eval_lib.restore_run(workdir).trajectory
  assert traj.model.num_joints_out == 1 and not traj.model.strided and "params" in traj.variables
  _check_trajectory_results(workdir, second)


def _check_trajectory_results(workdir, last_record):
  """The final evaluation (live state) and eval.py (the restored checkpoint) report the
  trajectory models' test errors of the last epoch."""
  with open(os.path.join(workdir, "eval", f"step_{last_record['step']}", "final", "results.json")) as f:
    final = json.load(f)["trajectory"]
  evaluated = eval_lib.evaluate_workdir(workdir, out_dir=os.path.join(workdir, "eval_again"),
                                        verbose=False)["trajectory"]
  for section in (final, evaluated):
    assert section["traj_mpjpe"] == pytest.approx(1000 * last_record["traj_valid"], rel=1e-4)
    assert section["reprojection_2d"] == pytest.approx(last_record["2d_valid"], rel=1e-4)


def test_ab_run_steps_every_model_pair(ab_workdir):
  record = _records(ab_workdir)[-1]
  for action in ("Eating", "Walking"):
    assert record["per_action"][action]["traj_train"] > 0 and record["per_action"][action]["2d_train"] > 0
  _check_trajectory_results(ab_workdir, record)


def test_ab_exports_and_renders_each_actions_trajectory(data_dir, ab_workdir, tmp_path):
  """--export holds every test sequence's root from its own action's trajectory model."""
  run = eval_lib.restore_run(ab_workdir)
  assert run.actions_of_slices == ("Eating", "Walking")
  assert jax.tree.leaves(run.trajectory.variables)[0].shape[0] == 2
  path = str(tmp_path / "export.npz")
  render_export.export_workdir(ab_workdir, path)
  with np.load(path, allow_pickle=True) as f:
    roots, poses = f["trajectory"].item(), f["positions_3d"].item()
  dataset = eval_lib.load_test_dataset(run.config)
  for rec in dataset.sequences:
    exported = roots[rec.subject][rec.name][rec.camera]
    assert exported.shape == (rec.num_frames, 1, 3)
    assert poses[rec.subject][rec.name][rec.camera].shape == (rec.num_frames, 17, 3)
    np.testing.assert_allclose(exported, render_export.predict_root(run, dataset, rec), atol=1e-5)
  # The two actions' trajectory models differ: each sequence really uses its own.
  rec = dataset.sequences[0]
  other = "Walking" if rec.action == "Eating" else "Eating"
  swapped = render_export.predict_root(run, dataset, dataclasses.replace(rec, action=other))
  assert np.abs(swapped - roots[rec.subject][rec.name][rec.camera]).max() > 1e-4


def test_ab_killed_and_resumed_equals_straight(data_dir, ab_workdir, tmp_path, monkeypatch):
  """Killed mid-epoch, resumed: the same records and models (the unlabeled stream is stateless)."""
  config, resumed = _config(data_dir, mode="action_based"), str(tmp_path / "resumed")
  calls, run_device = {"n": 0}, engine.run_segment_device

  def signalling(*args, **kwargs):
    def on_chunk(n, inner=kwargs["on_chunk"]):
      calls["n"] += n
      if calls["n"] >= 5 and calls["n"] - n < 5:
        os.kill(os.getpid(), signal.SIGTERM)
      inner(n)
    kwargs["on_chunk"] = on_chunk
    return run_device(*args, **kwargs)

  monkeypatch.setattr(engine, "run_segment_device", signalling)
  assert trainer.train_and_evaluate(config, resumed)["interrupted"]
  monkeypatch.setattr(engine, "run_segment_device", run_device)
  trainer.train_and_evaluate(config, resumed)
  strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_time_s")}
  assert [strip(r) for r in _records(resumed)] == [strip(r) for r in _records(ab_workdir)]
  a, b = (checkpointing.restore_for_eval(w, "latest") for w in (ab_workdir, resumed))
  jax.tree.map(np.testing.assert_array_equal, b[1], a[1])
  traj = [checkpointing.restore_trajectory(w, a[3]) for w in (ab_workdir, resumed)]
  jax.tree.map(np.testing.assert_array_equal, traj[1], traj[0])
  # A supervised config cannot resume a semi-supervised checkpoint.
  with pytest.raises(PosejaxError, match="unlabeled_subjects"):
    trainer.train_and_evaluate(_config(data_dir, mode="action_based", unlabeled=()), resumed)


def test_warmup_epochs_are_supervised_training(data_dir, tmp_path):
  """One epoch, all warm-up: the pose model and its losses are the supervised run's."""
  semi, sup = str(tmp_path / "semi"), str(tmp_path / "sup")
  trainer.train_and_evaluate(_config(data_dir, epochs=1, warmup=1), semi)
  trainer.train_and_evaluate(_config(data_dir, unlabeled=(), epochs=1), sup)
  a, b = _records(semi)[0], _records(sup)[0]
  np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
  np.testing.assert_allclose(a["mpjpe_valid"], b["mpjpe_valid"], rtol=1e-4)
  va, vb = (checkpointing.restore_for_eval(w, "latest")[1] for w in (semi, sup))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4), va, vb)


def test_warmup_steps_are_the_share_of_each_budget():
  # Common: the reference's epoch < warmup, i.e. the first ceil(warmup * n / B) steps.
  common = schedules.make_budget("fixed", "common", 10, 15, [1000], 64)
  assert semi_data.warmup_steps(2, common, 2).tolist() == [32, 0]  # ceil(2000 / 64) = 32; padding 0
  # Action-based, 'fixed': warmup * unit_epochs own epochs of each model.
  ab = schedules.make_budget("fixed", "action_based", 10, 15, [1000, 640], 64)
  assert semi_data.warmup_steps(1, ab, 2).tolist() == [235, 150]  # ceil(15000 / 64), 9600 / 64


def test_flipped_unlabeled_windows_flip_the_camera(data_dir):
  """Reference V7.3: the flipped camera projects the mirrored 3D pose onto the mirrored 2D pose."""
  dataset = load_subjects(*data_args(_config(data_dir)), ["S5"], ("Walking",))
  table = sampling.make_window_table(dataset, ("Walking",), "common", True, labeled=False)
  assert "targets_3d" not in table.arrays() and table.cameras.shape == (table.num_frames, 9)
  spec = sampling.window_spec(table, batch_size=64, window=Window(3, 0), seed=0, stream_ids=[0])
  batch = jax.jit(lambda t: sampling.device_batch(t, spec, np.zeros(1, np.int32), np.zeros(1, np.int32)))(
      table.arrays())
  cams = np.asarray(batch["cameras"][0], np.float64)
  where = sampling.example_indices(table.arrays(), spec, np.zeros(1, np.int32), np.zeros(1, np.int32))
  flip = np.asarray(where["flip"][0])
  assert flip.any() and (~flip).any()
  frame = np.asarray(where["frame"][0])
  base = np.asarray(table.cameras, np.float64)[frame]
  np.testing.assert_array_equal(cams[~flip], base[~flip])
  np.testing.assert_array_equal(cams[flip][:, [2, 7]], -base[flip][:, [2, 7]])
  np.testing.assert_array_equal(np.delete(cams[flip], [2, 7], 1), np.delete(base[flip], [2, 7], 1))
  x = np.random.default_rng(0).normal(scale=0.5, size=(int(flip.sum()), 5, 3)) + [0, 0, 5]
  mirrored = x * [-1, 1, 1]
  np.testing.assert_allclose(camera.project_to_2d(mirrored, cams[flip]) * [-1, 1],
                             camera.project_to_2d(x, base[flip]), rtol=1e-12, atol=1e-12)


def test_semi_eval_metrics_equal_whole_sequence_evaluation(data_dir):
  """Chunked, batched, routed per action == each whole edge-padded sequence, in float64 NumPy."""
  from posejax.evaluation import semi as semi_eval
  from posejax.models.tcn import TemporalModel
  actions = ("Eating", "Walking")
  dataset = load_subjects(*data_args(_config(data_dir)), ["S9"], actions)
  pose = TemporalModel(num_joints_in=17, num_joints_out=17, filter_widths=(3, 3), channels=8)
  traj = TemporalModel(num_joints_in=17, num_joints_out=1, filter_widths=(3, 3), channels=8)
  x0 = np.zeros((1, 9, 17, 2), np.float32)
  init = lambda m, i: m.init(jax.random.key(i), x0, train=False)
  stack = lambda vs: jax.tree.map(lambda *x: np.stack(x), *vs)
  pv, tv = stack([init(pose, 0), init(pose, 1)]), stack([init(traj, 2), init(traj, 3)])
  got = semi_eval.metrics(pose, traj, pv, tv, semi_eval.resident_set(dataset, actions, pose, chunk=5, batch=4))
  sums = np.zeros(3)
  for r in dataset.sequences:
    a = actions.index(r.action)
    x = np.concatenate([r.poses_2d[:1].repeat(4, 0), r.poses_2d, r.poses_2d[-1:].repeat(4, 0)])[None]
    v, t = (jax.tree.map(lambda y: y[a], w) for w in (pv, tv))
    pred = np.asarray(pose.apply(v, x, train=False), np.float64)[0]
    root = np.asarray(traj.apply(t, x, train=False), np.float64)[0]
    sums[0] += np.linalg.norm(root - r.poses_3d[:, :1], axis=-1).sum()
    recon = camera.project_to_2d(pred + root, np.asarray(r.intrinsic, np.float64)[None].repeat(len(pred), 0))
    sums[1] += np.linalg.norm(recon - r.poses_2d, axis=-1).mean(-1).sum()
    sums[2] += len(pred)
  np.testing.assert_allclose([got["traj"], got["2d"]], sums[:2] / sums[2], rtol=2e-5)


@pytest.mark.parametrize("change, message", [
    (dict(dataset="humaneva15"), "Human3.6M only"),
    (dict(unlabeled_subjects=("S1", "S5")), "S1 are also labeled training subjects"),
    (dict(subset=0.0), "data.subset=0.0: must be a fraction in \\(0, 1\\]"),
    (dict(subset=1.5), "data.subset=1.5: must be a fraction in \\(0, 1\\]"),
])
def test_bad_input_is_one_line(data_dir, tmp_path, change, message):
  config = _config(data_dir)
  for key, value in change.items():
    config.data[key] = value
  with pytest.raises(PosejaxError, match=message) as e:
    trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert "\n" not in str(e.value)


def test_unlabeled_subjects_without_cameras(data_dir, tmp_path, monkeypatch):
  def no_cameras(*args, **kwargs):
    ds = load_subjects(*args, **kwargs)
    return dataclasses.replace(ds, sequences=tuple(
        dataclasses.replace(r, intrinsic=None) if r.subject == "S6" else r for r in ds.sequences))

  monkeypatch.setattr(semi_data, "load_subjects", no_cameras)
  with pytest.raises(PosejaxError, match="unlabeled_subjects: subject\\(s\\) S6 have no camera intrinsics"):
    trainer.train_and_evaluate(_config(data_dir), str(tmp_path / "w"))


def test_semi_configs():
  from configs import semi_quickstart, semi_s1
  from posejax.config.validation import validate_config
  c = semi_s1.get_config()
  assert (c.data.keypoints, tuple(c.data.train_subjects), c.data.subset) == ("gt", ("S1",), 0.1)
  assert tuple(c.data.unlabeled_subjects) == ("S5", "S6", "S7", "S8")
  assert (c.train.epochs, c.train.lr_decay, tuple(c.model.filter_widths), c.train.warmup, c.train.batch_size) == (
      200, 0.98, (3, 3, 3), 5, 64)
  assert "65.2 mm" in semi_s1.__doc__ and "80.7 mm" in semi_s1.__doc__
  q = semi_quickstart.get_config()
  assert q.data.synthetic_frames > 0 and q.data.unlabeled_subjects and "--config.mode=action_based" in (
      semi_quickstart.__doc__)
  for config in (c, q):
    validate_config(config)
    semi_data.check(pieces(config).data, pieces(config).train)


def test_render_without_ground_truth_adds_the_predicted_trajectory(ab_workdir, tmp_path, monkeypatch):
  """Reference V13 step 2: a sequence without 3D is exported (and drawn) with its trajectory added."""
  run = eval_lib.restore_run(ab_workdir)
  dataset = eval_lib.load_test_dataset(run.config)
  rec = dataset.sequences[0]
  unlabeled = dataclasses.replace(dataset, sequences=[dataclasses.replace(r, poses_3d=None)
                                                      for r in dataset.sequences])
  monkeypatch.setattr(eval_lib, "load_test_dataset", lambda *args, **kwargs: unlabeled)
  export = str(tmp_path / "one.npz")
  render_export.render_workdir(ab_workdir, render_export.RenderOptions(rec.subject, rec.name, rec.camera, export=export))
  pose = render_export.predict_record(run, eval_lib.build_model(run), dataset, rec)
  root = render_export.predict_root(run, dataset, rec)
  np.testing.assert_allclose(np.load(str(tmp_path / "one.npy")), pose + root, atol=1e-5)
  with np.load(export, allow_pickle=True) as f:
    np.testing.assert_allclose(f["trajectory"].item()[rec.subject][rec.name][0], root, atol=1e-6)
