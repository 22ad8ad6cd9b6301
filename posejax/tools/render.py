"""Animations of the 2D input beside 3D skeletons (reference V13), written as GIF or MP4.

The first panel shows the input keypoints (pixels) over the video frame or a black image
of the viewport; one 3D panel per pose array follows (elevation 15 degrees, the camera's
azimuth, a 1.7 m box that follows the root in x and y, z from the floor). GIFs use
Pillow; MP4 uses the ffmpeg binary of the imageio-ffmpeg wheel (posejax.common.video), or
PATH's.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tqdm  # noqa: E402
from matplotlib import animation  # noqa: E402

from posejax.common import video as video_io  # noqa: E402
from posejax.common.errors import PosejaxError  # noqa: E402
from posejax.pose.camera import camera_to_world  # noqa: E402
from posejax.pose.skeleton import Skeleton  # noqa: E402

RADIUS = 1.7  # metres shown around the subject (reference V13)
ELEVATION = 15.0
DPI = 80
TITLE_SPACE = 0.35  # inches above the panels for their titles
# COCO keypoint order: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left
# before right); the edges of the COCO dataset's skeleton, 0-based.
COCO_BONES = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
              (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
# Orientation of the dummy camera used without ground truth (Human3.6M S1 camera 0).
DUMMY_ORIENTATION = np.asarray(
    [0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088], np.float32)
DUMMY_AZIMUTH = 70.0


def check_output(path: str) -> str:
  """The writer for `path` ('gif' or 'mp4'); PosejaxError for anything unusable."""
  ext = os.path.splitext(path)[1].lower()
  if ext == ".gif":
    return "gif"
  if ext == ".mp4":
    if not mp4_available():
      raise PosejaxError(f"{path}: writing .mp4 needs ffmpeg (pip install imageio-ffmpeg); "
                         "write a .gif instead")
    return "mp4"
  raise PosejaxError(f"{path}: unsupported animation format {ext or '(none)'!r} (use .gif or .mp4)")


def mp4_available() -> bool:
  """Whether matplotlib can write MP4: points its ffmpeg writer at posejax.common.video's binary."""
  exe = video_io.ffmpeg_exe()
  if exe is not None:
    matplotlib.rcParams["animation.ffmpeg_path"] = exe
  return animation.writers.is_available("ffmpeg")


def downsample_frames(x: np.ndarray, factor: int) -> np.ndarray:
  """Mean of every `factor` consecutive frames, remainder dropped: (T, ...) -> (T // factor, ...)."""
  if factor <= 1:
    return x
  n = x.shape[0] // factor
  return x[:n * factor].reshape((n, factor) + x.shape[1:]).mean(axis=1).astype(x.dtype)


def to_world(prediction: np.ndarray, ground_truth: np.ndarray | None, orientation: np.ndarray,
             translation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
  """Camera-space poses (T, J, 3) to world coordinates for display (reference V13, step 4).

  With ground truth (joint 0 = trajectory, joints 1.. root-relative) both poses are placed on
  the true trajectory and moved with the camera's extrinsics. Without, the prediction is
  rotated by the camera orientation only and lifted so that its lowest point over the whole
  sequence is on the floor (z = 0).
  """
  if ground_truth is not None:
    trajectory = ground_truth[:, :1]
    gt = np.array(ground_truth, np.float32)
    gt[:, 1:] += trajectory
    return (camera_to_world(prediction + trajectory, orientation, translation),
            camera_to_world(gt, orientation, translation))
  world = camera_to_world(prediction, orientation, np.zeros(3, np.float32))
  world[..., 2] -= world[..., 2].min()
  return world, None


def read_video(path: str, width: int, height: int, skip: int = 0, limit: int = -1) -> np.ndarray:
  """(T, height, width, 3) uint8 RGB frames decoded with ffmpeg, the first `skip` dropped.

  (width, height) may be smaller than the viewport: the input panel stretches the frames
  over it, so decoding at the panel's resolution saves memory on long videos.
  """
  return video_io.read_frames(path, (width, height), limit)[skip:]


def _bones(skeleton: Skeleton) -> list[tuple[int, int]]:
  return [(j, p) for j, p in enumerate(skeleton.parents) if p >= 0]


def bones_2d(num_keypoints: int, skeleton: Skeleton, layout_name: str | None) -> list[tuple[int, int]]:
  """Keypoint pairs joined by a line in the input panel.

  COCO-ordered keypoints (layout 'coco') use the COCO skeleton; keypoints in the skeleton's
  own order (K equals its size, as the Human3.6M sources) use its bones; others get none.
  """
  if layout_name == "coco":
    return list(COCO_BONES) if num_keypoints == 17 else []
  return _bones(skeleton) if num_keypoints == skeleton.num_joints else []


def build_figure(keypoints: np.ndarray, poses: Mapping[str, np.ndarray], skeleton: Skeleton, *,
                 azimuth: float, viewport: tuple[int, int], keypoints_right: Sequence[int] = (),
                 layout_name: str | None = None, size: float = 5.0,
                 background: np.ndarray | None = None) -> tuple[plt.Figure, Callable[[int], None]]:
  """The figure (input panel, then one 3D panel per pose array) and its `update(frame)`.

  Args: as render_animation, after frame selection and downsampling.
  """
  width, height = viewport
  fig = plt.figure(figsize=(size * (1 + len(poses)), size))
  # Fixed margins instead of tight_layout, which ignores the titles of 3D axes and so let
  # them be cut off at the top: TITLE_SPACE inches are kept above the panels.
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - TITLE_SPACE / size, wspace=0.05)
  ax_in = fig.add_subplot(1, 1 + len(poses), 1)
  ax_in.set_axis_off()
  ax_in.set_title("Input")
  black = np.zeros((height, width, 3), np.uint8)
  # extent: frames decoded at another resolution still cover the viewport's pixel coordinates
  image = ax_in.imshow(black if background is None else background[0], aspect="equal",
                       extent=(0, width, height, 0))
  right = set(keypoints_right)
  colors = ["red" if k in right else "black" for k in range(keypoints.shape[1])]
  lines_2d = [(ax_in.plot(*keypoints[0, [j, p]].T, color="pink")[0], j, p)
              for j, p in bones_2d(keypoints.shape[1], skeleton, layout_name)]
  points = ax_in.scatter(*keypoints[0].T, 10, color=colors, edgecolors="white", zorder=10)
  ax_in.set_xlim(0, width)  # keypoints outside the frame must not rescale the panel
  ax_in.set_ylim(height, 0)

  panels = []
  right_joints = set(skeleton.joints_right)
  for i, (title, data) in enumerate(poses.items()):
    ax = fig.add_subplot(1, 1 + len(poses), i + 2, projection="3d")
    ax.view_init(elev=ELEVATION, azim=azimuth)
    ax.set_zlim3d([0, RADIUS])
    for set_labels in (ax.set_xticklabels, ax.set_yticklabels, ax.set_zticklabels):
      set_labels([])
    ax.set_title(title)
    lines = [(ax.plot(*data[0, [j, p]].T, zdir="z", color="red" if j in right_joints else "black")[0], j, p)
             for j, p in _bones(skeleton)]
    panels.append((ax, data, lines))

  def update(t: int) -> None:
    if background is not None:
      image.set_data(background[t])
    for line, j, p in lines_2d:
      line.set_data(*keypoints[t, [j, p]].T)
    points.set_offsets(keypoints[t])
    for ax, data, lines in panels:
      # The view follows the subject's root in x and y.
      x, y = data[t, 0, 0], data[t, 0, 1]
      ax.set_xlim3d([x - RADIUS / 2, x + RADIUS / 2])
      ax.set_ylim3d([y - RADIUS / 2, y + RADIUS / 2])
      for line, j, p in lines:
        line.set_data_3d(*data[t, [j, p]].T)

  update(0)
  return fig, update


