"""Checkpoints of a run in WORKDIR/checkpoints (orbax CheckpointManager, one step = global step).

Each checkpoint holds three items:

* 'variables': {'params', 'batch_stats'} of the real models, stacked (A, ...) with A = 1 in
  common mode; what evaluation needs.
* 'train': the optimizer state (its leaves in flattening order), each model's step count and
  the loss accumulators of the current log epoch; what resuming needs. Absent in imported
  checkpoints.
* 'trajectory' (semi-supervised runs and imported models that have one): the trajectory
  models' {'params', 'batch_stats'}, stacked like 'variables' (reference V8.10); evaluation,
  rendering, export and inference use the ones of the checkpoint they evaluate.
* 'metadata' (JSON): config, action of each slice, model hyper-parameters (and
  'trajectory_model', the trajectory models' when there are any), dataset fingerprint, global
  step and timers.

Checkpoints are device-layout independent (no padding models), so a run can resume on
another number of devices. The last `keep` checkpoints are kept, plus the one with the lowest
held-out validation MPJPE when the run has a validation split (never the test set).

Faults: orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it when complete,
so a crash or a full disk during a save never damages an earlier step (the leftover temporary
directory is removed when the next run opens the manager). A step that was damaged anyway (a
truncated file, a missing item) is found at restore: `restore_latest_good` moves it to
WORKDIR/checkpoints_unreadable and resumes from the newest step that reads cleanly, and
`restore_for_eval` falls back the same way without moving anything. A failed save becomes a
one-line PosejaxError naming the last complete step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from posejax.common.errors import PosejaxError
from posejax.config import run_config
from posejax.common.sharding import fetch
from posejax.common.stop_request import StopRequest  # noqa: F401  (the training loop's name for it)
from posejax.workdir import layout

PyTree = Any

UNREADABLE_DIR = "checkpoints_unreadable"  # damaged steps are moved here, not deleted
TRAJECTORY_ITEM = "trajectory"
FORMAT_VERSION = 1
# The only metric a checkpoint may be selected by: MPJPE on config.data.valid_subjects, a split
# disjoint from the test subjects. Runs without one save no metrics.
BEST_METRIC = "mpjpe_heldout"


def _best_metric(metrics: Mapping[str, Any]) -> float:
  # Metrics without the key (older runs logged the test MPJPE) never rank as best.
  return float(metrics.get(BEST_METRIC, float("inf")))


# orbax logs this WARNING whenever a CheckpointManager is opened read-only, which is how every
# evaluation, export and inference opens a run: nothing in it for the user to act on.
READ_ONLY_NOTICE = "Given directory is read only=%s"


class _DropReadOnlyNotice(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return record.msg != READ_ONLY_NOTICE


def drop_read_only_notice() -> None:
  """Filters exactly that notice out of the absl logger (orbax's), once per process."""
  logger = logging.getLogger("absl")
  if not any(isinstance(f, _DropReadOnlyNotice) for f in logger.filters):
    logger.addFilter(_DropReadOnlyNotice())


def manager(workdir: str, keep: int = 3, *, read_only: bool = False,
            select_best: bool = True) -> ocp.CheckpointManager:
  """The run's CheckpointManager: keeps the last `keep` steps, and the best by BEST_METRIC.

  Checkpoints saved without metrics fall under the last-`keep` rule only. `select_best=False`
  (runs without a validation split) keeps the last `keep` steps and saves no metrics.
  """
  latest = checkpoint_managers.LatestN(n=max(int(keep), 1))
  policy = checkpoint_managers.AnyPreservationPolicy([
      latest, checkpoint_managers.BestN(get_metric_fn=_best_metric, reverse=True, n=1,
                                        keep_checkpoints_without_metrics=False)]) if select_best else latest
  options = ocp.CheckpointManagerOptions(
      best_fn=_best_metric if select_best else None, best_mode="min",
      preservation_policy=None if read_only else policy,
      read_only=read_only, create=not read_only, enable_async_checkpointing=not read_only,
      save_interval_steps=0 if read_only else 1,
      # Temporary directories of saves that a crash interrupted; the workdir lock guarantees
      # that no other run is writing one.
      cleanup_tmp_directories=not read_only)
  if read_only:
    drop_read_only_notice()
  return ocp.CheckpointManager(layout.checkpoint_dir(workdir), options=options)


def _host_copy(tree: PyTree, num_models: int) -> PyTree:
  """NumPy copies of the first `num_models` slices (safe against later buffer donation)."""
  return jax.tree.map(lambda x: np.array(x[:num_models], copy=True), fetch(tree))


def save(mngr: ocp.CheckpointManager, step: int, state: Any, accum: Mapping[str, jax.Array],
         num_models: int, metadata: Mapping[str, Any],
         metrics: Mapping[str, float] | None = None) -> None:
  """Saves a stacked TrainState (padded models dropped) at global step `step` (asynchronous)."""
  variables = _host_copy({"params": state.params, "batch_stats": state.batch_stats}, num_models)
  opt_leaves = _host_copy(jax.tree.leaves(state.opt_state), num_models)
  train = {"opt_state": {f"{i:04d}": leaf for i, leaf in enumerate(opt_leaves)},
           "step": _host_copy(state.step, num_models), "accum": _host_copy(dict(accum), num_models)}
  items = {}
  if hasattr(state, "traj_params"):  # semi_step.SemiTrainState
    items[TRAJECTORY_ITEM] = ocp.args.StandardSave(_host_copy(
        {"params": state.traj_params, "batch_stats": state.traj_batch_stats}, num_models))
  meta = dict(metadata, global_step=int(step), format=FORMAT_VERSION)
  # orbax first waits for the previous (asynchronous) save: its failure surfaces here too.
  with _save_errors(mngr):
    mngr.save(int(step), args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables), train=ocp.args.StandardSave(train),
        metadata=ocp.args.JsonSave(meta), **items),
              metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()}, force=True)


