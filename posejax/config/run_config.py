"""The run config, read once: typed, frozen pieces of the ml_collections config.

Why: the run config used to travel whole, as an `ml_collections.ConfigDict`, to every function
that needed a field of it; each re-wrote that field's default (`config.eval.get("tta", True)`)
and re-derived the same answers (the data order's seed, whether the classifier is on). Here
one function, `from_config`, turns the validated config (or a checkpoint's recorded
config.json, written by any version) into a `RunConfig` of frozen dataclasses, once, and
functions take the piece they use (`DataConfig`, `EvalConfig`, ...).

Defaults live only in configs/default.py: a field a config lacks (an older config.json) takes
the value written there, loaded once per process; this module writes none. A field that
configs/default.py does not define is an error (`--config.the.field: no such field`). The
answers derived from several fields (`RunConfig.is_common`, `RunConfig.data_shuffle_seed`,
`RunConfig.classifier_enabled`, `DataConfig.semi_supervised`, ...) have their one home here.

    run = run_config.from_config(config)           # after config_validation.validate_config
    run.eval.tta, run.data.semi_supervised         # typed, no defaults at the call site
    run = run_config.replace(run, **{"eval.by_subject": True})  # an override (eval.py's flags)
    config_json = run_config.to_dict(run)          # the config.json format (lists for tuples)

The pieces are hashable (tuples for sequences), so they can be static arguments of jitted
functions. The run config's vocabulary lives here too: MODES, BUDGETS and `lookup` (a dotted
lookup for code that still holds a ConfigDict).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import pathlib
import typing
from typing import Any, Mapping

from posejax.common.errors import PosejaxError
from posejax.config.config_file import load_config_file

# The defaults of every field (this file is posejax/config/run_config.py of a source checkout, or
# of an installed package beside its `configs` package).
DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "default.py"
PREFIX = "--config."

MODES = ("common", "action_based")  # config.mode
BUDGETS = ("fixed", "frame_matched", "equal_samples")  # config.train.budget


def is_common(mode: str) -> bool:
  """Whether `mode` (config.mode, or a recorded run's 'mode') is common mode: one model, all actions."""
  return mode == "common"


def lookup(config: Any, dotted: str, default: Any = None) -> Any:
  """`config.a.b` or `default` when any part is absent (older configs lack newer fields)."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      return default
  return node


def _subjects(value: Any, field: str) -> tuple[str, ...]:
  """A subjects field as a tuple of names: 'S5,S6', ('S5', 'S6') and ('S5,S6',) (a command-line
  override) give ('S5', 'S6'); '' and ('',) (an empty override) give ()."""
  if isinstance(value, str):
    return tuple(s.strip() for s in value.split(",") if s.strip())
  try:
    return tuple(p.strip() for s in (value or ()) for p in str(s).split(",") if p.strip())
  except TypeError:
    raise PosejaxError(f"{PREFIX}data.{field}: {value!r} is not a list of subjects") from None


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


class _Piece:
  """Coerces on construction (from_config, replace, direct): lists to tuples, ints to floats for
  float fields."""

  def __post_init__(self) -> None:
    hints = _hints(type(self))
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, list):
        value = tuple(value)
      elif hints[field.name] is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
      object.__setattr__(self, field.name, value)


@dataclasses.dataclass(frozen=True)
class DataConfig(_Piece):
  """config.data: which dataset, subjects and frames a run reads."""
  dataset: str  # 'h36m' (Human3.6M) or 'humaneva15' (HumanEva-I, 15 joints)
  source: str  # 'npz' files or 'tfds' (dir is then a TFDS data dir)
  dir: str  # folder of the dataset files
  keypoints: str  # 2D detections: data_2d_<dataset>_<keypoints>.npz
  train_subjects: tuple[str, ...]  # labeled training subjects; empty: the dataset's default split
  test_subjects: tuple[str, ...]  # test subjects; empty: the dataset's default split
  valid_subjects: tuple[str, ...]  # held-out split for checkpoint selection; empty: none
  synthetic_frames: int  # > 0: generate synthetic files of this length when missing
  synthetic_seed: int  # seed of the generated synthetic data
  shuffle_seed: int | None  # seed of the training data order; None: RunConfig.seed
  subset: float  # fraction of each training sequence (a contiguous run)
  downsample: int  # every N-th frame, training and evaluation
  unlabeled_subjects: tuple[str, ...]  # semi-supervised training's unlabeled subjects; empty: off

  def __post_init__(self) -> None:
    super().__post_init__()
    for name in ("train_subjects", "test_subjects", "valid_subjects", "unlabeled_subjects"):
      object.__setattr__(self, name, _subjects(getattr(self, name), name))

  @property
  def semi_supervised(self) -> bool:
    """Semi-supervised training: unlabeled subjects are given."""
    return bool(self.unlabeled_subjects)


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Piece):
  """config.model: the pose model's architecture and compute dtype."""
  family: str  # the model family (today VideoPose3D's temporal convolutional network only)
  filter_widths: tuple[int, ...]  # odd width per layer; receptive field = their product
  channels: int  # channels of every hidden layer
  dropout: float  # dropout rate
  causal: bool  # each pose from past and present frames only
  dense: bool  # dense instead of dilated convolutions
  compute_dtype: str  # 'float32' or 'bfloat16' (convolutions and matmuls; training only)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Piece):
  """config.train: budget, optimizer, schedules, semi-supervision and the training step."""
  epochs: int  # common epochs (the budget of every action model, see budget)
  batch_size: int  # training examples per step and model
  lr: float  # initial learning rate (Adam, AMSGrad)
  lr_decay: float  # learning-rate factor per epoch
  bn_momentum_start: float  # BatchNorm momentum of the first epoch
  bn_momentum_end: float  # BatchNorm momentum reached in the last epoch
  augment: bool  # flip augmentation
  stride: int  # output frames per training example (chunk); > 1 trains the dilated model
  dense_training: bool  # train the dilated model at stride 1 too (--disable-optimizations)
  warmup: int  # semi-supervised: supervised-only epochs first
  linear_projection: bool  # semi-supervised: pinhole projection without distortion
  bone_length: bool  # semi-supervised: the bone-length term
  projection_loss: bool  # semi-supervised: the 2D reprojection loss
  budget: str  # 'fixed', 'frame_matched' or 'equal_samples': epochs of each action model
  unit_epochs: int  # budget 'fixed': own epochs per action per common epoch
  logs_per_epoch: int  # log points (validation, metrics.jsonl line) per common epoch
  progress: bool  # progress bar while training
  input: str  # where windows are gathered: 'device', 'host' or 'auto'
  slots: int  # models per global step (0: chosen by the schedule)
  device_memory_gib: float  # device memory the compiled step may use (0: what the device reports)
  steps_per_call: int  # global steps per compiled call on the device path


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Piece):
  """config.eval: validation at log points and the final evaluation."""
  tta: bool  # flip test-time augmentation
  validate: bool  # per-log-point test MPJPE/MPJVE (no TTA)
  train_metrics: bool  # per-log-point MPJPE on the models' own training sequences
  by_subject: bool  # per-subject result tables too
  chunk: int  # output frames per evaluation chunk
  batch: int | None  # chunks per slice and evaluation step; None: chosen by chunk_plan

  @property
  def chunking(self) -> dict[str, Any]:
    """{'chunk', 'batch'}: the keyword arguments of the evaluation passes (`evaluation`)."""
    return {"chunk": self.chunk, "batch": self.batch}


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(_Piece):
  """config.classifier: the action classifier that routes test sequences without labels."""
  enabled: bool | None  # route by predicted action; None: on in action-based mode
  epochs: int  # epochs over all selected actions' training windows
  channels: int  # channels of its hidden layers
  filter_widths: tuple[int, ...]  # its filter widths; empty: the pose model's


