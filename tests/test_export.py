"""Tests for posejax.tools.export: ONNX and SavedModel exports of a workdir equal the JAX model."""

import json
import os

import jax
import ml_collections
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from posejax.common.errors import PosejaxError
from posejax.models.tcn import TemporalModel
from posejax.tools import export
from posejax.workdir import checkpoints as checkpointing
from test_evaluation import K, init_variables

WIDTHS, CHANNELS, RF = (3, 3), 16, 9


def tiny_model(causal: bool = False) -> TemporalModel:
  return TemporalModel(num_joints_in=K, num_joints_out=17, filter_widths=WIDTHS, causal=causal,
                       channels=CHANNELS)


def save_workdir(path, actions, causal=False, seed=0):
  """A real checkpoint of random-weight models (one per action); returns (workdir, variables)."""
  model = tiny_model(causal)
  slices = [init_variables(model, seed + i) for i in range(len(actions))]
  config = ml_collections.ConfigDict({
      "mode": "common" if list(actions) == ["all"] else "action_based", "actions": "*",
      "data": {"keypoints": "gt"},
      "model": {"filter_widths": list(WIDTHS), "channels": CHANNELS, "causal": causal, "dropout": 0.25,
                "dense": False}})
  stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *slices)
  checkpointing.save_imported(str(path), stacked, config, list(actions), source="test", step=3)
  return str(path), slices


@pytest.fixture(scope="module")
def common(tmp_path_factory):
  return save_workdir(tmp_path_factory.mktemp("common"), ["all"], causal=True)


@pytest.fixture(scope="module")
def action_based(tmp_path_factory):
  return save_workdir(tmp_path_factory.mktemp("ab"), ["Eating", "Walking"], seed=7)


def jax_output(variables, x, causal=False):
  return np.asarray(tiny_model(causal).apply(variables, x, train=False))


def keypoints(batch, frames, seed=0):
  return np.random.default_rng(seed).normal(size=(batch, frames, K, 2)).astype(np.float32)


def run_onnx(path, x):
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  return session.run(["poses_3d"], {"poses_2d": x})[0]