def finish_saves(mngr: ocp.CheckpointManager) -> None:
  """Waits for the asynchronous save in flight; a failed one becomes a one-line PosejaxError."""
  with _save_errors(mngr):
    mngr.wait_until_finished()


def close(mngr: ocp.CheckpointManager) -> None:
  """Closes the manager after its pending save; a failed one becomes a one-line PosejaxError."""
  with _save_errors(mngr):
    mngr.close()


def complete_steps(directory: str) -> list[int]:
  """Steps whose directory was renamed into place (complete saves), read from disk, sorted."""
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def _reason(e: BaseException) -> str:
  """A short reason for a failed read or write: the system's error when there is one (tensorstore
  buries it at the end of a long message), else the first line of the exception."""
  if isinstance(e, OSError) and e.strerror:
    return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
  text = str(e)
  code = re.search(r"os_error_code='(\d+)'|\[Errno (\d+)\]", text)
  if code:
    return os.strerror(int(code.group(1) or code.group(2)))
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  first = lines[0] if lines else type(e).__name__
  # tensorstore: 'OUT_OF_RANGE: Error reading "key" in OCDBT database at local file "dir": <what>'
  status = re.match(r'([A-Z_]+): .*": (.+)$', first)
  if status:
    first = f"{status.group(1)}: {status.group(2)}"
  return first if len(first) <= 200 else first[:197] + "..."


@contextlib.contextmanager
def _save_errors(mngr: ocp.CheckpointManager) -> Iterator[None]:
  """Turns a failed save (full disk, I/O error) into a PosejaxError naming the last good step."""
  try:
    yield
  except PosejaxError:
    raise
  except Exception as e:  # orbax and tensorstore wrap I/O errors in many types
    where = checkpoint_dir_of(mngr)
    steps = complete_steps(where)
    kept = (f"the last complete checkpoint is step {steps[-1]} (rerun to resume from it)" if steps
            else "no complete checkpoint was written")
    raise PosejaxError(f"{where}: writing a checkpoint failed ({_reason(e)}); {kept}") from None


def restore_metadata(mngr: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  return dict(mngr.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())).metadata)


