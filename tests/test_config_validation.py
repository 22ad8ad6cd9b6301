"""Tests for posejax.config.validation: every class of bad value, misspelled overrides, config files."""

import glob
import os

import ml_collections
import pytest

from configs import default
from posejax.common.errors import PosejaxError
from posejax.config import config_file as cf, validation as cv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**changes):
  """configs/default.py with dotted-path changes applied (unlocked, so types may be wrong)."""
  config = default.get_config()
  for path, value in changes.items():
    *parents, leaf = path.split("__")
    node = config
    for part in parents:
      node = node[part]
    with node.ignore_type():
      node[leaf] = value
  return config


@pytest.mark.parametrize("config_file", sorted(glob.glob(os.path.join(REPO, "configs", "[!_]*.py"))))
def test_every_shipped_config_is_valid(config_file):
  cv.validate_config(cf.load_config_file(config_file))


@pytest.mark.parametrize("change,message", [
    (dict(model__filter_widths=(2, 2)), r"--config.model.filter_widths=2,2: expected a non-empty list of odd"),
    (dict(model__filter_widths=()), r"--config.model.filter_widths=: expected a non-empty list"),
    (dict(model__filter_widths=(3, -1)), r"filter_widths=3,-1: expected"),
    (dict(model__filter_widths="3,3"), r"filter_widths='3,3': expected"),
    (dict(model__channels=0), r"--config.model.channels=0: expected an integer >= 1"),
    (dict(model__dropout=1.0), r"--config.model.dropout=1.0: expected a number in \[0, 1\)"),
    (dict(model__dropout=-0.1), r"--config.model.dropout=-0.1"),
    (dict(model__causal="yes"), r"--config.model.causal='yes': expected True or False"),
    (dict(model__compute_dtype="float16"), r"--config.model.compute_dtype='float16': expected one of 'float32', 'bfloat16'"),
    (dict(train__batch_size=0), r"--config.train.batch_size=0: expected an integer >= 1"),
    (dict(train__batch_size=True), r"--config.train.batch_size=True: expected an integer"),
    (dict(train__epochs=0), r"--config.train.epochs=0"),
    (dict(train__lr=0.0), r"--config.train.lr=0.0: expected a number > 0"),
    (dict(train__lr=float("nan")), r"--config.train.lr=nan"),
    (dict(train__lr_decay=0.0), r"--config.train.lr_decay=0.0: expected a number in \(0, 1\]"),
    (dict(train__lr_decay=1.5), r"--config.train.lr_decay=1.5"),
    (dict(train__bn_momentum_start=0.0), r"--config.train.bn_momentum_start=0.0: expected a number in \(0, 1\]"),
    (dict(train__bn_momentum_end=2.0), r"--config.train.bn_momentum_end=2.0"),
    (dict(train__budget="equal"), r"--config.train.budget='equal': expected one of 'fixed', 'frame_matched', "
                                  r"'equal_samples'"),
    (dict(train__unit_epochs=0), r"--config.train.unit_epochs=0"),
    (dict(train__logs_per_epoch=0), r"--config.train.logs_per_epoch=0"),
    (dict(train__input="gpu"), r"--config.train.input='gpu': expected one of 'auto', 'device', 'host'"),
    (dict(mode="per_action"), r"--config.mode='per_action': expected one of 'common', 'action_based'"),
    (dict(actions="Eating,Walkng"), r"--config.actions: unknown action\(s\) Walkng \(known: Directions"),
    (dict(actions=3), r"--config.actions=3: expected '\*' or canonical action names"),
    (dict(data__train_subjects=()), r"--config.data.train_subjects=: expected a non-empty list of distinct"),
    (dict(data__test_subjects=("S9", "S9")), r"--config.data.test_subjects='S9','S9'"),
    (dict(data__test_subjects=("S9", "S1")), r"--config.data.test_subjects: S1 also in --config.data.train_subjects"),
    (dict(data__keypoints=""), r"--config.data.keypoints='': expected a non-empty string"),
    (dict(data__source="hdf5"), r"--config.data.source='hdf5': expected one of 'npz', 'tfds'"),
    (dict(data__synthetic_frames=-1), r"--config.data.synthetic_frames=-1: expected an integer >= 0"),
    (dict(eval__chunk=0), r"--config.eval.chunk=0"),
    (dict(eval__batch=0), r"--config.eval.batch=0: expected an integer >= 1 or None"),
    (dict(eval__train_metrics=1), r"--config.eval.train_metrics=1: expected True or False"),
    (dict(checkpoint__every_epochs=0), r"--config.checkpoint.every_epochs=0"),
    (dict(checkpoint__keep=0), r"--config.checkpoint.keep=0"),
    (dict(sharding__action_devices=-1), r"--config.sharding.action_devices=-1: expected an integer >= 0"),
    (dict(seed=1.5), r"--config.seed=1.5: expected an integer"),
])
def test_bad_values_are_one_line_errors_naming_the_field(change, message):
  with pytest.raises(PosejaxError, match=message) as info:
    cv.validate_config(_config(**change))
  assert "\n" not in str(info.value)


