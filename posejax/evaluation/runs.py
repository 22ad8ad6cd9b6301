"""Evaluation of a training workdir: restore, evaluate, write tables (rendering and export:
`posejax.tools.render_export`).

`eval.py` only parses flags and calls these functions. The workdir layout is `posejax.workdir.layout`'s:
`config.json`, `checkpoints/` (stacked variables, leading action axis; metadata names the action
of each slice, or ['all'] in common mode), `metrics.jsonl`, `train_summary.json`. The default
checkpoint is the latest, i.e. the final model of a finished run, as the reference evaluates;
each evaluation's results (results.{json,csv,md} and figures) go to their own folder
`WORKDIR/eval/step_N/NAME/` for checkpoint step N, NAME derived from the options that change
them (`evaluation_name`, e.g. `predicted`, `soft+common-RUN+cross_action`); the trainer's own
evaluation is `final`. Writing an evaluation again replaces its folder as a whole.

The run config (the workdir's, or `--config`) is read once, into `RunConfig` pieces
(`posejax.config.run_config`): the data, selection and eval pieces are used here.
The model is the one the checkpoint records (`posejax.models.spec.from_checkpoint`): a
`--config` with another architecture is reported and not used, and 2D data of another
keypoint count or feature count is an error.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Mapping, Sequence

import ml_collections

from posejax.common.errors import PosejaxError
from posejax.config import run_config
from posejax.config.run_config import DataConfig, RunConfig
from posejax.data import subset
from posejax.data.dataset import PoseDataset
from posejax.data.loading import load_subjects
from posejax.evaluation import (
    classifier as classifier_lib, protocols as evaluation, report, routing as routing_lib,
    semi as semi_eval, trajectory as trajectory_lib)
from posejax.models import spec as model_spec
from posejax.models.tcn import TemporalModel
from posejax.workdir import behind as behind_lib, checkpoints as checkpointing, layout

DEFAULT_CHECKPOINT = "latest"


@dataclasses.dataclass(frozen=True)
class RestoredRun:
  """A checkpoint ready for evaluation."""

  config: RunConfig  # the run config the checkpoint is evaluated with (typed pieces)
  variables: Any                  # stacked: every leaf has a leading slice axis
  actions_of_slices: tuple[str, ...]  # ('all',) in common mode
  step: int
  metadata: dict[str, Any]
  final: bool | None = None       # the end of training; None when unknown (unfinished, imported)
  note: str = ""                  # says which checkpoint this is, e.g. 'final: the end of training'
  trajectory: trajectory_lib.Trajectory | None = None  # the checkpoint's trajectory models, if any

  def describe(self) -> str:
    return f"checkpoint step {self.step}" + (f" ({self.note})" if self.note else "")


def heldout_subjects(data: DataConfig) -> tuple[str, ...]:
  """`config.data.valid_subjects`, the split checkpoints may be selected on (empty: none).

  Raises:
    PosejaxError: the split shares a subject with the test or training subjects.
  """
  valid = data.valid_subjects
  for other in ("test_subjects", "train_subjects"):
    shared = sorted(set(valid) & set(getattr(data, other)))
    if shared:
      raise PosejaxError(f"config.data.valid_subjects: {', '.join(shared)} also in config.data.{other} "
                         "(the validation split must be held out from both)")
  return valid


def load_workdir_config(workdir: str) -> dict[str, Any]:
  """The run's config.json (written by the trainer)."""
  return layout.read_config(workdir)


def parse_checkpoint(which: str | int) -> str | int:
  """'latest', 'best' or a step number."""
  text = str(which).strip()
  if text in ("best", "latest"):
    return text
  if text.isdigit():
    return int(text)
  raise PosejaxError(f"--checkpoint: {which!r} is not 'latest', 'best' or a step number")