def _as_numpy(tree: PyTree) -> PyTree:
  return jax.tree.map(np.asarray, tree)


def restore_train(mngr: ocp.CheckpointManager, step: int, state_template: Any,
                  accum_template: Mapping[str, Any]) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
  """(TrainState, accumulator, metadata) at `step`, as host arrays shaped like the templates.

  The templates are unpadded (A, ...) trees (arrays or ShapeDtypeStructs) giving the pytree
  structure, notably of the optimizer state.

  Raises:
    PosejaxError: the checkpoint holds no training state (an imported model).
  """
  metadata = restore_metadata(mngr, step)
  if metadata.get("imported_from"):
    raise PosejaxError(
        f"{checkpoint_dir_of(mngr)}: step {step} is a model imported from {metadata['imported_from']} "
        "without optimizer state; it can be evaluated but not resumed (train in a fresh --workdir)")
  restored = mngr.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(), train=ocp.args.StandardRestore()))
  variables, train = _as_numpy(restored.variables), _as_numpy(restored.train)
  treedef = jax.tree.structure(state_template.opt_state)
  leaves = [train["opt_state"][k] for k in sorted(train["opt_state"])]
  if len(leaves) != treedef.num_leaves:
    raise PosejaxError(f"{checkpoint_dir_of(mngr)}: step {step} has an optimizer state of "
                       f"{len(leaves)} arrays, this version expects {treedef.num_leaves}")
  state = state_template.replace(
      params=jax.tree.map(lambda t, x: x, state_template.params, variables["params"]),
      batch_stats=jax.tree.map(lambda t, x: x, state_template.batch_stats, variables["batch_stats"]),
      opt_state=jax.tree.unflatten(treedef, leaves), step=train["step"])
  if hasattr(state_template, "traj_params"):
    traj = _restore_item(mngr, step, TRAJECTORY_ITEM)
    if traj is None:
      raise PosejaxError(f"{checkpoint_dir_of(mngr)}: step {step} holds no trajectory model (a supervised run's "
                         "checkpoint); semi-supervised training cannot resume from it")
    state = state.replace(
        traj_params=jax.tree.map(lambda t, x: x, state_template.traj_params, traj["params"]),
        traj_batch_stats=jax.tree.map(lambda t, x: x, state_template.traj_batch_stats, traj["batch_stats"]))
  missing = [k for k in accum_template if k not in train["accum"]]
  if missing:
    raise PosejaxError(f"{checkpoint_dir_of(mngr)}: step {step} lacks the accumulators {', '.join(missing)} "
                       "(written by a run of another kind)")
  accum = {k: train["accum"][k] for k in accum_template}
  return state, accum, metadata


def _restore_item(mngr: ocp.CheckpointManager, step: int, name: str) -> PyTree | None:
  """One array item of a step as NumPy, or None when the step does not have it."""
  if not os.path.isdir(os.path.join(checkpoint_dir_of(mngr), str(int(step)), name)):
    return None
  restored = mngr.restore(step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore()}))
  return _as_numpy(restored[name])


def restore_trajectory(workdir: str, step: int) -> PyTree | None:
  """The stacked trajectory models ({'params', 'batch_stats'}, leading slice axis) of a step,
  or None when it has none (a supervised run)."""
  if not os.path.isdir(os.path.join(layout.checkpoint_dir(workdir), str(int(step)), TRAJECTORY_ITEM)):
    return None
  mngr = manager(workdir, read_only=True)
  try:
    with _quiet_orbax():
      return _restore_item(mngr, step, TRAJECTORY_ITEM)
  except Exception as e:  # damaged files: orbax and tensorstore raise many types
    raise PosejaxError(f"{layout.checkpoint_dir(workdir)}: the trajectory model of step {step} is unreadable "
                       f"({_reason(e)})") from None
  finally:
    mngr.close()


