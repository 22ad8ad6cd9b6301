"""The training loop: `train_and_evaluate(config, workdir)`.

One loop serves both modes: A stacked models (one per action, or A = 1 in common mode) are
trained by one compiled, vmapped, sharded step (`engine`, `train_step`) that runs, at each
global step, the K models the compacted schedule (`slices`) puts in its slots. The run is cut
at its log points (one per common-equivalent epoch, or `train.logs_per_epoch` of them): at
each one every model is at the same fraction of its budget, the loop validates the dilated
models on the test actions (no TTA; with `eval.train_metrics` also on their own training
sequences, the reference's 3d_eval), writes WORKDIR/metrics.jsonl and TensorBoard scalars,
prints one line, and checkpoints every `checkpoint.every_epochs` log points. Between log
points the host only enqueues work: losses accumulate on the device. SIGTERM/SIGINT save a
checkpoint at the next call boundary and stop; rerunning the same command resumes and ends as
an uninterrupted run would. After the last step: final evaluation with TTA
(`evaluation.runs.evaluation_document`, as eval.py's), WORKDIR/eval/step_N/final/results.*,
then the action classifier stage (`train_classifier`), train_summary.json. Rerunning a finished
run (its newest checkpoint is the end of training, its final results and train summary written)
says so and touches no file.

The config is read once, by `train_and_evaluate` (`posejax.config.run_config.from_config`); the
model family (`config.model.family`, `posejax.models.family`) gives the training window and loss.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from posejax.common import progress, sharding
from posejax.common.compilation_cache import enable_compilation_cache
from posejax.common.errors import PosejaxError
from posejax.config import run_config
from posejax.config.run_config import RunConfig, TrainConfig
from posejax.data.dataset import PoseDataset
from posejax.data.loading import load_data, load_validation, selected_actions
from posejax.evaluation import (
    protocols as evaluation, report, runs as eval_lib, semi as semi_eval,
    trajectory as trajectory_lib)
from posejax.evaluation import classifier  # the action classifier, trained after the pose models
from posejax.evaluation import routing  # writes the evaluation folders
from posejax.models import family as model_family, spec as model_spec
from posejax.models.tcn import count_params
from posejax.pose.actions import ABBREVIATIONS
from posejax.training import (
    engine, log_point, memory_plan, optim, sampling, schedules, slices, step as train_step)
from posejax.training.semi import data as semi_data, step as semi_step
from posejax.workdir import behind, checkpoints as checkpointing, layout as workdir_lib, resume
from posejax.workdir.metrics import MetricsWriter

SUMMARY_FILE = workdir_lib.SUMMARY_FILE
# The device path keeps the training tables resident when they take at most this share of a
# device's memory (when the device reports it); beyond, windows are gathered on the host.
DEVICE_TABLE_SHARE = 0.4


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def _input_mode(train: TrainConfig, table: sampling.WindowTable) -> str:
  """'device' or 'host' (train.input; 'auto' by the tables' size and the device's memory)."""
  mode = train.input
  if mode not in engine.INPUTS + ("auto",):
    raise PosejaxError(f"--config.train.input: {mode!r} is not one of auto, {', '.join(engine.INPUTS)}")
  if mode != "auto":
    return mode
  limit = memory_plan.device_limit(train.device_memory_gib, jax.local_devices()[0])
  return "host" if limit and table.nbytes() > DEVICE_TABLE_SHARE * limit else "device"


class Run:
  """Static pieces of a run: data, budget, schedule, models, layout, compiled-step factory."""

  def __init__(self, config: RunConfig, workdir: str):
    self.config, self.workdir = config, workdir
    self.mode = slices.check_mode(config.mode)
    self.family = model_family.get(config.model.family)  # an unknown family fails before the data load
    self.semi = config.data.semi_supervised  # reference V11: unlabeled subjects, trajectory models
    if self.semi:
      semi_data.check(config.data, config.train)
    self.actions = selected_actions(config.data, config.selection)  # of data.dataset, by action_match
    self.slices = slices.slice_names(self.mode, self.actions)
    self.dtype = model_spec.compute_dtype(config.model)
    self.heldout = eval_lib.heldout_subjects(config.data)
    # The reference's --stride: examples are chunks of `stride` output frames, batch_size // stride
    # of them per batch (reference V7.1, V7.4), trained with the dilated model (reference V8.6).
    self.stride, self.dilated = model_spec.training_form(config.train, config.model)
    self.train_ds, self.test_ds, self.fingerprint = load_data(config.data, config.selection, self.actions)
    self.valid_ds = load_validation(config.data, config.selection, self.actions)
    t = config.train
    self.batch_size = int(t.batch_size) // self.stride  # examples (chunks) per batch
    self.table = sampling.make_window_table(self.train_ds, self.actions, self.mode, t.augment, self.stride,
                                            trajectory=self.semi)
    self.unlabeled_ds = self.unlabeled_table = None
    if self.semi:
      self.unlabeled_ds = semi_data.load_unlabeled(config.data, config.selection, self.actions)
      self.unlabeled_table = semi_data.unlabeled_table(self.unlabeled_ds, self.actions, self.mode, t.augment,
                                                       self.stride)
    self.budget = schedules.make_budget(t.budget, self.mode, t.epochs, t.unit_epochs,
                                        self.table.examples, self.batch_size)
    if int(self.budget.steps.max()) * self.batch_size >= 2**31:
      raise PosejaxError(f"config.train: {int(self.budget.steps.max()):,} steps of batch {self.batch_size} "
                         "exceed the 2**31 examples a stream can index")
    keypoints, features = model_spec.input_shape(self.train_ds, self.test_ds, self.valid_ds)
    self.hparams = model_spec.from_config(config.model, num_keypoints=keypoints, in_features=features,
                                          num_joints=self.train_ds.skeleton.num_joints)
    self.train_model = model_spec.build(self.hparams, strided=not self.dilated, dtype=self.dtype)
    self.eval_model = model_spec.build(self.hparams)
    # Test (and held-out) sets stay on the device: one compilation and no copy per log point.
    eval_chunks = config.eval.chunking
    resident = lambda ds: evaluation.resident_test_set(ds, self.slices, self.eval_model, **eval_chunks)
    self.test_set = resident(self.test_ds)
    self.valid_set = None if self.valid_ds is None else resident(self.valid_ds)
    # The reference's 3d_eval (reference V10.3): the labeled training sequences the run trains on
    # (after subset/downsample), each routed to its own model.
    self.train_set = resident(self.train_ds) if config.eval.train_metrics else None
    self.window = self.family.window(self.hparams)
    self.rf = self.window.receptive_field
    self.layout = sharding.make_layout(len(self.slices), self.batch_size,
                                       action_devices=config.sharding.action_devices)
    padded = self.layout.padded_models
    self.model_ids = slices.model_ids(self.slices, padded)
    self.points = schedules.log_steps(self.budget.total_steps, self.budget.common_epochs,
                                      t.logs_per_epoch)
    self.targets = slices.log_targets(self.budget.steps, [s for _, s in self.points])
    self.slot_layout, self.useful = slices.choose_slots(self.targets, self.layout.action_size, padded,
                                                        slots=t.slots)
    self.segment_lengths, _ = slices.run_length(self.targets, self.slot_layout, padded)
    self.input = "device" if self.semi else _input_mode(t, self.table)
    self.optimizer = optim.adam_amsgrad(t.lr)
    spec = sampling.window_spec(
        self.table, batch_size=self.batch_size, window=self.window,
        seed=config.data_shuffle_seed, stream_ids=self.model_ids[:len(self.slices)])
    hp_fn = schedules.hyperparams_fn(self.budget, t.lr, t.lr_decay, t.bn_momentum_start, t.bn_momentum_end,
                                     num_models=padded)
    self.hyperparams_fn = jax.jit(hp_fn)
    self.log_models = log_point.Models(tuple(self.slices), self.budget, self.batch_size, self.hyperparams_fn,
                                       self.semi)
    if self.semi:
      self.warmup_steps = semi_data.warmup_steps(t.warmup, self.budget, padded)
      hp_fn = semi_data.hyperparams_fn(hp_fn, self.warmup_steps)
    semi = None
    input_shape = (1, spec.window_frames, self.hparams["num_joints_in"], self.hparams["in_features"])
    if self.semi:
      self.traj_hparams = trajectory_lib.hparams_of(self.hparams)
      traj_model = model_spec.build(self.traj_hparams, strided=not self.dilated, dtype=self.dtype)
      semi = engine.Semi(traj_model, semi_data.unlabeled_spec(spec),
                         semi_data.step_options(t, self.train_ds.skeleton.parents, self.rf))
      self.traj_eval_model = model_spec.build(self.traj_hparams)
      on_device = lambda ds: semi_eval.resident_set(ds, self.slices, self.eval_model, **eval_chunks)
      # Reference V11.4's sets: test (traj_valid, 2d_valid; the resident test set), labeled (traj_eval,
      # 2d_train_sup), unlabeled (2d_train_unsup).
      self.semi_sets = {"valid": semi_eval.build(self.test_ds, self.test_set),
                        "train_sup": (on_device(self.train_ds) if self.train_set is None
                                      else semi_eval.build(self.train_ds, self.train_set)),
                        "train_unsup": on_device(self.unlabeled_ds)}
      self.init_fn = lambda: semi_step.init_stacked_state(self.train_model, traj_model, self.optimizer,
                                                          config.seed, self.model_ids, input_shape)
    else:
      self.init_fn = lambda: train_step.init_stacked_state(self.train_model, self.optimizer, config.seed,
                                                           self.model_ids, input_shape)
    self.engine_for = lambda slot_layout: engine.Engine(
        self.train_model, self.optimizer, hp_fn, self.model_ids, self.layout, slot_layout, spec,
        self.table.examples, steps_per_call=t.steps_per_call, semi=semi,
        loss_fn=self.family.loss)
    self.engine = self.engine_for(self.slot_layout)

  def slot_layout_of(self, slots_per_group: int) -> slices.SlotLayout:
    """The layout with `slots_per_group` slots per action group."""
    return slices.SlotLayout(self.slot_layout.groups, self.slot_layout.models_per_group, slots_per_group)

  def use_slots(self, slots_per_group: int) -> None:
    """Recomputes the schedule for fewer slots (the models train the same, in more global steps)."""
    if slots_per_group == self.slot_layout.slots_per_group:
      return
    self.slot_layout = self.slot_layout_of(slots_per_group)
    self.segment_lengths, self.useful = slices.run_length(self.targets, self.slot_layout, self.layout.padded_models)
    self.engine = self.engine_for(self.slot_layout)

  def padded(self, per_model: np.ndarray) -> np.ndarray:
    out = np.zeros(self.layout.padded_models, np.int64)
    out[:len(per_model)] = per_model
    return out

  def metadata(self, timers: log_point.Timers, wall_now: float, positions: np.ndarray | None = None,
               target: np.ndarray | None = None, epoch: float = 0.0) -> dict[str, Any]:
    """A checkpoint's record; with `positions` and the log point's `target`, the models' own steps
    (an evaluation between log points names the models behind)."""
    progress_fields = ({} if positions is None else
                       behind.checkpoint_fields(positions, target, epoch, self.layout.num_models))
    return {**progress_fields, "config": run_config.to_dict(self.config), "actions": self.slices,
            "model": self.hparams,
            "dataset_fingerprint": self.fingerprint, "mode": self.mode, "compute_dtype": self.dtype,
            "slots": dataclasses.asdict(self.slot_layout), "total_steps": int(self.segment_lengths.sum()),
            **({"trajectory_model": self.traj_hparams} if self.semi else {}), **timers.as_dict(wall_now)}

  def variables(self, state) -> dict[str, Any]:
    """Unpadded stacked {'params', 'batch_stats'} for evaluation."""
    return sharding.unpad_models(state.variables, self.layout.num_models)

  def semi_set_metrics(self, state, name: str) -> dict[str, float | None]:
    """semi_eval.metrics of the model pairs on one of reference V11.4's sets ('valid', 'train_sup', 'train_unsup')."""
    traj = sharding.unpad_models({"params": state.traj_params, "batch_stats": state.traj_batch_stats},
                                 self.layout.num_models)
    return semi_eval.metrics(self.eval_model, self.traj_eval_model, self.variables(state), traj,
                             self.semi_sets[name])

  def semi_metrics(self, state) -> dict[str, float]:
    """Reference V11.4: traj_valid, 2d_valid, traj_eval, 2d_train_sup, 2d_train_unsup (eval mode)."""
    valid, sup, unsup = (self.semi_set_metrics(state, name) for name in ("valid", "train_sup", "train_unsup"))
    return {"traj_valid": valid["traj"], "2d_valid": valid["2d"], "traj_eval": sup["traj"],
            "2d_train_sup": sup["2d"], "2d_train_unsup": unsup["2d"]}

  def fresh_accumulator(self):
    return engine.fresh_accumulator(self.layout, self.semi)

  def validate(self, state, test_set) -> dict[str, Any]:
    """Per-log-point errors (no TTA) of every model on a resident test or held-out set."""
    return evaluation.validation_metrics(self.eval_model, self.variables(state), test_set, self.slices)


