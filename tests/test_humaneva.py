"""Tests for HumanEva-I: action filters, model ids, the converter, the loader, the synthetic
generator, the dataset switch of posejax.data.loading and one training run."""

import json
import os

import numpy as np
import pytest
from scipy.io import savemat

from configs import humaneva15, humaneva_quickstart
from posejax import trainer
from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez, load_npz_dict
from posejax.data import humaneva, loading, prepare_humaneva, synthetic, synthetic_humaneva
from posejax.pose import actions
from posejax.pose.skeleton import HUMANEVA15_SKELETON
from posejax.training import slices
from pieces import data_args

# Extrinsics of reference V3.3, written out independently of the package's table.
S1_CAMERAS = (((0.424207, -0.4983646, -0.5802981, 0.4847012), (4062.227, 663.2477, 1528.397)),
              ((0.6503354, -0.7481602, -0.0919284, 0.0941766), (844.8131, -3805.2092, 1504.9929)),
              ((0.0664734, -0.0690535, 0.7416416, -0.6639132), (-797.67377, 3916.3174, 1433.6602)))
S2_CAMERA_0 = ((0.4214752, -0.4961493, -0.5838273, 0.4851187), (4112.9121, 626.4929, 1545.2988))


def _world_to_camera_f64(world, orientation, translation_mm):
  """X_cam = M(conj q) (X - t) with M = I + 2w[u]x + 2[u]x^2 (the spec's rotation formula as a matrix)."""
  w, u = orientation[0], -np.asarray(orientation[1:], np.float64)
  cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
  m = np.eye(3) + 2 * w * cross + 2 * cross @ cross
  return (np.asarray(world, np.float64) - np.asarray(translation_mm) / 1000) @ m.T


# ------------------------------------------------------------------------- actions and model ids


def test_prefix_and_exact_action_selection():
  assert actions.resolve_actions("Sitting", match="prefix") == ("Sitting", "SittingDown")
  assert actions.resolve_actions("Sitting") == ("Sitting",)
  assert actions.resolve_actions("Walk", match="prefix") == ("WalkDog", "Walking", "WalkTogether")
  assert actions.resolve_actions("Walking 1,Photo", match="prefix") == ("Photo", "Walking")
  assert actions.resolve_actions("TakingPhoto", match="prefix") == ("Photo",)  # canonical spelling
  he = actions.HUMANEVA_ACTIONS
  assert actions.resolve_actions("Walk,Jog,Box", he, "prefix") == ("Walking", "Jog", "Box")
  assert actions.resolve_actions("*", he, "prefix") == he
  with pytest.raises(PosejaxError, match="unknown action\\(s\\) Walk .*action_match=prefix"):
    actions.resolve_actions("Walk,Jog,Box", he)
  with pytest.raises(PosejaxError, match="unknown action\\(s\\) Run"):
    actions.resolve_actions("Walk,Run", he, "prefix")
  with pytest.raises(PosejaxError, match="--config.action_match: 'fuzzy'"):
    actions.resolve_actions("Walk", he, "fuzzy")
  # The sequence-level filter is the reference's str.startswith on the whole name.
  prefixes = actions.sequence_prefixes("Sitting, Walking 1", "prefix")
  assert prefixes == ("Sitting", "Walking 1")
  kept = [n for n in ("Sitting 1", "SittingDown", "Walking 1 chunk0", "Walking 2", "Walking", "Eating")
          if actions.keeps(n, prefixes)]
  assert kept == ["Sitting 1", "SittingDown", "Walking 1 chunk0"]
  assert actions.sequence_prefixes("Sitting", "exact") is None and actions.sequence_prefixes("*", "prefix") is None
  assert actions.action_of("Box 1 chunk2", he) == "Box"
  with pytest.raises(PosejaxError, match="unknown action 'Box'"):
    actions.action_of("Box 1 chunk2")


def test_model_ids_are_distinct_and_stable():
  he = slices.model_ids(["Walking", "Jog", "Box", "Gestures", "ThrowCatch"]).tolist()
  assert he == [13, 16, 17, 18, 19]  # Walking keeps its Human3.6M id; 15 is the common model
  assert slices.model_ids(["Box", "all"], 4).tolist() == [17, 15, 100, 101]
  h36m = slices.model_ids(list(actions.ACTIONS)).tolist()
  assert h36m == list(range(15)) and not set(h36m) & {15, 16, 17, 18, 19}
  with pytest.raises(PosejaxError, match="'Hopping'"):
    slices.model_ids(["Hopping"])