def checkpoint_status(workdir: str, step: int, metadata: Mapping[str, Any]) -> tuple[bool | None, str]:
  """(whether `step` is the last step of training, a phrase saying which checkpoint it is).

  The end of training is metadata['total_steps'] when the checkpoint records it, else the
  'global_steps' of train_summary.json (written when training finishes).
  """
  if metadata.get("imported_from"):
    return None, f"imported from {metadata['imported_from']}"
  end = metadata.get("total_steps")
  end = layout.final_step(workdir) if end is None else int(end)
  if end is None:
    return None, f"training has not finished: no {layout.SUMMARY_FILE}"
  if int(step) == end:
    return True, "final: the end of training"
  return False, f"not final: training ends at step {end}"


def _restore_for_eval(workdir: str, which: str | int) -> tuple[Any, Any, Sequence[str], int, Any]:
  """(config, stacked variables, action of each slice, step, metadata) of a checkpoint."""
  return checkpointing.restore_for_eval(workdir, which)


def restore_run(workdir: str, which: str | int = DEFAULT_CHECKPOINT,
                config: ml_collections.ConfigDict | None = None) -> RestoredRun:
  """Restores the chosen checkpoint; `config` (e.g. from --config) overrides the workdir's."""
  if not os.path.isdir(workdir):
    raise PosejaxError(f"--workdir {workdir}: directory not found")
  saved_config, variables, actions, step, metadata = _restore_for_eval(workdir, parse_checkpoint(which))
  if config is None:
    config = saved_config if saved_config is not None else load_workdir_config(workdir)
  metadata = dict(metadata or {})
  final, note = checkpoint_status(workdir, int(step), metadata)
  return RestoredRun(run_config.from_config(config), variables, tuple(actions), int(step), metadata, final, note,
                     trajectory_lib.from_checkpoint(workdir, int(step), metadata))


def model_hparams(run: RestoredRun) -> dict[str, Any]:
  """The checkpoint's model hyper-parameters (its record, else its weights' shapes and config)."""
  return model_spec.from_checkpoint(run.metadata.get("model"), run.config.model, run.variables, run.describe())


def build_model(run: RestoredRun, dataset: PoseDataset | None = None) -> TemporalModel:
  """The dilated evaluation model of a restored checkpoint, with the architecture it records.

  A config (e.g. --config) that sets another architecture is reported on stderr and not used.

  Raises:
    PosejaxError: `dataset`'s 2D frames are not the model's keypoints x features.
  """
  hparams = model_hparams(run)
  differences = model_spec.config_differences(hparams, run.config.model)
  if differences:
    print(f"note: not using the config's {', '.join(differences)}: the architecture the checkpoint records "
          "is evaluated", file=sys.stderr)
  if dataset is not None:
    model_spec.check_input(hparams, *model_spec.input_shape(dataset),
                           where=f"2D source {dataset.source!r}")
  return model_spec.build(hparams)


def load_test_dataset(config: RunConfig, subjects: Sequence[str] | None = None,
                      actions: Sequence[str] | str | None = None) -> PoseDataset:
  """The configured test subjects (or `subjects`) and actions of the configured dataset."""
  return load_subjects(config.data, config.selection, subjects, None if actions is None else actions)


def evaluate_common(common_workdir: str, dataset: PoseDataset, *, tta: bool, by_subject: bool) -> dict[str, Any]:
  """The final model of a common run on `dataset` (the 'common' routing row of an AB evaluation)."""
  run = restore_run(common_workdir)
  if list(run.actions_of_slices) != [evaluation.COMMON_SLICE]:
    raise PosejaxError(f"--common {common_workdir}: not a common run (its models: {', '.join(run.actions_of_slices)})")
  model = build_model(run, dataset)
  results = evaluation.evaluate_dataset(model, run.variables, dataset, run.actions_of_slices, tta=tta,
                                        by_subject=by_subject, **run.config.eval.chunking)
  return {**results, "workdir": os.path.abspath(common_workdir), "checkpoint_step": run.step}


# Data options whose value, when --config changes it, is part of the evaluation's name (label).
EVAL_DATA_KEYS = {"data.dataset": "dataset", "data.keypoints": "keypoints", "data.test_subjects": "subjects",
                  "data.downsample": "downsample"}