def checkpoint_dir_of(mngr: ocp.CheckpointManager) -> str:
  return str(mngr.directory)


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
  """Silences orbax's own log lines while a possibly damaged step is read (we say what failed)."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def _set_aside(mngr: ocp.CheckpointManager, step: int, unreadable_dir: str = UNREADABLE_DIR) -> str:
  """Moves an unreadable step to WORKDIR/<unreadable_dir> (kept for inspection; the run may
  write that step again) and refreshes the manager's list of steps. Returns where it went."""
  source = os.path.join(checkpoint_dir_of(mngr), str(step))
  target_dir = os.path.join(os.path.dirname(checkpoint_dir_of(mngr)), unreadable_dir)
  target, n = os.path.join(target_dir, str(step)), 1
  while os.path.exists(target):
    target, n = os.path.join(target_dir, f"{step}.{n}"), n + 1
  try:
    os.makedirs(target_dir, exist_ok=True)
    os.replace(source, target)
  except OSError as e:
    raise PosejaxError(f"{source}: unreadable checkpoint that cannot be moved aside ({_reason(e)}); "
                       "remove it and rerun") from None
  mngr.reload()
  return target


def restore_latest_good(mngr: ocp.CheckpointManager, state_template: Any, accum_template: Mapping[str, Any],
                        *, check: Callable[[dict[str, Any]], None] | None = None,
                        log: Callable[[str], None] = _warn
                        ) -> tuple[int, Any, dict[str, np.ndarray], dict[str, Any]] | None:
  """(step, TrainState, accumulator, metadata) of the newest checkpoint that restores cleanly.

  Steps are tried newest first. One that cannot be read (a truncated file or a missing item,
  as after a crash or a full disk) is moved to WORKDIR/checkpoints_unreadable, reported through
  `log`, and the next older one is tried. `check(metadata)` runs before the arrays are read:
  its PosejaxError (an incompatible run), like restore_train's own, is not damage and
  propagates. The result's state and accumulator are as restore_train returns them.

  Returns:
    None when the directory holds no checkpoint.

  Raises:
    PosejaxError: checkpoints exist but none is readable (they have been moved aside, so
      rerunning trains from scratch), or `check` / restore_train refused one.
  """
  where, skipped = checkpoint_dir_of(mngr), []
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      with _quiet_orbax():
        metadata = restore_metadata(mngr, step)
        if check is not None:
          check(metadata)
        state, accum, metadata = restore_train(mngr, step, state_template, accum_template)
    except PosejaxError:
      raise
    except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
      moved = _set_aside(mngr, step)
      skipped.append(step)
      log(f"{where}: checkpoint at step {step} is unreadable ({_reason(e)}); moved it to {moved}")
      continue
    if skipped:
      log(f"{where}: resuming from step {step}, the newest readable checkpoint")
    return step, state, accum, metadata
  if skipped:
    raise PosejaxError(f"{where}: no readable checkpoint (steps {', '.join(map(str, skipped))} moved to "
                       f"{os.path.join(os.path.dirname(where), UNREADABLE_DIR)}); rerun to train from scratch")
  return None


# --- One model's checkpoint (the action classifier: WORKDIR/classifier) -------------------------


def save_model(directory: str, step: int, variables: PyTree, metadata: Mapping[str, Any]) -> str:
  """Saves one model's variables and metadata as step `step` of `directory`, atomically (orbax
  writes a temporary directory and renames it), replacing what it held. Returns `directory`."""
  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False,
                                         cleanup_tmp_directories=True)
  mngr = ocp.CheckpointManager(os.path.abspath(directory), options=options)
  try:
    with _save_errors(mngr):
      mngr.save(int(step), args=ocp.args.Composite(
          variables=ocp.args.StandardSave(jax.tree.map(np.asarray, dict(variables))),
          metadata=ocp.args.JsonSave(dict(metadata, format=FORMAT_VERSION))), force=True)
      mngr.wait_until_finished()
  finally:
    mngr.close()
  return directory


