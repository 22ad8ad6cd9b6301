"""Tests for the run config's typed pieces (run_config.from_config, to_dict, replace).

Final home: tests/test_run_config.py, importing `from posejax.config import run_config`. The
references are independent of the module: configs/*.py loaded here with importlib and walked as
ConfigDicts, the recorded config.json files of tests/fixtures, and hand-made cases.
"""

# Final import, once this file is tests/test_run_config.py: from posejax.config import run_config

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import sys

import ml_collections
import pytest

import posejax

from posejax.config import run_config

PosejaxError = run_config.PosejaxError
REPO = pathlib.Path(posejax.__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.py") if p.name != "__init__.py")
FIXTURES = sorted((REPO / "tests" / "fixtures").glob("*/*/config.json"))


def _load(path: pathlib.Path) -> ml_collections.ConfigDict:
  """get_config() of a config file, loaded here (not through run_config)."""
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the variants import `configs.default`
  spec = importlib.util.spec_from_file_location(f"_test_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture(scope="session")
def default_path() -> pathlib.Path:
  return REPO / "configs" / "default.py"


@pytest.fixture(autouse=True)
def defaults_file(default_path, monkeypatch) -> pathlib.Path:
  monkeypatch.setattr(run_config, "DEFAULT_CONFIG", default_path)
  return default_path


@pytest.fixture()
def default_config(defaults_file) -> ml_collections.ConfigDict:
  return _load(defaults_file)


def _leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
  """Dotted name -> value of every field of a ConfigDict."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_leaves(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def _dataclass_leaves(node: object, prefix: str = "") -> dict[str, object]:
  out = {}
  for field in dataclasses.fields(node):
    value = getattr(node, field.name)
    if dataclasses.is_dataclass(value):
      out.update(_dataclass_leaves(value, f"{prefix}{field.name}."))
    else:
      out[prefix + field.name] = value
  return out


def _lists(value: object) -> object:
  """config.json's form of ConfigDict.to_dict(): lists for tuples."""
  if isinstance(value, dict):
    return {k: _lists(v) for k, v in value.items()}
  if isinstance(value, (tuple, list)):
    return [_lists(v) for v in value]
  return value


def _without_family(d: dict) -> dict:
  return {**d, "model": {k: v for k, v in d["model"].items() if k != "family"}}


# --- Every field of configs/default.py, with its value ------------------------------------------


def test_every_default_field_with_its_value(default_config):
  expected = _leaves(default_config)
  got = _dataclass_leaves(run_config.from_config(default_config))
  assert sorted(got) == sorted(expected)  # exactly those fields (their order: the config.json test)
  for name, value in expected.items():
    assert type(got[name]) is type(value) and got[name] == value, name


def test_defaults_are_default_py(default_config):
  assert run_config.defaults() == run_config.from_config(default_config)
  assert run_config.from_config({}) == run_config.defaults()
  assert run_config.to_dict(run_config.defaults()) == _lists(default_config.to_dict())


def test_field_order_is_the_config_json_order(default_config):
  written = json.loads(default_config.to_json())
  got = run_config.to_dict(run_config.defaults())
  assert list(got) == list(written)
  assert all(list(got[k]) == list(written[k]) for k in written if isinstance(written[k], dict))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_round_trips(path, default_config):
  config = _load(path)
  run = run_config.from_config(config)
  d = run_config.to_dict(run)
  expected = _lists(config.to_dict())
  assert d == expected
  assert run_config.from_config(d) == run
  assert run_config.from_config(json.loads(config.to_json())) == run  # from a recorded config.json
  hash(run)  # usable as a static argument of jit


def test_vocabulary():
  assert run_config.MODES == ("common", "action_based")
  assert run_config.BUDGETS == ("fixed", "frame_matched", "equal_samples")
  config = ml_collections.ConfigDict({"eval": {"tta": False}})
  assert run_config.lookup(config, "eval.tta", True) is False
  assert run_config.lookup({"eval": {}}, "eval.tta", True) is True
  assert run_config.lookup({"eval": 3}, "eval.tta") is None


def test_configs_found():
  assert len(CONFIGS) >= 10 and any(p.name == "default.py" for p in CONFIGS)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.parent.name)
def test_recorded_config_json_keeps_its_format(path):
  text = path.read_text()
  d = run_config.to_dict(run_config.from_config(json.loads(text)))
  assert json.dumps(_without_family(d), indent=2) == text  # what config.to_json(indent=2) wrote


def test_fixtures_found():
  assert len(FIXTURES) == 2


# --- Older configs, coercion, frozen ------------------------------------------------------------


def test_older_config_gets_default_values(default_config):
  recorded = json.loads(FIXTURES[0].read_text())  # a tiny action-based run: channels 8, chunk 16
  del recorded["classifier"], recorded["sharding"], recorded["action_match"]
  for group, name in (("data", "valid_subjects"), ("data", "unlabeled_subjects"), ("data", "subset"),
                      ("train", "stride"), ("train", "steps_per_call"), ("eval", "batch"),
                      ("model", "compute_dtype"), ("checkpoint", "every_minutes")):
    del recorded[group][name]
  run = run_config.from_config(recorded)
  missing = ("classifier.enabled", "classifier.epochs", "classifier.channels", "classifier.filter_widths",
             "sharding.action_devices", "action_match", "data.valid_subjects", "data.unlabeled_subjects",
             "data.subset", "train.stride", "train.steps_per_call", "eval.batch", "model.compute_dtype",
             "model.family", "checkpoint.every_minutes")
  defaults, got = _leaves(default_config), _dataclass_leaves(run)
  for name in missing:
    assert type(got[name]) is type(defaults[name]) and got[name] == defaults[name], name
  assert (run.model.channels, run.eval.chunk, run.mode, run.train.epochs) == (8, 16, "action_based", 1)
  assert run.model.channels != defaults["model.channels"]  # the recorded values win


def test_coercion_lists_to_tuples_ints_to_floats():
  run = run_config.from_config({"actions": ["Eating", "Walking"], "model": {"filter_widths": [3, 1], "dropout": 0},
                                "data": {"subset": 1, "train_subjects": ["S1", "S5"]},
                                "train": {"lr": 1, "device_memory_gib": 2}, "checkpoint": {"every_minutes": 5}})
  assert run.actions == ("Eating", "Walking") and run.model.filter_widths == (3, 1)
  assert run.data.train_subjects == ("S1", "S5")
  for value in (run.model.dropout, run.data.subset, run.train.lr, run.train.device_memory_gib,
                run.checkpoint.every_minutes):
    assert type(value) is float
  assert type(run.model.channels) is int and type(run.train.augment) is bool  # not floats
  hash(run)


def test_subject_lists_normalized():
  data = lambda **kw: run_config.from_config({"data": kw}).data
  assert data(train_subjects="S1, S5").train_subjects == ("S1", "S5")
  assert data(test_subjects=("S9,S11",)).test_subjects == ("S9", "S11")  # a command-line override
  assert data(valid_subjects=("",)).valid_subjects == ()  # an empty override
  assert data(unlabeled_subjects=("S5,S6", "S7")).unlabeled_subjects == ("S5", "S6", "S7")
  with pytest.raises(PosejaxError, match=r"^--config\.data\.unlabeled_subjects: 5 is not a list of subjects$"):
    data(unlabeled_subjects=5)


def test_frozen():
  run = run_config.defaults()
  with pytest.raises(dataclasses.FrozenInstanceError):
    run.seed = 1
  for piece in (run.data, run.model, run.train, run.eval, run.classifier, run.checkpoint, run.sharding):
    name = dataclasses.fields(piece)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
      setattr(piece, name, getattr(piece, name))
  assert all(not isinstance(v, (list, dict, set)) for v in _dataclass_leaves(run).values())


# --- Unknown fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("config, message", [
    ({"data": {"nope": 1}}, r"^--config\.data\.nope: no such field \(fields of --config\.data: dataset, dir,"),
    ({"train": {"epoch": 3}}, r"^--config\.train\.epoch: no such field; did you mean --config\.train\.epochs\?$"),
    ({"bogus": 1}, r"^--config\.bogus: no such field"),
    (ml_collections.ConfigDict({"eval": {"tta": True, "flip": False}}), r"^--config\.eval\.flip: no such field"),
    ({"data": 5}, r"^--config\.data=5: a group of fields, not a value$"),
    ({"seed": {"x": 1}}, r"^--config\.seed: a value, not a group of fields$"),
])
def test_unknown_field_raises_naming_it(config, message):
  with pytest.raises(PosejaxError, match=message):
    run_config.from_config(config)