# ------------------------------------------------------------------------- converter


def _mat_trial(rng, frames, joints=15, gap=None):
  """(poses_3d (T, J, 3) mm, poses_2d (3, T, J, 2) px) as ConvertHumanEva.m saves them."""
  poses_3d = rng.uniform(-800, 800, (frames, joints, 3)) + [0, 0, 1000]
  poses_2d = rng.uniform(0, 640, (3, frames, joints, 2))
  if gap is not None:
    poses_3d[gap[0]:gap[1]] = np.nan
    poses_2d[:, gap[0]:gap[1]] = np.nan
  return poses_3d, poses_2d


def _detectron_archive(path, rng, frames, keypoints=17, missing=()):
  """A Detectron archive: per frame two person boxes and their (6, K) keypoint rows."""
  boxes, kps, best = np.empty(frames, object), np.empty(frames, object), np.zeros((frames, keypoints, 2))
  for f in range(frames):
    if f in missing:
      boxes[f], kps[f] = [[], np.zeros((0, 5))], [[], []]
      best[f] = best[f - 1]
      continue
    scores = rng.permutation([0.3, 0.9])
    rows = rng.uniform(0, 640, (2, 6, keypoints))
    boxes[f] = [[], np.concatenate([rng.uniform(0, 640, (2, 4)), scores[:, None]], 1)]
    kps[f] = [[], list(rows)]
    best[f] = rows[int(np.argmax(scores)), 4:6].T
  np.savez(path, boxes=boxes, keypoints=kps)
  return best.astype(np.float32)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  """A tiny converted release: Train/S1 and Validate/S1 'Jog 1' (real frame ranges, a 4-frame
  mocap gap in the training part), Validate/S1 'Box 1', and S1's Jog detections plus an S4 video."""
  root = tmp_path_factory.mktemp("humaneva")
  rng = np.random.default_rng(0)
  trials = {("Train", "Jog_1"): (373, (100, 104)), ("Validate", "Jog_1"): (362, None),
            ("Validate", "Box_1"): (380, None)}
  raw = {}
  for (split, stem), (frames, gap) in trials.items():
    folder = root / "mat" / split / "S1"
    folder.mkdir(parents=True, exist_ok=True)
    raw[split, stem] = _mat_trial(rng, frames, gap=gap)
    savemat(str(folder / f"{stem}.mat"), {"poses_3d": raw[split, stem][0], "poses_2d": raw[split, stem][1]})
  videos = {}
  for person, stem, cam, frames in (("S1", "Jog_1", c, 800) for c in (1, 2, 3)):
    (root / "det" / person).mkdir(parents=True, exist_ok=True)
    videos[person, stem, cam] = _detectron_archive(str(root / "det" / person / f"{stem}_(C{cam}).avi.npz"),
                                                    rng, frames, missing=(3,))
  (root / "det" / "S4").mkdir()
  videos["S4", "Box_2", 1] = _detectron_archive(str(root / "det" / "S4" / "Box_2_(C1).avi.npz"), rng, 30)
  return root, raw, videos


