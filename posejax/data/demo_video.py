"""A short demo video of a real person: scikit-image's astronaut photograph, moved and scaled.

  python -m posejax.data.demo_video --out data/astronaut.mp4 [--frames 50] [--fps 25] [--overwrite]

The photograph (Eileen Collins, NASA, public domain) ships inside scikit-image
(`skimage.data.astronaut()`, 512 x 512, waist up), so the clip needs no download. Each
frame pastes it, scaled between `SCALES` of the frame height, onto a grey background at a
position that sweeps left to right and bobs up and down; `placements` says where, so a
test can check where a detector puts the person.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Sequence

import numpy as np
from PIL import Image

from posejax.common import video as video_io
from posejax.common.errors import PosejaxError

SCALES = (0.65, 0.9)  # photo height / frame height, smallest and largest
BACKGROUND = 96       # grey level


def astronaut() -> np.ndarray:
  """(512, 512, 3) uint8 RGB photograph from scikit-image."""
  try:
    from skimage import data
  except ImportError:
    raise PosejaxError("the demo video needs scikit-image: pip install -e .[test]") from None
  return data.astronaut()


def placements(frames: int, width: int, height: int) -> np.ndarray:
  """(frames, 3) int: left x, top y and side (pixels) of the photo in each frame."""
  t = np.linspace(0.0, 1.0, frames)
  side = np.round(height * (SCALES[0] + (SCALES[1] - SCALES[0]) * 0.5 * (1 - np.cos(2 * np.pi * t))))
  left = np.round((width - side) * (0.5 - 0.5 * np.cos(np.pi * t)))
  top = np.round((height - side) * (0.5 + 0.5 * np.sin(4 * np.pi * t)))
  return np.stack([left, top, side], axis=1).astype(np.int64)


def demo_frames(frames: int = 50, width: int = 480, height: int = 320) -> np.ndarray:
  """(frames, height, width, 3) uint8 frames of the moving photograph."""
  if frames < 1 or width < 16 or height < 16:
    raise PosejaxError(f"demo video: {frames} frames of {width}x{height} (need >= 1 frame of at least 16x16)")
  photo = Image.fromarray(astronaut())
  out = np.full((frames, height, width, 3), BACKGROUND, np.uint8)
  for i, (left, top, side) in enumerate(placements(frames, width, height)):
    scaled = np.asarray(photo.resize((int(side), int(side)), Image.BILINEAR))
    out[i, top:top + side, left:left + side] = scaled[:height - top, :width - left]
  return out


def write_demo_video(path: str, frames: int = 50, fps: float = 25.0, width: int = 480, height: int = 320,
                     overwrite: bool = False) -> str:
  """Writes the clip as H.264 MP4 (temporary file, then rename); returns `path`."""
  if os.path.lexists(path) and not overwrite:
    raise PosejaxError(f"--out {path}: already exists (pass --overwrite to replace it)")
  images = demo_frames(frames, width, height)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".mp4")
  os.close(fd)
  try:
    video_io.write_frames(tmp, images, fps)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m posejax.data.demo_video", description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="output .mp4 file")
  parser.add_argument("--frames", type=int, default=50)
  parser.add_argument("--fps", type=float, default=25.0)
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  try:
    if not args.out.endswith(".mp4"):
      raise PosejaxError(f"--out {args.out}: must be an .mp4 file")
    write_demo_video(args.out, args.frames, args.fps, overwrite=args.overwrite)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
