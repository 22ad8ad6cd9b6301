"""Tests for posejax.common.video, posejax.evaluation.trajectory and `posejax.tools.infer --video`: a video in, 3D poses and an MP4 out."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from absl import flags

from posejax.common import video as video_io
from posejax.common.errors import PosejaxError
from posejax.data import demo_video
from posejax.evaluation import runs as eval_lib
from posejax.models import spec as model_spec
from posejax.models.tcn import TemporalModel
from posejax.tools import detect, infer, render
from posejax.workdir import checkpoints as checkpointing
from pieces import pieces
from test_detect import detector  # noqa: F401 (fixture: the detector environment)
from test_evaluation import init_variables

FRAMES, WIDTH, HEIGHT, FPS = 12, 160, 120, 10.0


def tiny_config(keypoints="detectron_pt_coco", tta=True) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "mode": "common", "actions": "*",
      "data": {"dir": "unused", "keypoints": keypoints, "test_subjects": ["S9"]},
      "model": {"filter_widths": [3, 3], "causal": False, "dropout": 0.25, "channels": 8, "dense": False},
      "eval": {"tta": tta, "chunk": 8, "batch": 2}})


def imported_workdir(path, config, trajectory=None) -> str:
  """A workdir as `posejax.tools.interop --workdir` writes it: one common model (and `trajectory`,
  a (model, variables) pair, as its trajectory model)."""
  variables = init_variables(model_spec.build(model_spec.from_config(pieces(config).model, num_keypoints=17)), 3)
  stack = lambda tree: jax.tree.map(lambda x: np.asarray(x)[None], tree)
  traj = {} if trajectory is None else dict(trajectory=stack(trajectory[1]),
                                            trajectory_model=model_spec.of_model(trajectory[0]))
  checkpointing.save_imported(str(path), stack(variables), config, ["all"], source="test.bin", step=5, **traj)
  return str(path)


def keypoint_file(path, name, frames=FRAMES, width=WIDTH, height=HEIGHT, seed=0) -> str:
  rng = np.random.default_rng(seed)
  kps = rng.uniform([10, 10], [width - 10, height - 10], size=(frames, 17, 2)).astype(np.float32)
  detection = detect.Detection(name, kps, np.ones((frames, 17), np.float32), np.ones(frames, bool),
                               width, height, FPS)
  detect.write_custom(str(path), [detection])
  return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("video") / "astronaut.mp4")
  video_io.write_frames(path, demo_video.demo_frames(FRAMES, WIDTH, HEIGHT), FPS)
  return path


def test_video_round_trip(clip):
  info = video_io.probe(clip)
  assert (info.width, info.height, info.fps, info.name) == (WIDTH, HEIGHT, FPS, "astronaut.mp4")
  assert video_io.count_frames(clip) == FRAMES
  frames = video_io.read_frames(clip, (80, 60), limit=5)
  assert frames.shape == (5, 60, 80, 3) and frames.dtype == np.uint8
  # H.264 is lossy: the decoded first frame is close to the photograph placed in it.
  original = demo_video.demo_frames(FRAMES, WIDTH, HEIGHT)[0].astype(np.float32)
  assert np.abs(video_io.read_frames(clip, limit=1)[0] - original).mean() < 6.0


def test_unreadable_videos_are_user_errors(tmp_path):
  with pytest.raises(PosejaxError, match="video file not found"):
    video_io.probe(str(tmp_path / "missing.mp4"))
  bad = tmp_path / "bad.mp4"
  bad.write_bytes(b"not a video")
  with pytest.raises(PosejaxError, match=f"{bad}: not a readable video"):
    video_io.probe(str(bad))


def test_demo_placements_sweep_and_scale():
  p = demo_video.placements(21, 480, 320)
  assert p[0, 0] == 0 and p[-1, 0] == 480 - p[-1, 2]     # left edge to right edge
  assert p[:, 2].min() == round(320 * demo_video.SCALES[0]) and p[10, 2] == round(320 * demo_video.SCALES[1])
  assert np.all(p[:, :2] >= 0) and np.all(p[:, 0] + p[:, 2] <= 480) and np.all(p[:, 1] + p[:, 2] <= 320)


def test_trajectory_models_round_trip_through_the_checkpoint(tmp_path):
  traj_model = TemporalModel(num_joints_in=17, num_joints_out=1, filter_widths=(3, 3), channels=8)
  traj_vars = init_variables(traj_model, 7)
  workdir = imported_workdir(tmp_path / "run", tiny_config(), trajectory=(traj_model, traj_vars))
  restored = eval_lib.restore_run(workdir).trajectory
  assert restored.model == traj_model
  for a, b in zip(jax.tree.leaves(traj_vars), jax.tree.leaves(restored.variables)):
    np.testing.assert_array_equal(np.asarray(a)[None], b)
  assert eval_lib.restore_run(imported_workdir(tmp_path / "plain", tiny_config())).trajectory is None


def run_main(argv):
  values = infer._define_flags(flags.FlagValues())
  infer.main(values(["infer", *argv]), values)


def test_video_with_keypoints_writes_poses_and_an_mp4(tmp_path, clip, capsys):
  workdir = imported_workdir(tmp_path / "run", tiny_config())
  kps = keypoint_file(tmp_path / "data_2d_custom_clip.npz", "astronaut.mp4")
  out = tmp_path / "out"
  run_main(["--workdir", workdir, "--video", clip, "--keypoints", kps, "--out", str(out), "--viz_size", "1"])
  assert sorted(os.listdir(out)) == ["astronaut_3d.mp4", "astronaut_3d.npy", "astronaut_3d.npz"]
  with np.load(out / "astronaut_3d.npz") as f:
    pred = f["positions_3d"]
    assert pred.shape == (FRAMES, 17, 3) and np.all(np.isfinite(pred)) and "trajectory" not in f.files
  np.testing.assert_array_equal(np.load(out / "astronaut_3d.npy"), pred)  # the reference's export
  # The poses are the model's on the file's keypoints, normalized by the file's resolution.
  run = eval_lib.restore_run(workdir)
  videos, left, right = infer.read_custom_keypoints(kps)
  np.testing.assert_allclose(pred, infer.lift_videos(run, videos, left, right)[0][0], atol=1e-6)
  assert video_io.count_frames(str(out / "astronaut_3d.mp4")) == FRAMES
  assert f"({FRAMES} frames)" in capsys.readouterr().out


def test_video_in_poses_and_mp4_out(tmp_path, clip, detector, capsys):
  """Detection in the clip of a real photograph, lifting, the MP4: `infer --video` alone."""
  workdir = imported_workdir(tmp_path / "run", tiny_config())
  run_main(["--workdir", workdir, "--video", clip, "--viz_size", "1", "--detector_python", detector])
  out = os.path.join(workdir, "infer")  # the default --out
  assert sorted(os.listdir(out)) == ["astronaut_3d.mp4", "astronaut_3d.npy", "astronaut_3d.npz",
                                     "data_2d_custom_astronaut.npz"]
  with np.load(os.path.join(out, "data_2d_custom_astronaut.npz"), allow_pickle=True) as f:
    assert f["detected"].item()["astronaut.mp4"].mean() >= 0.8
  pred = np.load(os.path.join(out, "astronaut_3d.npy"))
  assert pred.shape == (FRAMES, 17, 3) and np.all(np.isfinite(pred))
  assert video_io.count_frames(os.path.join(out, "astronaut_3d.mp4")) == FRAMES
  assert "astronaut.mp4: 12 frames 160x120 at 10 fps, person in" in capsys.readouterr().out


def test_trajectory_model_is_added(tmp_path, clip):
  config = tiny_config(tta=False)
  traj_model = TemporalModel(num_joints_in=17, num_joints_out=1, filter_widths=(3, 3), channels=8)
  traj_vars = init_variables(traj_model, 11)
  workdir = imported_workdir(tmp_path / "run", config, trajectory=(traj_model, traj_vars))
  kps = keypoint_file(tmp_path / "k.npz", "other.mp4", seed=4)  # the file's only video serves any clip
  paths = infer.infer_video(eval_lib.restore_run(workdir), clip, str(tmp_path / "out"), keypoints_path=kps,
                            viz_format="gif", size=1.0, limit=3)
  with np.load(paths["npz"]) as f:
    pred, root = f["positions_3d"], f["trajectory"]
  # Independent reference: the receptive field (9 frames) padded with edge copies, one apply.
  videos, _, _ = infer.read_custom_keypoints(kps)
  x = videos[0].keypoints / WIDTH * 2 - [1, HEIGHT / WIDTH]
  padded = np.concatenate([np.repeat(x[:1], 4, 0), x, np.repeat(x[-1:], 4, 0)])[None].astype(np.float32)
  expected = np.asarray(traj_model.apply(traj_vars, padded, train=False))[0]
  np.testing.assert_allclose(root, expected, atol=1e-5)
  np.testing.assert_allclose(np.load(paths["npy"]), pred + root, atol=1e-6)
  assert paths["animation"].endswith(".gif")


def test_h36m_models_get_h36m_keypoints(tmp_path):
  kps = keypoint_file(tmp_path / "k.npz", "v.mp4")
  videos, left, right = infer.read_custom_keypoints(kps)
  inputs, l_h36m, r_h36m = infer.model_inputs(pieces(tiny_config(keypoints="cpn_ft_h36m_dbb")).data, videos, left, right)
  h36m, _ = detect.coco_to_h36m(videos[0].keypoints)
  np.testing.assert_allclose(inputs[0], h36m / WIDTH * 2 - [1, HEIGHT / WIDTH], atol=1e-6)
  assert (l_h36m, r_h36m) == (infer.H36M.left, infer.H36M.right)
  assert infer.model_layout(pieces(tiny_config(keypoints="gt")).data) == "h36m"
  with pytest.raises(PosejaxError, match="mpii keypoints"):
    infer.model_inputs(pieces(tiny_config(keypoints="sh_pt_mpii")).data, videos, left, right)


@pytest.mark.parametrize("case, message", [
    ("nothing", "pass --video"), ("video", "video file not found"), ("detector", "setup_detector.sh"),
    ("format", "--viz_format 'avi'"), ("keypoints", "no keypoints for video 'astronaut.mp4'")])
def test_bad_video_arguments_print_one_line(tmp_path, clip, capsys, monkeypatch, case, message):
  workdir = str(tmp_path / "no_run")  # never restored: the arguments fail first
  argv = {"nothing": [], "video": ["--video", str(tmp_path / "missing.mp4")],
          "detector": ["--video", clip, "--detector_python", str(tmp_path / "nopython")],
          "format": ["--video", clip, "--viz_format", "avi"]}.get(case)
  if case == "keypoints":
    path = tmp_path / "two.npz"
    detect.write_custom(str(path), [detect.Detection(n, np.zeros((3, 17, 2), np.float32), np.zeros((3, 17)),
                                                     np.ones(3, bool), 10, 10, 0.0) for n in ("a.mp4", "b.mp4")])
    argv = ["--video", clip, "--keypoints", str(path)]
  with pytest.raises(SystemExit) as info:
    run_main(["--workdir", workdir, *argv])
  err = capsys.readouterr().err
  assert info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_mp4_writer_uses_the_packaged_ffmpeg(tmp_path):
  assert render.mp4_available() and video_io.ffmpeg_exe() is not None
  assert render.check_output(str(tmp_path / "a.mp4")) == "mp4"


def _torch_tta(model, x, kps_swap, joints_swap):
  """The reference's evaluate(): average of the prediction and the un-mirrored prediction of the mirror."""
  import torch
  mirrored = x.copy()
  mirrored[..., 0] *= -1
  mirrored = mirrored[:, :, kps_swap]
  with torch.no_grad():
    out, back = (model(torch.from_numpy(np.ascontiguousarray(v))).numpy() for v in (x, mirrored))
  back[..., 0] *= -1
  return ((out + back[:, :, joints_swap]) / 2)[0]


