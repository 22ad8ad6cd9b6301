"""2D keypoints of the person in videos, written in VideoPose3D's custom format (reference V4.4, V5.4, V14).

  python -m posejax.detect VIDEO... --out data/data_2d_custom_NAME.npz [--overwrite] \
      [--min_confidence 0.5] [--detector_python PATH]

The detector is BlazePose (mediapipe 0.10.21, models inside its wheel). mediapipe pins
numpy<2 and protobuf<5, which the JAX/TensorFlow environment cannot share, so it runs in its
own virtualenv (`bash scripts/setup_detector.sh` creates `.venv-detect`) as a subprocess,
`posejax/tools/detect_worker.py`, fed the frames that this process decodes with ffmpeg.
`--detector_python`, else $POSEJAX_DETECTOR_PYTHON, else `.venv-detect/bin/python` at the
repository root, names its interpreter.

One person per video: BlazePose keeps its most confident person and tracks it. Its 33
landmarks map to the 17 COCO keypoints (`BLAZEPOSE_TO_COCO`), pixels of the decoded
frames. Frames without a person are filled as the reference's `prepare_data_2d_custom.py`
does: linear interpolation over the frame index, held constant before the first and after
the last detection. The file holds `positions_2d[video]['custom'] = [(T, 17, 2) float32]`
and `metadata` (the coco preset, `video_metadata[video] = {'w', 'h', 'fps'}`), as the
reference; beside them `scores_2d[video]` (T, 17) BlazePose visibilities (0 in filled
frames) and `detected[video]` (T,) bool, which the reference's loader ignores.
`coco_to_h36m` gives the Human3.6M 17-joint layout for models trained on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

import numpy as np

from posejax.common import video as video_io
from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez
from posejax.pose.skeleton import LAYOUTS

COCO = LAYOUTS["coco"]
# COCO keypoint k is BlazePose landmark BLAZEPOSE_TO_COCO[k]: nose, eyes, ears, shoulders,
# elbows, wrists, hips, knees, ankles (BlazePose's eye centres, not inner/outer corners).
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detect_worker.py")
DETECTOR_ENV_VAR = "POSEJAX_DETECTOR_PYTHON"
_SETUP_HINT = "create it with `bash scripts/setup_detector.sh`"
_MAGIC, _LANDMARKS, _FIELDS = b"PJD1", 33, 4  # detect_worker's protocol


@dataclasses.dataclass(frozen=True)
class Detection:
  """The person's COCO keypoints in one video."""

  name: str                # key in the custom file: the video's file name
  keypoints: np.ndarray    # (T, 17, 2) float32 pixels, frames without a person filled
  scores: np.ndarray       # (T, 17) float32 visibility in [0, 1], 0 where filled
  detected: np.ndarray     # (T,) bool: a person was found in the frame
  width: int
  height: int
  fps: float


def default_detector_python() -> str:
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return os.path.join(root, ".venv-detect", "bin", "python")


def detector_python(explicit: str | None = None) -> str:
  """The detector environment's interpreter; PosejaxError saying how to create it."""
  path = explicit or os.environ.get(DETECTOR_ENV_VAR) or default_detector_python()
  if not (os.path.isfile(path) and os.access(path, os.X_OK)):
    raise PosejaxError(f"no detector environment at {path}: {_SETUP_HINT} (or pass --detector_python)")
  return path


