"""3D poses for videos in the wild from 2D keypoints (spec 4.4 and 14).

Reads `data_2d_custom_<name>.npz` (`positions_2d[video]['custom'] = [(T, 17, 2) pixels]`, COCO
order; `metadata` with the coco preset and `video_metadata[video] = {'w', 'h'}`), normalizes
each video with its own width and height, lifts it with a trained workdir's model and writes
`OUT/<video>.npz`: `positions_3d` (T, 17, 3) camera-space root-relative metres,
`positions_3d_world` (rotated by Human3.6M S1 camera 0, lowest point on the floor, spec 13
"without ground truth"), `keypoints_2d` (pixels), `width`, `height`, `model_action`.

Usage:
  python -m posejax.infer --workdir DIR --keypoints data_2d_custom_NAME.npz --out DIR \
      [--config CONFIG] [--checkpoint latest|STEP|best] [--action Walking] [--render] [--fps 50]

The default checkpoint is the latest (the final model of a finished run); `best` needs a run
with a held-out validation split (config.data.valid_subjects).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Sequence

import jax
import numpy as np

from posejax import eval_lib, evaluation, model_spec, render
from posejax.camera import normalize_screen_coordinates
from posejax.errors import PosejaxError
from posejax.io_utils import atomic_savez, load_npz_dict
from posejax.skeleton import H36M_SKELETON, LAYOUTS

COCO = LAYOUTS["coco"]


@dataclasses.dataclass(frozen=True)
class Video:
  name: str
  keypoints: np.ndarray  # (T, 17, 2) pixels
  width: int
  height: int


def read_custom_keypoints(path: str) -> tuple[list[Video], tuple[int, ...], tuple[int, ...]]:
  """Videos of a custom 2D file and its left/right keypoint lists; PosejaxError naming the file."""
  data = load_npz_dict(path, ("positions_2d", "metadata"))
  positions, metadata = data["positions_2d"], data["metadata"]
  if not isinstance(positions, dict) or not isinstance(metadata, dict):
    raise PosejaxError(f"{path}: positions_2d and metadata must be dicts (custom 2D format)")
  layout = metadata.get("layout_name")
  if layout != COCO.name or int(metadata.get("num_joints", -1)) != COCO.num_joints:
    raise PosejaxError(f"{path}: keypoint layout {layout!r} with {metadata.get('num_joints')} joints; "
                       f"the custom format holds 17 COCO keypoints (layout_name 'coco')")
  symmetry = metadata.get("keypoints_symmetry", (COCO.left, COCO.right))
  left, right = (tuple(int(i) for i in side) for side in symmetry)
  sizes = metadata.get("video_metadata", {})
  videos = []
  for name, entry in positions.items():
    arrays = entry.get("custom") if isinstance(entry, dict) else None
    if not arrays:
      raise PosejaxError(f"{path}: video {name!r} has no 'custom' keypoint array")
    keypoints = np.asarray(arrays[0], np.float32)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (COCO.num_joints, 2) or keypoints.shape[0] < 1:
      raise PosejaxError(f"{path}: video {name!r} keypoints have shape {keypoints.shape}, expected (T, 17, 2)")
    if not np.all(np.isfinite(keypoints)):
      raise PosejaxError(f"{path}: video {name!r} keypoints contain NaN or infinite values")
    if name not in sizes or "w" not in sizes[name] or "h" not in sizes[name]:
      raise PosejaxError(f"{path}: metadata['video_metadata'] lacks the width/height of video {name!r}")
    videos.append(Video(str(name), keypoints, int(sizes[name]["w"]), int(sizes[name]["h"])))
  if not videos:
    raise PosejaxError(f"{path}: no videos in positions_2d")
  return videos, left, right


def choose_slice(actions_of_slices: Sequence[str], action: str | None) -> int:
  """The model slice used for every video: `action`'s in AB workdirs, default the first."""
  slices = list(actions_of_slices)
  if action is None or slices == [evaluation.COMMON_SLICE]:
    return 0
  if action not in slices:
    raise PosejaxError(f"--action {action!r}: no such model in this workdir (choices: {', '.join(slices)})")
  return slices.index(action)


