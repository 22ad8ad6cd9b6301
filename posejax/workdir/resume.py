"""Where a run resumes from: its own newest checkpoint, or the one `checkpoint.resume_from` names.

By default a run resumes from the newest readable checkpoint of its workdir (rerun the same
command after an interruption). `--config.checkpoint.resume_from` (the reference's `--resume`)
names another starting point:

* a step of this workdir (`=2000`): training restarts from that step. The checkpoints after it
  belong to the abandoned continuation: they are moved to WORKDIR/checkpoints_superseded
  (never deleted) and their metrics.jsonl lines dropped. Each run with this setting goes back
  to that step again; drop it to continue from the newest checkpoint afterwards.
* a path: a step directory `OTHER/checkpoints/2000`, a checkpoints directory or a workdir
  (their newest step). The run starts from that checkpoint when its own workdir has none yet
  (then it resumes from its own, and says so), e.g. to branch a run into a fresh workdir.

The checkpoint must come from a compatible run (`check_compatible`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

from posejax.common.errors import PosejaxError
from posejax.config.run_config import CheckpointConfig
from posejax.models import spec as model_spec
from posejax.workdir import checkpoints as checkpointing, layout

SUPERSEDED_DIR = "checkpoints_superseded"
OPTION = "--config.checkpoint.resume_from"


# Config entries that must match for a checkpoint to be resumed (data order and schedules
# shapes depend on them); the model's hyper-parameters are compared through metadata['model'].
RESUME_KEYS = ("mode", "seed", "actions", "action_match", "data.dataset", "data.keypoints", "data.train_subjects", "data.valid_subjects",
               "data.shuffle_seed", "train.batch_size", "train.epochs", "train.budget", "train.unit_epochs", "train.augment", "train.lr", "train.lr_decay",
               "train.bn_momentum_start", "train.bn_momentum_end", "data.subset", "data.downsample", "train.stride",
               "train.dense_training")
# Compared too when either run is semi-supervised (earlier checkpoints do not record them).
SEMI_RESUME_KEYS = ("data.unlabeled_subjects", "train.warmup", "train.linear_projection", "train.bone_length",
                    "train.projection_loss")


# Values of options that checkpoints of earlier versions do not record (they trained so).
_EARLIER_DEFAULTS = {"data": {"subset": 1.0, "downsample": 1}, "train": {"stride": 1, "dense_training": False}}


def as_current(saved: Mapping[str, Any]) -> dict[str, Any]:
  """A checkpoint's metadata with the fields earlier versions did not record filled in (to
  compare it with this run's: `check_compatible`)."""
  config = dict(saved.get("config", {}))
  for group, defaults in _EARLIER_DEFAULTS.items():
    config[group] = {**defaults, **config.get(group, {})}
  return dict(saved, config=config, model=model_spec.normalized_record(saved.get("model")))


@dataclasses.dataclass(frozen=True)
class Source:
  """A checkpoint to resume from: a step (None: the newest) of the workdir `workdir`."""
  workdir: str
  step: int | None
  own: bool  # the run's own workdir


def _same_dir(a: str, b: str) -> bool:
  try:
    return os.path.samefile(a, b)
  except OSError:
    return os.path.abspath(a) == os.path.abspath(b)


def parse(value: Any, workdir: str) -> Source | None:
  """The checkpoint `resume_from` names (None when unset: the run's own newest one).

  Raises:
    PosejaxError: the value is neither a step number nor a checkpoint directory.
  """
  if value is None or str(value).strip() == "":
    return None
  text = str(value).strip()
  if text.isdigit():
    return Source(workdir, int(text), own=True)
  path = os.path.abspath(os.path.expanduser(text))
  name, parent = os.path.basename(path), os.path.basename(os.path.dirname(path))
  if not os.path.isdir(path):
    raise PosejaxError(f"{OPTION}={text}: not a step number and no such directory")
  if name.isdigit() and parent == layout.CHECKPOINT_DIR:
    source, step = os.path.dirname(os.path.dirname(path)), int(name)
  elif name == layout.CHECKPOINT_DIR:
    source, step = os.path.dirname(path), None
  elif os.path.isdir(os.path.join(path, layout.CHECKPOINT_DIR)):
    source, step = path, None
  else:
    raise PosejaxError(f"{OPTION}={text}: not a checkpoint step (WORKDIR/checkpoints/STEP), a checkpoints "
                       "directory or a training workdir")
  return Source(source, step, own=_same_dir(source, workdir))


def supersede_after(mngr, step: int) -> list[str]:
  """Moves the checkpoints after `step` to WORKDIR/checkpoints_superseded; returns where they went."""
  where = checkpointing.checkpoint_dir_of(mngr)
  target_dir = os.path.join(os.path.dirname(where), SUPERSEDED_DIR)
  moved = []
  for later in sorted(s for s in mngr.all_steps() if s > step):
    target, n = os.path.join(target_dir, str(later)), 1
    while os.path.exists(target):
      target, n = os.path.join(target_dir, f"{later}.{n}"), n + 1
    try:
      os.makedirs(target_dir, exist_ok=True)
      os.replace(os.path.join(where, str(later)), target)
    except OSError as e:
      raise PosejaxError(f"{where}/{later}: cannot move this later checkpoint aside before resuming from "
                         f"step {step} ({e.strerror or e}); move it yourself and rerun") from None
    moved.append(target)
  mngr.reload()
  return moved