def _restore_or_init(run: Run, mngr, timers: log_point.Timers):
  """(state, accumulator, global step) from the newest readable checkpoint (or the one
  config.checkpoint.resume_from names, `posejax.workdir.resume`), or fresh.

  A damaged newest checkpoint (a crash or a full disk) is set aside with a message and the
  previous one is used; a checkpoint of an incompatible run is an error.
  """
  layout = run.layout
  check = lambda saved: resume.check_compatible(resume.as_current(saved), run.metadata(timers, 0.0),
                                                       workdir_lib.checkpoint_dir(run.workdir))
  restored = resume.restore(run.config.checkpoint, run.workdir, mngr, jax.eval_shape(run.init_fn),
                            engine.init_accumulator(layout.padded_models, run.semi), check=check, log=_log)
  if restored is None:
    state = jax.jit(run.init_fn, out_shardings=layout.model_sharding)()
    return state, run.fresh_accumulator(), 0
  latest, state, acc, meta = restored
  timers.train, timers.compile = meta.get("train_time_s", 0.0), meta.get("compile_time_s", 0.0)
  timers.eval, timers.wall = meta.get("eval_time_s", 0.0), meta.get("wall_time_s", 0.0)
  put = lambda tree: sharding.put_global(sharding.pad_models(tree, layout.padded_models), layout.model_sharding)
  _log(f"resumed from {workdir_lib.checkpoint_dir(run.workdir)} at global step {latest}")
  return put(state), put(acc), int(latest)