def _data_parts(config: RunConfig, saved: Mapping[str, Any]) -> list[str]:
  """'LABEL-VALUE' for each EVAL_DATA_KEYS entry where `config` differs from the run's `saved` config."""
  norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v
  ours_all, theirs_all = run_config.to_dict(config), run_config.to_dict(run_config.from_config(saved))
  parts = []
  for key, label in EVAL_DATA_KEYS.items():
    ours, theirs = (norm(run_config.lookup(c, key)) for c in (ours_all, theirs_all))
    if ours != theirs:
      value = "_".join(map(str, ours)) if isinstance(ours, list) else str(ours)
      parts.append(f"{label}-{value}")
  return parts


def evaluation_name(run: RestoredRun, *, headline: str, common_workdir: str | None, cross_action: bool,
                    by_subject: bool, tta: bool, which: str | int, config_given: bool,
                    include_behind: bool = False) -> str:
  """The folder name of an evaluation (`posejax.workdir.layout.eval_name`): the headline routing ('one_model'
  for a common run), then each option that changes the results, e.g. 'soft+common-RUN+cross_action'."""
  common = f"common-{os.path.basename(os.path.abspath(common_workdir))}" if common_workdir else None
  parts = [common if headline == "common" else "one_model" if headline == "none" else headline]
  if common and headline != "common":
    parts.append(common)
  parts += [flag for flag, on in (("cross_action", cross_action), ("by_subject", by_subject),
                                  ("no_tta", not tta), ("best", str(which) == "best"),
                                  ("include_behind", include_behind)) if on]
  if config_given and run.metadata.get("config"):
    parts += _data_parts(run.config, run.metadata["config"])
  return layout.eval_name(parts)


def headline_mode(routing: str | None, *, action_based: bool, has_classifier: bool) -> str:
  """The routing an evaluation reports as its headline (`routing_lib.merge`'s choice)."""
  if not action_based:
    return "none"
  return routing or ("predicted" if has_classifier else "oracle")


def evaluation_document(model: TemporalModel, variables: Any, resident: evaluation.ResidentTestSet,
                        actions_of_slices: Sequence[str], *, tta: bool, by_subject: bool,
                        **fields: Any) -> dict[str, Any]:
  """The results document of stacked models on a resident test set, each action by its own
  model (oracle routing; one model in a common run): the one final evaluation of the trainer and
  of `evaluate_workdir`. `fields` (config, checkpoint_step, checkpoint, trajectory, ...) go into
  the document as `report.results_document` takes them."""
  results = evaluation.evaluate_dataset(model, variables, resident, actions_of_slices, tta=tta,
                                        by_subject=by_subject)
  one_model = list(actions_of_slices) == [evaluation.COMMON_SLICE]
  return report.results_document(
      results, mode="common" if one_model else "action_based", actions_of_slices=list(actions_of_slices),
      routing=routing_lib.DESCRIPTIONS["none" if one_model else "oracle"], **fields)