def restore_step(mngr, step: int | None, state_template: Any, accum_template: Mapping[str, Any],
                 check: Callable[[dict[str, Any]], None]) -> tuple[int, Any, dict[str, Any], dict[str, Any]]:
  """(step, TrainState, accumulator, metadata) of one named step (None: the newest) of `mngr`.

  Raises:
    PosejaxError: no such step, an incompatible run (`check`), or unreadable files.
  """
  where = checkpointing.checkpoint_dir_of(mngr)
  steps = sorted(mngr.all_steps())
  if not steps:
    raise PosejaxError(f"{OPTION}: {where} holds no checkpoint")
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise PosejaxError(f"{OPTION}: {where} has no checkpoint at step {step} "
                       f"(available: {', '.join(map(str, steps))})")
  try:
    metadata = checkpointing.restore_metadata(mngr, step)
  except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
    raise PosejaxError(f"{where}: checkpoint at step {step} is unreadable ({type(e).__name__})") from None
  check(metadata)
  try:
    state, accum, metadata = checkpointing.restore_train(mngr, step, state_template, accum_template)
  except PosejaxError:
    raise
  except Exception as e:
    raise PosejaxError(f"{where}: checkpoint at step {step} is unreadable ({type(e).__name__})") from None
  return step, state, accum, metadata


def restore(checkpoint: CheckpointConfig, workdir: str, mngr, state_template: Any, accum_template: Mapping[str, Any], *,
            check: Callable[[dict[str, Any]], None], log: Callable[[str], None]):
  """(step, TrainState, accumulator, metadata) to start from, or None for a fresh run.

  `mngr` is the run's own CheckpointManager; `check(metadata)` refuses incompatible runs.
  """
  resume_from = checkpoint.resume_from
  source = parse(resume_from, workdir)
  own_steps = list(mngr.all_steps())
  if source is not None and not source.own and own_steps:
    log(f"{OPTION}={resume_from} not used: {layout.checkpoint_dir(workdir)} has checkpoints of its "
        "own; resuming from them")
    source = None
  if source is None or (source.own and source.step is None):
    return checkpointing.restore_latest_good(mngr, state_template, accum_template, check=check, log=log)
  if source.own:
    restored = restore_step(mngr, source.step, state_template, accum_template, check)
    moved = supersede_after(mngr, restored[0])
    if moved:
      log(f"resuming from step {restored[0]} ({OPTION}); moved the later checkpoint(s) to "
          f"{os.path.dirname(moved[0])}: {', '.join(os.path.basename(m) for m in moved)}")
    return restored
  other = checkpointing.manager(source.workdir, read_only=True)
  try:
    restored = restore_step(other, source.step, state_template, accum_template, check)
  finally:
    other.close()
  log(f"starting from step {restored[0]} of {layout.checkpoint_dir(source.workdir)} ({OPTION})")
  return restored


def _get(config: Mapping[str, Any], dotted: str) -> Any:
  """config['a']['b'] for 'a.b'; None when a part is missing. Tuples compare as lists."""
  node: Any = config
  for part in dotted.split("."):
    if not isinstance(node, Mapping) or part not in node:
      return None
    node = node[part]
  return list(node) if isinstance(node, tuple) else node


def check_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
  """Raises PosejaxError naming what differs between a checkpoint's metadata and this run's.

  Compares the actions of the slices, the dataset fingerprint, the model hyper-parameters
  and the config entries of RESUME_KEYS.
  """
  diffs = []
  if list(saved.get("actions", [])) != list(current["actions"]):
    diffs.append(f"actions {', '.join(saved.get('actions', []))} (config: {', '.join(current['actions'])})")
  if saved.get("dataset_fingerprint") != current.get("dataset_fingerprint"):
    diffs.append(f"dataset fingerprint {saved.get('dataset_fingerprint')} "
                 f"(data now: {current.get('dataset_fingerprint')})")
  if saved.get("model") != current.get("model"):
    keys = sorted(set(saved.get("model", {})) | set(current["model"]))
    diffs += [f"model {k}={saved.get('model', {}).get(k)!r} (config: {current['model'].get(k)!r})"
              for k in keys if saved.get("model", {}).get(k) != current["model"].get(k)]
  semi = any(_get(c.get("config", {}), "data.unlabeled_subjects") for c in (saved, current))
  for key in RESUME_KEYS + (SEMI_RESUME_KEYS if semi else ()):
    a, b = _get(saved.get("config", {}), key), _get(current["config"], key)
    if a != b:
      diffs.append(f"{key}={a!r} (config: {b!r})")
  if diffs:
    raise PosejaxError(f"{where}: the checkpoint was written by an incompatible run: "
                       + "; ".join(diffs) + " (use the original config or another --workdir)")
