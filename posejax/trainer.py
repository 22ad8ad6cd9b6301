"""The training loop: `train_and_evaluate(config, workdir)`.

One loop serves both modes: A stacked models (one per action, or A = 1 in common mode) take
lock-step global steps of one vmapped, sharded, jitted step (`train_step`, `sharding`). At
every log point (one per common-equivalent epoch, or `train.logs_per_epoch` of them) the
loop validates the dilated models on the test actions (no TTA), writes WORKDIR/metrics.jsonl
and TensorBoard scalars, prints one line, and checkpoints every `checkpoint.every_epochs`
log points. SIGTERM/SIGINT save a checkpoint at the next step boundary and stop; rerunning
the same command resumes from the latest checkpoint and ends as an uninterrupted run would.
After the last step: final evaluation with TTA, WORKDIR/eval/results.*, train_summary.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np
import tqdm

from posejax import (checkpointing, evaluation, input_pipeline, optim, report, schedules, sharding,
                     train_step)
from posejax.data import h36m
from posejax.data.actions import ABBREVIATIONS, ACTIONS, resolve_actions
from posejax.errors import PosejaxError
from posejax.io_utils import atomic_write_text
from posejax.model import TemporalModel, causal_shift, count_params, receptive_field
from posejax.tf_compat import tf
from tensorflow.core.framework import summary_pb2  # noqa: E402  (after tf_compat hid the GPU)

COMMON = evaluation.COMMON_SLICE
DEVICE_KEYS = ("poses_2d", "poses_3d", "active", "epoch")
METRICS_FILE, SUMMARY_FILE = "metrics.jsonl", "train_summary.json"
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


@dataclasses.dataclass
class Timers:
  """Seconds spent in training steps, compilation and evaluation (cumulative over resumes)."""
  train: float = 0.0
  compile: float = 0.0
  eval: float = 0.0
  wall: float = 0.0  # wall time of earlier sessions of a resumed run

  def as_dict(self, wall_now: float) -> dict[str, float]:
    return {"train_time_s": self.train, "compile_time_s": self.compile, "eval_time_s": self.eval,
            "wall_time_s": self.wall + wall_now}


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def load_data(config: ml_collections.ConfigDict, actions: tuple[str, ...]):
  """(train dataset, test dataset, fingerprint); synthetic files are generated when configured."""
  data_dir, keypoints = config.data.dir, config.data.keypoints
  frames = int(config.data.get("synthetic_frames", 0) or 0)
  needed = [os.path.join(data_dir, h36m.FILE_3D), os.path.join(data_dir, h36m.FILE_2D_PATTERN.format(keypoints))]
  if frames and not all(os.path.isfile(p) for p in needed) and jax.process_index() == 0:
    from posejax.data import synthetic
    _log(f"generating synthetic data in {data_dir} ({frames} frames per sequence)")
    synthetic.generate(data_dir, frames=frames, seed=int(config.data.get("synthetic_seed", 0)),
                       overwrite=True, log=_log)
  train_subjects, test_subjects = list(config.data.train_subjects), list(config.data.test_subjects)
  # One read of the files for both splits: select() keeps each split's record order.
  both = h36m.load_h36m(data_dir, keypoints, subjects=list(dict.fromkeys(train_subjects + test_subjects)),
                        actions=actions)
  return (both.select(subjects=train_subjects), both.select(subjects=test_subjects),
          h36m.dataset_fingerprint(data_dir, keypoints))


def model_hparams(config: ml_collections.ConfigDict, num_keypoints: int, num_joints: int) -> dict[str, Any]:
  m = config.model
  return {"filter_widths": [int(w) for w in m.filter_widths], "channels": int(m.channels),
          "causal": bool(m.causal), "dense": bool(m.dense), "dropout": float(m.dropout),
          "num_joints_in": int(num_keypoints), "num_joints_out": int(num_joints)}


def build_model(hparams: Mapping[str, Any], *, strided: bool) -> TemporalModel:
  """The training form (strided, spec 8.6; dilated when dense) or the evaluation form."""
  return TemporalModel(num_joints_in=hparams["num_joints_in"], num_joints_out=hparams["num_joints_out"],
                       filter_widths=tuple(hparams["filter_widths"]), causal=hparams["causal"],
                       dropout=hparams["dropout"], channels=hparams["channels"], dense=hparams["dense"],
                       strided=strided and not hparams["dense"])


def _mode_and_slices(config) -> tuple[str, tuple[str, ...], list[str]]:
  mode = str(config.mode)
  if mode not in schedules.MODES:
    raise PosejaxError(f"--config.mode: {mode!r} is not one of {', '.join(schedules.MODES)}")
  actions = resolve_actions(config.actions)
  return mode, actions, [COMMON] if mode == "common" else list(actions)


def _read_metrics(workdir: str, up_to_step: int) -> list[dict[str, Any]]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if r["step"] <= up_to_step]


class MetricsWriter:
  """metrics.jsonl (rewritten atomically on resume, then appended) and TensorBoard scalars."""

  def __init__(self, workdir: str, records: list[dict[str, Any]]):
    self.path = os.path.join(workdir, METRICS_FILE)
    self.enabled = jax.process_index() == 0
    if self.enabled:
      atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))
      self.tb = tf.summary.create_file_writer(workdir)

  def write(self, record: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    scalars = {k: record[k] for k in ("loss", "mpjpe_valid", "mpjve_valid", "train_time_s", "epoch")
               if record.get(k) is not None}
    scalars.update({f"{name}/{k}": v for name, values in record["per_action"].items() for k, v in values.items()})
    with self.tb.as_default(step=int(record["step"])):
      for tag, value in scalars.items():
        # tf.summary.write with the scalars plugin tag is what tf.summary.scalar does,
        # without needing the tensorboard package at training time.
        tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=_SCALAR_METADATA)
    self.tb.flush()


def _epoch_line(record: Mapping[str, Any], minutes: float, slices: list[str]) -> str:
  """The reference's per-epoch line (mm), then per-model train/valid pairs in AB mode."""
  per = record["per_action"]
  lrs = sorted({round(per[s]["lr"], 9) for s in slices})
  lr = f"{lrs[0]:.6f}" if len(lrs) == 1 else f"{lrs[0]:.6f}-{lrs[-1]:.6f}"
  line = f"[{record['epoch']}] time {minutes:.2f} lr {lr} 3d_train {1000 * record['loss']:.2f}"
  if record.get("mpjpe_valid") is not None:
    line += f" 3d_valid {1000 * record['mpjpe_valid']:.2f}"
  if slices != [COMMON]:
    parts = [f"{ABBREVIATIONS.get(s, s)} {1000 * per[s]['loss']:.1f}"
             + (f"/{1000 * per[s]['mpjpe_valid']:.1f}" if "mpjpe_valid" in per[s] else "") for s in slices]
    line += " | " + " ".join(parts)
  return line