def _check_finite(run: Run, acc_host, mngr) -> None:
  """Stops at the first non-finite training loss (recorded on the device), saving nothing."""
  bad = np.flatnonzero(acc_host["first_nonfinite"][:run.layout.num_models] >= 0)
  if bad.size:
    first = int(bad[np.argmin(acc_host["first_nonfinite"][bad])])
    step = int(acc_host["first_nonfinite"][first])
    latest = mngr.latest_step()
    kept = f"the last good checkpoint is step {latest}" if latest is not None else "no checkpoint was saved"
    raise PosejaxError(f"non-finite training loss at global step {step} in the model of "
                       f"{run.slices[first]!r}; stopped without saving ({kept}); lower --config.train.lr "
                       "or check the data")


def _final_evaluation(run: Run, state, step: int, timers: log_point.Timers) -> dict[str, Any]:
  cfg = run.config.eval
  start = time.perf_counter()
  tta = cfg.tta
  document = eval_lib.evaluation_document(
      run.eval_model, run.variables(state), run.test_set, run.slices, tta=tta, by_subject=cfg.by_subject,
      config=run_config.to_dict(run.config), checkpoint_step=step, train_time_s=timers.train,
      checkpoint="final", checkpoint_final=True, checkpoint_note="final: the end of training",
      **({"trajectory": report.trajectory_section(run.semi_set_metrics(state, "valid"))} if run.semi else {}))
  timers.eval += time.perf_counter() - start
  if jax.process_index() == 0:
    routing.write_evaluation(workdir_lib.eval_dir(run.workdir, step, workdir_lib.FINAL_EVAL), document)
  _log(f"Final evaluation (test-time augmentation: {tta}), mm:\n" + report.to_text(report.results_table(document))
       + report.trajectory_text(document))
  for subject, sub in document.get("by_subject", {}).items():
    _log(f"Subject {subject}:\n" + report.to_text(report.results_table(sub)))
  return document