def test_imported_videopose3d_checkpoint_lifts_a_video(tmp_path, clip):
  """The README's chain: a VideoPose3D .bin (pose + trajectory) imported, then infer --video."""
  pytest.importorskip("torch")
  from posejax.tools import interop
  from posejax.pose.skeleton import H36M_SKELETON, LAYOUTS, flip_permutation
  from test_interop import TorchTemporalModel, _save
  pos, traj = (TorchTemporalModel(17, 2, j, [3, 3], channels=16).eval() for j in (17, 1))
  path = _save(tmp_path / "pretrained.bin", pos, traj)
  workdir = str(tmp_path / "imported")
  assert interop.main(["--from-videopose3d", path, "--workdir", workdir, "--keypoints", "detectron_pt_coco"]) == 0
  kps = keypoint_file(tmp_path / "data_2d_custom_clip.npz", "astronaut.mp4", seed=2)
  out = tmp_path / "out"
  run_main(["--workdir", workdir, "--video", clip, "--keypoints", kps, "--out", str(out), "--viz_size", "1",
            "--viz_limit", "4"])
  coco = LAYOUTS["coco"]
  x = infer.read_custom_keypoints(kps)[0][0].keypoints / WIDTH * 2 - [1, HEIGHT / WIDTH]
  x = np.concatenate([np.repeat(x[:1], 4, 0), x, np.repeat(x[-1:], 4, 0)])[None].astype(np.float32)
  kps_swap = flip_permutation(17, coco.left, coco.right)
  expected = (_torch_tta(pos, x, kps_swap, flip_permutation(17, H36M_SKELETON.joints_left,
                                                            H36M_SKELETON.joints_right))
              + _torch_tta(traj, x, kps_swap, [0]))
  np.testing.assert_allclose(np.load(out / "astronaut_3d.npy"), expected, atol=1e-4)
  assert video_io.count_frames(str(out / "astronaut_3d.mp4")) == 4
