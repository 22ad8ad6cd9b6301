"""Tests for posejax.data.loading: npz and TFDS sources agree; synthetic data never overwrites."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import quickstart
from posejax.common.errors import PosejaxError
from posejax.data import loading, synthetic
from posejax.training import input_pipeline
from pieces import data_args

ACTIONS = ("Eating", "Sitting", "Walking")


@pytest.fixture(scope="module")
def npz_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("npz"))
  synthetic.generate(path, frames=16, seed=5, subjects=("S1", "S9", "S11"))
  return path


@pytest.fixture(scope="module")
def tfds_dir(npz_dir, tmp_path_factory):
  """The TFDS dataset of the npz files, built by the command line tool."""
  from posejax.data import tfds_h36m

  path = str(tmp_path_factory.mktemp("tfds"))
  assert tfds_h36m.main(["--data-dir", npz_dir, "--out", path, "--keypoints", "synthetic"]) == 0
  return path


def _config(data_dir, source="npz", keypoints="synthetic", frames=0):
  config = quickstart.get_config()
  config.data.source = source
  config.data.dir = data_dir
  config.data.keypoints = keypoints
  config.data.synthetic_frames = frames
  config.data.train_subjects = ("S11", "S1")  # not the files' order: the config's order counts
  config.data.test_subjects = ("S9",)
  return config


def assert_same_records(a, b):
  for field in ("keypoints_left", "keypoints_right", "skeleton", "num_keypoints", "fps", "layout_name",
                "source"):
    assert getattr(a, field) == getattr(b, field), field
  assert len(a.sequences) == len(b.sequences) > 0
  for ra, rb in zip(a.sequences, b.sequences):
    assert (ra.subject, ra.name, ra.action, ra.camera, ra.res_w, ra.res_h) == \
        (rb.subject, rb.name, rb.action, rb.camera, rb.res_w, rb.res_h)
    for field in ("poses_2d", "poses_3d", "intrinsic"):
      x, y = getattr(ra, field), getattr(rb, field)
      assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
      assert x.tobytes() == y.tobytes(), (ra.subject, ra.name, ra.camera, field)  # bit-equal


def test_tfds_source_gives_the_npz_records_and_batches(npz_dir, tfds_dir):
  train_npz, test_npz, fp_npz = loading.load_data(*data_args(_config(npz_dir)), ACTIONS)
  train_tfds, test_tfds, fp_tfds = loading.load_data(*data_args(_config(tfds_dir, "tfds")), ACTIONS)
  assert train_npz.subjects == ("S11", "S1") and test_npz.subjects == ("S9",)
  assert set(train_npz.actions) == set(ACTIONS)
  assert_same_records(train_tfds, train_npz)
  assert_same_records(test_tfds, test_npz)
  assert fp_tfds == fp_npz and len(fp_npz) == 16
  kwargs = dict(actions=ACTIONS, mode="action_based", batch_size=8, receptive_field=9, seed=3)
  batches_npz = input_pipeline.train_batches(train_npz, **kwargs)
  batches_tfds = input_pipeline.train_batches(train_tfds, **kwargs)
  for _ in range(2):
    a, b = next(batches_npz), next(batches_tfds)
    assert sorted(a) == sorted(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_tfds_source_reads_only_the_selected_splits(npz_dir, tfds_dir):
  builder_dir = os.path.join(tfds_dir, "h36m_posejax", "synthetic", "1.1.0")
  wanted = [f"-{s}_{a}." for s in ("S1", "S9", "S11") for a in ("Walking",)]
  hidden = [f for f in os.listdir(builder_dir) if ".tfrecord" in f and not any(w in f for w in wanted)]
  assert len(hidden) > 30
  for name in hidden:
    os.rename(os.path.join(builder_dir, name), os.path.join(builder_dir, "_" + name))
  try:
    from_tfds = loading.load_data(*data_args(_config(tfds_dir, "tfds")), ("Walking",))
  finally:
    for name in hidden:
      os.rename(os.path.join(builder_dir, "_" + name), os.path.join(builder_dir, name))
  from_npz = loading.load_data(*data_args(_config(npz_dir)), ("Walking",))
  for a, b in zip(from_tfds[:2], from_npz[:2]):
    assert_same_records(a, b)


def test_tfds_source_errors(npz_dir, tfds_dir, tmp_path):
  with pytest.raises(PosejaxError) as e:
    loading.load_data(*data_args(_config(str(tmp_path / "nothing"), "tfds")), ACTIONS)
  assert "not built" in str(e.value) and "python -m posejax.data.tfds_h36m --data-dir" in str(e.value)
  assert "\n" not in str(e.value)
  with pytest.raises(PosejaxError, match="not built"):  # built for another 2D source only
    loading.load_data(*data_args(_config(tfds_dir, "tfds", keypoints="gt")), ACTIONS)
  config = _config(tfds_dir, "tfds")
  config.data.test_subjects = ("S5",)
  with pytest.raises(PosejaxError, match="S5 not in the dataset"):
    loading.load_data(*data_args(config), ACTIONS)
  with pytest.raises(PosejaxError, match="--config.data.source: 'parquet'"):
    loading.load_data(*data_args(_config(npz_dir, "parquet")), ACTIONS)


def test_tfds_build_refuses_other_files(npz_dir, tfds_dir, tmp_path, capsys):
  from posejax.data import tfds_h36m

  other = str(tmp_path / "other")
  synthetic.generate(other, frames=16, seed=6, subjects=("S1",))
  assert tfds_h36m.main(["--data-dir", other, "--out", tfds_dir, "--keypoints", "synthetic"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "built from other files" in err and err.count("\n") == 1


def test_loading_imports_no_tensorflow():
  code = ("import sys, posejax.data.loading; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ synthetic data next to user data


def _snapshot(directory):
  """name -> (bytes, mtime_ns) of every entry."""
  out = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
      out[name] = (f.read(), os.stat(path).st_mtime_ns)
  return out


@pytest.fixture
def user_dir(npz_dir, tmp_path):
  """A directory of the user's own files: a 3D file and one 2D source, no marker."""
  path = tmp_path / "user"
  path.mkdir()
  shutil.copy(os.path.join(npz_dir, "data_3d_h36m.npz"), path / "data_3d_h36m.npz")
  shutil.copy(os.path.join(npz_dir, "data_2d_h36m_gt.npz"), path / "data_2d_h36m_cpn_ft_h36m_dbb.npz")
  return str(path)


