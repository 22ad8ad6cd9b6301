"""Tests for posejax.pose.camera, posejax.pose.skeleton, posejax.data.h36m_cameras and posejax.pose.actions.

References are hand-computed values, the numbers printed in the specification and float64
NumPy formulas written here independently of the code under test.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from posejax.pose import actions, camera
from posejax.data.h36m_cameras import (H36M_CAMERA_IDS, H36M_SUBJECTS, TEST_SUBJECTS,
                                       TRAIN_SUBJECTS, h36m_cameras)
from posejax.common.errors import PosejaxError
from posejax.pose.skeleton import (H36M_KEPT_JOINTS, H36M_REMOVED_JOINTS, H36M_SKELETON,
                              H36M_SKELETON_32, LAYOUTS, Skeleton, layout_for_source)

# reference V3.2, normalized intrinsic vectors printed to 9 significant digits (enough to
# identify a float32 exactly).
SPEC_INTRINSICS = (
    "2.29009891, 2.28756237, 0.025083065, 0.0289029814, -0.207098916, 0.247775182, -0.00307515031, -0.000975698873, -0.00142447161",
    "2.29935122, 2.29518342, 0.0176972151, 0.0161298513, -0.194213629, 0.24040854, 0.00681997556, -0.00161902665, -0.00274089444",
    "2.29828143, 2.29759789, 0.0396317244, 0.00280535221, -0.208338186, 0.255488008, -0.00246049743, 0.00148438697, -0.000759999326",
    "2.29102278, 2.28954792, 0.0299364328, 0.00176403334, -0.198384091, 0.218323678, -0.00894780736, -0.000587205577, -0.001813362",
)


def _rotation_matrix(q):
  """float64 rotation matrix of a unit quaternion (w, x, y, z)."""
  w, x, y, z = np.asarray(q, np.float64)
  return np.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _project_float64(points, intrinsic):
  """Reference V2.4 written out per coordinate in float64: points (..., 3) -> (..., 2)."""
  fx, fy, cx, cy, k1, k2, k3, p1, p2 = np.asarray(intrinsic, np.float64)
  p = np.asarray(points, np.float64)
  x = np.clip(p[..., 0] / p[..., 2], -1, 1)
  y = np.clip(p[..., 1] / p[..., 2], -1, 1)
  r2 = x * x + y * y
  radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
  tan = p1 * x + p2 * y
  xd = x * (radial + tan) + p1 * r2
  yd = y * (radial + tan) + p2 * r2
  return np.stack([fx * xd + cx, fy * yd + cy], axis=-1)


def _random_points(seed, n=(3, 5)):
  """Camera-space points in front of the camera, (n..., 3)."""
  rng = np.random.default_rng(seed)
  xyz = rng.uniform(-1.0, 1.0, n + (3,))
  xyz[..., 2] = rng.uniform(3.0, 6.0, n)
  return xyz.astype(np.float32)


# --- quaternions and transforms ---------------------------------------------------------------

def test_qrot_90_degrees_about_z():
  s = np.sqrt(0.5)
  q = np.array([s, 0, 0, s], np.float64)  # +90 degrees about z
  np.testing.assert_allclose(camera.qrot(q, np.array([1.0, 0, 0])), [0, 1, 0], atol=1e-12)
  np.testing.assert_allclose(camera.qrot(q, np.array([0, 1.0, 0])), [-1, 0, 0], atol=1e-12)
  np.testing.assert_allclose(camera.qrot(q, np.array([0, 0, 1.0])), [0, 0, 1], atol=1e-12)
  qx = np.array([s, s, 0, 0])  # +90 degrees about x: y -> z
  np.testing.assert_allclose(camera.qrot(qx, np.array([0, 1.0, 0])), [0, 0, 1], atol=1e-12)


def test_qinverse_undoes_rotation_and_broadcasts():
  q = h36m_cameras()["S1"][0].orientation.astype(np.float64)
  v = np.random.default_rng(0).normal(size=(4, 6, 3))
  back = camera.qrot(camera.qinverse(q), camera.qrot(q, v))
  np.testing.assert_allclose(back, v, atol=1e-6)  # the table's quaternions are unit to ~1e-7
  np.testing.assert_allclose(camera.qinverse(np.array([1.0, 2, 3, 4])), [1, -2, -3, -4])


def test_world_to_camera_matches_rotation_matrix_and_round_trips():
  cam = h36m_cameras()["S9"][2]
  world = np.random.default_rng(1).uniform(-1, 1, (7, 17, 3)).astype(np.float32)
  expected = (world.astype(np.float64) - cam.translation) @ _rotation_matrix(cam.orientation)
  cam_space = camera.world_to_camera(world, cam.orientation, cam.translation)
  assert cam_space.dtype == np.float32 and cam_space.shape == world.shape
  np.testing.assert_allclose(cam_space, expected, atol=2e-5)
  back = camera.camera_to_world(cam_space, cam.orientation, cam.translation)
  assert back.dtype == np.float32
  np.testing.assert_allclose(back, world, atol=2e-5)


def test_cameras_look_at_the_capture_volume():
  # The world origin (centre of the capture area) is in front of every camera (z > 0).
  for subject in H36M_SUBJECTS:
    for cam in h36m_cameras()[subject]:
      z = camera.world_to_camera(np.zeros(3, np.float32), cam.orientation, cam.translation)[2]
      assert 3.0 < z < 8.0, (subject, cam.id, z)


# --- screen coordinates -----------------------------------------------------------------------

def test_normalize_screen_coordinates_hand_values():
  w, h = 1000, 1002
  pixels = np.array([[0, 0], [1000, 1002], [500, 501], [250, 0]], np.float32)
  expected = np.array([[-1, -1.002], [1, 1.002], [0, 0], [-0.5, -1.002]])
  np.testing.assert_allclose(camera.normalize_screen_coordinates(pixels, w, h), expected, atol=1e-6)
  np.testing.assert_allclose(camera.image_coordinates(expected.astype(np.float32), w, h), pixels,
                             atol=1e-4)


def test_screen_round_trip_and_shape_check():
  x = np.random.default_rng(2).uniform(0, 1000, (5, 17, 2)).astype(np.float32)
  back = camera.image_coordinates(camera.normalize_screen_coordinates(x, 1000, 1000), 1000, 1000)
  np.testing.assert_allclose(back, x, atol=1e-3)
  with pytest.raises(ValueError):
    camera.normalize_screen_coordinates(np.zeros((4, 3)), 1000, 1000)
  with pytest.raises(ValueError):
    camera.image_coordinates(np.zeros((4, 3)), 1000, 1000)


# --- projection -------------------------------------------------------------------------------

def test_projection_of_hand_point_without_distortion_is_pinhole():
  intrinsic = np.array([[2.0, 3.0, 0.1, -0.2, 0, 0, 0, 0, 0]], np.float32)
  point = np.array([[[0.5, -1.0, 4.0]]], np.float32)  # (N=1, 1, 3)
  expected = [[[2.0 * 0.125 + 0.1, 3.0 * -0.25 - 0.2]]]
  np.testing.assert_allclose(camera.project_to_2d(point, intrinsic), expected, atol=1e-7)
  np.testing.assert_allclose(camera.project_to_2d_linear(point, intrinsic), expected, atol=1e-7)


def test_projection_clamps_each_ratio():
  intrinsic = np.array([[1.0, 1.0, 0, 0, 0, 0, 0, 0, 0]], np.float32)
  point = np.array([[[3.0, -0.5, 1.0]]], np.float32)
  np.testing.assert_allclose(camera.project_to_2d_linear(point, intrinsic), [[[1.0, -0.5]]])


def test_projection_with_distortion_matches_float64_formula():
  cams = h36m_cameras()["S1"]
  points = _random_points(3, (4, 6, 17))  # one batch row per camera
  intrinsic = np.stack([c.intrinsic for c in cams])
  got = camera.project_to_2d(points, intrinsic)
  assert got.shape == (4, 6, 17, 2)
  for i in range(4):
    np.testing.assert_allclose(got[i], _project_float64(points[i], intrinsic[i]), atol=1e-6)
  linear = camera.project_to_2d_linear(points, intrinsic)
  f, c = intrinsic[:, None, None, :2], intrinsic[:, None, None, 2:4]
  np.testing.assert_allclose(linear, f * points[..., :2] / points[..., 2:] + c, atol=1e-6)


def test_numpy_and_jax_projection_agree():
  points = _random_points(4, (4, 10, 17))
  intrinsic = np.stack([c.intrinsic for c in h36m_cameras()["S11"]])
  for fn in (camera.project_to_2d, camera.project_to_2d_linear):
    want = fn(points, intrinsic)
    got = fn(jnp.asarray(points), jnp.asarray(intrinsic), xp=jnp)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


def test_flip_consistency():
  """Reference V7.3 / V18.3: mirrored 3D with mirrored camera projects to the mirrored 2D."""
  cam = h36m_cameras()["S5"][1]
  pose = _random_points(5, (1, 8, 17))
  left, right = list(H36M_SKELETON.joints_left), list(H36M_SKELETON.joints_right)
  projected = camera.project_to_2d(pose, cam.intrinsic[None])
  mirrored_3d = pose.copy()
  mirrored_3d[..., 0] *= -1
  mirrored_3d[..., left + right, :] = mirrored_3d[..., right + left, :]
  mirrored_cam = cam.intrinsic.copy()
  mirrored_cam[[2, 7]] *= -1
  mirrored_2d = projected.copy()
  mirrored_2d[..., 0] *= -1
  mirrored_2d[..., left + right, :] = mirrored_2d[..., right + left, :]
  np.testing.assert_allclose(camera.project_to_2d(mirrored_3d, mirrored_cam[None]), mirrored_2d,
                             atol=1e-6)


# --- camera tables ----------------------------------------------------------------------------

def test_normalized_intrinsics_match_spec_table_exactly():
  expected = np.array([[np.float32(v) for v in row.split(",")] for row in SPEC_INTRINSICS])
  for subject, cams in h36m_cameras().items():
    assert len(cams) == 4
    for i, cam in enumerate(cams):
      assert cam.intrinsic.dtype == np.float32 and cam.intrinsic.shape == (9,)
      np.testing.assert_array_equal(cam.intrinsic, expected[i], err_msg=f"{subject} camera {i}")


def test_camera_table_facts():
  cams = h36m_cameras()
  assert H36M_CAMERA_IDS == ("54138969", "55011271", "58860488", "60457274")
  assert [(c.id, c.res_w, c.res_h) for c in cams["S1"]] == [
      ("54138969", 1000, 1002), ("55011271", 1000, 1000), ("58860488", 1000, 1000),
      ("60457274", 1000, 1002)]
  assert [c.azimuth for c in cams["S9"]] == [70, -70, 110, -110]
  assert TRAIN_SUBJECTS + TEST_SUBJECTS == H36M_SUBJECTS
  for subject in ("S2", "S3", "S4"):
    assert all(c.orientation is None and c.translation is None for c in cams[subject])
  # S11 camera 3: translation mm -> m, quaternion as printed.
  np.testing.assert_array_equal(cams["S11"][3].translation, np.float32(
      [-1590.738037109375, -3854.1689453125, 1578.017578125]) / np.float32(1000))
  np.testing.assert_array_equal(cams["S11"][3].orientation, np.float32(
      [0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809]))
  assert cams["S1"][0].translation.dtype == np.float32


# --- skeletons and layouts --------------------------------------------------------------------

def test_h36m_reduction_to_17_joints():
  assert H36M_SKELETON_32.num_joints == 32
  assert H36M_REMOVED_JOINTS == (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
  assert H36M_KEPT_JOINTS == (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
  assert H36M_SKELETON.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
  assert H36M_SKELETON.joints_left == (4, 5, 6, 11, 12, 13)
  assert H36M_SKELETON.joints_right == (1, 2, 3, 14, 15, 16)
  assert H36M_SKELETON.num_joints == 17


def test_remove_joints_before_rewiring():
  # Reference V3.2: the parent array right after removal, before the shoulders move to the thorax.
  reduced, kept = H36M_SKELETON_32.remove_joints(H36M_REMOVED_JOINTS)
  assert reduced.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 7, 11, 12, 7, 14, 15)
  assert kept == H36M_KEPT_JOINTS
  # Two-link legs: removing both knees re-attaches the feet to the root.
  legs = Skeleton((-1, 0, 1, 0, 3), (1, 2), (3, 4))
  small, kept = legs.remove_joints([1, 3])
  assert small.parents == (-1, 0, 0) and kept == (0, 2, 4)
  assert small.joints_left == (1,) and small.joints_right == (2,)


def test_layouts_and_layout_for_source():
  expected = {"mpii": (16, (3, 4, 5, 13, 14, 15), (0, 1, 2, 10, 11, 12)),
              "coco": (17, (1, 3, 5, 7, 9, 11, 13, 15), (2, 4, 6, 8, 10, 12, 14, 16)),
              "h36m": (17, (4, 5, 6, 11, 12, 13), (1, 2, 3, 14, 15, 16)),
              "humaneva15": (15, (2, 3, 4, 8, 9, 10), (5, 6, 7, 11, 12, 13)),
              "humaneva20": (20, (3, 4, 5, 6, 11, 12, 13, 14), (7, 8, 9, 10, 15, 16, 17, 18))}
  assert list(LAYOUTS) == list(expected)
  for name, (k, left, right) in expected.items():
    assert (LAYOUTS[name].num_joints, LAYOUTS[name].left, LAYOUTS[name].right) == (k, left, right)
  sources = {"cpn_ft_h36m_dbb": "h36m", "detectron_ft_h36m": "h36m", "detectron_pt_h36m": "h36m",
             "detectron_pt_coco": "coco", "sh_pt_mpii": "mpii", "sh_ft_h36m": "h36m",
             "humaneva15_detectron": "humaneva15"}
  for source, layout in sources.items():
    assert layout_for_source(source).name == layout, source
  with pytest.raises(PosejaxError, match="'gt'"):
    layout_for_source("gt")


# --- actions ----------------------------------------------------------------------------------

def test_action_table():
  assert actions.ACTIONS == (
      "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
      "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")
  assert actions.ABBREVIATIONS["SittingDown"] == "SitD." and actions.ABBREVIATIONS["WalkDog"] == "WkD."
  assert len(set(actions.ABBREVIATIONS.values())) == 15


def test_canonical_names_and_action_of():
  assert actions.canonical_sequence_name("TakingPhoto 1") == "Photo 1"
  assert actions.canonical_sequence_name("TakingPhoto") == "Photo"
  assert actions.canonical_sequence_name("WalkingDog") == "WalkDog"
  assert actions.canonical_sequence_name("WalkingDog 1") == "WalkDog 1"
  assert actions.canonical_sequence_name("Walking 1") == "Walking 1"
  assert actions.action_of("Sitting 1") == "Sitting"
  assert actions.action_of("SittingDown") == "SittingDown" != "Sitting"
  assert actions.action_of("SittingDown 2") == "SittingDown"
  assert actions.action_of("TakingPhoto 1") == "Photo"
  assert actions.action_of("WalkingDog") == "WalkDog"
  assert actions.action_of("WalkTogether 1") == "WalkTogether"
  with pytest.raises(PosejaxError, match="Directions.*WalkTogether"):
    actions.action_of("Dancing 1")


def test_resolve_actions():
  assert actions.resolve_actions(None) == actions.ACTIONS
  assert actions.resolve_actions("*") == actions.ACTIONS
  assert actions.resolve_actions("all") == actions.ACTIONS
  assert actions.resolve_actions("Walking,Sitting") == ("Sitting", "Walking")
  assert actions.resolve_actions(["TakingPhoto", " Eating "]) == ("Eating", "Photo")
  with pytest.raises(PosejaxError, match="Walk.*known: Directions"):
    actions.resolve_actions("Walk")
  with pytest.raises(PosejaxError, match="Sit"):
    actions.resolve_actions(["Sitting", "Sit"])
