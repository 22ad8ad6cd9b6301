"""Temporal subsets of a dataset, as the reference's `fetch` makes them (reference V6.5-6.7).

* `--subset f` (config.data.subset, training data only): every sequence of L frames keeps one
  contiguous run of `n = round(L // s * f) * s` frames (s = the downsampling factor), read
  every s-th frame, starting at `deterministic_random(0, L - n + 1, str(L))`: a hash of the
  length, so every camera of a sequence (and every sequence of the same length) keeps the
  same frames, on every run.
* `--downsample s` (config.data.downsample, training and evaluation data): every s-th frame.

Sequences left without frames (a subset too small for a short sequence) are dropped: the
reference keeps them, but they contribute no training example.
"""

from __future__ import annotations

import dataclasses
import hashlib

from posejax.common.errors import PosejaxError
from posejax.config.run_config import DataConfig
from posejax.data.dataset import PoseDataset


def deterministic_random(min_value: int, max_value: int, data: str) -> int:
  """The reference's pseudo-random integer in [min_value, max_value) seeded by a string: the
  first 4 bytes of SHA-256(data) as a little-endian unsigned integer r, then
  int(r / (2**32 - 1) * (max_value - min_value)) + min_value."""
  raw = int.from_bytes(hashlib.sha256(data.encode()).digest()[:4], byteorder="little", signed=False)
  return int(raw / (2**32 - 1) * (max_value - min_value)) + min_value


def frame_range(length: int, subset: float = 1.0, downsample: int = 1) -> slice:
  """The frames a sequence of `length` frames keeps (a slice of its frame axis)."""
  if subset < 1:
    n = int(round(length // downsample * subset) * downsample)
    start = deterministic_random(0, length - n + 1, str(length))
    return slice(start, start + n, downsample)
  return slice(None, None, downsample)


def check_options(subset: float, downsample: int) -> None:
  if not 0 < subset <= 1:
    raise PosejaxError(f"--config.data.subset={subset}: must be a fraction in (0, 1]")
  if int(downsample) != downsample or downsample < 1:
    raise PosejaxError(f"--config.data.downsample={downsample}: must be a positive integer")


def subsample(dataset: PoseDataset, subset: float = 1.0, downsample: int = 1) -> PoseDataset:
  """`dataset` with each record cut to its `frame_range` (2D and 3D alike); camera vectors kept."""
  check_options(subset, downsample)
  if subset == 1 and downsample == 1:
    return dataset
  records = []
  for r in dataset.sequences:
    keep = frame_range(r.num_frames, subset, int(downsample))
    poses_2d = r.poses_2d[keep]
    if len(poses_2d):
      poses_3d = None if r.poses_3d is None else r.poses_3d[keep]
      records.append(dataclasses.replace(r, poses_2d=poses_2d, poses_3d=poses_3d))
  return dataclasses.replace(dataset, sequences=tuple(records))


def options(data: DataConfig) -> tuple[float, int]:
  """(subset, downsample) of the data piece, checked."""
  check_options(data.subset, data.downsample)
  return float(data.subset), int(data.downsample)
