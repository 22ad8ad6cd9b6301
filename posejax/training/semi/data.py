"""Semi-supervised training's setup (reference V11.1): options, checks, unlabeled data and tables.

Config fields (the reference's flags, reference V15):
  data.unlabeled_subjects  --subjects-unlabeled: non-empty turns semi-supervision on (Human3.6M
                           only, as the reference); their 2D keypoints and cameras are read,
                           never their 3D poses.
  train.warmup             --warmup: epochs (each model's own) of supervised training first.
  train.linear_projection  --linear-projection: pinhole projection without distortion.
  train.bone_length        not --no-bone-length: the bone-length term.
  train.projection_loss    not --no-proj: the 2D reprojection loss.
The labeled data are data.train_subjects cut to data.subset; data.downsample applies to both.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.config.run_config import DataConfig, Selection, TrainConfig
from posejax.data import subset
from posejax.data.dataset import PoseDataset
from posejax.data.loading import DATASETS, dataset_name, load_subjects
from posejax.training import sampling, schedules
from posejax.training.semi import step as semi_step

OPTION = "--config.data.unlabeled_subjects"
# Offset of the unlabeled stream's shuffle seed from the labeled one's (the reference seeds its
# generators with 1234 and 4321).
UNLABELED_SEED_OFFSET = 4321 - 1234


def check(data: DataConfig, train: TrainConfig) -> None:
  """One-line errors for a semi-supervised config the reference would not run (the fields'
  types are checked by the config's validation)."""
  unlabeled = list(data.unlabeled_subjects)
  name = dataset_name(data)
  train_subjects = list(data.train_subjects) or list(DATASETS[name].train_subjects)
  if name != "h36m":
    raise PosejaxError(f"{OPTION}: semi-supervised training is supported on Human3.6M only (as in the "
                       f"reference: it needs each unlabeled sequence's camera), not on dataset {name!r}")
  both = sorted(set(unlabeled) & set(train_subjects))
  if both:
    raise PosejaxError(f"{OPTION}: subject(s) {', '.join(both)} are also labeled training subjects "
                       "(--config.data.train_subjects); a subject is either labeled or unlabeled")
  if len(set(unlabeled)) != len(unlabeled):
    raise PosejaxError(f"{OPTION}: {','.join(unlabeled)} names a subject twice")
  if train.input == "host":
    raise PosejaxError("--config.train.input: semi-supervised training gathers its windows on the device; "
                       "use 'device' or 'auto'")


def step_options(train: TrainConfig, parents: Sequence[int], receptive_field: int) -> semi_step.SemiOptions:
  return semi_step.SemiOptions(
      parents=tuple(int(p) for p in parents), pad=(receptive_field - 1) // 2,
      linear_projection=train.linear_projection, bone_length=train.bone_length,
      projection=train.projection_loss)


def warmup_steps(warmup_epochs: int, budget: schedules.Budget, num_models: int) -> np.ndarray:
  """(num_models,) int32: each model's first steps that are warm-up (padding models: 0).

  train.warmup counts epochs as train.epochs does: the warm-up is the first warmup / epochs of
  each model's budget, ceil(warmup * S_a / (E * B)) steps; in common mode exactly the
  reference's `epoch < warmup` (its first ceil(warmup * n / B) steps), in action-based mode
  the same share of each model's own epochs.
  """
  per_epochs = int(budget.common_epochs) * int(budget.batch_size)
  steps = (int(warmup_epochs) * np.asarray(budget.samples, np.int64) + per_epochs - 1) // per_epochs
  out = np.zeros(num_models, np.int64)
  out[:len(steps)] = np.minimum(steps, 2**31 - 1)
  return out.astype(np.int32)


def hyperparams_fn(base, warmup: np.ndarray):
  """`base` ((K,) epochs, (K,) models) -> hparams, with each slot's 'warmup_steps' added."""
  table = np.asarray(warmup, np.int32)

  def fn(epochs, models):
    return dict(base(epochs, models), warmup_steps=jnp.asarray(table)[models])
  return fn


def load_unlabeled(data: DataConfig, selection: Selection, actions: Sequence[str]) -> PoseDataset:
  """The unlabeled subjects' records (2D + cameras; 3D dropped), every data.downsample-th frame.

  data.subset cuts the labeled data only (the reference's fetch of the unlabeled subjects
  takes no subset).
  """
  subjects = list(data.unlabeled_subjects)
  dataset = load_subjects(data, selection, subjects, actions)
  found = set(dataset.subjects)
  missing = [s for s in subjects if s not in found]
  if missing:
    raise PosejaxError(f"{OPTION}: no sequences of subject(s) {', '.join(missing)} for the selected actions")
  no_camera = sorted({r.subject for r in dataset.sequences if r.intrinsic is None})
  if no_camera:
    raise PosejaxError(f"{OPTION}: subject(s) {', '.join(no_camera)} have no camera intrinsics, which the "
                       "reprojection needs")
  dataset = subset.subsample(dataset, downsample=subset.options(data)[1])
  return dataclasses.replace(dataset, sequences=tuple(dataclasses.replace(r, poses_3d=None)
                                                     for r in dataset.sequences))


def unlabeled_table(dataset: PoseDataset, actions: Sequence[str], mode: str, augment: bool,
                    chunk_length: int) -> sampling.WindowTable:
  """The unlabeled frames of every slice (an action's model sees its action's unlabeled data)."""
  try:
    return sampling.make_window_table(dataset, actions, mode, augment, chunk_length, labeled=False)
  except PosejaxError as e:
    raise PosejaxError(f"{OPTION}: {e}") from None


def unlabeled_spec(labeled: sampling.WindowSpec) -> sampling.WindowSpec:
  """The unlabeled stream: the labeled one's batch and windows, its own seed (its example
  counts travel with its table)."""
  return dataclasses.replace(labeled, seed=labeled.seed + UNLABELED_SEED_OFFSET)