def test_onnx_with_a_dynamic_time_axis_equals_the_model(common, tmp_path):
  workdir, (variables,) = common
  out = str(tmp_path / "model.onnx")
  assert export.export_workdir(workdir, "onnx", out, which="latest") == [out]
  assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary file left behind
  for batch, frames in ((2, RF), (1, 31)):
    x = keypoints(batch, frames, frames)
    y = run_onnx(out, x)
    assert y.shape == (batch, frames - RF + 1, 17, 3)
    np.testing.assert_allclose(y, jax_output(variables, x, causal=True), atol=1e-4)
  proto = onnx.load(out)
  onnx.checker.check_model(proto, full_check=True)
  props = {p.key: json.loads(p.value) for p in proto.metadata_props}
  assert props["posejax.receptive_field"] == RF and props["posejax.causal"] is True
  assert props["posejax.pad_before"] == 2 * (RF // 2) and props["posejax.pad_after"] == 0
  assert props["posejax.checkpoint_step"] == 3 and props["posejax.action"] == "all"
  dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
  assert dims == ["B", "T", K, 2]


def test_saved_model_with_a_dynamic_time_axis_equals_the_model(common, tmp_path):
  from posejax.common.tf_compat import tf
  workdir, (variables,) = common
  out = str(tmp_path / "saved")
  export.export_workdir(workdir, "tf_saved_model", out, which="3")
  assert os.listdir(tmp_path) == ["saved"]
  with open(os.path.join(out, export.METADATA_FILE)) as f:
    assert json.load(f)["receptive_field"] == RF
  serve = tf.saved_model.load(out).signatures["serving_default"]
  for batch, frames in ((3, RF), (2, 20)):
    x = keypoints(batch, frames, 100 + frames)
    y = serve(poses_2d=tf.constant(x))["poses_3d"].numpy()
    assert y.shape == (batch, frames - RF + 1, 17, 3)
    np.testing.assert_allclose(y, jax_output(variables, x, causal=True), atol=1e-4)
  with pytest.raises(PosejaxError, match="already exists"):
    export.export_workdir(workdir, "tf_saved_model", out, which="3")
  export.export_workdir(workdir, "tf_saved_model", out, which="3", frames=12, overwrite=True)
  assert os.listdir(tmp_path) == ["saved"]
  serve = tf.saved_model.load(out).signatures["serving_default"]
  assert serve.structured_input_signature[1]["poses_2d"].shape.as_list() == [None, 12, K, 2]
  x = keypoints(2, 12, 7)
  np.testing.assert_allclose(serve(poses_2d=tf.constant(x))["poses_3d"].numpy(),
                             jax_output(variables, x, causal=True), atol=1e-4)


def test_action_based_workdir_one_file_per_action_or_one_slice(action_based, tmp_path):
  workdir, variables = action_based
  paths = export.export_workdir(workdir, "onnx", str(tmp_path / "all"), which="latest", frames=12)
  assert sorted(os.listdir(tmp_path / "all")) == ["Eating.onnx", "Walking.onnx"]
  x = keypoints(2, 12, 5)
  for path, v in zip(paths, variables):
    np.testing.assert_allclose(run_onnx(path, x), jax_output(v, x), atol=1e-4)
  session = ort.InferenceSession(paths[0], providers=["CPUExecutionProvider"])
  assert session.get_inputs()[0].shape[1:] == [12, K, 2]  # --frames fixes the time axis
  one = str(tmp_path / "walking.onnx")
  assert export.export_workdir(workdir, "onnx", one, which="latest", slice_name="Walking") == [one]
  x = keypoints(1, 15, 6)
  np.testing.assert_allclose(run_onnx(one, x), jax_output(variables[1], x), atol=1e-4)


def test_main_says_that_an_action_based_export_is_a_folder_of_models(action_based, tmp_path, capsys):
  out = tmp_path / "ab.onnx"
  assert export.main(["--workdir", action_based[0], "--format", "onnx", "--out", str(out)]) == 0
  assert out.is_dir() and sorted(os.listdir(out)) == ["Eating.onnx", "Walking.onnx"]
  assert capsys.readouterr().out == (f"wrote 2 models to {out}/ (one per action: Eating.onnx, Walking.onnx; "
                                     "pick one with --slice ACTION)\n")
  saved = [str(tmp_path / "sm" / "Eating"), str(tmp_path / "sm" / "Walking")]
  assert export.written(str(tmp_path / "sm"), saved).startswith(f"wrote 2 models to {tmp_path}/sm/ "
                                                                "(one per action: Eating/, Walking/;")
  assert export.written("m.onnx", ["m.onnx"]) == "wrote m.onnx"


def test_existing_outputs_are_kept_unless_overwrite(common, tmp_path, capsys):
  workdir, (variables,) = common
  out = tmp_path / "model.onnx"
  out.write_text("user data")
  args = ["--workdir", workdir, "--format", "onnx", "--out", str(out), "--checkpoint", "latest"]
  assert export.main(args) == 2
  assert capsys.readouterr().err == f"error: --out {out}: already exists (pass --overwrite to replace it)\n"
  assert out.read_text() == "user data"
  assert export.main(args + ["--overwrite"]) == 0
  x = keypoints(1, 10)
  np.testing.assert_allclose(run_onnx(str(out), x), jax_output(variables, x, causal=True), atol=1e-4)
  assert sorted(os.listdir(tmp_path)) == ["model.onnx"]
  # A directory is never replaced by a file, nor a non-SavedModel directory by a SavedModel.
  (tmp_path / "notes").mkdir()
  for fmt in ("onnx", "tf_saved_model"):
    with pytest.raises(PosejaxError, match="notes: is"):
      export.export_workdir(workdir, fmt, str(tmp_path / "notes"), which="latest", overwrite=True)


@pytest.mark.parametrize("change, message", [
    ({"--workdir": "missing"}, "--workdir missing: directory not found"),
    ({"--format": "tflite"}, "--format 'tflite': expected one of onnx, tf_saved_model"),
    ({"--slice": "Sitting"}, "--slice 'Sitting': no such model in this workdir (choices: Eating, Walking)"),
    ({"--checkpoint": "9"}, "no checkpoint at step 9 (available: 3)"),
    ({"--frames": "5"}, "--frames 5: fewer than the receptive field (9 frames)"),
])
def test_bad_options_give_one_line(action_based, tmp_path, capsys, change, message):
  options = {"--workdir": action_based[0], "--format": "onnx", "--out": str(tmp_path / "x"),
             "--checkpoint": "latest"} | change
  assert export.main([a for kv in options.items() for a in kv]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and err.count("\n") == 1
  assert os.listdir(tmp_path) == []
