"""Video files: the ffmpeg binary, a video's size and frame rate, and its decoded frames.

ffmpeg comes from the `imageio-ffmpeg` wheel, which ships a static binary (with libx264),
so decoding and MP4 writing need nothing outside the package registry; an `ffmpeg` on PATH
is the fallback. Nothing here imports JAX, TensorFlow or matplotlib.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Iterator

import numpy as np

from posejax.common.errors import PosejaxError


def ffmpeg_exe() -> str | None:
  """Path of an ffmpeg binary: imageio-ffmpeg's (or $IMAGEIO_FFMPEG_EXE), else PATH's, else None."""
  try:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()
  except (ImportError, RuntimeError):
    return shutil.which("ffmpeg")


def _require_ffmpeg(path: str) -> None:
  if ffmpeg_exe() is None:
    raise PosejaxError(f"{path}: decoding video needs ffmpeg: pip install imageio-ffmpeg")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  path: str
  width: int   # of the decoded frames (after the rotation the file asks for)
  height: int
  fps: float   # 0 when the file does not say

  @property
  def name(self) -> str:
    """The video's key in a custom 2D file: its file name, as the reference's scripts use."""
    return os.path.basename(self.path)


def _reader(path: str, size: tuple[int, int] | None = None):
  """imageio-ffmpeg's frame generator (metadata dict first), optionally scaled to `size`."""
  import imageio_ffmpeg
  if not os.path.isfile(path):
    raise PosejaxError(f"{path}: video file not found")
  _require_ffmpeg(path)
  output_params = None if size is None else ["-vf", f"scale={int(size[0])}:{int(size[1])}"]
  return imageio_ffmpeg.read_frames(path, pix_fmt="rgb24", output_params=output_params)


def _start(path: str, size: tuple[int, int] | None = None):
  """(generator positioned after the metadata, metadata); PosejaxError for unreadable files."""
  reader = _reader(path, size)
  try:
    meta = next(reader)
  except (RuntimeError, OSError, StopIteration) as e:
    reader.close()
    detail = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    raise PosejaxError(f"{path}: not a readable video ({detail})") from None
  return reader, meta


def probe(path: str) -> VideoInfo:
  """Size and frame rate of a video file (no frame is decoded)."""
  reader, meta = _start(path)
  reader.close()
  width, height = (int(v) for v in meta["size"])
  return VideoInfo(path, width, height, float(meta.get("fps") or 0.0))


def frames(path: str, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
  """Decoded RGB frames, each (H, W, 3) uint8, one at a time (`size` = (W, H) rescales)."""
  reader, meta = _start(path, size)
  width, height = (int(v) for v in meta["size"])
  try:
    for raw in reader:
      yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
  except RuntimeError as e:
    raise PosejaxError(f"{path}: decoding failed ({str(e).strip().splitlines()[-1]})") from None
  finally:
    reader.close()


def read_frames(path: str, size: tuple[int, int] | None = None, limit: int = -1) -> np.ndarray:
  """(T, H, W, 3) uint8: the first `limit` frames (< 1: all), rescaled to `size` = (W, H)."""
  out = []
  for frame in frames(path, size):
    if 0 < limit <= len(out):
      break
    out.append(frame)
  if not out:
    raise PosejaxError(f"{path}: the video has no frames")
  return np.stack(out)


def write_frames(path: str, images: np.ndarray, fps: float) -> None:
  """Encodes (T, H, W, 3) uint8 frames as H.264 (even H and W) to `path`; used by tests and demos."""
  import imageio_ffmpeg
  images = np.asarray(images, np.uint8)
  writer = imageio_ffmpeg.write_frames(path, (images.shape[2], images.shape[1]), fps=fps, codec="libx264",
                                       macro_block_size=2, ffmpeg_log_level="error")
  writer.send(None)
  for image in images:
    writer.send(np.ascontiguousarray(image))
  writer.close()


def count_frames(path: str) -> int:
  """Number of frames of a video, by decoding it."""
  import imageio_ffmpeg
  if not os.path.isfile(path):
    raise PosejaxError(f"{path}: video file not found")
  return int(imageio_ffmpeg.count_frames_and_secs(path)[0])