class _Worker:
  """detect_worker.py in the detector environment, answering one frame at a time."""

  def __init__(self, python: str, width: int, height: int, min_confidence: float):
    self._log = tempfile.TemporaryFile()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["GLOG_minloglevel"] = "2"  # mediapipe's C++ info lines
    # -I: the worker sees only its own environment (no PYTHONPATH, no script directory).
    self._proc = subprocess.Popen(
        [python, "-I", WORKER, "--width", str(width), "--height", str(height),
         "--min_confidence", str(min_confidence)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
        close_fds=False)  # lets Popen use posix_spawn: no fork of this (JAX) process
    self._reply = _LANDMARKS * _FIELDS * 4
    if self._proc.stdout.read(len(_MAGIC)) != _MAGIC:
      self._fail("did not start")

  def _fail(self, what: str) -> None:
    self._proc.kill()
    self._proc.wait()
    self._log.seek(0)
    lines = [l for l in self._log.read().decode(errors="replace").splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    detail = (errors or lines or ["no message"])[-1].removeprefix("error: ")
    raise PosejaxError(f"detector ({self._proc.args[0]}) {what}: {detail}; if the environment is broken, "
                       f"{_SETUP_HINT}")

  def landmarks(self, frame: np.ndarray) -> np.ndarray:
    """(33, 4) x px, y px, z, visibility of one (H, W, 3) uint8 frame; NaN without a person."""
    try:
      self._proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
      self._proc.stdin.flush()
      raw = self._proc.stdout.read(self._reply)
    except BrokenPipeError:
      raw = b""
    if len(raw) != self._reply:
      self._fail("stopped")
    return np.frombuffer(raw, "<f4").reshape(_LANDMARKS, _FIELDS).astype(np.float32)

  def close(self) -> None:
    if self._proc.poll() is None:
      self._proc.stdin.close()
      try:
        self._proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait()
    self._proc.stdout.close()
    self._log.close()


def detect_landmarks(path: str, python: str, *, min_confidence: float = 0.5,
                     progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, video_io.VideoInfo]:
  """(T, 33, 4) BlazePose landmarks of every frame of a video (NaN rows: no person) and its info."""
  info = video_io.probe(path)
  worker = _Worker(python, info.width, info.height, min_confidence)
  rows = []
  try:
    for frame in video_io.frames(path):
      rows.append(worker.landmarks(frame))
      if progress is not None:
        progress(len(rows))
  finally:
    worker.close()
  if not rows:
    raise PosejaxError(f"{path}: the video has no frames")
  return np.stack(rows), info


def to_coco(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """BlazePose (T, 33, >=4) -> COCO keypoints (T, 17, 2) pixels and scores (T, 17) visibility."""
  picked = landmarks[:, BLAZEPOSE_TO_COCO]
  return picked[..., :2].astype(np.float32), picked[..., 3].astype(np.float32)


def fill_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """(T, ...) with the rows where `valid` is False linearly interpolated over the frame index.

  Each coordinate independently, constant before the first and after the last valid row
  (np.interp), as the reference's prepare_data_2d_custom.py fills frames without a box.
  """
  if not valid.any():
    raise ValueError("no valid frame to interpolate from")
  t = np.arange(values.shape[0])
  flat = values.reshape(values.shape[0], -1)
  filled = np.stack([np.interp(t, t[valid], flat[valid, c]) for c in range(flat.shape[1])], axis=1)
  return filled.reshape(values.shape).astype(values.dtype)


def detection_from_landmarks(name: str, landmarks: np.ndarray, width: int, height: int,
                             fps: float) -> Detection:
  """Detection of one video from its (T, 33, 4) landmarks; PosejaxError when nobody was found."""
  detected = np.all(np.isfinite(landmarks[..., :2]), axis=(1, 2))
  if not detected.any():
    raise PosejaxError(f"{name}: no person found in any of its {landmarks.shape[0]} frames")
  keypoints, scores = to_coco(landmarks)
  scores = np.where(detected[:, None], scores, 0.0).astype(np.float32)
  return Detection(name, fill_gaps(keypoints, detected), scores, detected, width, height, fps)


def detect_video(path: str, python: str, *, min_confidence: float = 0.5, verbose: bool = False) -> Detection:
  """Runs the detector on a video file."""
  progress = None
  if verbose:
    progress = lambda n: n % 25 == 0 and print(f"\r{os.path.basename(path)}: frame {n}", end="",
                                               file=sys.stderr, flush=True)
  landmarks, info = detect_landmarks(path, python, min_confidence=min_confidence, progress=progress)
  if verbose:
    print(file=sys.stderr)
  return detection_from_landmarks(info.name, landmarks, info.width, info.height, info.fps)


def missing_frames(detected: np.ndarray) -> str:
  """'3-5, 9' for the frames without a person ('none' when every frame has one)."""
  idx = np.flatnonzero(~detected)
  if idx.size == 0:
    return "none"
  runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
  return ", ".join(f"{r[0]}" if r.size == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def summary(d: Detection) -> str:
  """One line: frames, size, frame rate, detection rate and the frames that were filled."""
  n, found = d.detected.size, int(d.detected.sum())
  return (f"{d.name}: {n} frames {d.width}x{d.height} at {d.fps:g} fps, person in {found} "
          f"({100.0 * found / n:.1f}%), interpolated frames: {missing_frames(d.detected)}")


def write_custom(path: str, detections: Sequence[Detection]) -> None:
  """The custom 2D file (reference V4.4) with the scores and detection flags beside it."""
  names = [d.name for d in detections]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise PosejaxError(f"videos with the same file name {', '.join(duplicates)}: the custom format keys "
                       "videos by file name; rename one")
  metadata = {"layout_name": COCO.name, "num_joints": COCO.num_joints,
              "keypoints_symmetry": [list(COCO.left), list(COCO.right)],
              "video_metadata": {d.name: {"w": d.width, "h": d.height, "fps": d.fps} for d in detections}}
  atomic_savez(path, positions_2d={d.name: {"custom": [d.keypoints]} for d in detections}, metadata=metadata,
               scores_2d={d.name: d.scores for d in detections}, detected={d.name: d.detected for d in detections})


def coco_to_h36m(keypoints: np.ndarray, scores: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
  """COCO (T, 17, 2) -> Human3.6M 17-joint layout (T, 17, 2), and (T, 17) scores if given.

  Limbs are copied. COCO has no pelvis, spine, thorax or head top; they are estimated:
  pelvis = mid-hips, thorax = mid-shoulders, spine = their midpoint, neck/nose = the nose
  moved a quarter of the way to the thorax, head = the centre of eyes and ears moved
  away from the thorax by half their distance. A derived joint's score is the lowest
  score of the keypoints it comes from.
  """
  k = np.asarray(keypoints, np.float32)
  pelvis, thorax = (k[:, 11] + k[:, 12]) / 2, (k[:, 5] + k[:, 6]) / 2
  head_centre = k[:, 1:5].mean(axis=1)
  derived = {0: pelvis, 7: (pelvis + thorax) / 2, 8: thorax, 9: k[:, 0] + (thorax - k[:, 0]) / 4,
             10: head_centre + (head_centre - thorax) / 2}
  copied = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}
  out = np.empty_like(k)
  for joint, value in derived.items():
    out[:, joint] = value
  for joint, source in copied.items():
    out[:, joint] = k[:, source]
  if scores is None:
    return out, None
  s = np.asarray(scores, np.float32)
  sources = {0: [11, 12], 7: [5, 6, 11, 12], 8: [5, 6], 9: [0, 5, 6], 10: [1, 2, 3, 4, 5, 6]}
  out_scores = np.empty_like(s)
  for joint, src in sources.items():
    out_scores[:, joint] = s[:, src].min(axis=1)
  for joint, source in copied.items():
    out_scores[:, joint] = s[:, source]
  return out, out_scores


def main(argv: Sequence[str] | None = None) -> int:
  """Detects the person in each video and writes the custom 2D file; status 2 on a user error."""
  parser = argparse.ArgumentParser(prog="python -m posejax.detect", description=__doc__.splitlines()[0])
  parser.add_argument("videos", nargs="+", metavar="VIDEO")
  parser.add_argument("--out", required=True, help="output file, data/data_2d_custom_NAME.npz")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
  parser.add_argument("--min_confidence", type=float, default=0.5,
                      help="BlazePose detection and tracking confidence threshold")
  parser.add_argument("--detector_python", default=None,
                      help=f"detector environment's python (default: ${DETECTOR_ENV_VAR} or .venv-detect)")
  args = parser.parse_args(argv)
  try:
    if not args.out.endswith(".npz"):
      raise PosejaxError(f"--out {args.out}: must be an .npz file (data_2d_custom_NAME.npz)")
    if os.path.lexists(args.out) and not args.overwrite:
      raise PosejaxError(f"--out {args.out}: already exists (pass --overwrite to replace it)")
    if not 0.0 <= args.min_confidence <= 1.0:
      raise PosejaxError(f"--min_confidence {args.min_confidence}: must be in [0, 1]")
    python = detector_python(args.detector_python)
    detections = []
    for path in args.videos:
      start = time.perf_counter()
      detections.append(detect_video(path, python, min_confidence=args.min_confidence, verbose=True))
      seconds = time.perf_counter() - start
      print(f"{summary(detections[-1])}; {seconds:.1f} s ({detections[-1].detected.size / seconds:.1f} frames/s)")
    write_custom(args.out, detections)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