class Run:
  """Static pieces of a run: data, budget, models, layout, jitted step."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config, self.workdir = config, workdir
    self.mode, self.actions, self.slices = _mode_and_slices(config)
    self.train_ds, self.test_ds, self.fingerprint = load_data(config, self.actions)
    t = config.train
    self.batch_size = int(t.batch_size)
    self.n = input_pipeline.examples_per_epoch(self.train_ds, self.actions, self.mode, bool(t.augment))
    self.budget = schedules.make_budget(str(t.budget), self.mode, int(t.epochs), int(t.unit_epochs),
                                        self.n, self.batch_size)
    self.hparams = model_hparams(config, self.train_ds.num_keypoints, self.train_ds.skeleton.num_joints)
    self.train_model = build_model(self.hparams, strided=True)
    self.eval_model = build_model(self.hparams, strided=False)
    self.rf = receptive_field(self.hparams["filter_widths"])
    self.layout = sharding.make_layout(len(self.slices), self.batch_size,
                                       action_devices=int(config.get("sharding", {}).get("action_devices", 0)))
    padded = self.layout.padded_models
    ids = [ACTIONS.index(s) if s in ACTIONS else len(ACTIONS) for s in self.slices]
    self.model_ids = np.asarray(ids + [100 + i for i in range(padded - len(ids))], np.int32)
    self.optimizer = optim.adam_amsgrad(float(t.lr))
    hp_fn = schedules.hyperparams_fn(self.budget, float(t.lr), float(t.lr_decay), float(t.bn_momentum_start),
                                     float(t.bn_momentum_end), num_models=padded)

    def step_fn(state, acc, batch, rng):
      state, metrics = train_step.multi_train_step(
          state, batch, rng, model=self.train_model, optimizer=self.optimizer, hyperparams_fn=hp_fn,
          model_ids=self.model_ids)
      return state, train_step.accumulate(acc, metrics), metrics
    self.step_fn = step_fn
    self.init_fn = lambda: train_step.init_stacked_state(
        self.train_model, self.optimizer, int(config.seed), self.model_ids,
        (1, self.rf, self.hparams["num_joints_in"], 2))

  def metadata(self, timers: Timers, wall_now: float) -> dict[str, Any]:
    return {"config": json.loads(self.config.to_json()), "actions": self.slices, "model": self.hparams,
            "dataset_fingerprint": self.fingerprint, "mode": self.mode, **timers.as_dict(wall_now)}

  def variables(self, state) -> dict[str, Any]:
    """Unpadded stacked {'params', 'batch_stats'} for evaluation."""
    return sharding.unpad_models(state.variables, self.layout.num_models)

  def validate(self, state) -> dict[str, Any]:
    cfg = self.config.eval
    return evaluation.validation_metrics(self.eval_model, self.variables(state), self.test_ds, self.slices,
                                         chunk=int(cfg.get("chunk", evaluation.DEFAULT_CHUNK)),
                                         batch=cfg.get("batch", evaluation.DEFAULT_BATCH))


def _restore_or_init(run: Run, mngr, timers: Timers):
  """(state, accumulator, start step) from the latest checkpoint, or fresh."""
  layout = run.layout
  latest = mngr.latest_step()
  if latest is None:
    state = jax.jit(run.init_fn, out_shardings=layout.model_sharding)()
    acc = jax.device_put(train_step.init_accumulator(layout.padded_models), layout.model_sharding)
    return state, acc, 0
  saved = checkpointing.restore_metadata(mngr, latest)
  checkpointing.check_compatible(saved, run.metadata(timers, 0.0), checkpointing.checkpoint_dir(run.workdir))
  template = jax.eval_shape(run.init_fn)
  state, acc, meta = checkpointing.restore_train(mngr, latest, template,
                                                 train_step.init_accumulator(layout.padded_models))
  timers.train, timers.compile = meta.get("train_time_s", 0.0), meta.get("compile_time_s", 0.0)
  timers.eval, timers.wall = meta.get("eval_time_s", 0.0), meta.get("wall_time_s", 0.0)
  put = lambda tree: jax.device_put(sharding.pad_models(tree, layout.padded_models), layout.model_sharding)
  _log(f"resumed from {checkpointing.checkpoint_dir(run.workdir)} at global step {latest}")
  return put(state), put(acc), int(latest)


def _log_record(run: Run, epoch, step: int, acc_host, last_metrics, valid, timers: Timers,
                wall_now: float) -> dict[str, Any]:
  """The metrics.jsonl object of a log point (values in metres)."""
  budget, a = run.budget, run.layout.num_models
  position = schedules.lockstep_position(step, budget.steps, budget.total_steps)
  loss = acc_host["loss_sum"][:a] / np.maximum(acc_host["steps"][:a], 1)
  per = {}
  for i, name in enumerate(run.slices):
    per[name] = {"loss": float(loss[i]), "lr": float(last_metrics["learning_rate"][i]),
                 "bn_momentum": float(last_metrics["bn_momentum"][i]),
                 "action_epoch": float(position[i] * run.batch_size / budget.examples_per_epoch[i]),
                 "samples": int(position[i] * run.batch_size), "steps": int(position[i])}
  record = {"epoch": epoch, "step": int(step), **timers.as_dict(wall_now),
            "mpjpe_valid": None, "mpjve_valid": None, "loss": float(np.mean(loss))}
  if valid is not None:
    record.update(mpjpe_valid=valid["mpjpe_valid"], mpjve_valid=valid["mpjve_valid"])
    for action, values in valid["per_action"].items():
      per.setdefault(action, {}).update(values)
  record["per_action"] = per
  return record


def _final_evaluation(run: Run, state, step: int, timers: Timers) -> dict[str, Any]:
  cfg = run.config.eval
  start = time.perf_counter()
  tta = bool(cfg.get("tta", True))
  results = evaluation.evaluate_dataset(run.eval_model, run.variables(state), run.test_ds, run.slices, tta=tta,
                                        chunk=int(cfg.get("chunk", evaluation.DEFAULT_CHUNK)),
                                        batch=cfg.get("batch", evaluation.DEFAULT_BATCH))
  timers.eval += time.perf_counter() - start
  document = report.results_document(
      results, config=run.config.to_dict(), checkpoint_step=step, train_time_s=timers.train, mode=run.mode,
      actions_of_slices=run.slices, checkpoint="final",
      routing="none (one model)" if run.mode == "common" else "oracle (ground-truth action labels)")
  if jax.process_index() == 0:
    report.write_results(os.path.join(run.workdir, "eval"), document)
  _log(f"Final evaluation (test-time augmentation: {tta}), mm:\n" + report.to_text(report.results_table(document)))
  return document


def _summary(run: Run, timers: Timers, document: Mapping[str, Any], wall_now: float) -> dict[str, Any]:
  """train_summary.json: mode, budget, per-model samples/steps/epochs, timers, final averages."""
  budget, layout, config = run.budget, run.layout, run.config
  per_model = lambda values, cast: {s: cast(x) for s, x in zip(run.slices, values)}
  return {"mode": run.mode, "actions": list(run.actions), "slices": run.slices, **timers.as_dict(wall_now),
          "samples": per_model(budget.steps * run.batch_size, int), "steps": per_model(budget.steps, int),
          "own_epochs": per_model(budget.epochs, float),
          "examples_per_epoch": per_model(budget.examples_per_epoch, int),
          "epochs": budget.common_epochs, "budget": budget.rule, "unit_epochs": int(config.train.unit_epochs),
          "global_steps": budget.total_steps, "batch_size": run.batch_size, "devices": len(jax.devices()),
          "mesh": [layout.action_size, layout.data_size],
          "final": {"average": document["average"], "tta": document["tta"]}}


class _Loop:
  """Runs global steps: host batch -> padded, sharded device batch -> compiled step."""

  def __init__(self, run: Run, batches, rng: jax.Array, timers: Timers):
    self.run, self.batches, self.rng, self.timers = run, batches, rng, timers
    self.compiled = None
    self.last_metrics = None

  def train_until(self, state, acc, step: int, end: int, stop: checkpointing.StopRequest, desc: str):
    """Steps to global step `end` (or to the first step after a stop request).

    Adds the time to `timers.train`, except the one-off compilation (`timers.compile`).
    Returns (state, accumulator, step).
    """
    run, layout = self.run, self.run.layout
    start_time, samples = time.perf_counter(), 0
    bar = tqdm.tqdm(total=end - step, desc=desc, unit="step", leave=False,
                    disable=not run.config.train.get("progress", True) or jax.process_index() != 0)
    while step < end:
      host = next(self.batches)
      batch = sharding.pad_batch({k: host[k] for k in DEVICE_KEYS}, layout.padded_models)
      device_batch = sharding.put_batch(batch, layout)
      if self.compiled is None:
        compile_start = time.perf_counter()
        self.compiled = sharding.jit_step(run.step_fn, layout, batch).lower(
            state, acc, device_batch, self.rng).compile()
        self.timers.compile += time.perf_counter() - compile_start
        start_time += time.perf_counter() - compile_start
      state, acc, self.last_metrics = self.compiled(state, acc, device_batch, self.rng)
      step += 1
      samples += int(np.sum(host["active"])) * run.batch_size
      bar.update(1)
      if step % 25 == 0 or step == end:  # a host sync: not every step
        sums = sharding.fetch(acc)
        elapsed = max(time.perf_counter() - start_time, 1e-9)
        bar.set_postfix(loss=f"{1000 * np.sum(sums['loss_sum']) / max(np.sum(sums['steps']), 1):.1f}mm",
                        samples_s=f"{samples / elapsed:.0f}")
      if stop.requested:
        break
    jax.block_until_ready(acc)
    bar.close()
    self.timers.train += time.perf_counter() - start_time
    return state, acc, step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) the configured run in `workdir`; returns the train summary.

  Returns {'interrupted': True, 'step': s} instead when stopped by SIGTERM/SIGINT (after
  saving a checkpoint at step s).
  """
  wall_start = time.perf_counter()
  sharding.maybe_initialize_distributed(bool(config.get("distributed", False)))
  os.makedirs(workdir, exist_ok=True)
  run = Run(config, workdir)
  budget, layout = run.budget, run.layout
  _log(f"INFO: Receptive field: {run.rf} frames; {count_params(jax.eval_shape(run.init_fn).params) // len(run.model_ids):,}"
       f" parameters per model; {len(run.slices)} model(s) ({run.mode}) on a {layout.action_size}x{layout.data_size}"
       f" (action x data) mesh of {len(jax.devices())} {jax.devices()[0].platform} device(s)")
  _log(f"INFO: Training on {run.train_ds.frames():,} frames, testing on {run.test_ds.frames():,} frames; budget "
       f"'{budget.rule}': " + ", ".join(f"{ABBREVIATIONS.get(s, s)} {e:g} ep/{n:,} steps" for s, e, n in
                                        zip(run.slices, budget.epochs, budget.steps)))
  timers = Timers()
  mngr = checkpointing.manager(workdir, keep=int(config.checkpoint.keep))
  try:
    state, acc, step = _restore_or_init(run, mngr, timers)
    if jax.process_index() == 0:
      atomic_write_text(os.path.join(workdir, "config.json"), config.to_json(indent=2))
    writer = MetricsWriter(workdir, _read_metrics(workdir, step))
    all_points = schedules.log_steps(budget.total_steps, budget.common_epochs,
                                     int(config.train.get("logs_per_epoch", 1)))
    point_index = {end: i + 1 for i, (_, end) in enumerate(all_points)}
    points = [p for p in all_points if p[1] > step]
    every = max(int(config.checkpoint.every_epochs), 1)
    batches = input_pipeline.train_batches(
        run.train_ds, actions=run.actions, mode=run.mode, batch_size=run.batch_size, receptive_field=run.rf,
        causal_shift=causal_shift(run.hparams["filter_widths"], run.hparams["causal"]),
        augment=bool(config.train.augment), seed=int(config.seed), steps_per_action=budget.steps,
        start_step=step, stream_ids=run.model_ids[:len(run.slices)])
    rng = jax.device_put(jax.random.key(int(config.seed) + 1), layout.replicated)
    loop = _Loop(run, batches, rng, timers)
    with checkpointing.StopRequest() as stop:
      for epoch, end in points:
        seg_wall = time.perf_counter()
        state, acc, step = loop.train_until(state, acc, step, end, stop, f"epoch {epoch}")
        if stop.requested:
          checkpointing.save(mngr, step, state, acc, layout.num_models,
                             run.metadata(timers, time.perf_counter() - wall_start))
          mngr.wait_until_finished()
          _log(f"stopped by signal {stop.signal} at global step {step}; checkpoint saved in "
               f"{checkpointing.checkpoint_dir(workdir)} (rerun the same command to resume)")
          return {"interrupted": True, "step": step}
        valid = None
        if config.eval.get("validate", True):
          start = time.perf_counter()
          valid = run.validate(state)
          timers.eval += time.perf_counter() - start
        acc_host = sharding.fetch(acc)
        record = _log_record(run, epoch, step, acc_host, sharding.fetch(loop.last_metrics), valid, timers,
                             time.perf_counter() - wall_start)
        writer.write(record)
        _log(_epoch_line(record, (time.perf_counter() - seg_wall) / 60, run.slices))
        acc = jax.device_put(train_step.init_accumulator(layout.padded_models), layout.model_sharding)
        if point_index[end] % every == 0 or end == budget.total_steps:
          checkpointing.save(mngr, step, state, acc, layout.num_models,
                             run.metadata(timers, time.perf_counter() - wall_start),
                             metrics=None if valid is None else {"mpjpe_valid": valid["mpjpe_valid"]})
    mngr.wait_until_finished()
    if step < budget.total_steps:
      raise PosejaxError(f"training stopped at step {step} of {budget.total_steps}")
    document = _final_evaluation(run, state, step, timers)
  finally:
    mngr.close()
  summary = _summary(run, timers, document, time.perf_counter() - wall_start)
  if jax.process_index() == 0:
    atomic_write_text(os.path.join(workdir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
  _log(f"training time {timers.train:.1f} s (compilation {timers.compile:.1f} s, evaluation {timers.eval:.1f} s); "
       f"wrote {os.path.join(workdir, SUMMARY_FILE)}")
  return summary