def _finished(run: Run) -> dict[str, Any] | None:
  """The train summary of a run that this workdir holds finished, None when training or its final
  evaluation is left to do. Finished: the newest checkpoint is the end of training (of a compatible
  run: else the error resuming gives), and the final results and train_summary.json are written.
  Reads only: a read-only checkpoint manager, no restore of the arrays."""
  source = resume.parse(run.config.checkpoint.resume_from, run.workdir)
  if source is not None and source.own and source.step is not None:
    return None  # going back to an earlier step of this workdir
  # The end of training as that run planned it (its slots may have been fitted to the device).
  summary = workdir_lib.read_summary(run.workdir)
  total = summary.get("global_steps")
  if total is None or not os.path.isfile(workdir_lib.results_path(run.workdir, total, workdir_lib.FINAL_EVAL)):
    return None
  mngr = checkpointing.manager(run.workdir, read_only=True)
  try:
    if mngr.latest_step() != total:
      return None
    saved = checkpointing.restore_metadata(mngr, total)
  except Exception:  # a damaged checkpoint: resuming reports it and sets it aside
    return None
  finally:
    mngr.close()
  # A compatible run has this config's budget (its keys are compared), so it is finished too.
  resume.check_compatible(resume.as_current(saved), run.metadata(log_point.Timers(), 0.0),
                          workdir_lib.checkpoint_dir(run.workdir))
  return summary


