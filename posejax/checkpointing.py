"""Checkpoints of a run in WORKDIR/checkpoints (orbax CheckpointManager, one step = global step).

Each checkpoint holds three items:

* 'variables': {'params', 'batch_stats'} of the real models, stacked (A, ...) with A = 1 in
  common mode; what evaluation needs.
* 'train': the optimizer state (its leaves in flattening order), each model's step count and
  the loss accumulators of the current log epoch; what resuming needs. Absent in imported
  checkpoints.
* 'metadata' (JSON): config, action of each slice, model hyper-parameters, dataset
  fingerprint, global step and timers.

Checkpoints are device-layout independent (no padding models), so a run can resume on
another number of devices. The last `keep` checkpoints are kept, plus the one with the lowest
held-out validation MPJPE when the run has a validation split (never the test set).
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from posejax.errors import PosejaxError

PyTree = Any
CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 1
# Config entries that must match for a checkpoint to be resumed (data order and schedules
# shapes depend on them); the model's hyper-parameters are compared through metadata['model'].
RESUME_KEYS = ("mode", "seed", "data.keypoints", "data.train_subjects", "data.valid_subjects",
               "data.shuffle_seed", "train.batch_size", "train.epochs", "train.budget", "train.unit_epochs", "train.augment", "train.lr", "train.lr_decay",
               "train.bn_momentum_start", "train.bn_momentum_end")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


# The only metric a checkpoint may be selected by: MPJPE on config.data.valid_subjects, a split
# disjoint from the test subjects. Runs without one save no metrics.
BEST_METRIC = "mpjpe_heldout"


def _best_metric(metrics: Mapping[str, Any]) -> float:
  # Metrics without the key (older runs logged the test MPJPE) never rank as best.
  return float(metrics.get(BEST_METRIC, float("inf")))


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
      save_interval_steps=0 if read_only else 1)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def _host_copy(tree: PyTree, num_models: int) -> PyTree:
  """NumPy copies of the first `num_models` slices (safe against later buffer donation)."""
  from posejax.sharding import fetch  # sharding imports nothing from here
  return jax.tree.map(lambda x: np.array(x[:num_models], copy=True), fetch(tree))


def save(mngr: ocp.CheckpointManager, step: int, state: Any, accum: Mapping[str, jax.Array],
         num_models: int, metadata: Mapping[str, Any],
         metrics: Mapping[str, float] | None = None) -> None:
  """Saves a stacked TrainState (padded models dropped) at global step `step` (asynchronous)."""
  variables = _host_copy({"params": state.params, "batch_stats": state.batch_stats}, num_models)
  opt_leaves = _host_copy(jax.tree.leaves(state.opt_state), num_models)
  train = {"opt_state": {f"{i:04d}": leaf for i, leaf in enumerate(opt_leaves)},
           "step": _host_copy(state.step, num_models), "accum": _host_copy(dict(accum), num_models)}
  meta = dict(metadata, global_step=int(step), format=FORMAT_VERSION)
  mngr.save(int(step), args=ocp.args.Composite(
      variables=ocp.args.StandardSave(variables), train=ocp.args.StandardSave(train),
      metadata=ocp.args.JsonSave(meta)),
            metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()}, force=True)


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
  accum = {k: train["accum"][k] for k in accum_template}
  return state, accum, metadata


def checkpoint_dir_of(mngr: ocp.CheckpointManager) -> str:
  return str(mngr.directory)


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
  for key in RESUME_KEYS:
    a, b = _get(saved.get("config", {}), key), _get(current["config"], key)
    if a != b:
      diffs.append(f"{key}={a!r} (config: {b!r})")
  if diffs:
    raise PosejaxError(f"{where}: the checkpoint was written by an incompatible run: "
                       + "; ".join(diffs) + " (use the original config or another --workdir)")


def _which_step(mngr: ocp.CheckpointManager, which: str | int) -> int:
  steps = list(mngr.all_steps())
  where = checkpoint_dir_of(mngr)
  if not steps:
    raise PosejaxError(f"{where}: no checkpoints (train with `python train.py --workdir ...` first)")
  if which == "latest":
    return int(mngr.latest_step())
  if which == "best":
    scored = {s: (mngr.metrics(s) or {}).get(BEST_METRIC) for s in steps}
    scored = {s: float(v) for s, v in scored.items() if v is not None}
    if not scored:
      raise PosejaxError(
          f"{where}: --checkpoint=best needs checkpoints scored on a held-out validation split "
          "(config.data.valid_subjects) and this run has none; the test set is never used to select "
          "a model: use --checkpoint=latest (the final model) or a step number")
    return min(scored, key=lambda s: (scored[s], s))
  if isinstance(which, (int, np.integer)) or str(which).isdigit():
    if int(which) not in steps:
      raise PosejaxError(f"{where}: no checkpoint at step {which} (available: {', '.join(map(str, steps))})")
    return int(which)
  raise PosejaxError(f"checkpoint {which!r}: expected 'best', 'latest' or a step number")


def restore_for_eval(workdir: str, which: str | int = "latest"
                     ) -> tuple[ml_collections.ConfigDict, PyTree, list[str], int, dict[str, Any]]:
  """(config, stacked variables, action of each slice, step, metadata) of a checkpoint.

  `which`: 'latest' (the final model of a finished run), a step number, or 'best' (lowest
  held-out validation MPJPE; an error for runs without a validation split).

  `variables` = {'params', 'batch_stats'} with a leading slice axis (NumPy); the actions are
  ['all'] in common mode; metadata['model'] holds the model hyper-parameters
  (filter_widths, channels, causal, dense, dropout, num_joints_in, num_joints_out).
  """
  from posejax import workdir as layout
  if not os.path.isdir(layout.checkpoint_dir(workdir)):
    raise PosejaxError(f"{layout.checkpoint_dir(workdir)}: no checkpoints directory (is --workdir a training workdir?)")
  mngr = manager(workdir, read_only=True)
  try:
    step = _which_step(mngr, which)
    restored = mngr.restore(step, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(), metadata=ocp.args.JsonRestore()))
  finally:
    mngr.close()
  metadata = dict(restored.metadata)
  config = ml_collections.ConfigDict(metadata["config"])
  return config, _as_numpy(restored.variables), list(metadata["actions"]), step, metadata


def save_imported(workdir: str, variables: PyTree, config: ml_collections.ConfigDict,
                  actions: Sequence[str] = ("all",), *, source: str,
                  model: Mapping[str, Any] | None = None, step: int = 0) -> str:
  """Writes stacked variables (e.g. converted VideoPose3D weights) as a checkpoint of `workdir`.

  Args:
    variables: {'params', 'batch_stats'} with a leading slice axis (one slice per action).
    config: the run config the model belongs to (written to WORKDIR/config.json too).
    actions: the action of each slice, ['all'] for one common model.
    source: where the weights came from (e.g. the .bin path); marks the checkpoint as imported.
    model: model hyper-parameters for the metadata (default: config.model).

  Returns:
    The checkpoint directory.
  """
  from posejax.io_utils import atomic_write_text
  num = {len(np.shape(x)) and np.shape(x)[0] for x in jax.tree.leaves(variables)}
  if num != {len(actions)}:
    raise PosejaxError(f"imported variables have leading sizes {sorted(num)}, expected {len(actions)} "
                       f"(one per action: {', '.join(actions)})")
  config_json = json.loads(config.to_json())
  metadata = {"config": config_json, "actions": list(actions), "imported_from": str(source),
              "model": dict(model) if model is not None else config_json.get("model", {}),
              "global_step": int(step), "format": FORMAT_VERSION}
  os.makedirs(workdir, exist_ok=True)
  atomic_write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))
  mngr = manager(workdir)
  try:
    mngr.save(int(step), args=ocp.args.Composite(
        variables=ocp.args.StandardSave(jax.tree.map(np.asarray, dict(variables))),
        metadata=ocp.args.JsonSave(metadata)), force=True)
    mngr.wait_until_finished()
  finally:
    mngr.close()
  return checkpoint_dir(workdir)


class StopRequest:
  """SIGTERM / SIGINT set a flag; the training loop saves at the next step and returns.

  A second signal of either kind restores the default behaviour (so a stuck run can still
  be killed).
  """

  def __init__(self):
    self.signal: int | None = None
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> "StopRequest":
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave the signals alone
        pass
    return self

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signal is not None:
      signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
      raise KeyboardInterrupt
    self.signal = signum

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  @property
  def requested(self) -> bool:
    return self.signal is not None