def test_converter_3d_and_gt_2d(release, tmp_path, capsys):
  root, raw, _ = release
  out = str(tmp_path / "out")
  assert prepare_humaneva.main(["--from-mat", str(root / "mat"), "--convert-3d", "--out", out]) == 0
  assert "4 labeled chunks of 2 subjects" in capsys.readouterr().out
  pos_3d = load_npz_dict(os.path.join(out, "data_3d_humaneva15.npz"), ("positions_3d",))["positions_3d"]
  gt = load_npz_dict(os.path.join(out, "data_2d_humaneva15_gt.npz"), ("positions_2d", "metadata"))
  assert list(pos_3d) == list(prepare_humaneva.SUBJECTS)
  # Train Jog: frames 0-99 finite (chunk0), 100-103 invalid (chunk1, dropped), 104-372 (chunk2).
  assert list(pos_3d["Train/S1"]) == ["Jog 1 chunk0", "Jog 1 chunk2"]
  assert list(pos_3d["Validate/S1"]) == ["Jog 1 chunk0", "Box 1 chunk0"]  # the table's trial order
  mm, px = raw["Train", "Jog_1"]
  for name, rows in (("Jog 1 chunk0", slice(0, 100)), ("Jog 1 chunk2", slice(104, 373))):
    x = pos_3d["Train/S1"][name]
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, mm[rows] / 1000, rtol=1e-6)
    views = gt["positions_2d"]["Train/S1"][name]
    assert len(views) == 3
    for cam in range(3):
      np.testing.assert_allclose(views[cam], px[cam, rows], rtol=1e-6)
  assert gt["metadata"] == {"layout_name": "humaneva15", "num_joints": 15,
                            "keypoints_symmetry": [[2, 3, 4, 8, 9, 10], [5, 6, 7, 11, 12, 13]]}
  # The files load, and the loader finds the S1 cameras for both splits.
  dataset = humaneva.load_humaneva(out, "gt", ["Train/S1", "Validate/S1"])
  assert [(r.subject, r.name, r.camera) for r in dataset.sequences[:3]] == [
      ("Train/S1", "Jog 1 chunk0", 0), ("Train/S1", "Jog 1 chunk0", 1), ("Train/S1", "Jog 1 chunk0", 2)]
  # Existing outputs are kept unless --overwrite.
  assert prepare_humaneva.main(["--from-mat", str(root / "mat"), "--convert-3d", "--out", out]) == 2
  assert "already exists" in capsys.readouterr().err


def test_converter_2d_detections(release, tmp_path):
  root, _, videos = release
  out = str(tmp_path / "out")
  args = ["--from-mat", str(root / "mat"), "--convert-2d", str(root / "det"), "--source", "detectron_pt_coco"]
  assert prepare_humaneva.main(args + ["--out", out]) == 0
  det = load_npz_dict(os.path.join(out, "data_2d_humaneva15_detectron_pt_coco.npz"), ("positions_2d", "metadata"))
  assert det["metadata"]["layout_name"] == "coco" and det["metadata"]["num_joints"] == 17
  pos = det["positions_2d"]
  assert sorted(pos) == ["Train/S1", "Unlabeled/S4", "Unlabeled/Train/S1", "Validate/S1"]
  # Video frame = mocap frame + sync - 1 (S1 Jog 1: 51, 51, 50); ranges Train 367-740, Validate 5-367.
  for cam, sync in zip((1, 2, 3), (51, 51, 50)):
    video = videos["S1", "Jog_1", cam]
    for subject, name, start, end in (("Validate/S1", "Jog 1 chunk0", 5, 367),
                                      ("Train/S1", "Jog 1 chunk0", 367, 467),
                                      ("Unlabeled/Train/S1", "Jog 1 chunk1", 467, 471),
                                      ("Train/S1", "Jog 1 chunk2", 471, 740)):
      np.testing.assert_array_equal(pos[subject][name][cam - 1], video[start + sync - 1:end + sync - 1])
  assert "Box 1 chunk0" not in pos["Validate/S1"]  # no video
  s4 = pos["Unlabeled/S4"]["Box 2"]
  np.testing.assert_array_equal(s4[0], videos["S4", "Box_2", 1])
  assert s4[1] is None and s4[2] is None