def test_allowed_edge_values_and_optional_or_extra_fields_pass():
  cv.validate_config(_config(model__dropout=0.0, train__lr_decay=1.0, train__bn_momentum_start=1.0,
                             model__compute_dtype="bfloat16", data__source="tfds", train__input="host",
                             eval__batch=64, actions=("Eating", "TakingPhoto")))
  config = default.get_config()
  config.train.some_new_field = "whatever"  # fields added by other code are not rejected
  del config.sharding  # optional sections may be absent
  del config.eval.chunk
  cv.validate_config(config)


def test_a_missing_required_field_is_named():
  config = default.get_config()
  del config.model.channels
  with pytest.raises(PosejaxError, match=r"--config.model.channels: missing from the config"):
    cv.validate_config(config)


@pytest.mark.parametrize("path,message", [
    ("train.epoch", "--config.train.epoch: no such field; did you mean --config.train.epochs?"),
    ("trian.epochs", "--config.trian.epochs: no such field; did you mean --config.train.epochs?"),
    ("model.filter_width", "--config.model.filter_width: no such field; did you mean --config.model.filter_widths?"),
    ("train.zzz", "--config.train.zzz: no such field (fields of --config.train: augment, batch_size,"),
    ("train.epochs.x", "--config.train.epochs.x: no such field (--config.train.epochs is a value, not a group"),
])
def test_misspelled_overrides_name_the_closest_field(path, message):
  got = cv.unknown_override_message(default.get_config(), path)
  assert got.startswith(message), got
  with pytest.raises(PosejaxError, match="no such field"):
    cv.check_overrides(default.get_config(), ["train.epochs", path])
  assert cv.unknown_override_message(default.get_config(), "eval.batch") is None  # a placeholder field


def test_config_file_problems_are_one_line(tmp_path):
  (tmp_path / "raises.py").write_text("def get_config():\n  raise ValueError('boom\\nmore')\n")
  (tmp_path / "syntax.py").write_text("def get_config(:\n")
  (tmp_path / "empty.py").write_text("x = 1\n")
  (tmp_path / "arg.py").write_text(
      "import ml_collections\ndef get_config(arg):\n  return ml_collections.ConfigDict({'a': arg})\n")
  cases = {"missing.py": "file not found", "raises.py": "ValueError: boom$", "syntax.py": "SyntaxError",
           "empty.py": "defines no get_config"}
  for name, message in cases.items():
    with pytest.raises(PosejaxError, match=message):
      cf.load_config_file(str(tmp_path / name))
  assert cf.load_config_file(str(tmp_path / "arg.py") + ":x").a == "x"
  assert isinstance(cf.load_config_file(os.path.join(REPO, "configs", "ab27.py")), ml_collections.ConfigDict)