def test_default_file_missing_a_field_is_named(tmp_path, defaults_file, monkeypatch):
  path = tmp_path / "default.py"
  lines = defaults_file.read_text().splitlines(keepends=True)
  path.write_text("".join(line for line in lines if not line.startswith("  config.data.subset = ")))
  monkeypatch.setattr(run_config, "DEFAULT_CONFIG", path)
  with pytest.raises(PosejaxError, match=r"no default for --config\.data\.subset \("):
    run_config.from_config({})


def test_defaults_read_once(tmp_path, defaults_file, monkeypatch):
  path = tmp_path / "default.py"
  path.write_text(defaults_file.read_text())
  monkeypatch.setattr(run_config, "DEFAULT_CONFIG", path)
  first = run_config.from_config({}).model.channels
  path.write_text(path.read_text().replace("config.model.channels = ", "config.model.channels = 1 + "))
  assert run_config.from_config({}).model.channels == first  # not read again


# --- Derived answers ----------------------------------------------------------------------------


def _run(**fields) -> run_config.RunConfig:
  """A RunConfig from dotted fields, e.g. _run(mode='common', **{'classifier.enabled': None})."""
  config: dict = {}
  for dotted, value in fields.items():
    *groups, name = dotted.split(".")
    node = config
    for group in groups:
      node = node.setdefault(group, {})
    node[name] = value
  return run_config.from_config(config)


