"""Tests for posejax.data.tfds_h36m: the TFDS path gives the direct loader's PoseDataset."""

import os

import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data import tfds_h36m
from posejax.data.h36m import load_h36m

H36M_SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]
MPII_SYMMETRY = [[3, 4, 5, 13, 14, 15], [0, 1, 2, 10, 11, 12]]
# Different dict orders per subject: the record order must follow each subject's file order.
SEQUENCES = {"S1": ("Walking 1", "Eating 1", "Walking", "Eating 2", "Sitting 1"),
             "S5": ("Eating 1", "Walking 1", "Eating", "Walking", "Sitting 2")}


def write_published_files(directory, sources):
  """Tiny data_3d_h36m.npz plus data_2d_h36m_<name>.npz for each (name, K, symmetry)."""
  rng = np.random.default_rng(0)
  lengths = {(s, n): int(rng.integers(5, 9)) for s, names in SEQUENCES.items() for n in names}
  positions_3d = {s: {n: (rng.normal(scale=0.3, size=(lengths[s, n], 32, 3)) + [0, 0, 1])
                      .astype(np.float32) for n in names} for s, names in SEQUENCES.items()}
  np.savez_compressed(os.path.join(directory, "data_3d_h36m.npz"), positions_3d=positions_3d)
  for name, k, symmetry in sources:
    # Videos run 2 frames past the mocap (the loader crops them).
    positions_2d = {s: {n: [rng.uniform(0, 1000, (lengths[s, n] + 2, k, 2)).astype(np.float32)
                            for _ in range(4)] for n in names} for s, names in SEQUENCES.items()}
    metadata = {"num_joints": k, "keypoints_symmetry": symmetry}
    np.savez_compressed(os.path.join(directory, f"data_2d_h36m_{name}.npz"),
                        positions_2d=positions_2d, metadata=metadata)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("h36m")
  raw = root / "raw"
  raw.mkdir()
  write_published_files(raw, [("gt", 17, H36M_SYMMETRY), ("my_keypoints", 16, MPII_SYMMETRY)])
  return str(raw), str(root / "tfds")


def assert_same_dataset(a, b):
  for field in ("keypoints_left", "keypoints_right", "skeleton", "num_keypoints", "fps",
                "layout_name", "source"):
    assert getattr(a, field) == getattr(b, field), field
  assert [(r.subject, r.name, r.action, r.camera) for r in a.sequences] == \
         [(r.subject, r.name, r.action, r.camera) for r in b.sequences]
  for ra, rb in zip(a.sequences, b.sequences):
    for field in ("poses_2d", "poses_3d", "intrinsic"):
      np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field))
      assert getattr(ra, field).dtype == np.float32
    assert (ra.res_w, ra.res_h) == (rb.res_w, rb.res_h)


@pytest.mark.parametrize("subjects,actions", [
    (None, None), (["S5", "S1"], ["Walking"]), (["S1"], "Eating,Sitting"), ("S5", None)])
def test_records_equal_the_direct_loader(dirs, subjects, actions):
  raw, tfds_dir = dirs
  records = tfds_h36m.load_records(tfds_dir, "gt", subjects, actions, manual_dir=raw)
  assert_same_dataset(records, load_h36m(raw, "gt", subjects, actions))


def test_only_the_requested_splits_are_read(dirs):
  raw, tfds_dir = dirs
  tfds_h36m.load_records(tfds_dir, "gt", manual_dir=raw)  # built
  builder = tfds_h36m.H36mPosejax(data_dir=tfds_dir, config="gt")
  assert sorted(builder.info.splits) == sorted(f"{s}_{a}" for s in SEQUENCES
                                               for a in ("Eating", "Sitting", "Walking"))
  split = tfds_h36m.load_split_names(["S1", "S5"], ["Walking"])
  assert split == "S1_Walking+S5_Walking"
  files = [os.path.basename(f.filename) for f in builder.info.splits[split].file_instructions]
  assert files and all("-S1_Walking." in f or "-S5_Walking." in f for f in files)
  # Reading without access to any other split's files gives the same records.
  hidden = []
  for path in os.listdir(builder.data_dir):
    if ".tfrecord" in path and "_Walking." not in path:
      os.rename(os.path.join(builder.data_dir, path), os.path.join(builder.data_dir, "_" + path))
      hidden.append(path)
  assert hidden
  try:
    records = tfds_h36m.load_records(tfds_dir, "gt", ["S1", "S5"], ["Walking"])
    assert_same_dataset(records, load_h36m(raw, "gt", ["S1", "S5"], ["Walking"]))
  finally:
    for path in hidden:
      os.rename(os.path.join(builder.data_dir, "_" + path), os.path.join(builder.data_dir, path))


