#!/usr/bin/env bash
# Creates the 2D detector's virtualenv (default: .venv-detect at the repository root), which
# `python -m posejax.detect` and `python -m posejax.infer --video` find there.
#
# The detector is BlazePose from mediapipe 0.10.21, the last release whose wheel ships the
# pose models (pose_detection.tflite, pose_landmark_full.tflite), so nothing is downloaded
# at run time. It pins numpy<2 and protobuf<5, which TensorFlow and JAX in the main
# environment cannot share, hence its own small environment. mediapipe is installed without
# its dependencies: the pose solution needs only those listed here (not jax, sentencepiece,
# sounddevice, or the 90 MB opencv-contrib build).
#
# Usage: bash scripts/setup_detector.sh [VENV_DIR]     (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv-detect}"
python="${PYTHON:-python3}"
check='import mediapipe.python.solutions.pose'

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "detector environment ready: $venv"
  exit 0
fi
if ! "$python" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
  echo "error: mediapipe 0.10.21 needs Python 3.9 to 3.12; $python is $("$python" -V 2>&1) (set PYTHON=...)" >&2
  exit 2
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "mediapipe==0.10.21"
echo "(mediapipe's dependencies that the pose solution does not use are left out: pip's notes about them are expected)"
"$venv/bin/pip" install -q --disable-pip-version-check "numpy>=1.26,<2" "protobuf>=4.25.3,<5" \
  "absl-py>=2" "attrs>=19.1" "flatbuffers>=2" "opencv-python-headless>=4.9,<4.12" "matplotlib>=3.8"
"$venv/bin/python" -c "$check"
echo "detector environment ready: $venv"
