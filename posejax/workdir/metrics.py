"""The run's log: WORKDIR/metrics.jsonl (one JSON object per log point) and TensorBoard scalars.

TensorBoard events are written with `tf.summary` when TensorFlow is installed (imported here
only, on first use, and kept off the accelerator); without it the JSON lines are the log.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from posejax.common.io_utils import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str, up_to_step: int | None = None) -> list[dict[str, Any]]:
  """The records of metrics.jsonl (those at global steps <= `up_to_step` when given)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if up_to_step is None or r["step"] <= up_to_step]


def _tensorboard_writer(workdir: str):
  """(tf, writer, scalar metadata), or None without TensorFlow."""
  try:
    from posejax.common.tf_compat import tf
    from tensorflow.core.framework import summary_pb2
  except ImportError:
    return None
  metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
  return tf, tf.summary.create_file_writer(workdir), metadata


class MetricsWriter:
  """metrics.jsonl (rewritten atomically with `records` on resume, then appended) and TensorBoard."""

  def __init__(self, workdir: str, records: list[dict[str, Any]], enabled: bool = True):
    self.path = os.path.join(workdir, METRICS_FILE)
    self.enabled = enabled
    self.tb = None
    if enabled:
      atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))
      self.tb = _tensorboard_writer(workdir)

  def write(self, record: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self.tb is None:
      return
    tf, writer, metadata = self.tb
    keys = ("loss", "mpjpe_valid", "mpjve_valid", "mpjpe_train_eval", "mpjve_train_eval", "train_time_s", "epoch",
            # semi-supervision (reference V11.4):
            "traj_train", "2d_train", "traj_valid", "2d_valid", "traj_eval", "2d_train_sup", "2d_train_unsup")
    scalars = {k: record[k] for k in keys if isinstance(record.get(k), (int, float))}
    scalars.update({f"{name}/{k}": v for name, values in record["per_action"].items() for k, v in values.items()
                    if isinstance(v, (int, float))})
    with writer.as_default(step=int(record["step"])):
      for tag, value in scalars.items():
        # tf.summary.write with the scalars plugin tag is what tf.summary.scalar does,
        # without needing the tensorboard package at training time.
        tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)
    writer.flush()
