"""Tests for posejax.data.synthetic: published file structure, geometry, determinism, actions."""

import hashlib
import os

import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data import synthetic
from posejax.data.h36m_cameras import H36M_EXTRINSICS, H36M_INTRINSICS
from posejax.pose.skeleton import H36M_KEPT_JOINTS, H36M_SKELETON_32

FRAMES = 60
SUBJECTS = ("S1", "S11")
# Sequence names from reference H3, written out independently of the generator's table.
S1_NAMES = {
    "Directions", "Directions 1", "Discussion", "Discussion 1", "Eating", "Eating 2", "Greeting", "Greeting 1",
    "Phoning", "Phoning 1", "Photo", "Photo 1", "Posing", "Posing 1", "Purchases", "Purchases 1",
    "Sitting 1", "Sitting 2", "SittingDown", "SittingDown 2", "Smoking", "Smoking 1", "Waiting", "Waiting 1",
    "WalkDog", "WalkDog 1", "Walking", "Walking 1", "WalkTogether", "WalkTogether 1"}
S11_NAMES = {
    "Directions 1", "Discussion 1", "Discussion 2", "Eating", "Eating 1", "Greeting", "Greeting 2",
    "Phoning 2", "Phoning 3", "Photo", "Photo 1", "Posing", "Posing 1", "Purchases", "Purchases 1",
    "Sitting", "Sitting 1", "SittingDown", "SittingDown 1", "Smoking", "Smoking 2", "Waiting", "Waiting 1",
    "WalkDog", "WalkDog 1", "Walking", "Walking 1", "WalkTogether", "WalkTogether 1"}
H36M_SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]


def _load(path):
  with np.load(path, allow_pickle=True) as f:
    return {k: f[k].item() for k in f.files}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  paths = synthetic.generate(out, frames=FRAMES, seed=0, subjects=SUBJECTS)
  return paths, {kind: _load(path) for kind, path in paths.items()}


@pytest.fixture(scope="module")
def positions(files):
  return files[1]["positions_3d"]["positions_3d"]


