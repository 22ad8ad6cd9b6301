"""Tests for posejax.data.h36m: loading tiny files written here in the published format."""

import os

import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data import h36m
from posejax.data.h36m_cameras import h36m_cameras
from posejax.pose import camera
from posejax.pose.actions import canonical_sequence_name
from posejax.pose.skeleton import H36M_KEPT_JOINTS, H36M_SKELETON

# Raw spellings on purpose ('TakingPhoto 1', 'WalkingDog'): the loader canonicalises them.
SEQUENCES = {
    "S1": ("Walking", "Sitting 1", "SittingDown", "TakingPhoto 1", "WalkingDog"),
    "S9": ("Sitting", "Walking 1", "SittingDown 1", "Photo"),
    "S11": ("Walking", "Sitting 1", "Photo 1"),
}
H36M_METADATA = {"num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}


def _smooth_motion(rng, frames, joints=32):
  """(frames, joints, 3) world metres: a body near the origin swaying smoothly."""
  t = np.arange(frames)[:, None, None]
  offsets = rng.uniform(-0.3, 0.3, (joints, 3)) + [0, 0, 1.0]
  root = np.stack([0.4 * np.sin(0.05 * t[:, 0] + rng.uniform(0, 6)),
                   0.4 * np.cos(0.05 * t[:, 0] + rng.uniform(0, 6)), np.zeros((frames, 1))], -1)
  wobble = 0.05 * np.sin(0.2 * t + rng.uniform(0, 6, (joints, 3)))
  return (root + offsets + wobble).astype(np.float32)


def _project_pixels(world_17, cam):
  """(T, 17, 3) world -> (T, 17, 2) float32 pixels through camera `cam`."""
  cam_space = camera.world_to_camera(world_17, cam.orientation, cam.translation)
  normalized = camera.project_to_2d(cam_space[None], cam.intrinsic[None])[0]
  return camera.image_coordinates(normalized, cam.res_w, cam.res_h).astype(np.float32)


def make_data(seed=0, unlabeled=("S2",)):
  """(positions_3d, positions_2d): 3D (T, 32, 3) world metres; 2D video pixels, longer than mocap."""
  rng = np.random.default_rng(seed)
  pos_3d, pos_2d = {}, {}
  for subject, names in SEQUENCES.items():
    pos_3d[subject], pos_2d[subject] = {}, {}
    for name in names:
      world = _smooth_motion(rng, int(rng.integers(12, 20)))
      pos_3d[subject][name] = world
      views = []
      for cam in h36m_cameras()[subject]:
        extra = rng.uniform(0, 1000, (int(rng.integers(0, 4)), 17, 2)).astype(np.float32)
        views.append(np.concatenate([_project_pixels(world[:, list(H36M_KEPT_JOINTS)], cam), extra]))
      pos_2d[subject][name] = views
  for subject in unlabeled:  # 2D only, as in the published detection files
    pos_2d[subject] = {"Walking": [rng.uniform(0, 1000, (15, 17, 2)).astype(np.float32)
                                   for _ in range(4)]}
  return pos_3d, pos_2d


def write_files(directory, pos_3d, pos_2d, metadata=None, source="gt"):
  os.makedirs(directory, exist_ok=True)
  np.savez_compressed(os.path.join(directory, "data_3d_h36m.npz"), positions_3d=pos_3d)
  np.savez_compressed(os.path.join(directory, f"data_2d_h36m_{source}.npz"), positions_2d=pos_2d,
                      metadata=H36M_METADATA if metadata is None else metadata)
  return str(directory)


@pytest.fixture
def data(tmp_path):
  pos_3d, pos_2d = make_data()
  return write_files(tmp_path / "data", pos_3d, pos_2d), pos_3d, pos_2d


def _rotation_matrix(q):
  w, x, y, z = np.asarray(q, np.float64)
  return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                   [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                   [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _record(dataset, subject, name, cam):
  (rec,) = [r for r in dataset.sequences if (r.subject, r.name, r.camera) == (subject, name, cam)]
  return rec


# --- contents ---------------------------------------------------------------------------------

def test_round_trip_order_and_metadata(data):
  directory, _, _ = data
  ds = h36m.load_h36m(directory)
  assert ds.subjects == ("S1", "S9", "S11")  # the 3D file's order; unlabeled S2 not included
  expected = [(s, n, c) for s in ("S1", "S9", "S11") for n in SEQUENCES[s] for c in range(4)]
  rename = {"TakingPhoto 1": "Photo 1", "WalkingDog": "WalkDog"}
  assert [(r.subject, r.name, r.camera) for r in ds.sequences] == [
      (s, rename.get(n, n), c) for s, n, c in expected]
  rec = _record(ds, "S1", "WalkDog", 2)
  assert rec.action == "WalkDog" and _record(ds, "S1", "Photo 1", 0).action == "Photo"
  assert (ds.keypoints_left, ds.keypoints_right) == ((4, 5, 6, 11, 12, 13), (1, 2, 3, 14, 15, 16))
  assert ds.skeleton == H36M_SKELETON and ds.joints_left == (4, 5, 6, 11, 12, 13)
  assert ds.num_keypoints == 17 and ds.fps == 50 and ds.layout_name is None and ds.source == "gt"
  for r in ds.sequences:
    assert r.poses_2d.dtype == np.float32 and r.poses_3d.dtype == np.float32
    assert r.poses_3d.shape == (r.num_frames, 17, 3) and r.poses_2d.shape == (r.num_frames, 17, 2)
    cam = h36m_cameras()[r.subject][r.camera]
    assert (r.res_w, r.res_h) == (cam.res_w, cam.res_h)
    np.testing.assert_array_equal(r.intrinsic, cam.intrinsic)


def test_camera_space_targets_against_rotation_matrix(data):
  directory, pos_3d, _ = data
  ds = h36m.load_h36m(directory)
  for subject, name, raw, cam_index in (("S1", "Photo 1", "TakingPhoto 1", 0), ("S9", "Sitting", "Sitting", 3),
                                        ("S11", "Walking", "Walking", 1)):
    cam = h36m_cameras()[subject][cam_index]
    world = pos_3d[subject][raw][:, list(H36M_KEPT_JOINTS)].astype(np.float64)
    cam_space = (world - cam.translation.astype(np.float64)) @ _rotation_matrix(cam.orientation)
    expected = cam_space.copy()
    expected[:, 1:] -= cam_space[:, :1]
    got = _record(ds, subject, name, cam_index).poses_3d
    np.testing.assert_allclose(got[:, 0], cam_space[:, 0], atol=2e-5)  # trajectory kept
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_2d_cropped_and_normalized(data):
  directory, pos_3d, pos_2d = data
  ds = h36m.load_h36m(directory)
  for subject, names in SEQUENCES.items():
    for raw in names:
      for cam_index, cam in enumerate(h36m_cameras()[subject]):
        rec = _record(ds, subject, canonical_sequence_name(raw), cam_index)
        frames = pos_3d[subject][raw].shape[0]
        assert rec.num_frames == frames <= pos_2d[subject][raw][cam_index].shape[0]
        pixels = pos_2d[subject][raw][cam_index][:frames].astype(np.float64)
        expected = pixels / cam.res_w * 2 - [1, cam.res_h / cam.res_w]
        np.testing.assert_allclose(rec.poses_2d, expected, atol=1e-6)


def test_gt_2d_is_the_projection_of_the_3d_targets(data):
  ds = h36m.load_h36m(data[0], subjects=["S9"])
  for rec in ds.sequences:
    absolute = rec.poses_3d.copy()
    absolute[:, 1:] += absolute[:, :1]
    np.testing.assert_allclose(camera.project_to_2d(absolute[None], rec.intrinsic[None])[0],
                               rec.poses_2d, atol=2e-5)


def test_subject_selection_keeps_given_order(data):
  ds = h36m.load_h36m(data[0], subjects=["S11", "S1"])
  assert ds.subjects == ("S11", "S1")
  assert [r.name for r in ds.sequences[:4]] == ["Walking"] * 4
  assert h36m.load_h36m(data[0], subjects="S9,S1").subjects == ("S9", "S1")


def test_action_selection_is_exact_and_counts_frames(data):
  directory, pos_3d, _ = data
  ds = h36m.load_h36m(directory, actions=["Sitting"])
  assert ds.actions == ("Sitting",)
  assert {(r.subject, r.name) for r in ds.sequences} == {
      ("S1", "Sitting 1"), ("S9", "Sitting"), ("S11", "Sitting 1")}  # no SittingDown
  expected = 4 * sum(pos_3d[s][n].shape[0] for s, n in (("S1", "Sitting 1"), ("S9", "Sitting"),
                                                        ("S11", "Sitting 1")))
  assert ds.frames_per_action() == {"Sitting": expected} and ds.frames() == expected
  full = h36m.load_h36m(directory, actions="*")
  photo = 4 * sum(pos_3d[s][n].shape[0] for s, n in (("S1", "TakingPhoto 1"), ("S9", "Photo"),
                                                     ("S11", "Photo 1")))
  assert full.frames_per_action()["Photo"] == photo
  assert sum(full.frames_per_action().values()) == full.frames()
  assert h36m.load_h36m(directory, actions=["TakingPhoto"]).actions == ("Photo",)


def test_unrequested_sequences_are_not_processed(tmp_path):
  pos_3d, pos_2d = make_data()
  pos_2d["S1"]["Walking"][1][3, 5, 0] = np.nan
  pos_3d["S1"]["Walking"][2, 4, 1] = np.inf
  pos_2d["S9"]["Photo"][0] = pos_2d["S9"]["Photo"][0][:2]  # too short, but not requested
  directory = write_files(tmp_path, pos_3d, pos_2d)
  ds = h36m.load_h36m(directory, subjects=["S1", "S11"], actions=["Sitting", "Photo"])
  assert ds.actions == ("Sitting", "Photo")
  with pytest.raises(PosejaxError, match=r"S1/'Walking'"):
    h36m.load_h36m(directory, subjects=["S1"])


def test_unlabeled_subjects_need_require_3d_false(data):
  directory, _, pos_2d = data
  with pytest.raises(PosejaxError, match=r"data_3d_h36m\.npz.*'S2'"):
    h36m.load_h36m(directory, subjects=["S9", "S2"])
  ds = h36m.load_h36m(directory, subjects=["S9", "S2"], require_3d=False)
  unlabeled = [r for r in ds.sequences if r.subject == "S2"]
  assert len(unlabeled) == 4 and all(r.poses_3d is None for r in unlabeled)
  cam = h36m_cameras()["S2"][0]
  np.testing.assert_allclose(unlabeled[0].poses_2d, camera.normalize_screen_coordinates(
      pos_2d["S2"]["Walking"][0], cam.res_w, cam.res_h), atol=1e-6)  # full length, not cropped
  np.testing.assert_array_equal(unlabeled[0].intrinsic, cam.intrinsic)
  assert all(r.poses_3d is not None for r in ds.sequences if r.subject == "S9")


def test_layout_name_is_read_from_metadata(tmp_path):
  pos_3d, pos_2d = make_data()
  directory = write_files(tmp_path, pos_3d, pos_2d, dict(H36M_METADATA, layout_name="h36m"),
                          source="cpn_ft_h36m_dbb")
  ds = h36m.load_h36m(directory, "cpn_ft_h36m_dbb", subjects=["S9"])
  assert ds.layout_name == "h36m" and ds.source == "cpn_ft_h36m_dbb"


def test_fingerprint_and_sources(data, tmp_path):
  directory = data[0]
  first = h36m.dataset_fingerprint(directory, "gt")
  assert first == h36m.dataset_fingerprint(directory, "gt")
  assert len(first) == 16 and int(first, 16) >= 0
  np.savez_compressed(os.path.join(directory, "data_2d_h36m_sh_pt_mpii.npz"), positions_2d={},
                      metadata={})
  assert h36m.available_sources(directory) == ["gt", "sh_pt_mpii"]
  assert h36m.dataset_fingerprint(directory, "sh_pt_mpii") != first
  assert h36m.available_sources(str(tmp_path / "nowhere")) == []


# --- bad input --------------------------------------------------------------------------------

def _mutated(mutate):
  pos_3d, pos_2d = make_data()
  metadata = dict(H36M_METADATA)
  mutate(pos_3d, pos_2d, metadata)
  return pos_3d, pos_2d, metadata


def _set(mapping, key, value):
  mapping[key] = value


BAD_FILES = {
    # id: (mutation, load kwargs, file named in the message, text in the message)
    "3d subject missing from 2d": (lambda p3, p2, m: p2.pop("S11"), {}, "data_2d_h36m_gt", "'S11'"),
    "3d sequence missing from 2d": (lambda p3, p2, m: p2["S9"].pop("Sitting"), {}, "data_2d_h36m_gt",
                                    "S9/'Sitting'"),
    "three cameras": (lambda p3, p2, m: p2["S1"]["Walking"].pop(), {}, "data_2d_h36m_gt", "3 camera"),
    "none camera": (lambda p3, p2, m: _set(p2["S1"]["Walking"], 2, None), {}, "data_2d_h36m_gt",
                    "camera 2 is None"),
    "2d shorter than mocap": (lambda p3, p2, m: _set(p2["S9"]["Photo"], 1, p2["S9"]["Photo"][1][:5]), {},
                              "data_2d_h36m_gt", "S9/'Photo' camera 1 has 5 frames"),
    "nan in 2d": (lambda p3, p2, m: p2["S11"]["Photo 1"][3].__setitem__((0, 0, 0), np.nan), {},
                  "data_2d_h36m_gt", "S11/'Photo 1' camera 3 contains NaN"),
    "inf in 2d": (lambda p3, p2, m: p2["S11"]["Photo 1"][0].__setitem__((2, 1, 1), np.inf), {},
                  "data_2d_h36m_gt", "S11/'Photo 1' camera 0 contains NaN or inf"),
    "nan in 3d": (lambda p3, p2, m: p3["S1"]["Sitting 1"].__setitem__((1, 0, 2), np.nan), {},
                  "data_3d_h36m", "S1/'Sitting 1' contains NaN"),
    "2d keypoint count": (lambda p3, p2, m: _set(p2["S9"]["Sitting"], 0, p2["S9"]["Sitting"][0][:, :16]),
                          {}, "data_2d_h36m_gt", "16 keypoints, metadata num_joints is 17"),
    "3d joint count": (lambda p3, p2, m: _set(p3["S9"], "Sitting", p3["S9"]["Sitting"][:, :20]), {},
                       "data_3d_h36m", "(T, 32, 3) or (T, 17, 3)"),
    "metadata without num_joints": (lambda p3, p2, m: m.pop("num_joints"), {}, "data_2d_h36m_gt",
                                    "num_joints"),
    "bad symmetry": (lambda p3, p2, m: _set(m, "keypoints_symmetry", [[4, 5], [1, 17]]), {},
                     "data_2d_h36m_gt", "keypoints_symmetry"),
    "subject not in file": (lambda p3, p2, m: None, {"subjects": ["S1", "S7"]}, "data_2d_h36m_gt",
                            "requested subject 'S7'"),
    "action without sequences": (lambda p3, p2, m: None, {"subjects": ["S1", "S9"], "actions": "Walking,WalkDog"},
                                 "data_2d_h36m_gt", "WalkDog have no sequences for subject S9"),
    "two spellings": (lambda p3, p2, m: _set(p2["S1"], "Photo 1", p2["S1"]["TakingPhoto 1"]), {},
                      "data_2d_h36m_gt", "'Photo 1'"),
    "unknown action in file": (lambda p3, p2, m: _set(p2["S9"], "Dancing", p2["S9"]["Photo"]), {},
                               "data_2d_h36m_gt", "'Dancing'"),
    "2d sequence without 3d": (lambda p3, p2, m: p3["S11"].pop("Photo 1"), {}, "data_3d_h36m",
                               "S11/'Photo 1'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_one_line_errors(tmp_path, case):
  mutate, kwargs, file_name, text = BAD_FILES[case]
  pos_3d, pos_2d, metadata = _mutated(mutate)
  directory = write_files(tmp_path, pos_3d, pos_2d, metadata)
  with pytest.raises(PosejaxError) as info:
    h36m.load_h36m(directory, **kwargs)
  message = str(info.value)
  assert "\n" not in message
  assert os.path.join(directory, file_name) in message
  assert text in message


def test_missing_directory_and_files(tmp_path, data):
  directory = data[0]
  os.makedirs(tmp_path / "empty")
  for missing in (tmp_path / "nowhere", tmp_path / "empty"):
    with pytest.raises(PosejaxError) as info:
      h36m.load_h36m(str(missing))
    message = str(info.value)
    assert str(missing) in message and "\n" not in message
    assert "python -m posejax.data.prepare_h36m --from-cdf" in message
    assert "python -m posejax.data.synthetic --out" in message
  with pytest.raises(PosejaxError) as info:
    h36m.dataset_fingerprint(str(tmp_path / "empty"), "gt")
  assert "data_3d_h36m.npz" in str(info.value)
  with pytest.raises(PosejaxError) as info:
    h36m.load_h36m(directory, "cpn_ft_h36m")
  message = str(info.value)
  assert "data_2d_h36m_cpn_ft_h36m.npz" in message and "present" in message and ": gt;" in message
  assert all(s in message for s in h36m.PUBLISHED_SOURCES)


def test_missing_keys(tmp_path):
  pos_3d, pos_2d = make_data()
  directory = write_files(tmp_path, pos_3d, pos_2d)
  np.savez_compressed(os.path.join(directory, "data_2d_h36m_gt.npz"), positions_2d=pos_2d)
  with pytest.raises(PosejaxError, match=r"data_2d_h36m_gt\.npz: missing key\(s\) metadata"):
    h36m.load_h36m(directory)
  np.savez_compressed(os.path.join(directory, "data_3d_h36m.npz"), poses=np.zeros(3))
  with pytest.raises(PosejaxError, match=r"data_3d_h36m\.npz: missing key\(s\) positions_3d"):
    h36m.load_h36m(directory)


def test_unknown_action_request(data):
  with pytest.raises(PosejaxError, match="Sit.*known"):
    h36m.load_h36m(data[0], actions=["Sit"])