def test_is_common():
  assert _run(mode="common").is_common is True
  assert _run(mode="action_based").is_common is False


@pytest.mark.parametrize("mode, enabled, expected", [
    ("action_based", None, True), ("common", None, False), ("common", True, True), ("action_based", False, False),
    ("action_based", True, True), ("common", False, False)])
def test_classifier_enabled(mode, enabled, expected):
  assert _run(mode=mode, **{"classifier.enabled": enabled}).classifier_enabled is expected


@pytest.mark.parametrize("seed, shuffle_seed, expected", [(7, None, 7), (7, 0, 0), (7, 5, 5), (0, None, 0)])
def test_data_shuffle_seed(seed, shuffle_seed, expected):
  assert _run(seed=seed, **{"data.shuffle_seed": shuffle_seed}).data_shuffle_seed == expected


@pytest.mark.parametrize("unlabeled, expected", [
    ((), False), (("S5",), True), (("",), False), ("", False), ("S5,S6", True), (["S7"], True)])
def test_semi_supervised(unlabeled, expected):
  assert _run(**{"data.unlabeled_subjects": unlabeled}).data.semi_supervised is expected


def test_classifier_filter_widths_fall_back_to_the_model():
  assert _run(**{"model.filter_widths": (3, 3), "classifier.filter_widths": ()}).classifier_filter_widths == (3, 3)
  assert _run(**{"model.filter_widths": (3, 3), "classifier.filter_widths": [1]}).classifier_filter_widths == (1,)


def test_eval_chunking():
  assert _run(**{"eval.chunk": 64, "eval.batch": None}).eval.chunking == {"chunk": 64, "batch": None}
  assert _run(**{"eval.chunk": 64, "eval.batch": 2}).eval.chunking == {"chunk": 64, "batch": 2}


# --- replace ------------------------------------------------------------------------------------


def test_replace_by_dotted_name():
  run = _run(mode="common")
  new = run_config.replace(run, mode="action_based", **{"eval.by_subject": True, "model.filter_widths": [1, 1]})
  assert (new.mode, new.eval.by_subject, new.model.filter_widths) == ("action_based", True, (1, 1))
  assert new.classifier_enabled and not run.classifier_enabled  # the derived answers follow
  assert (run.mode, run.model.filter_widths) == ("common", run_config.defaults().model.filter_widths)
  assert run_config.replace(run, **{"data.unlabeled_subjects": "S5,S6"}).data.unlabeled_subjects == ("S5", "S6")
  assert _dataclass_leaves(new) == {**_dataclass_leaves(run), "mode": "action_based", "eval.by_subject": True,
                                    "model.filter_widths": (1, 1)}
  piece = run_config.replace(run, eval=dataclasses.replace(run.eval, tta=False))
  assert piece.eval.tta is False and piece.data is run.data


@pytest.mark.parametrize("path, message", [
    ("eval.nope", r"^--config\.eval\.nope: no such field \(fields of --config\.eval: batch,"),
    ("eval.ta", r"^--config\.eval\.ta: no such field; did you mean --config\.eval\.tta\?$"),
    ("mdoe", r"^--config\.mdoe: no such field; did you mean --config\.mode\?$"),
    ("seed.x", r"^--config\.seed\.x: no such field \(--config\.seed is a value"),
    ("eval", r"^--config\.eval: a group of fields")])
def test_replace_unknown_field_raises_naming_it(path, message):
  with pytest.raises(PosejaxError, match=message):
    run_config.replace(run_config.defaults(), **{path: 1})
