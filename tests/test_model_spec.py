"""Tests for posejax.models.spec: one spec for training, evaluation, inference, import and export."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.evaluation import protocols as evaluation, runs as eval_lib
from posejax.models import spec as model_spec
from posejax.tools import export, infer
from pieces import pieces
from test_eval_lib import ACTIONS, sample_data, tiny_config
from test_evaluation import K


def _hparams(**changes):
  h = {"family": "tcn", "filter_widths": [3, 3], "channels": 8, "causal": False, "dense": False, "dropout": 0.0,
       "num_joints_in": K, "in_features": 2, "num_joints_out": 17}
  return {**h, **changes}


def _stacked(hparams, seeds=(1, 2)):
  """Random stacked variables of the model of `hparams` (any keypoint and feature count)."""
  model = model_spec.build(hparams)
  frames = jnp.zeros((1, 9, hparams["num_joints_in"], hparams["in_features"]))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), frames, train=False))
  rng = np.random.default_rng(list(seeds))
  one = lambda: jax.tree.map(lambda leaf: rng.uniform(0.5, 1.0, leaf.shape).astype(np.float32) * 0.2, shapes)
  return jax.tree.map(lambda *x: np.stack(x), *(one() for _ in seeds))


def test_config_and_data_give_the_hparams_and_forms():
  config = tiny_config()
  h = model_spec.from_config(pieces(config).model, num_keypoints=16, in_features=3, num_joints=15)
  assert h == _hparams(num_joints_in=16, in_features=3, num_joints_out=15)
  strided, dilated = model_spec.build(h, strided=True, dtype="bfloat16"), model_spec.build(h)
  assert (strided.strided, strided.dtype, dilated.strided, dilated.dtype) == (True, "bfloat16", False, "float32")
  assert (dilated.num_joints_in, dilated.in_features, dilated.num_joints_out, dilated.filter_widths) == (16, 3, 15, (3, 3))
  assert model_spec.of_model(dilated) == h
  assert not model_spec.build({**h, "dense": True}, strided=True).strided  # the dense variant has no strided form
  with pytest.raises(PosejaxError, match="compute_dtype"):
    model_spec.compute_dtype(pieces({"model": {"compute_dtype": "float16"}}).model)


def test_checkpoint_record_wins_and_older_records_are_completed_from_the_weights():
  h = _hparams(channels=6, num_joints_in=16, in_features=3)
  stacked = _stacked(h)
  config = tiny_config()  # channels 8, as another --config would say
  assert model_spec.from_checkpoint(h, pieces(config).model, stacked, "ckpt") == h
  # An older record (no in_features, no joint counts): 2 features, the rest from the weights.
  old = model_spec.from_checkpoint({"channels": 6, "filter_widths": [3, 3]}, pieces(config).model, _stacked(_hparams(channels=6)), "c")
  assert old == _hparams(channels=6)
  assert model_spec.normalized_record({"channels": 6}) == {"channels": 6, "in_features": 2, "family": "tcn"}
  assert model_spec.config_differences(h, pieces(config).model) == ["model.channels=8 (checkpoint: 6)"]
  with pytest.raises(PosejaxError, match="ckpt: the weights do not fit .*channels 8 \\(weights: 6\\)"):
    model_spec.from_checkpoint({**h, "channels": 8}, pieces(config).model, stacked, "ckpt")
  with pytest.raises(PosejaxError, match="residual blocks 2 \\(weights: 1\\)"):
    model_spec.from_checkpoint({**h, "filter_widths": [3, 3, 3]}, pieces(config).model, stacked, "ckpt")


def _run(hparams, config, seeds=(1, 2)):
  return eval_lib.RestoredRun(pieces(config), _stacked(hparams, seeds), ACTIONS, 8, {"model": hparams})


def test_eval_with_a_conflicting_config_uses_the_checkpoints_model(tmp_path, monkeypatch, capsys):
  """--config.model.channels=32 at evaluation: the recorded architecture builds the model (a note
  says the config's differs), so the results are those of the checkpoint's own config."""
  h = _hparams()
  saved_config = tiny_config()
  run = _run(h, saved_config)
  recs, data = sample_data()
  monkeypatch.setattr(eval_lib, "load_test_dataset", lambda cfg, subjects=None, actions=None: data)
  monkeypatch.setattr(eval_lib, "restore_run", lambda workdir, which, config=None: eval_lib.RestoredRun(
      pieces(config or saved_config), run.variables, run.actions_of_slices, run.step, run.metadata))
  want = eval_lib.evaluate_workdir(str(tmp_path), out_dir=str(tmp_path / "a"), verbose=False)
  assert capsys.readouterr().err == ""
  other = tiny_config()
  other.model.channels = 32
  other.model.filter_widths = [3, 3, 3]
  got = eval_lib.evaluate_workdir(str(tmp_path), config=other, out_dir=str(tmp_path / "b"), verbose=False)
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "model.filter_widths=[3, 3, 3] (checkpoint: [3, 3])" in err
  assert "model.channels=32 (checkpoint: 8)" in err and "the architecture the checkpoint records is evaluated" in err
  assert got["average"] == want["average"]
  model = model_spec.build(h)
  expected = evaluation.evaluate_dataset(model, run.variables, data, list(ACTIONS), chunk=4, batch=2)
  assert got["average"]["mpjpe"] == pytest.approx(expected["average"]["mpjpe"], rel=1e-5)


def test_data_of_another_shape_is_a_one_line_error(tmp_path, monkeypatch):
  run = _run(_hparams(in_features=3), tiny_config())
  recs, data = sample_data()  # (T, 17, 2) frames
  monkeypatch.setattr(eval_lib, "load_test_dataset", lambda cfg, subjects=None, actions=None: data)
  monkeypatch.setattr(eval_lib, "restore_run", lambda workdir, which, config=None: run)
  with pytest.raises(PosejaxError, match="17 keypoints x 2 features per frame; the checkpoint's model takes "
                     "17 x 3") as info:
    eval_lib.evaluate_workdir(str(tmp_path), verbose=False)
  assert "\n" not in str(info.value)
  # Inference lifts (T, 17, 2) video keypoints: a 3-feature model cannot read them.
  with pytest.raises(PosejaxError, match="2D keypoints of the videos: 17 keypoints x 2 features per frame"):
    infer.lift_videos(run, [infer.Video("v", np.zeros((9, 17, 2), np.float32), 64, 48)], (), ())


def test_export_and_inference_build_the_recorded_model(monkeypatch):
  h = _hparams(channels=6)
  config = tiny_config()  # says 8 channels: only the record fits the weights
  run = _run(h, config)
  monkeypatch.setattr(eval_lib, "restore_run", lambda *a, **k: run)
  built = {}
  monkeypatch.setattr(export, "export_model", lambda model, variables, *a, **k: built.setdefault("model", model))
  monkeypatch.setattr(export, "check_target", lambda *a, **k: None)
  export.export_workdir("unused", "onnx", "/nonexistent/out.onnx", slice_name="Walking")
  assert model_spec.of_model(built["model"]) == h
  videos = [infer.Video("v", np.random.default_rng(0).uniform(0, 64, (12, 17, 2)).astype(np.float32), 64, 48)]
  preds, lifted = infer.lift_videos(run, videos, (1, 3), (2, 4), action="Walking")
  assert preds[0].shape == (12, 17, 3) and np.all(np.isfinite(preds[0])) and lifted[0].model_action == "Walking"


def test_input_shape_of_a_dataset():
  recs, data = sample_data()
  assert model_spec.input_shape(data) == (K, 2)
  mixed = dataclasses.replace(data, sequences=data.sequences[:1] + (dataclasses.replace(
      data.sequences[1], poses_2d=np.zeros((4, K, 3), np.float32)),))
  with pytest.raises(PosejaxError, match="different shapes"):
    model_spec.input_shape(mixed)


def test_splits_of_different_input_shapes_are_refused():
  recs, data = sample_data()
  three = dataclasses.replace(data, sequences=tuple(dataclasses.replace(r, poses_2d=np.concatenate(
      [r.poses_2d, np.ones(r.poses_2d.shape[:2] + (1,), np.float32)], -1)) for r in data.sequences))
  assert model_spec.input_shape(three, three, None) == (K, 3)
  with pytest.raises(PosejaxError, match="17 keypoints x 2 features per frame; those of subjects S9, S11 are 17 x 3"):
    model_spec.input_shape(three, data)
