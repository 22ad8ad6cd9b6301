#!/usr/bin/env bash
# The accelerator benchmark set as one command for a lent GPU machine (JAX with CUDA, flax,
# optax, numpy; no TensorFlow there, so the host tf.data cases print "skipped"). Results go to
# $OUT/accelerator_gpu.txt and $OUT/dilated_conv_gpu.txt when $OUT is set. About 4-5 minutes on
# one H100/H200 (estimate).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
python benchmarks/accelerator.py --preset gpu "$@" 2>&1 | tee "${OUT:-/tmp}/accelerator_gpu.txt"
# Dilated-model training (train.stride / dense_training): XLA's convolution, which GPUs keep,
# against the matmul form CPUs train with.
python benchmarks/dilated_conv.py --impls=xla,im2col_train --parts=step,train --rounds=3 --dtype=bfloat16 2>&1 \
  | tee "${OUT:-/tmp}/dilated_conv_gpu.txt"