def lift_videos(run: eval_lib.RestoredRun, videos: Sequence[Video], left: Sequence[int], right: Sequence[int],
                *, action: str | None = None) -> tuple[list[np.ndarray], str]:
  """(T, 17, 3) camera-space predictions of every video, and the slice's action name."""
  index = choose_slice(run.actions_of_slices, action)
  variables = jax.tree_util.tree_map(lambda leaf: leaf[index], run.variables)
  model = eval_lib.build_model(run)
  # The custom format holds (T, 17, 2) COCO keypoints: a model of other inputs cannot lift them.
  model_spec.check_input(model_spec.of_model(model), COCO.num_joints, 2, where="custom 2D keypoints (COCO)")
  inputs = [normalize_screen_coordinates(v.keypoints, v.width, v.height).astype(np.float32) for v in videos]
  tta = bool(eval_lib.config_value(run.config, "eval.tta", True))
  preds = evaluation.predict(model, variables, inputs, tta=tta,
                             kps_left=left, kps_right=right, joints_left=H36M_SKELETON.joints_left,
                             joints_right=H36M_SKELETON.joints_right, **eval_lib.eval_options(run.config))
  return preds, run.actions_of_slices[index]


def infer_file(run: eval_lib.RestoredRun, keypoints_path: str, out_dir: str, *, action: str | None = None,
               render_gif: bool = False, fps: float = 50.0, size: float = 5.0, limit: int = -1,
               downsample: int = 1) -> list[str]:
  """Writes OUT/<video>.npz (and OUT/<video>.gif with `render_gif`) per video; returns the npz paths."""
  videos, left, right = read_custom_keypoints(keypoints_path)
  keypoints_source = str(eval_lib.config_value(run.config, "data.keypoints", ""))
  if "coco" not in keypoints_source:
    print(f"note: the model was trained on 2D source {keypoints_source!r}, not COCO-ordered keypoints; "
          "its poses for COCO input are unreliable", file=sys.stderr)
  preds, model_action = lift_videos(run, videos, left, right, action=action)
  paths = []
  for video, pred in zip(videos, preds):
    world, _ = render.to_world(pred, None, render.DUMMY_ORIENTATION, None)
    stem = os.path.join(out_dir, os.path.basename(video.name))
    atomic_savez(stem + ".npz", positions_3d=pred, positions_3d_world=world, keypoints_2d=video.keypoints,
                 width=video.width, height=video.height, model_action=model_action)
    paths.append(stem + ".npz")
    if render_gif:
      render.render_animation(video.keypoints, {"Reconstruction": world}, H36M_SKELETON, output=stem + ".gif",
                              fps=fps, azimuth=render.DUMMY_AZIMUTH, viewport=(video.width, video.height),
                              keypoints_right=right, layout_name=COCO.name, limit=limit,
                              downsample=downsample, size=size)
  return paths


def main(argv: Sequence[str], flags: Any) -> None:
  """Entry point body; user errors print one line and exit with status 2."""
  try:
    if len(argv) > 1:
      raise PosejaxError(f"unexpected arguments: {' '.join(argv[1:])}")
    read_custom_keypoints(flags.keypoints)  # a bad file fails before the restore
    run = eval_lib.restore_run(flags.workdir, flags.checkpoint, flags.config)
    print(f"lifting with {run.describe()} of {flags.workdir}", flush=True)
    paths = infer_file(run, flags.keypoints, flags.out, action=flags.action, render_gif=flags.render,
                       fps=flags.fps, size=flags.viz_size, limit=flags.viz_limit,
                       downsample=flags.viz_downsample)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {len(paths)} file(s) to {flags.out}")


def _define_flags(values: Any = None) -> Any:
  """Defines the command-line flags on `values` (default: absl's global FLAGS) and returns it."""
  from absl import flags
  from ml_collections import config_flags
  values = flags.FLAGS if values is None else values
  config_flags.DEFINE_config_file("config", None, "Training config file (default: WORKDIR/config.json).",
                                  flag_values=values)
  kw = dict(flag_values=values)
  flags.DEFINE_string("workdir", None, "Training workdir.", required=True, **kw)
  flags.DEFINE_string("keypoints", None, "data_2d_custom_NAME.npz file.", required=True, **kw)
  flags.DEFINE_string("out", None, "Output folder.", required=True, **kw)
  flags.DEFINE_string("checkpoint", eval_lib.DEFAULT_CHECKPOINT,
                      "latest (the final model), a step number, or best (runs with a validation split).", **kw)
  flags.DEFINE_string("action", None, "Action-based workdirs: the action whose model lifts the videos.", **kw)
  flags.DEFINE_bool("render", False, "Also write OUT/<video>.gif.", **kw)
  flags.DEFINE_float("fps", 50.0, "Frame rate of the rendered GIF.", **kw)
  flags.DEFINE_float("viz_size", 5.0, "Figure size multiplier.", **kw)
  flags.DEFINE_integer("viz_limit", -1, "Render only the first N frames (< 1: all).", **kw)
  flags.DEFINE_integer("viz_downsample", 1, "Average every N frames when rendering.", **kw)
  return values


if __name__ == "__main__":
  from absl import app
  FLAGS = _define_flags()
  app.run(lambda argv: main(argv, FLAGS))