def test_custom_keypoint_source(dirs):
  raw, tfds_dir = dirs
  records = tfds_h36m.load_records(tfds_dir, "my_keypoints", ["S1"], ["Sitting"], manual_dir=raw)
  assert records.num_keypoints == 16 and records.sequences[0].poses_2d.shape[1:] == (16, 2)
  assert_same_dataset(records, load_h36m(raw, "my_keypoints", ["S1"], ["Sitting"]))
  # Once built, the custom source is read without the npz files (sized from the built dataset).
  again = tfds_h36m.load_records(tfds_dir, "my_keypoints", ["S1"], ["Sitting"])
  assert_same_dataset(again, records)


def test_dataset_records_the_npz_fingerprint(dirs):
  from posejax.data.h36m import dataset_fingerprint

  raw, tfds_dir = dirs
  builder = tfds_h36m.prepared_builder(tfds_dir, "gt", manual_dir=raw)
  assert tfds_h36m.dataset_fingerprint(builder) == dataset_fingerprint(raw, "gt")


def test_required_actions_are_checked_like_the_direct_loader(dirs):
  raw, tfds_dir = dirs
  builder = tfds_h36m.prepared_builder(tfds_dir, "gt", manual_dir=raw)
  with pytest.raises(PosejaxError, match="Greeting have no sequences for subject S1"):
    tfds_h36m.read_records(builder, ["S1"], ["Walking", "Greeting"], require_actions=True)
  with pytest.raises(PosejaxError, match="Greeting"):
    load_h36m(raw, "gt", ["S1"], ["Walking", "Greeting"])
  lenient = tfds_h36m.read_records(builder, ["S1"], ["Walking", "Greeting"])
  assert_same_dataset(lenient, load_h36m(raw, "gt", ["S1"], ["Walking"]))


def test_split_names_follow_subject_then_action_table_order():
  assert tfds_h36m.load_split_names("S9,S1", ["Walking", "Eating"]) == \
      "S9_Eating+S9_Walking+S1_Eating+S1_Walking"


def test_user_errors(dirs, tmp_path):
  raw, tfds_dir = dirs
  with pytest.raises(PosejaxError, match="S7"):
    tfds_h36m.load_records(tfds_dir, "gt", ["S7"], manual_dir=raw)
  with pytest.raises(PosejaxError, match="not built; build it with `python -m posejax.data.tfds_h36m"):
    tfds_h36m.load_records(str(tmp_path / "empty"), "gt")
  with pytest.raises(PosejaxError, match="h36m_posejax/unbuilt_source .*not built"):
    tfds_h36m.load_records(str(tmp_path / "empty"), "unbuilt_source")
  with pytest.raises(PosejaxError, match="Hopping"):
    tfds_h36m.load_split_names(["S1"], ["Greeting", "Hopping"])


def test_pipeline_batches_from_tfds_equal_those_from_the_files(dirs):
  from posejax.training import input_pipeline

  raw, tfds_dir = dirs
  kwargs = dict(actions=("Eating", "Walking"), mode="action_based", batch_size=8,
                receptive_field=5, seed=3)
  from_tfds = next(input_pipeline.train_batches(
      tfds_h36m.load_records(tfds_dir, "gt", ["S1", "S5"], manual_dir=raw), **kwargs))
  from_files = next(input_pipeline.train_batches(load_h36m(raw, "gt", ["S1", "S5"]), **kwargs))
  for key in from_files:
    np.testing.assert_array_equal(from_tfds[key], from_files[key])


def test_command_line_builds_every_source_by_default(tmp_path, capsys):
  raw = tmp_path / "raw"
  raw.mkdir()
  write_published_files(raw, [("gt", 17, H36M_SYMMETRY), ("my_keypoints", 16, MPII_SYMMETRY)])
  out = str(tmp_path / "tfds")
  assert tfds_h36m.main(["--data-dir", str(raw), "--out", out]) == 0
  lines = [line for line in capsys.readouterr().out.splitlines() if ": " + out in line]  # not TFDS's
  assert [line.split(":")[0] for line in lines] == ["gt", "my_keypoints"]
  assert all("40 examples in 6 splits" in line for line in lines)
  assert tfds_h36m.main(["--data-dir", str(tmp_path / "none"), "--out", out]) == 2
  assert "no data_2d_h36m_<source>.npz files" in capsys.readouterr().err
