"""Tests for posejax.tools.detect: landmark mapping, gap filling, the custom file, and BlazePose on a real photograph.

The detection tests need the detector environment (`bash scripts/setup_detector.sh`); they
are skipped without it, except under CI (CI=true), where .ci/run creates it and a missing
environment is a failure.
"""

import os
import stat
import time

import numpy as np
import pytest

from posejax.common import video as video_io
from posejax.common.errors import PosejaxError
from posejax.data import demo_video
from posejax.pose.skeleton import LAYOUTS, flip_permutation
from posejax.tools import detect, infer

COCO, H36M = LAYOUTS["coco"], LAYOUTS["h36m"]
BLAZEPOSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index")
COCO_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle")


def test_blazepose_landmarks_map_to_coco_by_name():
  landmarks = np.zeros((2, 33, 4), np.float32)
  landmarks[..., 0] = np.arange(33)           # x = landmark index
  landmarks[..., 3] = np.arange(33) / 100.0   # visibility
  keypoints, scores = detect.to_coco(landmarks)
  assert [BLAZEPOSE_NAMES[int(i)] for i in keypoints[0, :, 0]] == list(COCO_NAMES)
  np.testing.assert_allclose(scores[1], keypoints[1, :, 0] / 100.0)
  # COCO's left keypoints are the left_* names, as the layout preset's symmetry says.
  assert all(COCO_NAMES[k].startswith("left") for k in COCO.left)
  assert all(COCO_NAMES[k].startswith("right") for k in COCO.right)


def test_gaps_are_interpolated_as_the_reference():
  values = np.array([[np.nan, 0], [2.0, 10], [np.nan, 0], [np.nan, 0], [8.0, 40], [np.nan, 0]], np.float32)
  valid = np.array([False, True, False, False, True, False])
  filled = detect.fill_gaps(values, valid)
  np.testing.assert_allclose(filled[:, 0], [2, 2, 4, 6, 8, 8])     # held at the ends, linear inside
  np.testing.assert_allclose(filled[:, 1], [10, 10, 20, 30, 40, 40])
  assert detect.missing_frames(valid) == "0, 2-3, 5" and detect.missing_frames(np.ones(3, bool)) == "none"


def test_frames_without_a_person_are_filled_and_scored_zero():
  landmarks = np.random.default_rng(0).uniform(0, 100, size=(5, 33, 4)).astype(np.float32)
  landmarks[[0, 3]] = np.nan
  d = detect.detection_from_landmarks("v.mp4", landmarks, 100, 80, 30.0)
  np.testing.assert_array_equal(d.detected, [False, True, True, False, True])
  coco, _ = detect.to_coco(landmarks)
  np.testing.assert_allclose(d.keypoints[3], (coco[2] + coco[4]) / 2, rtol=1e-6)
  np.testing.assert_array_equal(d.keypoints[0], coco[1])
  assert np.all(d.scores[[0, 3]] == 0) and np.all(np.isfinite(d.keypoints))
  assert "person in 3 (60.0%), interpolated frames: 0, 3" in detect.summary(d)
  with pytest.raises(PosejaxError, match="empty.mp4: no person found in any of its 5 frames"):
    detect.detection_from_landmarks("empty.mp4", np.full((5, 33, 4), np.nan, np.float32), 100, 80, 30.0)


def test_custom_file_matches_the_reference_format(tmp_path):
  dets = [detect.Detection(n, np.full((t, 17, 2), t, np.float32), np.full((t, 17), 0.5, np.float32),
                           np.ones(t, bool), 640, 360, 25.0) for n, t in (("a.mp4", 4), ("b.mp4", 6))]
  path = str(tmp_path / "data_2d_custom_x.npz")
  detect.write_custom(path, dets)
  with np.load(path, allow_pickle=True) as f:
    positions, metadata = f["positions_2d"].item(), f["metadata"].item()
    scores = f["scores_2d"].item()
  assert metadata["layout_name"] == "coco" and metadata["num_joints"] == 17
  assert metadata["keypoints_symmetry"] == [list(COCO.left), list(COCO.right)]
  assert metadata["video_metadata"]["b.mp4"] == {"w": 640, "h": 360, "fps": 25.0}
  assert positions["b.mp4"]["custom"][0].shape == (6, 17, 2) and scores["a.mp4"].shape == (4, 17)
  videos, _, _ = infer.read_custom_keypoints(path)  # the reader of the custom format accepts it
  assert [(v.name, v.width, v.height) for v in videos] == [("a.mp4", 640, 360), ("b.mp4", 640, 360)]
  with pytest.raises(PosejaxError, match="same file name a.mp4"):
    detect.write_custom(path, [dets[0], dets[0]])