def restore_model(directory: str, *, repair: bool, log: Callable[[str], None] = _warn
                  ) -> tuple[PyTree, dict[str, Any]] | None:
  """(variables, metadata) of the newest readable step of a `save_model` directory; None when it
  holds none.

  A damaged step (a truncated file, a missing item) is, with `repair` (the trainer, which then
  trains the model again), moved to `<directory>_unreadable` and reported through `log`, as the
  run's own checkpoints are; without it (evaluation, read-only) it is a one-line error.
  """
  if not os.path.isdir(directory):
    return None
  drop_read_only_notice()
  options = ocp.CheckpointManagerOptions(read_only=not repair, create=False)
  mngr = ocp.CheckpointManager(os.path.abspath(directory), options=options)
  unreadable = os.path.basename(os.path.normpath(directory)) + "_unreadable"
  try:
    for step in sorted(mngr.all_steps(), reverse=True):
      try:
        with _quiet_orbax():
          restored = mngr.restore(step, args=ocp.args.Composite(variables=ocp.args.StandardRestore(),
                                                                metadata=ocp.args.JsonRestore()))
      except Exception as e:  # orbax, tensorstore and json raise many types for damaged files
        if not repair:
          raise PosejaxError(f"{directory}: unreadable checkpoint at step {step} ({_reason(e)}); rerun train.py "
                             "to set it aside and train it again") from None
        moved = _set_aside(mngr, step, unreadable)
        log(f"{directory}: checkpoint at step {step} is unreadable ({_reason(e)}); moved it to {moved}")
        continue
      return _as_numpy(restored.variables), dict(restored.metadata)
  finally:
    mngr.close()
  return None


def _candidate_steps(mngr: ocp.CheckpointManager, which: str | int) -> list[int]:
  """Steps to try for `which`, preferred first: 'latest' falls back to older steps, 'best' to
  the others newest first, an explicit step to nothing."""
  steps = sorted(mngr.all_steps(), reverse=True)
  where = checkpoint_dir_of(mngr)
  if not steps:
    raise PosejaxError(f"{where}: no checkpoints (train with `python train.py --workdir ...` first)")
  if which == "latest":
    return steps
  if which == "best":
    scored = {s: (mngr.metrics(s) or {}).get(BEST_METRIC) for s in steps}
    scored = {s: float(v) for s, v in scored.items() if v is not None}
    if not scored:
      raise PosejaxError(
          f"{where}: --checkpoint=best needs checkpoints scored on a held-out validation split "
          "(config.data.valid_subjects) and this run has none; the test set is never used to select "
          "a model: use --checkpoint=latest (the final model) or a step number")
    return sorted(scored, key=lambda s: (scored[s], s))
  if isinstance(which, (int, np.integer)) or str(which).isdigit():
    if int(which) not in steps:
      raise PosejaxError(f"{where}: no checkpoint at step {which} (available: {', '.join(map(str, sorted(steps)))})")
    return [int(which)]
  raise PosejaxError(f"checkpoint {which!r}: expected 'best', 'latest' or a step number")


