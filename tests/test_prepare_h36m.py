"""Tests for posejax.data.prepare_h36m on a tiny tree of CDF files written with cdflib."""

import os
import subprocess
import sys

import numpy as np
import pytest
from cdflib.cdfwrite import CDF

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import load_npz_dict
from posejax.data import prepare_h36m
from posejax.data.h36m import load_h36m
from posejax.data.h36m_cameras import h36m_cameras
from posejax.pose import camera
from posejax.pose.skeleton import H36M_KEPT_JOINTS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW_FILES = {"S1": ("Walking", "TakingPhoto 1", "WalkingDog"),
             "S11": ("Directions", "Directions 1", "Sitting")}


def _write_pose_cdf(path, pose_mm):
  """A CDF file like Human3.6M's D3_Positions: zVariable 'Pose', one record of (T, 96) floats."""
  frames = pose_mm.shape[1]
  with CDF(path) as cdf:
    cdf.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": [frames, 96]}, var_data=pose_mm)


@pytest.fixture
def cdf_root(tmp_path):
  """(root, raw): a CDF tree for S1 and S11; raw[(subject, stem)] is the (1, T, 96) mm data."""
  rng = np.random.default_rng(0)
  raw = {}
  for subject, stems in RAW_FILES.items():
    folder = tmp_path / "h36m" / subject / "MyPoseFeatures" / "D3_Positions"
    folder.mkdir(parents=True)
    for stem in stems:
      frames = int(rng.integers(5, 9))
      world = rng.uniform(-300, 300, (1, frames, 32, 3)) + [0, 0, 1000]
      raw[subject, stem] = world.reshape(1, frames, 96).astype(np.float32)
      _write_pose_cdf(str(folder / f"{stem}.cdf"), raw[subject, stem])
  return str(tmp_path / "h36m"), raw


def _outputs(out):
  return os.path.join(out, "data_3d_h36m.npz"), os.path.join(out, "data_2d_h36m_gt.npz")