def test_h36m_layout_from_coco():
  rng = np.random.default_rng(1)
  coco = rng.uniform(0, 100, size=(3, 17, 2)).astype(np.float32)
  scores = rng.uniform(0, 1, size=(3, 17)).astype(np.float32)
  h36m, h_scores = detect.coco_to_h36m(coco, scores)
  t = 1
  pelvis, thorax = (coco[t, 11] + coco[t, 12]) / 2, (coco[t, 5] + coco[t, 6]) / 2
  head_centre = (coco[t, 1] + coco[t, 2] + coco[t, 3] + coco[t, 4]) / 4
  expected = {0: pelvis, 1: coco[t, 12], 2: coco[t, 14], 3: coco[t, 16], 4: coco[t, 11], 5: coco[t, 13],
              6: coco[t, 15], 7: (pelvis + thorax) / 2, 8: thorax, 9: 0.75 * coco[t, 0] + 0.25 * thorax,
              10: 1.5 * head_centre - 0.5 * thorax, 11: coco[t, 5], 12: coco[t, 7], 13: coco[t, 9],
              14: coco[t, 6], 15: coco[t, 8], 16: coco[t, 10]}
  for joint, value in expected.items():
    np.testing.assert_allclose(h36m[t, joint], value, rtol=1e-5, err_msg=f"joint {joint}")
  assert h_scores[t, 0] == min(scores[t, 11], scores[t, 12]) and h_scores[t, 13] == scores[t, 9]
  # Mirroring commutes with the conversion: both layouts' left/right lists agree.
  mirror = lambda x, layout: x[:, flip_permutation(17, layout.left, layout.right)] * [-1, 1]
  np.testing.assert_allclose(detect.coco_to_h36m(mirror(coco, COCO))[0], mirror(h36m, H36M), rtol=1e-5, atol=1e-4)


def test_missing_detector_environment_says_how_to_create_it(tmp_path, capsys, monkeypatch):
  monkeypatch.delenv(detect.DETECTOR_ENV_VAR, raising=False)
  with pytest.raises(PosejaxError, match=r"no detector environment at .*setup_detector\.sh"):
    detect.detector_python(str(tmp_path / "python"))
  assert detect.main(["x.mp4", "--out", str(tmp_path / "o.npz"), "--detector_python", str(tmp_path / "p")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: no detector environment") and err.count("\n") == 1


def test_a_broken_detector_is_a_one_line_error(tmp_path):
  fake = tmp_path / "python"
  fake.write_text("#!/bin/sh\necho 'some log line' >&2\necho 'error: mediapipe ships no models' >&2\nexit 2\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  clip = str(tmp_path / "c.mp4")
  video_io.write_frames(clip, np.zeros((2, 32, 32, 3), np.uint8), 5)
  with pytest.raises(PosejaxError, match="did not start: mediapipe ships no models; .*setup_detector.sh"):
    detect.detect_video(clip, str(fake))


def test_existing_output_is_kept(tmp_path, capsys):
  out = tmp_path / "data_2d_custom_x.npz"
  out.write_bytes(b"user data")
  assert detect.main(["v.mp4", "--out", str(out)]) == 2
  assert "already exists (pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"user data"


# ---------------------------------------------------------------- BlazePose itself

@pytest.fixture(scope="module")
def detector() -> str:
  try:
    return detect.detector_python()
  except PosejaxError as e:
    if os.environ.get("CI"):
      pytest.fail(f"CI must create the detector environment: {e}")
    pytest.skip(str(e))


def test_blazepose_finds_the_astronaut_in_a_moving_clip(tmp_path, detector):
  frames, width, height = 24, 320, 240
  clip = str(tmp_path / "astronaut.mp4")
  video_io.write_frames(clip, demo_video.demo_frames(frames, width, height), 12.0)
  start = time.perf_counter()
  d = detect.detect_video(clip, detector)
  print(f"{detect.summary(d)}; {time.perf_counter() - start:.1f} s")
  assert d.keypoints.shape == (frames, 17, 2) and d.scores.shape == (frames, 17)
  assert (d.width, d.height, d.fps, d.name) == (width, height, 12.0, "astronaut.mp4")
  assert d.detected.mean() >= 0.8
  # Where the photo is: face and shoulders inside it, the nose in its upper half, the
  # shoulders apart by about a third of its side; the face is clearly visible.
  place = demo_video.placements(frames, width, height)
  for t in np.flatnonzero(d.detected):
    left, top, side = place[t]
    rel = (d.keypoints[t, :7] - [left, top]) / side
    assert np.all((rel > -0.05) & (rel < 1.05)), (t, rel)
    assert rel[0, 1] < 0.5
    assert 0.2 < abs(rel[5, 0] - rel[6, 0]) < 0.6
  assert np.median(d.scores[d.detected][:, :7]) > 0.9
