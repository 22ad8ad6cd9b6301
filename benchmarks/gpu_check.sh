#!/usr/bin/env bash
# The accelerator benchmark set as one command for a lent GPU machine (JAX with CUDA, flax,
# optax, numpy; no TensorFlow there, so the host tf.data cases print "skipped"). Results go to
# $OUT/accelerator_gpu.txt when $OUT is set. About 3-4 minutes on one H100/H200 (estimate).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
python benchmarks/accelerator.py --preset gpu "$@" 2>&1 | tee "${OUT:-/tmp}/accelerator_gpu.txt"