def test_converter_errors(release, tmp_path, capsys):
  root, raw, _ = release
  bad = tmp_path / "bad"
  (bad / "Train" / "S1").mkdir(parents=True)
  mm, px = raw["Train", "Jog_1"]
  savemat(str(bad / "Train" / "S1" / "Jog_1.mat"), {"poses_3d": mm[:-1], "poses_2d": px[:, :-1]})
  assert prepare_humaneva.main(["--from-mat", str(bad), "--convert-3d", "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert "Jog_1.mat: 372 frames, expected 373 (frames 367-740 of the Train split)" in err and err.count("\n") == 1
  px = px.copy()
  px[:, 200] = np.nan  # 2D invalid where the mocap is valid
  savemat(str(bad / "Train" / "S1" / "Jog_1.mat"), {"poses_3d": mm, "poses_2d": px})
  with pytest.raises(PosejaxError, match="poses_2d is invalid \\(NaN\\) on other frames"):
    prepare_humaneva.convert_3d(str(bad))
  with pytest.raises(PosejaxError, match="cannot tell the archive format"):
    prepare_humaneva.importer_for("sh_pt_mpii")
  cpn = np.random.default_rng(2).uniform(0, 640, (5, 17, 3)).astype(np.float32)
  np.savez(str(tmp_path / "cpn.npz"), keypoints=cpn)
  np.testing.assert_array_equal(prepare_humaneva.importer_for("cpn_ft")(str(tmp_path / "cpn.npz")), cpn[..., :2])
  assert prepare_humaneva.finite_runs(np.array([1, 1, 0, 1, 0, 0], bool)) == [
      (0, 2, True), (2, 3, False), (3, 4, True), (4, 6, False)]


# ------------------------------------------------------------------------- loader


def test_loader_preprocessing_against_float64(tmp_path):
  """3D into each camera (joint 0 absolute, others relative), 2D cropped and normalized."""
  rng = np.random.default_rng(1)
  world = (rng.uniform(-0.5, 0.5, (12, 15, 3)) + [0, 0, 1]).astype(np.float32)
  pixels = [rng.uniform(0, 640, (14, 15, 2)).astype(np.float32) for _ in range(3)]  # 2 frames longer
  atomic_savez(str(tmp_path / "data_3d_humaneva15.npz"), positions_3d={"Train/S2": {"Box 1 chunk0": world}})
  atomic_savez(str(tmp_path / "data_2d_humaneva15_gt.npz"), positions_2d={"Train/S2": {"Box 1 chunk0": pixels}},
               metadata=prepare_humaneva.layout_metadata("humaneva15"))
  dataset = humaneva.load_humaneva(str(tmp_path), "gt", ["Train/S2"])
  assert dataset.fps == 60 and dataset.skeleton == HUMANEVA15_SKELETON and dataset.num_keypoints == 15
  assert [r.camera for r in dataset.sequences] == [0, 1, 2]
  record = dataset.sequences[0]
  assert (record.action, record.res_w, record.res_h, record.intrinsic) == ("Box", 640, 480, None)
  expected = _world_to_camera_f64(world, *S2_CAMERA_0)
  expected[:, 1:] -= expected[:, :1]
  np.testing.assert_allclose(record.poses_3d, expected, atol=2e-6)
  np.testing.assert_allclose(record.poses_2d, pixels[0][:12] / 640 * 2 - [1, 480 / 640], atol=1e-6)
  with pytest.raises(PosejaxError, match="subject 'S2' is not in the file"):
    humaneva.load_humaneva(str(tmp_path), "gt", ["S2"])
  atomic_savez(str(tmp_path / "data_3d_humaneva15.npz"),
               positions_3d={"Train/S2": {"Box 1 chunk0": np.zeros((12, 20, 3), np.float32)}})
  with pytest.raises(PosejaxError, match="has 20 joints"):
    humaneva.load_humaneva(str(tmp_path), "gt", ["Train/S2"])


# ------------------------------------------------------------------------- synthetic data and loading


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("he_synthetic"))
  synthetic_humaneva.generate(path, frames=96, seed=3)
  return path


def test_synthetic_files(synthetic_dir):
  pos = load_npz_dict(os.path.join(synthetic_dir, "data_3d_humaneva15.npz"), ("positions_3d",))["positions_3d"]
  gt = load_npz_dict(os.path.join(synthetic_dir, "data_2d_humaneva15_gt.npz"), ("positions_2d", "metadata"))
  det = load_npz_dict(os.path.join(synthetic_dir, "data_2d_humaneva15_synthetic.npz"), ("positions_2d", "metadata"))
  assert list(pos) == list(prepare_humaneva.SUBJECTS)
  assert det["metadata"]["layout_name"] == "coco" and gt["metadata"]["layout_name"] == "humaneva15"
  assert not any(n.startswith("ThrowCatch") for s in ("Train/S3", "Validate/S3") for n in pos[s])
  # Limb bones (elbows, wrists, hips, knees, ankles, head) are rigid; the spine and clavicles bend.
  limbs = np.array([3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14])
  parents = np.asarray(HUMANEVA15_SKELETON.parents)[limbs]
  for subject, seqs in pos.items():
    assert {n.split(" chunk")[0] for n in seqs} >= {"Walking 1", "Jog 1", "Box 1", "Gestures 1"}
    for name, x in seqs.items():
      assert x.shape[1:] == (15, 3) and np.isfinite(x).all() and name in gt["positions_2d"][subject]
      bones = np.linalg.norm(x[:, limbs] - x[:, parents], axis=-1)
      np.testing.assert_allclose(bones, bones[:1].repeat(len(x), 0), atol=1e-5)  # rigid bones
      assert all(len(v) == len(x) and v.shape[1:] == (17, 2) for v in det["positions_2d"][subject][name])
      # The GT 2D is the pinhole projection of the stored 3D (focal FOCAL_PX, centred).
      person = subject.split("/")[1]
      for cam, ((q, t), views) in enumerate(zip(_cameras_of(person), gt["positions_2d"][subject][name])):
        c = _world_to_camera_f64(x, q, t)
        expected = synthetic_humaneva.FOCAL_PX * c[..., :2] / c[..., 2:] + [320, 240]
        np.testing.assert_allclose(views, expected, atol=0.02)
        assert views.min() >= 0 and (views <= [640, 480]).all()
  # Chunks lost to invalid mocap appear only as unlabeled video.
  for subject in (s for s in det["positions_2d"] if s.startswith("Unlabeled/")):
    split_subject = subject[len("Unlabeled/"):]
    assert all(n not in pos[split_subject] for n in det["positions_2d"][subject])


def _cameras_of(person):
  from posejax.data.h36m_cameras import HUMANEVA_EXTRINSICS
  return S1_CAMERAS if person == "S1" else HUMANEVA_EXTRINSICS[person]


def test_synthetic_marker_and_user_files(synthetic_dir, tmp_path):
  marker = synthetic_humaneva.read_marker(synthetic_dir)
  assert marker["complete"] and sorted(marker["files"]) == sorted(synthetic_humaneva.FILE_NAMES.values())
  with pytest.raises(PosejaxError, match="already exists"):
    synthetic_humaneva.generate(synthetic_dir, frames=96, seed=3)
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("mine")
  with pytest.raises(PosejaxError, match="did not write \\(notes.txt\\)"):
    synthetic_humaneva.generate(str(mine), frames=96)
  h36m_dir = tmp_path / "h36m"
  synthetic.generate(str(h36m_dir), frames=16, subjects=("S1",))
  with pytest.raises(PosejaxError, match="not a marker written by posejax.data.synthetic_humaneva"):
    synthetic_humaneva.generate(str(h36m_dir), frames=96)
  assert sorted(os.listdir(mine)) == ["notes.txt"]


def _config(data_dir, **changes):
  config = humaneva_quickstart.get_config()
  config.data.dir = data_dir
  config.data.synthetic_frames = 96
  for key, value in changes.items():
    node = config
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return config


def test_load_data_generates_and_filters_by_prefix(tmp_path):
  data_dir = str(tmp_path / "data")
  config = _config(data_dir)
  assert loading.selected_actions(*data_args(config)) == ("Walking", "Jog", "Box")
  train, test, fingerprint = loading.load_data(*data_args(config), loading.selected_actions(*data_args(config)))
  assert synthetic_humaneva.read_marker(data_dir)["complete"]
  assert train.subjects == humaneva.TRAIN_SUBJECTS and test.subjects == humaneva.TEST_SUBJECTS
  assert train.actions == ("Walking", "Jog", "Box") and len(fingerprint) == 16
  assert train.num_keypoints == 17 and train.skeleton.num_joints == 15
  names = {r.name for r in train.sequences}
  assert names and all(n.split(" ")[0] in ("Walking", "Jog", "Box") for n in names)
  # 'Walking 1' keeps the Walking trial's chunks only, exact matching needs whole action names.
  only_walking, _, _ = loading.load_data(*data_args(_config(data_dir, actions="Walking 1")), ("Walking",))
  assert {r.name for r in only_walking.sequences} == {n for n in names if n.startswith("Walking 1")}
  with pytest.raises(PosejaxError, match="unknown action\\(s\\) Walk"):
    loading.selected_actions(*data_args(_config(data_dir, action_match="exact")))
  with pytest.raises(PosejaxError, match="'Walking 2' match\\(es\\) no sequence name"):
    loading.load_data(*data_args(_config(data_dir, actions="Walking 2")), ("Walking",))
  # Empty subject lists take the dataset's default split.
  default_split = loading.load_data(*data_args(_config(data_dir, **{"data.train_subjects": (), "data.test_subjects": ()})),
                                    ("Box",))
  assert default_split[0].subjects == humaneva.TRAIN_SUBJECTS and default_split[1].subjects == humaneva.TEST_SUBJECTS


def test_prefix_filter_on_human36m(tmp_path):
  """The reference's -a on Human3.6M: 'Sitting' also takes SittingDown, 'Walking 1' one sequence."""
  from configs import quickstart
  data_dir = str(tmp_path / "h36m")
  synthetic.generate(data_dir, frames=16, subjects=("S1", "S9"))
  config = quickstart.get_config()
  config.data.dir, config.data.train_subjects, config.data.test_subjects = data_dir, ("S1",), ("S9",)
  config.actions, config.action_match = "Sitting,Walking 1", "prefix"
  assert loading.selected_actions(*data_args(config)) == ("Sitting", "SittingDown", "Walking")
  train, test, _ = loading.load_data(*data_args(config), loading.selected_actions(*data_args(config)))
  assert sorted({r.name for r in train.sequences}) == ["Sitting 1", "Sitting 2", "SittingDown", "SittingDown 2",
                                                        "Walking 1"]
  assert {r.name for r in test.sequences} >= {"Walking 1"} and "Walking" not in {r.name for r in test.sequences}
  config.action_match = "exact"
  config.actions = "Sitting"
  exact, _, _ = loading.load_data(*data_args(config), loading.selected_actions(*data_args(config)))
  assert sorted({r.name for r in exact.sequences}) == ["Sitting 1", "Sitting 2"]
  # What a run evaluates, for tools that read the test split alone.
  assert [r.name for r in loading.load_subjects(*data_args(config)).sequences] == [r.name for r in
                                                                      test.select(actions=("Sitting",)).sequences]


@pytest.mark.parametrize("changes,match", [
    ({"data.test_subjects": ("S9",)}, "subject\\(s\\) S9 are not in the synthetic data"),
    ({"data.synthetic_frames": 32}, "synthetic_frames: need at least 64 frames per trial"),
    ({"data.source": "tfds"}, "'tfds' holds Human3.6M only"),
    ({"data.dataset": "humaneva20"}, "--config.data.dataset: 'humaneva20'"),
])
def test_load_data_errors_before_writing(tmp_path, changes, match):
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  with pytest.raises(PosejaxError, match=match):
    config = _config(str(data_dir), **changes)
    loading.load_data(*data_args(config), loading.selected_actions(*data_args(config)))
  assert os.listdir(data_dir) == []


def test_reference_config():
  config = humaneva15.get_config()
  assert (config.data.dataset, config.data.keypoints, config.actions, config.action_match) == (
      "humaneva15", "detectron_pt_coco", "Walk,Jog,Box", "prefix")
  assert (config.train.batch_size, config.train.epochs, config.train.lr_decay) == (128, 1000, 0.996)
  assert tuple(config.data.train_subjects) == ("Train/S1", "Train/S2", "Train/S3")
  assert tuple(config.data.test_subjects) == ("Validate/S1", "Validate/S2", "Validate/S3")
  assert config.eval.by_subject and tuple(config.model.filter_widths) == (3, 3, 3)


def test_action_based_training_run(synthetic_dir, tmp_path):
  config = _config(synthetic_dir)
  config.model.filter_widths = (3,)
  config.model.channels = 16
  config.train.epochs = 1
  config.train.batch_size = 64
  config.train.progress = False
  config.train.steps_per_call = 4
  config.eval.chunk = 16
  summary = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["slices"] == ["Walking", "Jog", "Box"] and summary["unit_epochs"] == 3
  assert all(e == 3 for e in summary["own_epochs"].values())
  results = json.load(open(os.path.join(tmp_path, "run", "eval", f"step_{summary['global_steps']}",
                                        "final", "results.json")))
  assert list(results["per_action"]) == ["Walking", "Jog", "Box"]
  assert list(results["by_subject"]) == list(humaneva.TEST_SUBJECTS)
  mean = np.mean([v["mpjpe"] for v in results["per_action"].values()])
  assert results["average"]["mpjpe"] == pytest.approx(mean) and 0 < mean < 1000
