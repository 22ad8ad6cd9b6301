"""Tests for posejax.tools.render and the render/export helpers of posejax.tools.render_export."""

import numpy as np
import pytest
from PIL import Image

from posejax.common.errors import PosejaxError
from posejax.data.dataset import PoseDataset, SequenceRecord
from posejax.data.h36m_cameras import h36m_cameras
from posejax.evaluation import runs as eval_lib
from posejax.pose.camera import camera_to_world
from posejax.pose.skeleton import H36M_SKELETON, LAYOUTS
from posejax.tools import render, render_export


def poses(frames: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return (rng.normal(scale=0.2, size=(frames, 17, 3)) + [0, 0, 1]).astype(np.float32)


def test_gif_has_the_requested_frames(tmp_path):
  keypoints = np.random.default_rng(1).uniform(0, 100, size=(9, 17, 2)).astype(np.float32)
  out = str(tmp_path / "anim.gif")
  n = render.render_animation(keypoints, {"Reconstruction": poses(9), "Ground truth": poses(9, 1)},
                              H36M_SKELETON, output=out, fps=50, azimuth=70, viewport=(120, 100),
                              keypoints_right=LAYOUTS["h36m"].right, layout_name=None, limit=3,
                              downsample=2, size=1.5)
  assert n == 3  # frames averaged in pairs, then the first 3 of those (the reference's --viz-limit)
  with Image.open(out) as im:
    assert im.format == "GIF" and im.n_frames == 3
    assert im.size == (int(1.5 * 3 * 80), int(1.5 * 80))  # 80 dpi, 1 + 2 panels
  assert [p.name for p in tmp_path.iterdir()] == ["anim.gif"]  # no temporary file left


def test_downsample_averages_and_drops_remainder():
  x = np.arange(7, dtype=np.float32)[:, None]
  np.testing.assert_array_equal(render.downsample_frames(x, 3), [[1.0], [4.0]])
  assert render.downsample_frames(x, 1) is x


def test_bad_outputs_are_user_errors(tmp_path):
  with pytest.raises(PosejaxError, match="unsupported animation format"):
    render.check_output(str(tmp_path / "a.avi"))
  if not render.mp4_available():
    with pytest.raises(PosejaxError, match="use .gif|write a .gif"):
      render.check_output(str(tmp_path / "a.mp4"))
  with pytest.raises(PosejaxError, match="video file not found"):
    render.read_video(str(tmp_path / "missing.mp4"), 10, 10)


def test_world_coordinates_follow_the_reference():
  cam = h36m_cameras()["S9"][1]
  gt = poses(5, 3)  # joint 0 = trajectory, joints 1.. root-relative
  rel = gt.copy()
  rel[:, 0] = 0
  world_pred, world_gt = render.to_world(rel, gt, cam.orientation, cam.translation)
  absolute = gt.copy()
  absolute[:, 1:] += gt[:, :1]
  np.testing.assert_allclose(world_gt, camera_to_world(absolute, cam.orientation, cam.translation), atol=1e-6)
  np.testing.assert_allclose(world_pred, world_gt, atol=1e-5)  # a perfect prediction lands on the truth
  alone, none = render.to_world(rel, None, render.DUMMY_ORIENTATION, None)
  assert none is None and alone[..., 2].min() == pytest.approx(0.0, abs=1e-7)


def _dataset() -> PoseDataset:
  recs = tuple(SequenceRecord(subject=s, name=n, action=n.split(" ")[0], camera=c,
                              poses_2d=np.zeros((4, 17, 2), np.float32), poses_3d=poses(4), intrinsic=None,
                              res_w=1000, res_h=1000)
               for s in ("S9", "S11") for n in ("Walking 1", "Eating") for c in (0, 1))
  return PoseDataset(recs, LAYOUTS["h36m"].left, LAYOUTS["h36m"].right, H36M_SKELETON, 17, 50.0, None, "gt")


def test_find_record_lists_valid_choices():
  data = _dataset()
  assert render_export.find_record(data, "S11", "Eating", 1) is data.sequences[7]
  with pytest.raises(PosejaxError, match=r"--viz_subject 'S1'.*S9, S11"):
    render_export.find_record(data, "S1", "Eating", 0)
  with pytest.raises(PosejaxError, match=r"--viz_action 'Walking'.*Walking 1, Eating"):
    render_export.find_record(data, "S9", "Walking", 0)
  with pytest.raises(PosejaxError, match=r"--viz_camera 3.*0, 1"):
    render_export.find_record(data, "S9", "Eating", 3)


def test_export_writes_camera_and_world_coordinates(tmp_path):
  data = _dataset()
  entries = []
  for rec in data.sequences[:3]:
    pred = poses(4, 9)
    world, _, azimuth = render_export.world_poses(rec, pred)
    assert azimuth == h36m_cameras()[rec.subject][rec.camera].azimuth
    entries.append((rec, pred, world))
  path = str(tmp_path / "pred.npz")
  render_export.export_predictions(path, entries)
  with np.load(path, allow_pickle=True) as f:
    cam, world = f["positions_3d"].item(), f["positions_3d_world"].item()
  assert len(cam["S9"]["Walking 1"]) == 2 and len(cam["S9"]["Eating"]) == 1
  np.testing.assert_array_equal(world["S9"]["Walking 1"][1], entries[1][2])
  with pytest.raises(PosejaxError, match=".npz"):
    render_export.export_predictions(str(tmp_path / "pred.npy"), entries)


@pytest.mark.parametrize("size", [1.5, 3.0, 5.0, 8.0])
def test_panel_titles_lie_inside_the_figure(size):
  """tight_layout used to push the titles of 3D panels above the top edge (clipped GIFs)."""
  keypoints = np.random.default_rng(2).uniform(0, 100, size=(1, 17, 2)).astype(np.float32)
  fig, _ = render.build_figure(keypoints, {"Reconstruction": poses(1), "Ground truth": poses(1, 1)},
                               H36M_SKELETON, azimuth=70, viewport=(120, 100), size=size)
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  for ax in fig.axes:
    box = ax.title.get_window_extent(renderer)
    assert ax.get_title() and box.y1 <= fig.bbox.y1 and box.y0 >= 0, (ax.get_title(), box, fig.bbox)
  render.plt.close(fig)


def test_input_panel_draws_the_bones_of_the_layout():
  coco = render.bones_2d(17, H36M_SKELETON, "coco")
  assert len(coco) == 19 and {j for bone in coco for j in bone} == set(range(17))
  # Left shoulder-elbow-wrist (5-7-9), left hip-knee-ankle (11-13-15), the two shoulders.
  assert {(5, 7), (7, 9), (11, 13) if (11, 13) in coco else (13, 11), (15, 13), (5, 6)} <= set(coco)
  h36m = render.bones_2d(17, H36M_SKELETON, "h36m")
  assert h36m == [(j, p) for j, p in enumerate(H36M_SKELETON.parents) if p >= 0] and len(h36m) == 16
  assert render.bones_2d(16, H36M_SKELETON, "mpii") == [] and render.bones_2d(15, H36M_SKELETON, "coco") == []

  keypoints = np.random.default_rng(3).uniform(0, 100, size=(2, 17, 2)).astype(np.float32)
  fig, update = render.build_figure(keypoints, {"Reconstruction": poses(2)}, H36M_SKELETON, azimuth=70,
                                    viewport=(120, 100), layout_name="coco", size=1.5)
  update(1)
  lines = fig.axes[0].get_lines()
  assert len(lines) == 19
  for line, (j, p) in zip(lines, coco):  # each line joins its two keypoints of the shown frame
    np.testing.assert_array_equal(np.stack(line.get_data(), axis=1), keypoints[1, [j, p]])
  render.plt.close(fig)