@dataclasses.dataclass(frozen=True)
class CheckpointConfig(_Piece):
  """config.checkpoint: when checkpoints are written, how many are kept, where a run starts."""
  every_epochs: int  # checkpoint every N log points (and at the end, on SIGTERM)
  every_minutes: float  # also every N minutes between log points (0: off)
  keep: int  # newest checkpoints kept (plus the best with a validation split)
  resume_from: str | int | None  # a step of this workdir or a checkpoint path; None: the newest here


@dataclasses.dataclass(frozen=True)
class ShardingConfig(_Piece):
  """config.sharding: how the action models are laid out over the devices."""
  action_devices: int  # devices the action models are split over; 0: chosen from the device count


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which actions a run selects: `actions` of the dataset, matched by `action_match`."""
  actions: str | tuple[str, ...]  # '*', 'Sitting,Walking' or canonical action names
  action_match: str  # 'exact' canonical names or 'prefix' (the reference's -a filter)


@dataclasses.dataclass(frozen=True)
class RunConfig(_Piece):
  """The whole run config: the top-level fields and one piece per group."""
  mode: str  # 'common' (one model, all actions) or 'action_based' (one model per action)
  actions: str | tuple[str, ...]  # '*', 'Sitting,Walking' or canonical action names
  action_match: str  # how `actions` selects: 'exact' names or 'prefix' (the reference's -a)
  seed: int  # initial weights and dropout (and the data order unless data.shuffle_seed)
  distributed: bool  # jax.distributed.initialize() for multi-host runs
  compilation_cache_dir: str | None  # JAX's persistent compilation cache; None: the default, '': off
  data: DataConfig  # config.data
  model: ModelConfig  # config.model
  train: TrainConfig  # config.train
  eval: EvalConfig  # config.eval
  classifier: ClassifierConfig  # config.classifier
  checkpoint: CheckpointConfig  # config.checkpoint
  sharding: ShardingConfig  # config.sharding

  @property
  def selection(self) -> Selection:
    """The action selection (actions, action_match), as the data loaders take it."""
    return Selection(self.actions, self.action_match)

  @property
  def is_common(self) -> bool:
    """Common mode: one model for all selected actions."""
    return is_common(self.mode)

  @property
  def data_shuffle_seed(self) -> int:
    """The seed of the training data order: data.shuffle_seed, or `seed` when that is None."""
    return self.seed if self.data.shuffle_seed is None else self.data.shuffle_seed

  @property
  def classifier_enabled(self) -> bool:
    """classifier.enabled; None means on in action-based mode."""
    enabled = self.classifier.enabled
    return self.mode == "action_based" if enabled is None else bool(enabled)

  @property
  def classifier_filter_widths(self) -> tuple[int, ...]:
    """The classifier's filter widths: classifier.filter_widths, or the pose model's when empty."""
    return tuple(self.classifier.filter_widths or self.model.filter_widths)


# --- ConfigDict / dict <-> RunConfig ------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _defaults_at(path: str) -> dict[str, Any]:
  """get_config() of the defaults file at `path` as a nested plain dict, read once per path."""
  return _plain(load_config_file(path))


def _plain(value: Any) -> Any:
  """A ConfigDict (FieldReferences resolved, placeholders None) or mapping as nested dicts."""
  if hasattr(value, "to_dict") and not isinstance(value, Mapping):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  return value


def _unknown(known: Mapping[str, Any], path: str) -> PosejaxError:
  """The error for `path`, whose last part is none of the `known` fields of its group."""
  group, _, name = path.rpartition(".")
  close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
  if close:
    return PosejaxError(f"{PREFIX}{path}: no such field; did you mean {PREFIX}{group + '.' if group else ''}"
                        f"{close[0]}?")
  where = f"{PREFIX}{group}" if group else "--config"
  return PosejaxError(f"{PREFIX}{path}: no such field (fields of {where}: {', '.join(sorted(known))})")


def _overlay(defaults: Mapping[str, Any], given: Mapping[str, Any], prefix: str) -> dict[str, Any]:
  """`defaults` with the values of `given` in their place (new dicts; neither is changed)."""
  out = {}
  for key, default in defaults.items():
    if isinstance(default, Mapping):
      value = given.get(key, {})
      if not isinstance(value, Mapping):
        raise PosejaxError(f"{PREFIX}{prefix}{key}={value!r}: a group of fields, not a value")
      out[key] = _overlay(default, value, f"{prefix}{key}.")
    else:
      value = given.get(key, default)
      if isinstance(value, Mapping):
        raise PosejaxError(f"{PREFIX}{prefix}{key}: a value, not a group of fields")
      out[key] = value
  for key in given:
    if key not in defaults:
      raise _unknown(defaults, prefix + key)
  return out


def _piece_type(cls: type, name: str) -> type | None:
  hint = _hints(cls)[name]
  return hint if dataclasses.is_dataclass(hint) else None


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
  names = [f.name for f in dataclasses.fields(cls)]
  extra = [k for k in values if k not in names]
  if extra:
    raise PosejaxError(f"{DEFAULT_CONFIG}: defines {PREFIX}{prefix}{extra[0]}, which "
                       f"{__name__}.{cls.__name__} does not know (add it there)")
  kwargs = {}
  for name in names:
    if name not in values:
      raise PosejaxError(f"{DEFAULT_CONFIG}: no default for {PREFIX}{prefix}{name} (every field of the run "
                         "config has its default in configs/default.py)")
    piece = _piece_type(cls, name)
    kwargs[name] = _build(piece, values[name], f"{prefix}{name}.") if piece else values[name]
  return cls(**kwargs)


def from_config(config: Any) -> RunConfig:
  """The RunConfig of a ConfigDict or nested dict (e.g. a checkpoint's recorded config.json).

  Fields the config lacks (a config.json of an older version) take configs/default.py's value.

  Raises:
    PosejaxError: a field configs/default.py does not define, named as `--config.the.field`
      (config_validation normally reports it earlier), or a value where a group belongs.
  """
  if isinstance(config, RunConfig):
    return config
  given = _plain(config)
  if not isinstance(given, Mapping):
    raise PosejaxError(f"the run config must be a ConfigDict or a mapping, not {type(config).__name__}")
  return _build(RunConfig, _overlay(_defaults_at(str(DEFAULT_CONFIG)), given, ""), "")


def defaults() -> RunConfig:
  """The RunConfig of configs/default.py."""
  return from_config({})


def _json_ready(value: Any) -> Any:
  if isinstance(value, (tuple, list)):
    return [_json_ready(v) for v in value]
  return value


def to_dict(run_config: RunConfig) -> dict[str, Any]:
  """The nested plain dict of a RunConfig, lists for tuples: the format of config.json
  (`ConfigDict.to_json`), fields in configs/default.py's order."""
  out = {}
  for field in dataclasses.fields(run_config):
    value = getattr(run_config, field.name)
    out[field.name] = to_dict(value) if dataclasses.is_dataclass(value) else _json_ready(value)
  return out


def replace(run_config: RunConfig, **changes: Any) -> RunConfig:
  """`run_config` with fields changed, by dotted name as on the command line (a new RunConfig;
  values are coerced as from_config does):

      replace(run, mode="common", **{"eval.by_subject": True, "model.filter_widths": [3, 3]})

  A whole piece may be replaced too: `replace(run, eval=dataclasses.replace(run.eval, tta=False))`.

  Raises:
    PosejaxError: a name that is not a field, as `--config.the.field`.
  """
  for path, value in changes.items():
    run_config = _replace_one(run_config, path.split("."), value, "")
  return run_config


def _replace_one(node: Any, parts: list[str], value: Any, prefix: str) -> Any:
  """`node` with the field `parts` (relative to `node`, whose own path is `prefix`) set to `value`."""
  head, path = parts[0], prefix + ".".join(parts)
  names = [f.name for f in dataclasses.fields(node)]
  if head not in names:
    raise _unknown(dict.fromkeys(names), prefix + head)
  piece = _piece_type(type(node), head)
  if len(parts) == 1:
    if piece is not None and not isinstance(value, piece):
      raise PosejaxError(f"{PREFIX}{path}: a group of fields; give an instance of {piece.__name__} or change "
                         f"its fields ({PREFIX}{path}.FIELD)")
    return dataclasses.replace(node, **{head: value})
  if piece is None:
    raise PosejaxError(f"{PREFIX}{path}: no such field ({PREFIX}{prefix}{head} is a value, not a group of "
                       "fields)")
  return dataclasses.replace(node, **{head: _replace_one(getattr(node, head), parts[1:], value,
                                                         f"{prefix}{head}.")})