def _finished_line(run: Run, summary: Mapping[str, Any]) -> str:
  step, where = summary["global_steps"], run.workdir
  return (f"--workdir {where}: training finished at step {step} (epochs {summary.get('epochs')}); results in "
          f"{workdir_lib.eval_dir(where, step, workdir_lib.FINAL_EVAL)} (nothing to do; eval.py re-evaluates)")


def _summary(run: Run, timers: log_point.Timers, document: Mapping[str, Any], wall_now: float) -> dict[str, Any]:
  """train_summary.json: mode, budget, schedule, per-model samples/steps/epochs, timers, final averages."""
  budget, layout, config = run.budget, run.layout, run.config
  per_model = lambda values, cast: {s: cast(x) for s, x in zip(run.slices, values)}
  return {"mode": run.mode, "actions": list(run.actions), "slices": run.slices, **timers.as_dict(wall_now),
          "samples": per_model(budget.steps * run.batch_size, int), "steps": per_model(budget.steps, int),
          "own_epochs": per_model(budget.epochs, float),
          "examples_per_epoch": per_model(budget.examples_per_epoch, int),
          "epochs": budget.common_epochs, "budget": budget.rule, "unit_epochs": int(config.train.unit_epochs),
          "global_steps": int(run.segment_lengths.sum()), "slots": run.slot_layout.slots,
          "useful_fraction": run.useful, "input": run.input, "compute_dtype": run.dtype,
          "batch_size": run.batch_size, "stride": run.stride, "train_model": _train_form(run),
          "devices": len(jax.devices()),
          "mesh": [layout.action_size, layout.data_size],
          "final": {"average": document["average"], "tta": document["tta"]}}


def _train_form(run: Run) -> str:
  return "dilated" if run.dilated else "strided"


class Loop:
  """Runs the schedule's global steps through the compiled step (device or host input)."""

  def __init__(self, run: Run, rng: jax.Array, timers: log_point.Timers):
    self.run, self.rng, self.timers = run, rng, timers
    self.compiled = None
    self.tables = (engine.put_tables(run.table, run.layout, run.unlabeled_table) if run.input == "device"
                   else None)

  def _compile_engine(self, eng: engine.Engine, state, acc):
    run, start = self.run, time.perf_counter()
    if run.input == "device":
      compiled = eng.compile_device(state, acc, self.tables, self.rng)
    else:
      compiled = eng.compile_host(state, acc, engine.host_batch_example(eng, run.table), self.rng)
    self.timers.compile += time.perf_counter() - start
    return compiled

  def plan(self, state, acc) -> memory_plan.Plan:
    """Compiles the step at the schedule's slots, or at fewer when that does not fit the device's
    memory (the run's schedule follows); raises when one slot does not fit."""
    run = self.run
    device = jax.local_devices()[0]
    limit = memory_plan.device_limit(run.config.train.device_memory_gib, device)
    compile_at = lambda k: self._compile_engine(run.engine_for(run.slot_layout_of(k)), state, acc)
    plan = memory_plan.fit_slots(compile_at, run.slot_layout.slots_per_group, limit,
                                 what=f"the training step ({run.batch_size} examples per model)",
                                 in_use=memory_plan.bytes_in_use(device))
    run.use_slots(plan.slots)
    self.compiled = plan.compiled
    return plan

  def _compile(self, state, acc) -> None:
    self.compiled = self._compile_engine(self.run.engine, state, acc)

  def run_rows(self, state, acc, inputs: np.ndarray, step: int, stop: checkpointing.StopRequest, desc: str,
               checkpoint_due: Callable[[], bool] = lambda: False):
    """Runs the rows `inputs` (T, K, 3) from global step `step`; returns (state, acc, rows done).

    Stops early, at a call boundary, on a signal or when `checkpoint_due()`. Adds the time to
    `timers.train`, except the one-off compilation (`timers.compile`).
    """
    run = self.run
    if self.compiled is None:
      self._compile(state, acc)
    start_time = time.perf_counter()
    bar = progress.Bar(_step_samples(inputs, run.layout.num_models, run.batch_size), desc)
    should_stop = lambda: stop.requested or checkpoint_due()
    if run.input == "device":
      state, acc, done = engine.run_segment_device(run.engine, self.compiled, state, acc, self.tables, inputs,
                                                   step, self.rng, should_stop=should_stop, on_chunk=bar.update)
    else:
      from posejax.training import input_pipeline  # tf.data only on this path
      slice_index = np.minimum(inputs[..., 0], run.layout.num_models - 1)
      batches = input_pipeline.host_batches(run.table, run.engine.spec, slice_index, inputs[..., 1])
      state, acc, done = engine.run_segment_host(run.engine, self.compiled, state, acc, batches, inputs, step,
                                                 self.rng, should_stop=should_stop, on_chunk=bar.update)
    jax.block_until_ready(acc)
    bar.close()
    self.timers.train += time.perf_counter() - start_time
    return state, acc, done


