"""TensorFlow for input pipelines only: imported here so that it never takes GPU memory."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Batches are fresh 30-500 MB buffers; TF's BFC allocator reuses them instead of paying
# page faults on every batch (about 2x less CPU time). Only effective before TF starts.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import tensorflow as tf  # noqa: E402

try:
  # tf.data runs on the host; the accelerator belongs to JAX.
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:
  # Already initialised elsewhere with GPUs hidden the same way; nothing to do.
  pass

__all__ = ["tf"]