def render_animation(keypoints: np.ndarray, poses: Mapping[str, np.ndarray], skeleton: Skeleton, *,
                     output: str, fps: float, azimuth: float, viewport: tuple[int, int],
                     keypoints_right: Sequence[int] = (), layout_name: str | None = None,
                     limit: int = -1, downsample: int = 1, size: float = 5.0,
                     background: np.ndarray | None = None, bitrate: int = 3000,
                     verbose: bool = True) -> int:
  """Writes the animation to `output` (.gif or .mp4) and returns its number of frames.

  Args:
    keypoints: (T, K, 2) input keypoints in pixels.
    poses: panel title -> (T, J, 3) world-coordinate poses (z up, metres).
    viewport: (width, height) of the input panel in pixels.
    keypoints_right: keypoints drawn red (the others black).
    layout_name: the keypoints' layout; selects the 2D bones (see bones_2d).
    limit: render the first `limit` frames (< 1: all), counted after downsampling (the reference's).
    background: optional (T', H, W, 3) uint8 frames behind the keypoints.
    verbose: a progress bar (stderr) while frames are written.
  """
  writer_kind = check_output(output)
  frames = keypoints.shape[0] if background is None else min(keypoints.shape[0], background.shape[0])
  if frames < 1:
    raise PosejaxError(f"{output}: nothing to render (0 frames)")
  if limit >= 1:  # counted after downsampling, as the reference does: read only what is needed
    frames = min(frames, limit * max(downsample, 1))
  keypoints = downsample_frames(np.asarray(keypoints[:frames], np.float32), downsample)
  poses = {k: downsample_frames(np.asarray(v[:frames], np.float32), downsample) for k, v in poses.items()}
  if background is not None and downsample > 1:
    background = downsample_frames(background[:frames].astype(np.float32), downsample).astype(np.uint8)
  fps = fps / max(downsample, 1)
  frames = keypoints.shape[0] if limit < 1 else min(keypoints.shape[0], limit)
  if frames < 1:
    raise PosejaxError(f"{output}: --viz_downsample {downsample} leaves no frame to render")
  keypoints, poses = keypoints[:frames], {k: v[:frames] for k, v in poses.items()}

  fig, update = build_figure(keypoints, poses, skeleton, azimuth=azimuth, viewport=viewport,
                             keypoints_right=keypoints_right, layout_name=layout_name, size=size,
                             background=background)
  anim = animation.FuncAnimation(fig, update, frames=frames, interval=1000 / fps, repeat=False)
  writer = (animation.PillowWriter(fps=fps) if writer_kind == "gif"
            else animation.FFMpegWriter(fps=fps, bitrate=bitrate))
  directory = os.path.dirname(os.path.abspath(output))
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(output) + ".",
                               suffix=os.path.splitext(output)[1])
  except OSError as e:
    plt.close(fig)
    raise PosejaxError(f"{output}: cannot write ({e.strerror})") from None
  os.close(fd)
  os.chmod(tmp, 0o644)  # mkstemp's 0600 is meant for temporaries, not for a shared animation
  bar = tqdm.tqdm(total=frames, desc=f"rendering {os.path.basename(output)}", unit="frame", leave=False,
                  disable=not verbose)
  try:
    anim.save(tmp, writer=writer, dpi=DPI, progress_callback=lambda i, n: bar.update(1))
    os.replace(tmp, output)
  except OSError as e:
    raise PosejaxError(f"{output}: cannot write ({e.strerror})") from None
  finally:
    bar.close()
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)
  return frames