class CheckpointTimer:
  """`due()` once `minutes` have passed since the last checkpoint (never when minutes <= 0)."""

  def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
    self.minutes, self._clock = minutes, clock
    self.reset()

  def reset(self) -> None:
    self._last = self._clock()

  def due(self) -> bool:
    return self.minutes > 0 and self._clock() - self._last >= 60.0 * self.minutes


def _step_samples(inputs: np.ndarray, num_models: int, batch_size: int) -> np.ndarray:
  """(T,) useful samples of each global step: the batches of its real slot models, counted as
  train_summary.json counts samples."""
  return (inputs[..., 0] < num_models).sum(-1) * batch_size


def _positions(state, layout: sharding.Layout) -> np.ndarray:
  """(A',) each model's own step count (host)."""
  return np.asarray(sharding.fetch(state.step), np.int64).reshape(layout.padded_models)


def train_classifier(config: RunConfig, workdir: str, *, actions: Sequence[str], train_ds: PoseDataset,
                     fingerprint: str, test_set: evaluation.ResidentTestSet, eval_model: Any, pose_variables: Any,
                     document: Mapping[str, Any], stop_requested: Callable[[], bool] = lambda: False
                     ) -> dict[str, Any] | None:
  """The trainer's hook after the pose models' final evaluation.

  When config.classifier is enabled: trains the classifier (or reuses the one a previous
  session of the run saved in WORKDIR/classifier), evaluates every routing mode beside the
  final evaluation `document` and rewrites its results files. The headline stays the seed's
  oracle routing (train_summary.json and the paper comparison quote it); `eval.py` makes
  predicted routing the headline. Returns the (updated) document, or None when
  `stop_requested()` (SIGTERM/SIGINT) stopped its training (nothing of it is saved then; the
  pose models are). `actions`, `train_ds` and `fingerprint` are the run's training data,
  `test_set` and `eval_model` its final evaluation's.
  """
  if not config.classifier_enabled:
    return dict(document)
  hp = classifier.hparams(config, actions, train_ds.num_keypoints)
  where = workdir_lib.classifier_dir(workdir)
  found = classifier.restore(workdir, repair=True)  # a damaged one is set aside and trained again
  if found is not None:
    classifier.check_same(found.metadata, hp, fingerprint, where)
    print(f"classifier: reusing {where}", flush=True)
  else:
    data = classifier.training_data(train_ds, actions, bool(hp["augment"]))
    print(f"classifier: {len(hp['classes'])} actions, receptive field {classifier.receptive_field(hp['filter_widths'])} "
          f"frames, {hp['channels']} channels, {hp['epochs']} epoch(s) of {int(data.table.examples[0]):,} windows",
          flush=True)
    trained = classifier.train(hp, data, steps_per_call=config.train.steps_per_call,
                               log=lambda line: print(line, flush=True), stop_requested=stop_requested)
    if trained is None:
      return None  # stopped: the next run of the command trains it (the pose models are saved)
    variables, summary = trained
    metadata = {"hparams": hp, "dataset_fingerprint": fingerprint, **summary}
    if jax.process_index() == 0:
      classifier.save(workdir, variables, metadata)
    found = classifier.Classifier(classifier.build(hp, strided=False), variables, tuple(hp["classes"]), metadata)
  return routing.finish_document(document, eval_model, pose_variables, test_set,
                                 out_dir=workdir_lib.eval_dir(workdir, document["checkpoint_step"],
                                                              workdir_lib.FINAL_EVAL),
                                 classifier=found, tta=config.eval.tta,
                                 mode="oracle", by_subject=config.eval.by_subject,
                                 write=jax.process_index() == 0)


