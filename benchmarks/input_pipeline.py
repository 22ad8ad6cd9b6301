"""Throughput of the training input pipeline (windows per second) in both modes.

A Human3.6M-sized synthetic dataset (15 actions x 10 sequences x 4 cameras x 1000 frames by
default) is built in memory with NumPy; for each mode the iterator is warmed up, then the time
of `--batches` consecutive batches is measured `--repeats` times and the median reported:

  python benchmarks/input_pipeline.py
  input_pipeline mode=common receptive_field=243 batch=1024: 123456 windows/s
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from posejax.data.dataset import PoseDataset, SequenceRecord  # noqa: E402
from posejax.pose.actions import ACTIONS  # noqa: E402
from posejax.pose.skeleton import H36M_SKELETON, LAYOUTS  # noqa: E402
from posejax.training import input_pipeline  # noqa: E402


def synthetic_dataset(sequences_per_action: int, cameras: int, frames: int, seed: int = 0) -> PoseDataset:
  """Random-walk 2D/3D poses with the Human3.6M shapes: (frames, 17, 2) and (frames, 17, 3)."""
  rng = np.random.default_rng(seed)
  records = []
  for action in ACTIONS:
    for sequence in range(sequences_per_action):
      for camera in range(cameras):
        walk = np.cumsum(rng.normal(scale=0.01, size=(frames, 17, 5)), axis=0).astype(np.float32)
        records.append(SequenceRecord(
            subject=f"S{sequence % 5 + 1}", name=f"{action} {sequence}", action=action, camera=camera,
            poses_2d=walk[..., :2].copy(), poses_3d=walk[..., 2:].copy(),
            intrinsic=np.zeros(9, np.float32), res_w=1000, res_h=1000))
  layout = LAYOUTS["h36m"]
  return PoseDataset(sequences=tuple(records), keypoints_left=layout.left,
                     keypoints_right=layout.right, skeleton=H36M_SKELETON, num_keypoints=17,
                     fps=50.0, layout_name="h36m", source="synthetic")


def windows_per_second(dataset: PoseDataset, mode: str, receptive_field: int, batch_size: int,
                       batches: int, repeats: int) -> list[float]:
  """Windows/s of `repeats` timings of `batches` consecutive batches each, after warm-up."""
  iterator = input_pipeline.train_batches(
      dataset, actions=ACTIONS, mode=mode, batch_size=batch_size,
      receptive_field=receptive_field, seed=0)
  for _ in range(max(2, batches // 2)):
    next(iterator)
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(batches):
      batch = next(iterator)
    rates.append(batch["poses_2d"].shape[0] * batch_size * batches / (time.perf_counter() - start))
  return rates


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--receptive_field", type=int, default=243)
  parser.add_argument("--batch_size", type=int, default=1024)
  parser.add_argument("--batches", type=int, default=50, help="batches per timing (common mode; "
                      "action-based mode times batches // 5 stacked batches of 15 actions)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--sequences_per_action", type=int, default=10)
  parser.add_argument("--cameras", type=int, default=4)
  parser.add_argument("--frames", type=int, default=1000)
  args = parser.parse_args()
  dataset = synthetic_dataset(args.sequences_per_action, args.cameras, args.frames)
  print(f"input_pipeline dataset: {len(dataset.sequences)} records, {dataset.frames()} frames, "
        f"{os.cpu_count()} CPUs")
  for mode, batches in (("common", args.batches), ("action_based", max(1, args.batches // 5))):
    rates = windows_per_second(dataset, mode, args.receptive_field, args.batch_size, batches,
                               args.repeats)
    print(f"input_pipeline mode={mode} receptive_field={args.receptive_field} "
          f"batch={args.batch_size}: {statistics.median(rates):.0f} windows/s "
          f"(median of {len(rates)} runs of {batches} batches; range {min(rates):.0f}-"
          f"{max(rates):.0f})", flush=True)


if __name__ == "__main__":
  main()