def test_conversion(cdf_root, tmp_path, capsys):
  root, raw = cdf_root
  out = str(tmp_path / "out")
  assert prepare_h36m.main(["--from-cdf", root, "--out", out, "--allow-partial"]) == 0
  assert "2 subjects, 5 sequences" in capsys.readouterr().out
  path_3d, path_2d = _outputs(out)
  positions = load_npz_dict(path_3d, ("positions_3d",))["positions_3d"]
  assert list(positions) == ["S1", "S11"]
  assert list(positions["S1"]) == ["Photo 1", "Walking", "WalkDog"]  # sorted raw stems, renamed
  assert list(positions["S11"]) == ["Directions 1", "Sitting"]  # S11 'Directions' dropped
  for (subject, stem), mm in raw.items():
    if (subject, stem) == ("S11", "Directions"):
      continue
    name = {"TakingPhoto 1": "Photo 1", "WalkingDog": "WalkDog"}.get(stem, stem)
    got = positions[subject][name]
    assert got.dtype == np.float32 and got.shape == (mm.shape[1], 32, 3)
    np.testing.assert_array_equal(got, (mm.reshape(-1, 32, 3) / 1000).astype(np.float32))

  gt = load_npz_dict(path_2d, ("positions_2d", "metadata"))
  assert gt["metadata"] == {"num_joints": 17,
                            "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
  assert {s: list(v) for s, v in gt["positions_2d"].items()} == {s: list(v) for s, v in positions.items()}
  for subject, sequences in positions.items():
    for name, world in sequences.items():
      views = gt["positions_2d"][subject][name]
      assert len(views) == 4
      for cam, pixels in zip(h36m_cameras()[subject], views):
        cam_space = camera.world_to_camera(world[:, list(H36M_KEPT_JOINTS)], cam.orientation,
                                           cam.translation)
        expected = camera.image_coordinates(
            camera.project_to_2d(cam_space[None], cam.intrinsic[None])[0], cam.res_w, cam.res_h)
        assert pixels.dtype == np.float32 and pixels.shape == (world.shape[0], 17, 2)
        np.testing.assert_allclose(pixels, expected, rtol=0, atol=1e-4)

  # The loader reads the result; its 2D is the projection of its camera-space 3D.
  ds = load_h36m(out, "gt")
  assert ds.subjects == ("S1", "S11") and len(ds.sequences) == 20
  assert ds.actions == ("Photo", "Walking", "WalkDog", "Directions", "Sitting")
  rec = ds.sequences[5]
  absolute = rec.poses_3d.copy()
  absolute[:, 1:] += absolute[:, :1]
  np.testing.assert_allclose(camera.project_to_2d(absolute[None], rec.intrinsic[None])[0],
                             rec.poses_2d, atol=2e-5)


def test_refuses_to_overwrite(cdf_root, tmp_path, capsys):
  root, _ = cdf_root
  out = str(tmp_path / "out")
  args = ["--from-cdf", root, "--out", out, "--allow-partial"]
  assert prepare_h36m.main(args) == 0
  before = [open(p, "rb").read() for p in _outputs(out)]
  capsys.readouterr()
  assert prepare_h36m.main(args) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "data_3d_h36m.npz: already exists" in err and "--overwrite" in err
  assert [open(p, "rb").read() for p in _outputs(out)] == before
  assert prepare_h36m.main(args + ["--overwrite"]) == 0
  assert sorted(os.listdir(out)) == ["data_2d_h36m_gt.npz", "data_3d_h36m.npz"]


def test_requires_30_files_without_allow_partial(cdf_root, tmp_path, capsys):
  root, _ = cdf_root
  out = str(tmp_path / "out")
  assert prepare_h36m.main(["--from-cdf", root, "--out", out]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ")
  assert "subject S1 has 3 .cdf files, expected 30" in err and "--allow-partial" in err
  assert not os.path.exists(out)
  assert prepare_h36m.main(["--from-cdf", str(tmp_path / "none"), "--out", out]) == 2
  assert "none: directory not found" in capsys.readouterr().err


def test_bad_cdf_leaves_nothing(cdf_root, tmp_path, capsys):
  root, _ = cdf_root
  bad = os.path.join(root, "S11", "MyPoseFeatures", "D3_Positions", "Waiting.cdf")
  with open(bad, "wb") as f:
    f.write(b"not a cdf")
  out = tmp_path / "out"
  assert prepare_h36m.main(["--from-cdf", root, "--out", str(out), "--allow-partial"]) == 2
  assert f"error: {bad}: cannot read CDF variable 'Pose'" in capsys.readouterr().err
  assert not out.exists() or not os.listdir(out)
  os.remove(bad)
  _write_pose_cdf(os.path.join(os.path.dirname(bad), "Dancing.cdf"), np.zeros((1, 4, 96), np.float32))
  assert prepare_h36m.main(["--from-cdf", root, "--out", str(out), "--allow-partial"]) == 2
  assert "Dancing.cdf: sequence 'Dancing': unknown action" in capsys.readouterr().err


def test_failed_write_leaves_old_files_and_no_partial_ones(tmp_path, monkeypatch):
  positions = {"S9": {"Walking": np.zeros((3, 32, 3), np.float32) + [0, 0, 1]}}
  out = str(tmp_path / "out")
  prepare_h36m.write_h36m_files(positions, out)
  before = [open(p, "rb").read() for p in _outputs(out)]
  calls = []

  def failing_savez(path, **arrays):
    calls.append(path)
    if len(calls) == 2:
      raise OSError("disk full")
    with open(path, "wb") as f:  # a file object: savez must not append '.npz'
      np.savez_compressed(f, **arrays)

  monkeypatch.setattr(prepare_h36m, "atomic_savez", failing_savez)
  with pytest.raises(PosejaxError, match="disk full"):
    prepare_h36m.write_h36m_files({"S9": {"Sitting": positions["S9"]["Walking"]}}, out, overwrite=True)
  assert len(calls) == 2
  assert sorted(os.listdir(out)) == ["data_2d_h36m_gt.npz", "data_3d_h36m.npz"]  # nothing staged left
  assert [open(p, "rb").read() for p in _outputs(out)] == before


def test_build_gt_2d_checks_input():
  with pytest.raises(PosejaxError, match="'S2'.*no camera extrinsics"):
    prepare_h36m.build_gt_2d({"S2": {"Walking": np.zeros((2, 32, 3), np.float32)}})
  with pytest.raises(PosejaxError, match=r"\(T, 32, 3\) or \(T, 17, 3\)"):
    prepare_h36m.build_gt_2d({"S1": {"Walking": np.zeros((2, 30, 3), np.float32)}})
  reduced = np.random.default_rng(1).uniform(-1, 1, (4, 32, 3)).astype(np.float32)
  full = prepare_h36m.build_gt_2d({"S1": {"Walking": reduced}})
  kept = prepare_h36m.build_gt_2d({"S1": {"Walking": reduced[:, list(H36M_KEPT_JOINTS)]}})
  for a, b in zip(full["S1"]["Walking"], kept["S1"]["Walking"]):
    np.testing.assert_array_equal(a, b)


def test_command_line(cdf_root, tmp_path):
  root, _ = cdf_root
  out = str(tmp_path / "out")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
  command = [sys.executable, "-m", "posejax.data.prepare_h36m", "--from-cdf", root, "--out", out,
             "--allow-partial"]
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert os.path.isfile(_outputs(out)[1])
  again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
  assert again.returncode == 2
  assert again.stderr.startswith("error: ") and "Traceback" not in again.stderr
