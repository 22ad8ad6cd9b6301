"""BlazePose landmarks of raw RGB frames, run inside the detector environment.

This file runs as a script in its own virtualenv (`scripts/setup_detector.sh`): mediapipe
0.10.21 pins numpy<2 and protobuf<5, which TensorFlow and JAX cannot share. It imports only
the standard library, NumPy and mediapipe, never posejax, JAX or TensorFlow.

    VENV/bin/python -I posejax/tools/detect_worker.py --width W --height H [--min_confidence 0.5]

Protocol on stdin/stdout, in lockstep (one reply per frame, so neither side blocks on a
full pipe): once the models are loaded the worker writes the 4 bytes `MAGIC`; then for each
frame of W * H * 3 bytes (RGB, row major) read from stdin it writes `LANDMARKS * FIELDS`
little-endian float32: per BlazePose landmark x, y in pixels, z (BlazePose's relative depth)
and visibility in [0, 1]; all NaN when no person was found. EOF on stdin ends the worker.
Errors go to stderr, with exit status 2.

One person per frame: BlazePose's detector keeps its single most confident person box,
and the landmark model then tracks that person (`static_image_mode=False`) until its
tracking confidence falls below the threshold, when the detector runs again.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

MAGIC = b"PJD1"
LANDMARKS = 33
FIELDS = 4  # x px, y px, z, visibility
# The only landmark model a mediapipe wheel ships is the "full" one (model_complexity=1);
# the lite and heavy ones would be downloaded, which we never do.
_MODEL_COMPLEXITY = 1
_SHIPPED_MODELS = ("modules/pose_detection/pose_detection.tflite", "modules/pose_landmark/pose_landmark_full.tflite")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


def _pose_class():
  """mediapipe's Pose solution, after checking that its models are inside the package."""
  try:
    import mediapipe
    from mediapipe.python.solutions import pose
  except ImportError as e:
    _fail(f"the detector environment lacks mediapipe ({e}); recreate it with scripts/setup_detector.sh")
  root = os.path.dirname(mediapipe.__file__)
  missing = [m for m in _SHIPPED_MODELS if not os.path.isfile(os.path.join(root, m))]
  if missing:
    _fail(f"mediapipe {getattr(mediapipe, '__version__', '?')} ships no {', '.join(missing)} "
          "(releases after 0.10.21 ship no models); recreate it with scripts/setup_detector.sh")
  return pose.Pose


def landmark_rows(landmarks, width: int, height: int) -> np.ndarray:
  """(LANDMARKS, FIELDS) float32 from mediapipe's normalized landmark list (None: all NaN)."""
  out = np.full((LANDMARKS, FIELDS), np.nan, np.float32)
  if landmarks is None:
    return out
  for i, lm in enumerate(landmarks.landmark[:LANDMARKS]):
    out[i] = (lm.x * width, lm.y * height, lm.z, lm.visibility)
  return out


def _read_exactly(stream, size: int) -> bytes | None:
  """`size` bytes, or None at a clean EOF before the first byte."""
  chunks, got = [], 0
  while got < size:
    chunk = stream.read(size - got)
    if not chunk:
      if got:
        _fail(f"stdin ended inside a frame ({got} of {size} bytes)")
      return None
    chunks.append(chunk)
    got += len(chunk)
  return b"".join(chunks)


def serve(width: int, height: int, min_confidence: float) -> None:
  """Answers frames from stdin until EOF (see the module docstring)."""
  pose_class = _pose_class()
  stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
  frame_bytes = width * height * 3
  with pose_class(static_image_mode=False, model_complexity=_MODEL_COMPLEXITY, smooth_landmarks=True,
                  enable_segmentation=False, min_detection_confidence=min_confidence,
                  min_tracking_confidence=min_confidence) as pose:
    stdout.write(MAGIC)
    stdout.flush()
    while (raw := _read_exactly(stdin, frame_bytes)) is not None:
      frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
      result = pose.process(frame)
      stdout.write(landmark_rows(result.pose_landmarks, width, height).astype("<f4").tobytes())
      stdout.flush()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--width", type=int, required=True)
  parser.add_argument("--height", type=int, required=True)
  parser.add_argument("--min_confidence", type=float, default=0.5)
  args = parser.parse_args()
  if args.width < 1 or args.height < 1:
    _fail(f"--width {args.width} --height {args.height}: frame size must be positive")
  serve(args.width, args.height, args.min_confidence)


if __name__ == "__main__":
  main()
