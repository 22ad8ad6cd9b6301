"""Tests for posejax.tools.infer: the custom 2D format in, finite 3D poses and a GIF out."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from posejax.common.errors import PosejaxError
from posejax.evaluation import runs as eval_lib
from posejax.models import spec as model_spec
from posejax.pose.skeleton import LAYOUTS
from posejax.tools import infer
from pieces import pieces
from test_evaluation import init_variables

COCO = LAYOUTS["coco"]


def tiny_run(actions=("Eating", "Walking")) -> eval_lib.RestoredRun:
  config = ml_collections.ConfigDict({
      "mode": "action_based", "actions": list(actions),
      "data": {"dir": "unused", "keypoints": "detectron_pt_coco", "test_subjects": ["S9"]},
      "model": {"filter_widths": [3, 3], "causal": False, "dropout": 0.25, "channels": 8, "dense": False},
      "eval": {"tta": True, "chunk": 8, "batch": 2}})
  model = model_spec.build(model_spec.from_config(pieces(config).model, num_keypoints=17))
  variables = [init_variables(model, i) for i in range(len(actions))]
  stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *variables)
  return eval_lib.RestoredRun(pieces(config), stacked, tuple(actions), 10, {})


def write_custom(path, videos, layout="coco", num_joints=17, sizes=None):
  positions = {name: {"custom": [kps]} for name, kps in videos.items()}
  metadata = {"layout_name": layout, "num_joints": num_joints,
              "keypoints_symmetry": [list(COCO.left), list(COCO.right)],
              "video_metadata": sizes if sizes is not None else {n: {"w": 640, "h": 480} for n in videos}}
  np.savez_compressed(path, positions_2d=np.array(positions, dtype=object),
                      metadata=np.array(metadata, dtype=object))
  return str(path)


def keypoints(frames, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform([100, 50], [540, 430], size=(frames, 17, 2))).astype(np.float32)


def test_inference_writes_finite_poses_and_a_gif(tmp_path):
  path = write_custom(tmp_path / "data_2d_custom_test.npz",
                      {"clip.mp4": keypoints(13), "other.mp4": keypoints(5, 1)})
  out = str(tmp_path / "out")
  run = tiny_run()
  paths = infer.infer_file(run, path, out, action="Walking", render_gif=True, limit=3, size=1.0)
  assert sorted(os.path.basename(p) for p in paths) == ["clip.mp4.npz", "other.mp4.npz"]
  with np.load(os.path.join(out, "clip.mp4.npz")) as f:
    assert f["positions_3d"].shape == (13, 17, 3) and np.all(np.isfinite(f["positions_3d"]))
    assert f["positions_3d_world"].shape == (13, 17, 3)
    assert f["positions_3d_world"][..., 2].min() == pytest.approx(0.0, abs=1e-6)
    assert str(f["model_action"]) == "Walking"
    camera_space = f["positions_3d"]
  with Image.open(os.path.join(out, "clip.mp4.gif")) as im:
    assert im.n_frames == 3
  # The Walking model (slice 1) was used: predicting with it directly gives the same poses.
  videos, left, right = infer.read_custom_keypoints(path)
  preds, action = infer.lift_videos(run, videos, left, right, action="Walking")
  np.testing.assert_allclose(preds[0], camera_space, atol=1e-6)
  other, _ = infer.lift_videos(run, videos, left, right, action=None)
  assert np.abs(other[0] - camera_space).max() > 1e-3


@pytest.mark.parametrize("case, message", [
    ("layout", "layout 'mpii'"), ("shape", r"shape \(6, 16, 2\)"), ("size", "width/height"),
    ("nan", "NaN"), ("missing", "file not found")])
def test_bad_custom_files_name_the_file(tmp_path, case, message):
  target = tmp_path / "data_2d_custom_bad.npz"
  if case == "layout":
    write_custom(target, {"v.mp4": keypoints(6)}, layout="mpii", num_joints=16)
  elif case == "shape":
    write_custom(target, {"v.mp4": keypoints(6)[:, :16]})
  elif case == "size":
    write_custom(target, {"v.mp4": keypoints(6)}, sizes={})
  elif case == "nan":
    kps = keypoints(6)
    kps[2, 3] = np.nan
    write_custom(target, {"v.mp4": kps})
  with pytest.raises(PosejaxError, match=message) as info:
    infer.read_custom_keypoints(str(target))
  assert str(target) in str(info.value)


def test_unknown_action_lists_the_models():
  with pytest.raises(PosejaxError, match="Eating, Walking"):
    infer.choose_slice(("Eating", "Walking"), "Sitting")
  assert infer.choose_slice(("all",), "Sitting") == 0


def test_main_lifts_with_the_final_model_by_default(tmp_path, capsys):
  from absl import flags
  from test_eval_lib import stacked_variables, tiny_config, write_run
  config = tiny_config()
  variables = {4: stacked_variables(config, 10), 8: stacked_variables(config, 20)}
  workdir = write_run(tmp_path / "run", config, variables, total_steps=8)
  path = write_custom(tmp_path / "data_2d_custom_test.npz", {"clip.mp4": keypoints(11)})
  out = str(tmp_path / "out")
  values = infer._define_flags(flags.FlagValues())
  argv = values(["infer", "--workdir", workdir, "--keypoints", path, "--out", out, "--action", "Walking"])
  infer.main(argv, values)
  assert "lifting with checkpoint step 8 (final: the end of training)" in capsys.readouterr().out
  final = eval_lib.RestoredRun(pieces(config), jax.tree.map(np.asarray, variables[8]), ("Eating", "Walking"), 8, {})
  videos, left, right = infer.read_custom_keypoints(path)
  with np.load(os.path.join(out, "clip.mp4.npz")) as f:
    np.testing.assert_allclose(f["positions_3d"], infer.lift_videos(final, videos, left, right, action="Walking")[0][0],
                               atol=1e-6)
  values.checkpoint, values.overwrite = "best", True  # the same --out again
  with pytest.raises(SystemExit) as info:
    infer.main(argv, values)
  err = capsys.readouterr().err
  assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "held-out" in err


def test_main_refuses_to_replace_earlier_outputs_without_overwrite(tmp_path, capsys):
  from absl import flags
  from test_eval_lib import stacked_variables, tiny_config, write_run
  config = tiny_config()
  workdir = write_run(tmp_path / "run", config, {8: stacked_variables(config, 20)}, total_steps=8)
  path = write_custom(tmp_path / "data_2d_custom_test.npz", {"clip.mp4": keypoints(11), "b.mp4": keypoints(9)})
  out = tmp_path / "out"
  values = infer._define_flags(flags.FlagValues())
  argv = values(["infer", "--workdir", workdir, "--keypoints", path, "--out", str(out), "--action", "Walking"])
  infer.main(argv, values)
  first = {name: (out / name).read_bytes() for name in os.listdir(out)}
  assert sorted(first) == ["b.mp4.npz", "clip.mp4.npz"]
  capsys.readouterr()
  write_custom(path, {"clip.mp4": keypoints(11, seed=5), "b.mp4": keypoints(9)})  # new input, same names
  with pytest.raises(SystemExit) as info:
    infer.main(argv, values)
  captured = capsys.readouterr()
  assert info.value.code == 2 and captured.out == ""  # refused before restoring anything
  assert captured.err == f"error: --out {out / 'clip.mp4.npz'}: already exists (pass --overwrite to replace it)\n"
  assert {name: (out / name).read_bytes() for name in os.listdir(out)} == first
  values.overwrite = True
  infer.main(argv, values)
  assert sorted(os.listdir(out)) == sorted(first)  # no temporary file left behind
  assert (out / "clip.mp4.npz").read_bytes() != first["clip.mp4.npz"]


def test_videos_are_routed_by_the_classifier_and_their_action_written(tmp_path, capsys):
  from test_routing import make_classifier
  path = write_custom(tmp_path / "data_2d_custom_test.npz", {"clip.mp4": keypoints(13), "other.mp4": keypoints(5, 1)})
  run = tiny_run()
  walking = make_classifier(("Eating", "Walking"), forced=1)
  videos, left, right = infer.read_custom_keypoints(path)
  fixed, _ = infer.lift_videos(run, videos, left, right, action="Walking")
  out = str(tmp_path / "predicted")
  infer.infer_file(run, path, out, classifier=walking)  # predicted routing by default
  assert "clip.mp4: predicted action Walking (100%), lifted by Walking" in capsys.readouterr().out
  with np.load(os.path.join(out, "clip.mp4.npz")) as f:
    assert str(f["predicted_action"]) == "Walking" and str(f["model_action"]) == "Walking"
    assert f["action_classes"].tolist() == ["Eating", "Walking"] and f["action_probabilities"][1] > 0.999
    np.testing.assert_allclose(f["positions_3d"], fixed[0], atol=1e-6)
  # Soft: per frame the probability-weighted mixture; a certain classifier gives its model's poses.
  preds, lifted = infer.lift_videos(run, videos, left, right, routing="soft", classifier=walking)
  assert [v.model_action for v in lifted] == ["soft mixture"] * 2
  np.testing.assert_allclose(preds[1], fixed[1], atol=1e-5)
  for routing, action, message in (("oracle", None, "no action labels"), ("soft", "Eating", "exclude each other")):
    with pytest.raises(PosejaxError, match=message):
      infer.lift_videos(run, videos, left, right, routing=routing, action=action, classifier=walking)
  with pytest.raises(PosejaxError, match="no action classifier"):
    infer.lift_videos(run, videos, left, right, routing="predicted")