def test_files_and_structure(files):
  paths, data = files
  assert sorted(os.path.basename(p) for p in paths.values()) == sorted(
      ["data_3d_h36m.npz", "data_2d_h36m_gt.npz", "data_2d_h36m_synthetic.npz", "data_2d_custom_synthetic.npz"])
  pos = data["positions_3d"]["positions_3d"]
  assert list(pos) == list(SUBJECTS)
  assert set(pos["S1"]) == S1_NAMES and len(pos["S1"]) == 30
  assert set(pos["S11"]) == S11_NAMES and len(pos["S11"]) == 29 and "Directions" not in pos["S11"]
  for subject in SUBJECTS:
    for name, x in pos[subject].items():
      assert x.dtype == np.float32 and x.ndim == 3 and x.shape[1:] == (32, 3)
      assert 0.85 * FRAMES - 1 <= len(x) <= 1.15 * FRAMES + 1
      assert np.isfinite(x).all()
  assert len({len(x) for x in pos["S1"].values()}) > 5  # lengths vary per sequence

  gt, det = data["gt"], data["synthetic"]
  assert gt["metadata"] == {"num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY}
  assert det["metadata"] == {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": H36M_SYMMETRY}
  for source in (gt, det):
    assert list(source["positions_2d"]) == list(SUBJECTS)
    for subject in SUBJECTS:
      assert list(source["positions_2d"][subject]) == list(pos[subject])
      for name, cams in source["positions_2d"][subject].items():
        assert isinstance(cams, list) and len(cams) == 4
        for kp in cams:
          assert kp.dtype == np.float32 and kp.shape[1:] == (17, 2) and np.isfinite(kp).all()
  for subject in SUBJECTS:
    for name, x in pos[subject].items():
      assert all(len(kp) == len(x) for kp in gt["positions_2d"][subject][name])
      # Like real videos: a few frames longer than the mocap, per camera.
      assert all(len(x) < len(kp) <= len(x) + 8 for kp in det["positions_2d"][subject][name])


def test_bone_lengths_constant_and_subject_specific(positions):
  parents = np.asarray(H36M_SKELETON_32.parents)
  per_subject = {}
  for subject, seqs in positions.items():
    lengths = []
    for x in seqs.values():
      bones = np.linalg.norm(x[:, 1:].astype(np.float64) - x[:, parents[1:]], axis=-1)  # (T, 31)
      assert bones.std(axis=0).max() < 1e-4
      lengths.append(bones.mean(axis=0))
    assert np.ptp(lengths, axis=0).max() < 1e-4  # same body in every sequence
    per_subject[subject] = lengths[0]
  assert np.abs(per_subject["S1"] - per_subject["S11"]).max() > 0.005
  # A human-sized body: thigh and shin about 0.4-0.5 m, head top 1.5-1.95 m when standing.
  thigh = per_subject["S1"][1]  # bone 2 -> 1 (knee to hip)
  assert 0.38 < thigh < 0.5
  standing = positions["S1"]["Waiting"]
  assert 1.5 < np.median(standing[:, 15, 2]) < 1.95


def test_feet_on_floor_and_smooth(positions):
  for seqs in positions.values():
    for x in seqs.values():
      assert x[:, [3, 4, 5, 8, 9, 10], 2].min() >= -1e-6
      # The lowest foot point is on the floor, not floating (within the soft contact's few mm).
      assert np.median(x[:, [3, 4, 5, 8, 9, 10], 2].min(axis=1)) < 0.03
      speed = np.linalg.norm(np.diff(x, axis=0), axis=-1) * 50
      assert speed.max() < 8.0  # m/s: no teleporting joints at 50 fps
      acceleration = np.linalg.norm(np.diff(x, 2, axis=0), axis=-1) * 2500
      assert np.percentile(acceleration, 99) < 150.0


def _mean(positions, action, fn):
  values = [fn(x) for seqs in positions.values() for name, x in seqs.items() if name.split(" ")[0] == action]
  assert len(values) == 4
  return float(np.mean(values))


def test_actions_differ_like_the_real_ones(positions):
  wrist = lambda x: x[:, [19, 27], 2].mean()
  hip = lambda x: x[:, 0, 2].mean()
  speed = lambda x: np.linalg.norm(np.diff(x[:, 0, :2], axis=0), axis=-1).mean() * 50
  assert _mean(positions, "Photo", wrist) > _mean(positions, "Walking", wrist) + 0.15
  assert _mean(positions, "Walking", speed) > 0.7
  assert _mean(positions, "Walking", speed) > 5 * _mean(positions, "Sitting", speed)
  assert _mean(positions, "Sitting", hip) < _mean(positions, "Walking", hip) - 0.25
  assert _mean(positions, "Eating", hip) < _mean(positions, "Smoking", hip) - 0.25


def _reference_pixels(points, subject, cam):
  """Independent float64 projection from the raw (pixel, mm) camera tables."""
  _, w, h, _, focal, centre, radial, tangential = H36M_INTRINSICS[cam]
  (qw, qx, qy, qz), t = H36M_EXTRINSICS[subject][cam]
  rot = np.array([  # camera-to-world rotation of the unit quaternion
      [1 - 2 * (qy**2 + qz**2), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
      [2 * (qx * qy + qz * qw), 1 - 2 * (qx**2 + qz**2), 2 * (qy * qz - qx * qw)],
      [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx**2 + qy**2)]])
  cam_pts = (points.astype(np.float64) - np.asarray(t) / 1000) @ rot  # = R^T (X - t)
  xy = np.clip(cam_pts[..., :2] / cam_pts[..., 2:], -1, 1)
  r2 = (xy**2).sum(-1, keepdims=True)
  k1, k2, k3 = radial
  p = np.asarray(tangential)
  radial_term = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
  distorted = xy * (radial_term + (p * xy).sum(-1, keepdims=True)) + p * r2
  return distorted * np.asarray(focal) + np.asarray(centre), (w, h)


def test_gt_is_the_projection_and_inside_the_images(files):
  data = files[1]
  for subject in SUBJECTS:
    for name, x in list(data["positions_3d"]["positions_3d"][subject].items())[::7]:
      for cam in range(4):
        expected, (w, h) = _reference_pixels(x[:, list(H36M_KEPT_JOINTS)], subject, cam)
        got = data["gt"]["positions_2d"][subject][name][cam]
        np.testing.assert_allclose(got, expected, atol=5e-3)
        assert (got >= 0).all() and (got[..., 0] <= w).all() and (got[..., 1] <= h).all()


def test_detector_errors_look_like_a_detector(files):
  data = files[1]
  errors = []
  for subject in SUBJECTS:
    for name, cams in data["gt"]["positions_2d"][subject].items():
      for c, gt in enumerate(cams):
        det = data["synthetic"]["positions_2d"][subject][name][c]
        errors.append(np.linalg.norm(det[:len(gt)] - gt, axis=-1))
  errors = np.concatenate(errors)  # (frames, 17) pixels
  per_joint = errors.mean(axis=0)
  assert 1.5 < per_joint.mean() < 12.0
  torso = per_joint[[0, 7, 8]].mean()
  assert per_joint[[13, 16]].mean() > 1.3 * torso  # wrists
  assert per_joint[[3, 6]].mean() > 1.2 * torso  # ankles
  assert errors.max() > 20.0  # some outliers
  assert np.mean(errors > 20.0) < 0.02
  # Jitter is correlated in time, not white: consecutive errors are similar.
  det = data["synthetic"]["positions_2d"]["S1"]["Waiting"][0]
  e = det[:FRAMES // 2] - data["gt"]["positions_2d"]["S1"]["Waiting"][0][:FRAMES // 2]
  e = e - e.mean(axis=0)
  corr = (e[1:] * e[:-1]).sum() / (e * e).sum()
  assert corr > 0.5


def test_custom_file(files):
  custom = files[1]["custom"]
  meta = custom["metadata"]
  videos = custom["positions_2d"]
  assert set(videos) == {"walk_demo.mp4", "wave_demo.mp4"}
  assert meta == {"layout_name": "coco", "num_joints": 17,
                  "keypoints_symmetry": [[1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]],
                  "video_metadata": {v: {"w": 1000, "h": 1002} for v in videos}}
  for video in videos.values():
    assert list(video) == ["custom"] and len(video["custom"]) == 1
    kp = video["custom"][0]
    assert kp.dtype == np.float32 and kp.ndim == 3 and kp.shape[1:] == (17, 2) and len(kp) >= 16
    assert np.isfinite(kp).all() and (kp > -20).all() and (kp[..., 0] < 1020).all() and (kp[..., 1] < 1022).all()
    med = np.median(kp, axis=0)
    # Image y grows downwards: nose above shoulders above hips above knees above ankles.
    assert med[0, 1] < med[5:7, 1].min() < med[11:13, 1].min() < med[13:15, 1].min() < med[15:17, 1].min()
    assert np.abs(med[1:5] - med[0]).max() < 40  # eyes and ears around the nose


def test_deterministic(positions):
  again = synthetic.generate_positions_3d(FRAMES, 0, ("S11",))
  assert list(again["S11"]) == list(positions["S11"])
  for name, x in positions["S11"].items():
    np.testing.assert_array_equal(again["S11"][name], x)  # same seed, same arrays as the file
  other = synthetic.generate_positions_3d(FRAMES, 1, ("S11",))
  assert any(other["S11"][n].shape != x.shape or not np.array_equal(other["S11"][n], x)
             for n, x in positions["S11"].items())


def test_refuses_to_overwrite_and_checks_arguments(files, tmp_path, capsys):
  paths, _ = files
  out = os.path.dirname(paths["gt"])
  with pytest.raises(PosejaxError, match="--overwrite"):
    synthetic.generate(out, frames=FRAMES, subjects=SUBJECTS)
  assert synthetic.main(["--out", out, "--frames", "20"]) == 2
  assert capsys.readouterr().err.startswith("error: ")
  with pytest.raises(PosejaxError, match="--frames"):
    synthetic.generate(str(tmp_path), frames=3)
  with pytest.raises(PosejaxError, match="S2"):
    synthetic.generate(str(tmp_path), subjects=("S1", "S2"))
  assert not os.listdir(tmp_path)  # nothing written on error


def test_main_writes_and_overwrites(tmp_path, capsys):
  out = str(tmp_path / "data")
  assert synthetic.main(["--out", out, "--frames", "16", "--seed", "3"]) == 0
  first = _load(os.path.join(out, "data_3d_h36m.npz"))["positions_3d"]
  summary = capsys.readouterr().out
  assert "7 subjects" in summary and "training" in summary and "test" in summary
  assert synthetic.main(["--out", out, "--frames", "16", "--seed", "4", "--overwrite"]) == 0
  second = _load(os.path.join(out, "data_3d_h36m.npz"))["positions_3d"]
  assert set(first) == set(second) == {"S1", "S5", "S6", "S7", "S8", "S9", "S11"}
  assert not np.array_equal(first["S9"]["Walking"][:16], second["S9"]["Walking"][:16])
  # No temporary files left; the marker records the second generation.
  assert sorted(os.listdir(out)) == sorted([*synthetic.FILE_NAMES.values(), synthetic.MARKER])
  marker = synthetic.read_marker(out)
  assert (marker["frames"], marker["seed"], marker["complete"]) == (16, 4, True)
  assert marker["files"]["data_3d_h36m.npz"] == hashlib.sha256(
      open(os.path.join(out, "data_3d_h36m.npz"), "rb").read()).hexdigest()


def _snapshot(directory):
  """name -> (bytes, mtime_ns) of every entry: proves nothing was written or replaced."""
  out = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
      out[name] = (f.read(), os.stat(path).st_mtime_ns)
  return out


def test_never_writes_into_a_directory_with_other_files(tmp_path):
  out = tmp_path / "data"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  (out / "data_2d_h36m_cpn_ft_h36m_dbb.npz").write_bytes(b"user data")
  before = _snapshot(out)
  for overwrite in (False, True):
    with pytest.raises(PosejaxError, match="did not write .*notes.txt"):
      synthetic.generate(str(out), frames=16, subjects=("S1",), overwrite=overwrite)
  assert _snapshot(out) == before


def test_replaces_only_its_own_unchanged_files(tmp_path):
  out = str(tmp_path / "data")
  synthetic.generate(out, frames=16, seed=1, subjects=("S1",))
  # A file the user put into the marked directory is kept when the generator reruns.
  with open(os.path.join(out, "data_2d_h36m_mine.npz"), "wb") as f:
    f.write(b"user data")
  synthetic.generate(out, frames=16, seed=2, subjects=("S1",), overwrite=True)
  assert open(os.path.join(out, "data_2d_h36m_mine.npz"), "rb").read() == b"user data"
  # A generated file the user replaced is no longer the generator's to overwrite.
  path_3d = os.path.join(out, "data_3d_h36m.npz")
  with open(path_3d, "wb") as f:
    f.write(b"real data")
  before = _snapshot(out)
  with pytest.raises(PosejaxError, match="data_3d_h36m.npz changed since"):
    synthetic.generate(out, frames=16, seed=3, subjects=("S1",), overwrite=True)
  assert _snapshot(out) == before


def test_an_interrupted_generation_can_be_redone(tmp_path, monkeypatch):
  out = str(tmp_path / "data")
  calls = []

  def failing_savez(path, **arrays):
    calls.append(path)
    if len(calls) == 2:
      raise KeyboardInterrupt
    real_savez(path, **arrays)

  real_savez = synthetic.atomic_savez
  monkeypatch.setattr(synthetic, "atomic_savez", failing_savez)
  with pytest.raises(KeyboardInterrupt):
    synthetic.generate(out, frames=16, subjects=("S1",))
  assert synthetic.read_marker(out)["complete"] is False
  assert sorted(os.listdir(out)) == sorted(["data_3d_h36m.npz", synthetic.MARKER])
  monkeypatch.setattr(synthetic, "atomic_savez", real_savez)
  synthetic.generate(out, frames=16, subjects=("S1",), overwrite=True)
  assert synthetic.read_marker(out)["complete"] is True