def evaluate_workdir(workdir: str, which: str | int = DEFAULT_CHECKPOINT,
                     config: ml_collections.ConfigDict | None = None, *, out_dir: str | None = None,
                     by_subject: bool | None = None, verbose: bool = True, routing: str | None = None,
                     common_workdir: str | None = None, cross_action: bool = False,
                     include_behind: bool = False) -> dict[str, Any]:
  """Evaluates a checkpoint (default: the final model) with the reference's protocol.

  An action-based run is evaluated with every routing mode it supports, side by side
  (`posejax.evaluation.routing`: oracle; predicted and soft with the run's action classifier; common with
  `common_workdir`); `routing` picks the headline (default: predicted when the run has a
  classifier, else oracle). `cross_action` adds every model's error on every action.

  Writes results.{json,csv,md} (and the classifier's and cross-action figures) to `out_dir`
  (default WORKDIR/eval/step_N/NAME, `evaluation_name`), replacing what an earlier run of the
  same evaluation wrote there, and returns the json document, which records the checkpoint's
  step and whether it is the final one. Models behind their log point (a checkpoint saved between
  log points, `posejax.workdir.behind`) are named, marked and left out of the averages unless
  `include_behind`.
  """
  run = restore_run(workdir, which, config)
  action_based = list(run.actions_of_slices) != [evaluation.COMMON_SLICE]
  classifier = classifier_lib.restore(workdir)
  routing_lib.check_mode(routing, action_based=action_based, has_classifier=classifier is not None,
                         has_common=bool(common_workdir))
  if common_workdir and not action_based:
    raise PosejaxError(f"--common {common_workdir}: applies to action-based runs; {workdir} is a common run")
  behind = behind_lib.models_behind(run.metadata, run.actions_of_slices)
  if verbose:
    print(f"evaluating {run.describe()} of {workdir}", flush=True)
  cfg = run.config
  # Test data at the training frame rate (the reference's --downsample applies to evaluation).
  dataset = subset.subsample(load_test_dataset(cfg), downsample=subset.options(cfg.data)[1])
  model = build_model(run, dataset)
  tta = cfg.eval.tta
  if by_subject is None:
    by_subject = cfg.eval.by_subject
  common = evaluate_common(common_workdir, dataset, tta=tta, by_subject=by_subject) if common_workdir else None
  resident = evaluation.resident_test_set(dataset, run.actions_of_slices, model, **cfg.eval.chunking)
  summary = layout.read_summary(workdir)
  document = evaluation_document(
      model, run.variables, resident, run.actions_of_slices, tta=tta, by_subject=by_subject,
      config=run_config.to_dict(cfg), checkpoint_step=run.step, train_time_s=summary.get("train_time_s"),
      workdir=os.path.abspath(workdir), checkpoint=str(which), checkpoint_final=run.final,
      checkpoint_note=run.note, **trajectory_errors(run, model, dataset, resident))
  headline = headline_mode(routing, action_based=action_based, has_classifier=classifier is not None)
  out = out_dir or layout.eval_dir(workdir, run.step, evaluation_name(
      run, headline=headline, common_workdir=common_workdir, cross_action=cross_action, by_subject=by_subject,
      tta=tta, which=which, config_given=config is not None, include_behind=include_behind and bool(behind)))
  document = routing_lib.finish_document(
      document, model, run.variables, resident, out_dir=out, tta=tta, classifier=classifier, mode=routing,
      common=common, cross_action=cross_action, by_subject=by_subject, write=False,
      log=(lambda text: print(text, end="", flush=True)) if verbose else (lambda text: None))
  document = behind_lib.apply(document, behind, include=include_behind)
  document["between_log_points"] = behind_lib.between_log_points(run.metadata)
  written = routing_lib.write_evaluation(out, document)
  if verbose:
    print(f"Headline ({document['routing']}):\n" + report.to_text(report.results_table(document))
          + behind_lib.note(document) + report.trajectory_text(document), end="")
    for subject, sub in document.get("by_subject", {}).items():
      print(f"\nSubject {subject}\n" + report.to_text(report.results_table(sub)), end="")
    print(written_line(written))
  return document


def written_line(paths: Sequence[str]) -> str:
  """'wrote DIR/results.json, results.csv, ...': the first path in full, the others by name."""
  return "wrote " + ", ".join([paths[0]] + [os.path.basename(p) for p in paths[1:]])


def trajectory_errors(run: RestoredRun, model: TemporalModel, dataset: PoseDataset,
                      resident: evaluation.ResidentTestSet) -> dict[str, Any]:
  """{'trajectory': report.trajectory_section} of the run's trajectory models on `dataset` (on the
  device as `resident`), each record evaluated by its action's model pair (oracle routing); {}
  without trajectory models or without cameras to project with."""
  if run.trajectory is None:
    return {}
  if any(r.intrinsic is None for r in dataset.sequences):
    print("note: the test data have no camera intrinsics; the trajectory models are not evaluated",
          file=sys.stderr)
    return {}
  semi_set = semi_eval.build(dataset, resident)
  return {"trajectory": report.trajectory_section(
      semi_eval.metrics(model, run.trajectory.model, run.variables, run.trajectory.variables, semi_set))}