def restore_for_eval(workdir: str, which: str | int = "latest", *, log: Callable[[str], None] = _warn
                     ) -> tuple[run_config.RunConfig, PyTree, list[str], int, dict[str, Any]]:
  """(config, stacked variables, action of each slice, step, metadata) of a checkpoint.

  `which`: 'latest' (the final model of a finished run), a step number, or 'best' (lowest
  held-out validation MPJPE; an error for runs without a validation split).

  `variables` = {'params', 'batch_stats'} with a leading slice axis (NumPy); the actions are
  ['all'] in common mode; metadata['model'] holds the model hyper-parameters
  (filter_widths, channels, causal, dense, dropout, num_joints_in, num_joints_out).
  An unreadable 'best' or 'latest' step is reported through `log` and the next candidate is
  used (nothing is moved: evaluation only reads); an unreadable explicit step is an error.
  """
  if not os.path.isdir(layout.checkpoint_dir(workdir)):
    raise PosejaxError(f"{layout.checkpoint_dir(workdir)}: no checkpoints directory (is --workdir a training workdir?)")
  mngr = manager(workdir, read_only=True)
  where, failures = layout.checkpoint_dir(workdir), []
  try:
    candidates = _candidate_steps(mngr, which)
    for step in candidates:
      try:
        with _quiet_orbax():
          restored = mngr.restore(step, args=ocp.args.Composite(
              variables=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
        break
      except Exception as e:  # damaged files: orbax, tensorstore and json raise many types
        if len(candidates) == 1:
          raise PosejaxError(f"{where}: checkpoint at step {step} is unreadable ({_reason(e)})") from None
        failures.append(f"step {step} ({_reason(e)})")
        log(f"{where}: checkpoint at step {step} is unreadable ({_reason(e)})")
    else:
      raise PosejaxError(f"{where}: no readable checkpoint: " + "; ".join(failures))
  finally:
    mngr.close()
  if failures:
    log(f"{where}: using step {step} instead")
  metadata = dict(restored.metadata)
  config = run_config.from_config(metadata["config"])
  return config, _as_numpy(restored.variables), list(metadata["actions"]), step, metadata


def save_imported(workdir: str, variables: PyTree, config: Any,
                  actions: Sequence[str] = ("all",), *, source: str,
                  model: Mapping[str, Any] | None = None, step: int = 0,
                  trajectory: PyTree | None = None, trajectory_model: Mapping[str, Any] | None = None) -> str:
  """Writes stacked variables (e.g. converted VideoPose3D weights) as a checkpoint of `workdir`.

  Args:
    variables: {'params', 'batch_stats'} with a leading slice axis (one slice per action).
    config: the run config the model belongs to (written to WORKDIR/config.json too).
    actions: the action of each slice, ['all'] for one common model.
    source: where the weights came from (e.g. the .bin path); marks the checkpoint as imported.
    model: model hyper-parameters for the metadata (default: config.model).
    trajectory, trajectory_model: stacked trajectory models like `variables`, and their
      hyper-parameters (a semi-supervised VideoPose3D checkpoint's `model_traj`).

  Returns:
    The checkpoint directory.
  """
  for what, tree in (("variables", variables), ("trajectory variables", trajectory)):
    num = {len(np.shape(x)) and np.shape(x)[0] for x in jax.tree.leaves(tree)}
    if tree is not None and num != {len(actions)}:
      raise PosejaxError(f"imported {what} have leading sizes {sorted(num)}, expected {len(actions)} "
                         f"(one per action: {', '.join(actions)})")
  if (trajectory is None) != (trajectory_model is None):
    raise PosejaxError("an imported trajectory model needs both its variables and its hyper-parameters")
  existing = complete_steps(layout.checkpoint_dir(workdir))
  if existing:
    raise PosejaxError(f"{layout.checkpoint_dir(workdir)}: already holds checkpoints (steps "
                       f"{', '.join(map(str, existing))}); import into a new --workdir")
  config_json = run_config.to_dict(run_config.from_config(config))
  metadata = {"config": config_json, "actions": list(actions), "imported_from": str(source),
              "model": dict(model) if model is not None else config_json.get("model", {}),
              "global_step": int(step), "format": FORMAT_VERSION}
  items = {}
  if trajectory is not None:
    metadata["trajectory_model"] = dict(trajectory_model)
    items[TRAJECTORY_ITEM] = ocp.args.StandardSave(jax.tree.map(np.asarray, dict(trajectory)))
  # What this call creates, removed again if it fails (no complete step was there before it).
  created = (workdir if not os.path.isdir(workdir)
             else None if os.path.isdir(layout.checkpoint_dir(workdir)) else layout.checkpoint_dir(workdir))
  try:
    os.makedirs(workdir, exist_ok=True)
    mngr = manager(workdir)
    try:
      with _save_errors(mngr):
        mngr.save(int(step), args=ocp.args.Composite(
            variables=ocp.args.StandardSave(jax.tree.map(np.asarray, dict(variables))),
            metadata=ocp.args.JsonSave(metadata), **items), force=True)
    finally:
      close(mngr)
    # Written last: a failed import leaves no config.json claiming a model.
    layout.write_config(workdir, config_json)
  except BaseException:
    if created:
      shutil.rmtree(created, ignore_errors=True)
    raise
  return layout.checkpoint_dir(workdir)
