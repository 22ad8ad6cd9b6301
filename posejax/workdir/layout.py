"""The layout of a training workdir: file names, readers and writers.

    WORKDIR/config.json           the run's config (written at the start of training)
    WORKDIR/metrics.jsonl         one JSON object per log point ('step', 'epoch', ...), appended
    WORKDIR/train_summary.json    written once training has finished ('global_steps', timers, ...)
    WORKDIR/checkpoints/          orbax CheckpointManager directory (posejax.workdir.checkpoints)
    WORKDIR/classifier/           the action classifier's orbax checkpoint (posejax.evaluation.classifier)
    WORKDIR/eval/step_N/NAME/     one evaluation of checkpoint step N: results.{json,csv,md} and
                                  its figures (confusion.png, cross_action.png); NAME says which
                                  (`eval_name`): 'final' is the trainer's own, eval.py's are named
                                  from their options, e.g. 'predicted', 'soft+common-RUN+cross_action'

Every tool that reads or writes these goes through this module, so the layout has one home.
Nothing here imports orbax or the models.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping


from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_write_text

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "train_summary.json"
CHECKPOINT_DIR = "checkpoints"
CLASSIFIER_DIR = "classifier"
EVAL_DIR = "eval"
RESULTS_FILE = "results.json"
FINAL_EVAL = "final"  # the trainer's evaluation of the end of training
# The files an evaluation folder holds: what may be replaced when it is written again.
EVAL_FILES = ("results.json", "results.csv", "results.md", "confusion.png", "cross_action.png")
_NAME_PART_CHARS = 40


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def metrics_path(workdir: str) -> str:
  return os.path.join(workdir, METRICS_FILE)


def summary_path(workdir: str) -> str:
  return os.path.join(workdir, SUMMARY_FILE)


def checkpoint_dir(workdir: str) -> str:
  """Absolute (orbax needs one) path of the checkpoints directory."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def classifier_dir(workdir: str) -> str:
  """Absolute path of the action classifier's checkpoint directory."""
  return os.path.join(os.path.abspath(workdir), CLASSIFIER_DIR)


def step_dir(workdir: str, step: int) -> str:
  """The folder of the evaluations of checkpoint `step`."""
  return os.path.join(workdir, EVAL_DIR, f"step_{int(step)}")


def eval_dir(workdir: str, step: int, name: str) -> str:
  """Where the evaluation `name` (FINAL_EVAL, or an `eval_name`) of checkpoint `step` writes."""
  return os.path.join(step_dir(workdir, step), name)


def results_path(workdir: str, step: int, name: str) -> str:
  return os.path.join(eval_dir(workdir, step, name), RESULTS_FILE)


def name_part(text: str) -> str:
  """`text` as a short file-name-safe piece: runs of other characters become '_'."""
  safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")[:_NAME_PART_CHARS]
  return safe or "_"


def eval_name(parts: list[str]) -> str:
  """The folder name of an evaluation from the parts that describe its options, e.g.
  ['soft', 'common-runs_common', 'cross_action'] -> 'soft+common-runs_common+cross_action'."""
  name = "+".join(name_part(p) for p in parts)
  if name in ("", FINAL_EVAL):
    raise PosejaxError(f"evaluation name {name!r}: empty or reserved for the trainer's final evaluation")
  return name


def _read_json(path: str) -> Any:
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise PosejaxError(f"{path}: not valid JSON ({e})") from None


def read_config(workdir: str) -> dict[str, Any]:
  """The run's config.json as recorded (`run_config.from_config` reads it); PosejaxError when it
  is missing or not JSON."""
  path = config_path(workdir)
  if not os.path.isfile(path):
    raise PosejaxError(f"{path}: file not found; pass --config (the training config file) or a workdir "
                       "written by train.py")
  return _read_json(path)


def write_config(workdir: str, config: Mapping[str, Any]) -> str:
  """Writes the run's config.json (`run_config.to_dict` of its typed config)."""
  path = config_path(workdir)
  atomic_write_text(path, json.dumps(config, indent=2))
  return path


def read_metrics(workdir: str, up_to_step: int | None = None, *, required: bool = False) -> list[dict[str, Any]]:
  """The records of metrics.jsonl in file order, those with 'step' <= `up_to_step` when given.

  A last line without its newline is an append cut short (a killed run) and is skipped when it
  does not parse; any other bad line is an error naming the file and line.

  Args:
    required: a missing file, or one without records, is an error (else: []).
  """
  path = metrics_path(workdir)
  if not os.path.isfile(path):
    if required:
      raise PosejaxError(f"{path}: file not found (is {workdir} a training workdir?)")
    return []
  with open(path) as f:
    lines = f.read().split("\n")
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if number == len(lines):  # no newline after it: an interrupted append
        break
      raise PosejaxError(f"{path}:{number}: not valid JSON ({e})") from None
    if not isinstance(record, dict) or "step" not in record:
      raise PosejaxError(f"{path}:{number}: not a metrics record (a JSON object with a 'step')")
    if up_to_step is None or record["step"] <= up_to_step:
      records.append(record)
  if required and not records:
    raise PosejaxError(f"{path}: no epochs logged")
  return records


def read_summary(workdir: str, *, required: bool = False) -> dict[str, Any]:
  """train_summary.json ({} when absent, unless `required`)."""
  path = summary_path(workdir)
  if not os.path.isfile(path):
    if required:
      raise PosejaxError(f"{path}: file not found (training did not finish?)")
    return {}
  summary = _read_json(path)
  if not isinstance(summary, dict):
    raise PosejaxError(f"{path}: not a training summary (expected a JSON object)")
  return summary


def write_summary(workdir: str, summary: Mapping[str, Any]) -> str:
  path = summary_path(workdir)
  atomic_write_text(path, json.dumps(dict(summary), indent=2) + "\n")
  return path


def final_step(workdir: str) -> int | None:
  """The global step at which training ended (train_summary.json), None before it has."""
  steps = read_summary(workdir).get("global_steps")
  return None if steps is None else int(steps)
