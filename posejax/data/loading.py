"""The run's data: `load_data(config, actions)` -> (train PoseDataset, test PoseDataset, fingerprint).

`config.data.source` says where the records come from:

* 'npz' (default): the published files `data_3d_h36m.npz` and `data_2d_h36m_<keypoints>.npz`
  in `config.data.dir`. With `config.data.synthetic_frames` > 0, missing files are generated
  by `posejax.data.synthetic`, but only into a missing or empty directory or one the generator
  wrote before (its marker); everything that can be checked is checked before writing.
* 'tfds': the TFDS dataset `h36m_posejax/<keypoints>` built into the TFDS data dir
  `config.data.dir` (a local path or a bucket path such as gs://bucket/tfds) by
  `python -m posejax.data.tfds_h36m --data-dir NPZ_DIR --out DIR`. Only the splits of the
  selected (subject, action) pairs are read; `synthetic_frames` does not apply.

Both sources give the same records in the same order, and the same fingerprint: the digest of
the npz files (`h36m.dataset_fingerprint`), which the TFDS dataset records when it is built.
TensorFlow is imported only when the source is 'tfds'.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import ml_collections

from posejax.data import h36m, subset, synthetic
from posejax.data.actions import resolve_actions
from posejax.data.dataset import PoseDataset
from posejax.data.h36m_cameras import H36M_SUBJECTS
from posejax.errors import PosejaxError

SOURCES = ("npz", "tfds")


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


def _subjects(value, option: str) -> list[str]:
  """A subjects option (tuple, or 'S1,S5' from the command line) as a list."""
  if isinstance(value, str):
    return [s.strip() for s in value.split(",") if s.strip()]
  try:
    return [str(s) for s in value]
  except TypeError:
    raise PosejaxError(f"--config.{option}: {value!r} is not a list of subjects") from None


def _synthetic_args(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(frames, seed) of the synthetic generator; frames 0 disables it."""
  frames = int(config.data.get("synthetic_frames", 0) or 0)
  seed = int(config.data.get("synthetic_seed", 0) or 0)
  if 0 < frames < 16:
    raise PosejaxError(f"--config.data.synthetic_frames: need at least 16 frames per sequence (or 0), "
                       f"got {frames}")
  if seed < 0:
    raise PosejaxError(f"--config.data.synthetic_seed: must be a non-negative integer, got {seed}")
  return max(frames, 0), seed


def _ensure_synthetic(data_dir: str, keypoints: str, subjects: Sequence[str], frames: int, seed: int) -> None:
  """Generates the synthetic files when those the run reads are missing (or half-written).

  Raises, before writing anything, when the 2D source is not one the generator writes, a
  subject is not in its data, or `data_dir` holds files the generator did not write.
  """
  path_3d = os.path.join(data_dir, h36m.FILE_3D)
  path_2d = os.path.join(data_dir, h36m.FILE_2D_PATTERN.format(keypoints))
  marker = synthetic.read_marker(data_dir) if os.path.isdir(data_dir) else None
  interrupted = marker is not None and not marker.get("complete")
  if os.path.isfile(path_3d) and os.path.isfile(path_2d) and not interrupted:
    return
  present = ", ".join(h36m.available_sources(data_dir)) or "none"
  if keypoints not in synthetic.SOURCES_2D and not os.path.isfile(path_2d):
    raise PosejaxError(
        f"{path_2d}: file not found: unknown 2D source {keypoints!r} (sources present in {data_dir}: "
        f"{present}; the synthetic generator writes: {', '.join(synthetic.SOURCES_2D)})")
  unknown = [s for s in subjects if s not in H36M_SUBJECTS]
  if unknown:
    raise PosejaxError(f"--config.data.train_subjects/test_subjects: subject(s) {', '.join(unknown)} "
                       f"are not in the synthetic data ({', '.join(H36M_SUBJECTS)})")
  reason = synthetic.unwritable_reason(data_dir)
  if reason is not None:
    if os.path.isfile(path_3d):
      raise PosejaxError(f"{path_2d}: file not found (2D sources present in {data_dir}: {present}); "
                         f"not generating synthetic data: {reason}")
    raise PosejaxError(f"{path_3d}: file not found; not generating synthetic data: {reason}")
  _log(f"generating synthetic data in {data_dir} ({frames} frames per sequence)")
  synthetic.generate(data_dir, frames=frames, seed=seed, overwrite=True, log=_log)


def _load_npz(config: ml_collections.ConfigDict, subjects: list[str],
              actions: tuple[str, ...]) -> tuple[PoseDataset, str]:
  data_dir, keypoints = str(config.data.dir), str(config.data.keypoints)
  frames, seed = _synthetic_args(config)
  if frames and jax.process_index() == 0:
    _ensure_synthetic(data_dir, keypoints, subjects, frames, seed)
  dataset = h36m.load_h36m(data_dir, keypoints, subjects=subjects, actions=actions)
  return dataset, h36m.dataset_fingerprint(data_dir, keypoints)


def _load_tfds(config: ml_collections.ConfigDict, subjects: list[str],
               actions: tuple[str, ...]) -> tuple[PoseDataset, str]:
  from posejax.data import tfds_h36m  # TensorFlow only for this source

  builder = tfds_h36m.prepared_builder(str(config.data.dir), str(config.data.keypoints))
  dataset = tfds_h36m.read_records(builder, subjects, actions, require_actions=True)
  return dataset, tfds_h36m.dataset_fingerprint(builder)


def load_data(config: ml_collections.ConfigDict,
              actions: Sequence[str]) -> tuple[PoseDataset, PoseDataset, str]:
  """(train dataset, test dataset, fingerprint) of `config.data` and the canonical `actions`.

  One read for both splits (train subjects then test subjects); `select` keeps each split's
  record order. The fingerprint is the 16-hex-digit digest of the npz files. The training
  split is cut to `config.data.subset`, both to every `config.data.downsample`-th frame
  (`posejax.data.subset`).
  """
  source = str(config.data.get("source", "npz"))
  if source not in SOURCES:
    raise PosejaxError(f"--config.data.source: {source!r} is not one of {', '.join(SOURCES)}")
  actions = resolve_actions(actions)
  train_subjects = _subjects(config.data.train_subjects, "data.train_subjects")
  test_subjects = _subjects(config.data.test_subjects, "data.test_subjects")
  both = list(dict.fromkeys(train_subjects + test_subjects))
  fraction, downsample = subset.options(config)
  dataset, fingerprint = (_load_tfds if source == "tfds" else _load_npz)(config, both, actions)
  return (subset.subsample(dataset.select(subjects=train_subjects), fraction, downsample),
          subset.subsample(dataset.select(subjects=test_subjects), downsample=downsample), fingerprint)


def load_validation(config: ml_collections.ConfigDict, actions: Sequence[str]) -> PoseDataset | None:
  """The held-out validation split (`config.data.valid_subjects`), or None when there is none."""
  valid = list(config.data.get("valid_subjects", ()) or ())
  if not valid:
    return None
  source = str(config.data.get("source", "npz"))
  dataset, _ = (_load_tfds if source == "tfds" else _load_npz)(config, valid, resolve_actions(actions))
  return subset.subsample(dataset, downsample=subset.options(config)[1])
