"""Per-frame latency of causal streaming (`posejax.tools.streaming.PoseStream.push`).

Cases: causal models of receptive field 27 and 243, 1024 channels, 17 keypoints, random
weights and random 2D frames. Each case is compiled and warmed up, then `--frames` frames are
pushed one by one; a frame's latency is the wall time of `push` (the jitted step and the copy
of its pose to the host). One line per case:

  python benchmarks/streaming.py
  receptive_field=27 channels=1024 frames=1000 latency_ms_median=... latency_ms_p99=... device=cpu
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from posejax.models.tcn import TemporalModel  # noqa: E402
from posejax.tools.streaming import PoseStream  # noqa: E402

WIDTHS = {27: (3, 3, 3), 81: (3, 3, 3, 3), 243: (3, 3, 3, 3, 3)}
KEYPOINTS = 17
WARMUP = 20


def random_variables(model: TemporalModel, seed: int):
  """Random weights of the model's shapes (NumPy: compiling the initialisers costs more)."""
  rf = int(np.prod(model.filter_widths))
  dummy = jnp.zeros((1, rf, KEYPOINTS, 2))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key in ("var", "scale"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return (0.02 * rng.normal(size=leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def measure(receptive_field: int, channels: int, frames: int) -> dict[str, float]:
  model = TemporalModel(num_joints_in=KEYPOINTS, num_joints_out=17, filter_widths=WIDTHS[receptive_field],
                        causal=True, channels=channels)
  stream = PoseStream(model, random_variables(model, 0))
  keypoints = np.random.default_rng(1).uniform(-1, 1, (frames + WARMUP, KEYPOINTS, 2)).astype(np.float32)
  for frame in keypoints[:WARMUP]:
    stream.push(frame)
  latencies = []
  for frame in keypoints[WARMUP:]:
    start = time.perf_counter()
    stream.push(frame)
    latencies.append(time.perf_counter() - start)
  ms = 1000 * np.asarray(latencies)
  return {"latency_ms_median": float(np.median(ms)), "latency_ms_p99": float(np.percentile(ms, 99))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--receptive_fields", default="27,243", help="comma-separated, of 27, 81, 243")
  parser.add_argument("--channels", type=int, default=1024)
  parser.add_argument("--frames", type=int, default=1000)
  args = parser.parse_args()
  device = jax.devices()[0].platform
  for rf in (int(r) for r in args.receptive_fields.split(",")):
    result = measure(rf, args.channels, args.frames)
    print(f"receptive_field={rf} channels={args.channels} frames={args.frames} "
          f"latency_ms_median={result['latency_ms_median']:.3f} "
          f"latency_ms_p99={result['latency_ms_p99']:.3f} device={device}", flush=True)


if __name__ == "__main__":
  main()