def train_and_evaluate(config: ml_collections.ConfigDict | RunConfig, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the run `config` describes in `workdir`; returns the train summary.

  The validated config is read once, here, into typed pieces (`posejax.config.run_config`);
  progress bars (training, evaluation, classifier) follow train.progress.
  """
  run_cfg = run_config.from_config(config)
  with progress.shown(run_cfg.train.progress):
    return _train_and_evaluate(run_cfg, workdir)


def _train_and_evaluate(config: RunConfig, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the configured run in `workdir`; returns the train summary.

  Returns {'interrupted': True, 'step': s} instead when stopped by SIGTERM/SIGINT (after
  saving a checkpoint at step s).
  """
  wall_start = time.perf_counter()
  sharding.maybe_initialize_distributed(config.distributed)
  enable_compilation_cache(config.compilation_cache_dir)
  resume.parse(config.checkpoint.resume_from, workdir)  # a bad value fails before the data loads
  run = Run(config, workdir)
  finished = _finished(run)
  if finished is not None:
    _log(_finished_line(run, finished))
    return finished
  os.makedirs(workdir, exist_ok=True)
  budget, layout = run.budget, run.layout
  _log(f"INFO: Receptive field: {run.rf} frames; {count_params(jax.eval_shape(run.init_fn).params) // len(run.model_ids):,}"
       f" parameters per model; {len(run.slices)} model(s) ({run.mode}, {run.dtype}) on a {layout.action_size}x"
       f"{layout.data_size} (action x data) mesh of {len(jax.devices())} {jax.devices()[0].platform} device(s)")
  _log(f"INFO: Training on {run.train_ds.frames():,} frames, testing on {run.test_ds.frames():,} frames; budget "
       f"'{budget.rule}': " + ", ".join(f"{ABBREVIATIONS.get(s, s)} {e:g} ep/{n:,} steps" for s, e, n in
                                        zip(run.slices, budget.epochs, budget.steps)))
  if run.stride > 1 or run.dilated:
    _log(f"INFO: training the {_train_form(run)} model on chunks of {run.stride} frame(s) ({run.stride + run.rf - 1} "
         f"input frames), {run.batch_size} per batch; {', '.join(f'{n:,}' for n in run.table.examples)} chunks "
         "per epoch")
  if run.semi:
    _log(f"INFO: Semi-supervision on {run.unlabeled_table.num_frames:,} frames of "
         f"{', '.join(config.data.unlabeled_subjects)} (warm-up {config.train.warmup} epoch(s): "
         f"{', '.join(f'{n:,}' for n in run.warmup_steps[:layout.num_models])} step(s))")
  timers = log_point.Timers()
  mngr = checkpointing.manager(workdir, keep=config.checkpoint.keep, select_best=bool(run.heldout))
  try:
    state, acc, step = _restore_or_init(run, mngr, timers)
    rng = jax.jit(lambda: jax.random.key(config.seed + 1), out_shardings=layout.replicated)()
    loop = Loop(run, rng, timers)
    plan = loop.plan(state, acc)  # before anything is written: a call that cannot fit never starts
    _log(f"INFO: schedule: {run.slot_layout.slots} slot(s) per global step, {int(run.segment_lengths.sum()):,} global "
         f"steps, useful fraction of model-steps {run.useful:.4f}; input on the {run.input} "
         f"({run.table.nbytes() / 2**20:,.0f} MiB of training tables)")
    _log(f"INFO: {plan.describe(run.slot_layout.groups)}")
    if jax.process_index() == 0:
      workdir_lib.write_config(workdir, run_config.to_dict(config))
    writer = MetricsWriter(workdir, workdir_lib.read_metrics(workdir, step), enabled=jax.process_index() == 0)
    positions = _positions(state, layout)
    every = max(config.checkpoint.every_epochs, 1)
    timer = CheckpointTimer(config.checkpoint.every_minutes)
    with checkpointing.StopRequest(busy=mngr.is_saving_in_progress) as stop:
      for index, ((epoch, _), target) in enumerate(zip(run.points, run.targets)):
        target = run.padded(target)
        if np.all(positions >= target):
          continue  # reached before a resume
        seg_wall = time.perf_counter()
        rows = slices.segment_rows(positions, target, run.slot_layout)
        inputs = run.engine.schedule_inputs(rows, positions)
        done = 0
        while done < len(rows):
          # Runs to the end of the segment, or until a signal or the checkpoint timer stops it.
          state, acc, ran = loop.run_rows(state, acc, inputs[done:], step, stop, f"epoch {epoch}", timer.due)
          step += ran
          positions = positions + np.bincount(rows[done:done + ran].ravel(), minlength=layout.padded_models + 1)[:-1]
          done += ran
          if done == len(rows):  # a signal in the segment's last call stops after its log point
            break
          with stop.saving():
            checkpointing.save(mngr, step, state, acc, layout.num_models,
                               run.metadata(timers, time.perf_counter() - wall_start, positions, target, epoch))
            checkpointing.finish_saves(mngr)
          timer.reset()
          if stop.requested:
            _log(f"stopped by signal {stop.signal} at global step {step}; checkpoint saved in "
                 f"{workdir_lib.checkpoint_dir(workdir)} (rerun the same command to resume)")
            return {"interrupted": True, "step": step}
          _log(f"INFO: checkpoint at global step {step} (every {timer.minutes:g} min; between log points)")
        acc_host = sharding.fetch(acc)
        _check_finite(run, acc_host, mngr)
        valid, heldout = None, None
        start = time.perf_counter()
        if config.eval.validate:
          valid = run.validate(state, run.test_set)  # monitoring only: never selects a checkpoint
        semi_valid = run.semi_metrics(state) if run.semi and config.eval.validate else {}
        if run.valid_set is not None:
          heldout = run.validate(state, run.valid_set)["frame_weighted"]["mpjpe_valid"]
        train_eval = None if run.train_set is None else run.validate(state, run.train_set)
        timers.eval += time.perf_counter() - start
        record = log_point.log_record(run.log_models, epoch, step, positions, acc_host, valid, timers,
                                      time.perf_counter() - wall_start, train_eval)
        record.update(semi_valid)
        if heldout is not None:
          record[checkpointing.BEST_METRIC] = heldout
        writer.write(record)
        _log(log_point.epoch_line(record, (time.perf_counter() - seg_wall) / 60, run.slices))
        acc = run.fresh_accumulator()
        if (index + 1) % every == 0 or index + 1 == len(run.points):
          with stop.saving():
            checkpointing.save(mngr, step, state, acc, layout.num_models,
                               run.metadata(timers, time.perf_counter() - wall_start, positions, target, epoch),
                               metrics=None if heldout is None else {checkpointing.BEST_METRIC: heldout})
          timer.reset()
    checkpointing.finish_saves(mngr)
    if np.any(positions[:layout.num_models] < budget.steps):
      raise PosejaxError(f"training stopped at global step {step} before every model finished its budget")
    document = _final_evaluation(run, state, step, timers)
    with checkpointing.StopRequest() as stop:  # SIGTERM while the classifier trains: stop, it is redone
      document = train_classifier(  # when config.classifier is on
          run.config, run.workdir, actions=run.actions, train_ds=run.train_ds, fingerprint=run.fingerprint,
          test_set=run.test_set, eval_model=run.eval_model, pose_variables=run.variables(state), document=document,
          stop_requested=lambda: stop.requested)
    if document is None:
      return {"interrupted": True, "step": step}
  finally:
    checkpointing.close(mngr)
  summary = _summary(run, timers, document, time.perf_counter() - wall_start)
  if jax.process_index() == 0:
    workdir_lib.write_summary(workdir, summary)
  _log(f"training time {timers.train:.1f} s (compilation {timers.compile:.1f} s, evaluation {timers.eval:.1f} s); "
       f"wrote {workdir_lib.summary_path(workdir)}")
  return summary