@pytest.mark.parametrize("keypoints", ["nosuch", "synthetic"])
def test_missing_source_next_to_user_files_is_an_error_and_writes_nothing(user_dir, keypoints):
  before = _snapshot(user_dir)
  with pytest.raises(PosejaxError) as e:
    loading.load_data(*data_args(_config(user_dir, keypoints=keypoints, frames=16)), ACTIONS)
  message = str(e.value)
  assert f"data_2d_h36m_{keypoints}.npz: file not found" in message and "\n" not in message
  assert "present in " + user_dir + ": cpn_ft_h36m_dbb" in message
  assert _snapshot(user_dir) == before


def test_user_files_are_read_as_they_are(user_dir):
  before = _snapshot(user_dir)
  train, _, _ = loading.load_data(*data_args(_config(user_dir, keypoints="cpn_ft_h36m_dbb", frames=16)), ACTIONS)
  assert train.source == "cpn_ft_h36m_dbb" and _snapshot(user_dir) == before


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_generates_into_an_empty_directory_with_a_marker(tmp_path, make):
  data_dir = tmp_path / "data"
  if make == "empty":
    data_dir.mkdir()
  train, test, fingerprint = loading.load_data(*data_args(_config(str(data_dir), frames=16)), ACTIONS)
  assert train.subjects == ("S11", "S1") and test.subjects == ("S9",)
  assert sorted(os.listdir(data_dir)) == sorted([*synthetic.FILE_NAMES.values(), synthetic.MARKER])
  with open(data_dir / synthetic.MARKER) as f:
    marker = json.load(f)
  assert (marker["frames"], marker["seed"], marker["complete"]) == (16, 0, True)
  assert sorted(marker["files"]) == sorted(synthetic.FILE_NAMES.values())
  # A second run reads the files it generated.
  before = _snapshot(data_dir)
  assert loading.load_data(*data_args(_config(str(data_dir), frames=16)), ACTIONS)[2] == fingerprint
  assert _snapshot(data_dir) == before


def test_marked_directory_with_a_missing_source_is_regenerated(tmp_path):
  data_dir = str(tmp_path / "data")
  first, _, _ = loading.load_data(*data_args(_config(data_dir, frames=16)), ACTIONS)
  os.remove(os.path.join(data_dir, "data_2d_h36m_synthetic.npz"))
  again, _, _ = loading.load_data(*data_args(_config(data_dir, frames=16)), ACTIONS)
  assert_same_records(again, first)  # same generator parameters, same data
  marker = synthetic.read_marker(data_dir)
  assert marker["complete"] and "data_2d_h36m_synthetic.npz" in marker["files"]


def test_foreign_files_without_marker_are_an_error_and_nothing_is_written(tmp_path):
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  (data_dir / "notes.txt").write_text("mine")
  (data_dir / "data_2d_h36m_gt.npz").write_bytes(b"not the generator's")
  before = _snapshot(data_dir)
  for keypoints in ("synthetic", "gt"):
    with pytest.raises(PosejaxError) as e:
      loading.load_data(*data_args(_config(str(data_dir), keypoints=keypoints, frames=16)), ACTIONS)
    assert "data_3d_h36m.npz: file not found; not generating synthetic data" in str(e.value)
    assert "notes.txt" in str(e.value) and "\n" not in str(e.value)
  assert _snapshot(data_dir) == before


@pytest.mark.parametrize("change,match", [
    ({"keypoints": "nosuch"}, "unknown 2D source 'nosuch'.*sources present in .*: none"),
    ({"test_subjects": ("S9", "S2")}, "subject\\(s\\) S2 are not in the synthetic data"),
    ({"actions": ("Walking", "Hopping")}, "unknown action\\(s\\) Hopping"),
    ({"synthetic_frames": 8}, "--config.data.synthetic_frames"),
])
def test_everything_is_checked_before_generating(tmp_path, change, match):
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  config = _config(str(data_dir), keypoints=change.get("keypoints", "synthetic"),
                   frames=change.get("synthetic_frames", 16))
  config.data.test_subjects = change.get("test_subjects", ("S9",))
  with pytest.raises(PosejaxError, match=match):
    loading.load_data(*data_args(config), change.get("actions", ACTIONS))
  assert os.listdir(data_dir) == []
