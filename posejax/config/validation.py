"""Up-front checks of a run config: every field of configs/default.py, one line per problem.

`validate_config(config)` runs before any data is read or model built, so a bad value is a
one-line PosejaxError naming the field (as its command-line override, `--config.train.lr`)
and what is allowed, never a traceback minutes into a run. Fields that a config may leave
out (the trainer reads them with a default) are checked when present; fields unknown here
are accepted (the trainer and newer configs add some). `unknown_override_message` explains a
misspelled `--config.*` override with the closest valid name.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Sequence

import ml_collections

from posejax.common.errors import PosejaxError
from posejax.config.run_config import BUDGETS, MODES
from posejax.pose.actions import DATASET_ACTIONS, resolve_actions

PREFIX = "--config."


def _show(value: Any) -> str:
  """A value as a user would type it on the command line."""
  if isinstance(value, (list, tuple)):
    return ",".join(_show(v) for v in value)
  return repr(value) if isinstance(value, str) else str(value)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def _number_in(low: float, high: float, low_open: bool, high_open: bool) -> tuple[Callable[[Any], bool], str]:
  def ok(v: Any) -> bool:
    return (_is_number(v) and (v > low if low_open else v >= low)
            and (high is None or (v < high if high_open else v <= high)))
  if high is None:
    return ok, f"a number {'>' if low_open else '>='} {low:g}"
  return ok, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _one_of(*allowed: str) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: v in allowed), "one of " + ", ".join(repr(a) for a in allowed)


def _odd_widths(value: Any) -> bool:
  return (isinstance(value, (list, tuple)) and len(value) > 0
          and all(_is_int(w) and w >= 1 and w % 2 == 1 for w in value))


def _subjects(value: Any) -> bool:
  return (isinstance(value, (list, tuple)) and len(value) > 0
          and all(isinstance(s, str) and s.strip() for s in value) and len(set(value)) == len(value))


def _action_spec(value: Any) -> bool:
  return isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(a, str) for a in value))


_BOOL = ((lambda v: isinstance(v, bool)), "True or False")
_NONEMPTY_STRING = ((lambda v: isinstance(v, str) and v.strip() != ""), "a non-empty string")
_ANY_INT = (_is_int, "an integer")
_SUBJECTS = (_subjects, "a non-empty list of distinct subject names, e.g. S1,S5")


def _rules() -> list[tuple[str, bool, tuple[Callable[[Any], bool], str]]]:
  """(field path, required, (predicate, what is allowed)) for every known field."""
  return [
      ("mode", True, _one_of(*MODES)),
      ("actions", True, (_action_spec, "'*' or canonical action names, e.g. Eating,Walking")),
      ("seed", True, _ANY_INT),
      ("distributed", False, _BOOL),
      ("data.dir", True, _NONEMPTY_STRING),
      ("data.keypoints", True, _NONEMPTY_STRING),
      ("data.train_subjects", True, _SUBJECTS),
      ("data.test_subjects", True, _SUBJECTS),
      ("data.synthetic_frames", False, _int_at_least(0)),
      ("data.synthetic_seed", False, _ANY_INT),
      ("data.source", False, _one_of("npz", "tfds")),
      ("data.dataset", False, _one_of("h36m", "humaneva15")),
      ("action_match", False, _one_of("exact", "prefix")),
      ("model.filter_widths", True, (_odd_widths, "a non-empty list of odd positive integers, e.g. 3,3,3")),
      ("model.channels", True, _int_at_least(1)),
      ("model.dropout", True, _number_in(0, 1, False, True)),
      ("model.causal", True, _BOOL),
      ("model.dense", True, _BOOL),
      ("model.compute_dtype", False, _one_of("float32", "bfloat16")),
      ("train.epochs", True, _int_at_least(1)),
      ("train.batch_size", True, _int_at_least(1)),
      ("train.lr", True, _number_in(0, None, True, False)),
      ("train.lr_decay", True, _number_in(0, 1, True, False)),
      ("train.bn_momentum_start", True, _number_in(0, 1, True, False)),
      ("train.bn_momentum_end", True, _number_in(0, 1, True, False)),
      ("train.augment", True, _BOOL),
      ("train.budget", True, _one_of(*BUDGETS)),
      ("train.unit_epochs", True, _int_at_least(1)),
      ("train.logs_per_epoch", False, _int_at_least(1)),
      ("train.progress", False, _BOOL),
      ("train.input", False, _one_of("auto", "device", "host")),
      ("train.slots", False, _int_at_least(0)),
      ("data.unlabeled_subjects", False, ((lambda v: isinstance(v, str) or isinstance(v, (list, tuple))),
                                          "a list of subject names (empty: supervised)")),
      ("train.warmup", False, _int_at_least(0)),
      ("train.linear_projection", False, _BOOL),
      ("train.bone_length", False, _BOOL),
      ("train.projection_loss", False, _BOOL),
      ("train.steps_per_call", False, _int_at_least(1)),
      ("data.shuffle_seed", False, ((lambda v: v is None or _is_int(v)), "an integer or None")),
      ("data.subset", False, _number_in(0, 1, True, False)),
      ("data.downsample", False, _int_at_least(1)),
      ("train.stride", False, _int_at_least(1)),
      ("train.dense_training", False, _BOOL),
      ("checkpoint.resume_from", False, ((lambda v: v is None or (_is_int(v) and v >= 0)
                                          or (isinstance(v, str) and v.strip() != "")),
                                         "a step number or a checkpoint path")),
      ("compilation_cache_dir", False, ((lambda v: v is None or isinstance(v, str)), "a folder, '' (off) or None")),
      ("eval.tta", False, _BOOL),
      ("eval.validate", False, _BOOL),
      ("eval.train_metrics", False, _BOOL),
      ("eval.by_subject", False, _BOOL),
      ("eval.chunk", False, _int_at_least(1)),
      ("eval.batch", False, ((lambda v: v is None or (_is_int(v) and v >= 1)), "an integer >= 1 or None")),
      ("classifier.enabled", False, ((lambda v: v is None or isinstance(v, bool)), "True, False or None (on in "
                                     "action-based mode)")),
      ("classifier.epochs", False, _int_at_least(1)),
      ("classifier.channels", False, _int_at_least(1)),
      ("classifier.filter_widths", False, ((lambda v: v == () or _odd_widths(v)),
                                           "empty (the model's) or a list of odd positive integers, e.g. 3,3,3")),
      ("checkpoint.every_epochs", True, _int_at_least(1)),
      ("checkpoint.keep", True, _int_at_least(1)),
      ("sharding.action_devices", False, _int_at_least(0)),
  ]


_MISSING = object()


def _lookup(config: Any, path: str) -> Any:
  node = config
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node:
      return _MISSING
    node = node[part]
  return node


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every known field of a run config.

  Raises:
    PosejaxError: the first field that is missing (when required) or has a value outside
      what is allowed, e.g. `--config.model.filter_widths=2,2: expected a non-empty list of
      odd positive integers, e.g. 3,3,3`.
  """
  for path, required, (ok, allowed) in _rules():
    value = _lookup(config, path)
    if value is _MISSING:
      if required:
        raise PosejaxError(f"{PREFIX}{path}: missing from the config (every config must define the "
                           "fields of configs/default.py; derive it from configs/default.py)")
      continue
    if isinstance(value, list):
      value = tuple(value)
    if not ok(value):
      raise PosejaxError(f"{PREFIX}{path}={_show(value)}: expected {allowed}")
  dataset = str(config.data.get("dataset", "h36m"))
  if dataset not in DATASET_ACTIONS:
    raise PosejaxError(f"{PREFIX}data.dataset: {dataset!r} is not one of {', '.join(DATASET_ACTIONS)}")
  resolve_actions(config.actions, DATASET_ACTIONS[dataset], str(config.get("action_match", "exact")))  # raises with the known names
  overlap = sorted(set(config.data.train_subjects) & set(config.data.test_subjects))
  if overlap:
    raise PosejaxError(f"{PREFIX}data.test_subjects: {', '.join(overlap)} also in --config.data.train_subjects "
                       "(training and test subjects must be disjoint)")


def unknown_override_message(config: Any, path: str) -> str | None:
  """Why `--config.<path>` names no field of `config` (closest valid name), or None if it does."""
  node, parts = config, path.split(".")
  for i, part in enumerate(parts):
    if not hasattr(node, "keys"):
      parent = ".".join(parts[:i])
      return f"{PREFIX}{path}: no such field ({PREFIX}{parent} is a value, not a group of fields)"
    if part not in node:
      keys = sorted(str(k) for k in node.keys())
      close = difflib.get_close_matches(part, keys, n=1, cutoff=0.6)
      if close:
        return f"{PREFIX}{path}: no such field; did you mean {PREFIX}{'.'.join(parts[:i] + close + parts[i + 1:])}?"
      group = PREFIX + ".".join(parts[:i]) if i else "--config"
      return f"{PREFIX}{path}: no such field (fields of {group}: {', '.join(keys)})"
    node = node[part]
  return None


def check_overrides(config: Any, overrides: Sequence[str]) -> None:
  """Raises PosejaxError for the first `--config.*` override path that names no field."""
  for path in overrides:
    message = unknown_override_message(config, path)
    if message:
      raise PosejaxError(message)
