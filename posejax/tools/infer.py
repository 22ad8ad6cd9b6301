"""3D poses for videos in the wild, from a video or from 2D keypoints (reference V4.4, V13 and V14).

Reads `data_2d_custom_<name>.npz` (`positions_2d[video]['custom'] = [(T, 17, 2) pixels]`, COCO
order; `metadata` with the coco preset and `video_metadata[video] = {'w', 'h'}`), or detects
the person in `--video` with posejax.tools.detect; normalizes each video with its own width and
height, converts the keypoints to the Human3.6M layout when the model was trained on it
(posejax.tools.detect.coco_to_h36m), lifts them with a trained workdir's model and, when the
checkpoint holds trajectory models (posejax.evaluation.trajectory: semi-supervised runs, in both modes),
adds the root trajectory of the model pair that lifted each video.

`--keypoints` alone writes `OUT/<video>.npz` per video (and `OUT/<video>.gif` with
`--render`). `--video V` writes, for V's file stem S: `OUT/data_2d_custom_S.npz` (the
detections, unless `--keypoints` gives them), `OUT/S_3d.npz`, `OUT/S_3d.npy` (the
reference's `--viz-export`: (T, 17, 3) camera space, metres, trajectory added when
present) and `OUT/S_3d.mp4`: the video with its keypoints beside the 3D skeleton (GIF
with `--viz_format gif`, or when no ffmpeg is found). The .npz files hold
`positions_3d` (T, 17, 3) camera-space root-relative metres, `positions_3d_world`
(rotated by Human3.6M S1 camera 0, lowest point on the floor, reference V13 "without ground
truth"), `keypoints_2d` (pixels), `width`, `height`, `model_action` (the model that lifted it,
or 'soft mixture'), `trajectory` (T, 1, 3) when the checkpoint has trajectory models, and
`predicted_action`, `action_probabilities` (C,) and `action_classes` when it has an action
classifier.

Action-based workdirs route each video without labels (posejax.evaluation.routing): `--routing=predicted`
(the default with a classifier: the model of the video's predicted action) or `soft` (per frame,
all models weighted by the classifier's probabilities); `--action` forces one model.

Usage:
  python -m posejax.infer --workdir DIR --video VIDEO [--keypoints data_2d_custom_NAME.npz] [--out DIR]
  python -m posejax.infer --workdir DIR --keypoints data_2d_custom_NAME.npz [--out DIR] [--render]
      [--config CONFIG] [--checkpoint latest|STEP|best] [--routing predicted|soft | --action Walking]
      [--fps F] [--overwrite]

OUT defaults to WORKDIR/infer. Output files that already exist there are replaced only with
`--overwrite` (checked before anything is computed; each file is written to a temporary name
and renamed). The default checkpoint is the latest (the final model of a finished run);
`best` needs a run with a held-out validation split (config.data.valid_subjects).
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import warnings
from typing import Any, Sequence

import numpy as np

from posejax.common import cli, video as video_io
from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_savez, atomic_write_bytes, load_npz_dict
from posejax.config import flags as config_flags_parser
from posejax.config.run_config import DataConfig
from posejax.evaluation import (
    classifier as classifier_lib, protocols as evaluation, routing as routing_lib,
    runs as eval_lib)
from posejax.models import spec as model_spec
from posejax.pose.camera import normalize_screen_coordinates
from posejax.pose.skeleton import H36M_SKELETON, LAYOUTS, layout_for_source
from posejax.tools import detect, render

COCO, H36M = LAYOUTS["coco"], LAYOUTS["h36m"]
DEFAULT_FPS = 50.0  # Human3.6M's, for keypoint files that do not say


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


def model_layout(data: DataConfig) -> str | None:
  """Keypoint layout the model was trained on (config.data.keypoints); None when unknown.

  Human3.6M's ground truth ('gt') and the synthetic detections use the h36m layout.
  """
  source = data.keypoints
  if source in ("gt", "synthetic"):
    return H36M.name
  try:
    return layout_for_source(source).name
  except PosejaxError:
    return None


def model_inputs(data: DataConfig, videos: Sequence[Video], left: Sequence[int], right: Sequence[int]
                 ) -> tuple[list[np.ndarray], tuple[int, ...], tuple[int, ...]]:
  """Normalized (T, 17, 2) model inputs in the model's layout and that layout's left/right keypoints."""
  layout = model_layout(data)
  keypoints = [v.keypoints for v in videos]
  if layout == H36M.name:
    keypoints = [detect.coco_to_h36m(k)[0] for k in keypoints]
    left, right = H36M.left, H36M.right
  elif layout not in (COCO.name, None):
    raise PosejaxError(f"--workdir: the model was trained on {layout} keypoints "
                       f"({LAYOUTS[layout].num_joints} joints); videos in the wild give COCO keypoints")
  elif layout is None:
    source = data.keypoints
    print(f"note: the model was trained on 2D source {source!r} of unknown layout; it is given COCO "
          "keypoints as they are, so its poses may be unreliable", file=sys.stderr)
  inputs = [normalize_screen_coordinates(k, v.width, v.height).astype(np.float32)
            for k, v in zip(keypoints, videos)]
  return inputs, tuple(left), tuple(right)


ROUTINGS = ("predicted", "soft")


def choose_routing(actions_of_slices: Sequence[str], action: str | None, routing: str | None,
                   has_classifier: bool) -> str:
  """'predicted' or 'soft' (the classifier routes; custom videos have no action labels), or 'fixed'
  (one model for every video: --action, a common run's model, or the first without a classifier)."""
  if routing is not None and routing not in ROUTINGS:
    raise PosejaxError(f"--routing={routing}: expected {' or '.join(ROUTINGS)} (custom keypoints have no "
                       "action labels for oracle routing)")
  if routing is not None and action is not None:
    raise PosejaxError("--routing and --action exclude each other (--action lifts every video with one model)")
  if list(actions_of_slices) == [evaluation.COMMON_SLICE]:
    if routing is not None:
      raise PosejaxError(f"--routing={routing}: the workdir holds one common model; routing applies to "
                         "action-based runs")
    return "fixed"
  if routing is not None and not has_classifier:
    raise PosejaxError(f"--routing={routing}: this workdir has no action classifier (WORKDIR/classifier); "
                       "pass --action to choose a model")
  if action is not None:
    return "fixed"
  return routing or ("predicted" if has_classifier else "fixed")


@dataclasses.dataclass(frozen=True)
class Lifted:
  """How one video was lifted."""
  model_action: str                    # the model that lifted it, or 'soft mixture'
  predicted_action: str | None         # the classifier's action for the video
  probabilities: np.ndarray | None     # (C,) the classifier's sequence probabilities
  classes: tuple[str, ...] = ()        # the classifier's actions
  root: np.ndarray | None = None       # (T, 1, 3) camera-space root from the trajectory models

  def arrays(self) -> dict[str, Any]:
    """The classifier's entries of the video's .npz (none without a classifier)."""
    if self.probabilities is None:
      return {}
    return {"predicted_action": self.predicted_action, "action_probabilities": self.probabilities,
            "action_classes": np.asarray(self.classes)}


def lift_videos(run: eval_lib.RestoredRun, videos: Sequence[Video], left: Sequence[int], right: Sequence[int],
                *, action: str | None = None, routing: str | None = None,
                classifier: Any = None) -> tuple[list[np.ndarray], list[Lifted]]:
  """(T, 17, 3) camera-space predictions of every video, and how each was lifted.

  `classifier` (posejax.evaluation.classifier.Classifier) routes the videos of action-based runs
  (`routing` 'predicted', the default with a classifier, or 'soft') and predicts their action.
  When the run has trajectory models, each video's root comes from the pair of the model that
  lifted it (or the same mixture), with the reference's trajectory flip: x negated, no swap.
  """
  mode = choose_routing(run.actions_of_slices, action, routing, classifier is not None)
  model = eval_lib.build_model(run)  # the architecture the checkpoint records
  inputs, left, right = model_inputs(run.config.data, videos, left, right)
  # Videos give (T, K, 2) keypoints (x, y): a model trained on other inputs cannot lift them.
  model_spec.check_input(model_spec.of_model(model), *inputs[0].shape[1:], where="2D keypoints of the videos")
  flip = (tuple(left), tuple(right), tuple(H36M_SKELETON.joints_left), tuple(H36M_SKELETON.joints_right))
  result = routing_lib.lift(
      model, run.variables, run.actions_of_slices, inputs, mode=mode, flip=flip, classifier=classifier,
      fixed_slice=choose_slice(run.actions_of_slices, action), trajectory=run.trajectory,
      tta=run.config.eval.tta, **run.config.eval.chunking)
  classes = tuple(classifier.classes) if classifier is not None else ()
  lifted = []
  for i, index in enumerate(result.used):
    p = None if result.probabilities is None else result.probabilities[i].astype(np.float32)
    lifted.append(Lifted("soft mixture" if index < 0 else run.actions_of_slices[index],
                         None if p is None else classes[int(np.argmax(p))], p, classes,
                         None if result.roots is None else result.roots[i]))
  if mode == "fixed" and action is None and list(run.actions_of_slices) != [evaluation.COMMON_SLICE]:
    print(f"note: no action classifier in this workdir; every video is lifted by the {lifted[0].model_action} "
          "model (choose one with --action)", file=sys.stderr)
  return result.poses, lifted


def _write_poses(path: str, video: Video, pred: np.ndarray, how: Lifted) -> np.ndarray:
  """Writes the .npz of one video (module docstring); returns the world-coordinate poses."""
  absolute = pred if how.root is None else pred + how.root
  world, _ = render.to_world(absolute, None, render.DUMMY_ORIENTATION, None)
  extra = {} if how.root is None else {"trajectory": how.root}
  atomic_savez(path, positions_3d=pred, positions_3d_world=world, keypoints_2d=video.keypoints,
               width=video.width, height=video.height, model_action=how.model_action, **extra, **how.arrays())
  if how.predicted_action is not None:
    print(f"{video.name}: predicted action {how.predicted_action} ({100 * float(how.probabilities.max()):.0f}%), "
          f"lifted by {how.model_action}")
  return world


def infer_file(run: eval_lib.RestoredRun, keypoints_path: str, out_dir: str, *, action: str | None = None,
               routing: str | None = None, classifier: Any = None, render_gif: bool = False,
               fps: float = DEFAULT_FPS, size: float = 5.0, limit: int = -1, downsample: int = 1) -> list[str]:
  """Writes OUT/<video>.npz (and OUT/<video>.gif with `render_gif`) per video; returns the npz paths."""
  videos, left, right = read_custom_keypoints(keypoints_path)
  preds, lifted = lift_videos(run, videos, left, right, action=action, routing=routing, classifier=classifier)
  paths = []
  for video, pred, how in zip(videos, preds, lifted):
    stem = os.path.join(out_dir, os.path.basename(video.name))
    world = _write_poses(stem + ".npz", video, pred, how)
    paths.append(stem + ".npz")
    if render_gif:
      render.render_animation(video.keypoints, {"Reconstruction": world}, H36M_SKELETON, output=stem + ".gif",
                              fps=fps, azimuth=render.DUMMY_AZIMUTH, viewport=(video.width, video.height),
                              keypoints_right=right, layout_name=COCO.name, limit=limit,
                              downsample=downsample, size=size)
  return paths


def video_keypoints(info: video_io.VideoInfo, keypoints_path: str) -> Video:
  """The entry of a custom 2D file for a video: the one named as its file, or the file's only one."""
  videos, _, _ = read_custom_keypoints(keypoints_path)
  named = [v for v in videos if os.path.basename(v.name) == info.name]
  if named:
    return named[0]
  if len(videos) == 1:
    return videos[0]
  raise PosejaxError(f"{keypoints_path}: no keypoints for video {info.name!r} "
                     f"(videos: {', '.join(v.name for v in videos)})")


def video_outputs(out_dir: str, video_path: str, viz_format: str) -> dict[str, str]:
  """Output paths of `--video` (module docstring); PosejaxError if one is the input video."""
  stem = os.path.splitext(os.path.basename(video_path))[0]
  paths = {"keypoints": os.path.join(out_dir, f"data_2d_custom_{stem}.npz"),
           "npz": os.path.join(out_dir, f"{stem}_3d.npz"), "npy": os.path.join(out_dir, f"{stem}_3d.npy"),
           "animation": os.path.join(out_dir, f"{stem}_3d.{viz_format}")}
  for path in paths.values():
    if os.path.exists(path) and os.path.samefile(path, video_path):
      raise PosejaxError(f"--out {out_dir}: would write over the input video {video_path}")
  return paths


def animation_format(viz_format: str) -> str:
  """`viz_format`, or 'gif' (with a note) for 'mp4' when no ffmpeg is found."""
  if viz_format == "mp4" and not render.mp4_available():
    print("note: no ffmpeg found (pip install imageio-ffmpeg); writing a GIF instead of an MP4",
          file=sys.stderr)
    return "gif"
  return viz_format


def keypoints_outputs(out_dir: str, videos: Sequence[Video], render_gif: bool) -> list[str]:
  """Output paths of `--keypoints` alone (module docstring), as infer_file writes them."""
  suffixes = (".npz", ".gif") if render_gif else (".npz",)
  return [os.path.join(out_dir, os.path.basename(v.name)) + s for v in videos for s in suffixes]


def check_outputs(paths: Sequence[str], overwrite: bool) -> None:
  """Refuses to replace an earlier result unless `overwrite` (as posejax.tools.export does)."""
  for path in paths:
    if os.path.lexists(path) and not overwrite:
      raise PosejaxError(f"--out {path}: already exists (pass --overwrite to replace it)")


def background_size(width: int, height: int, size: float) -> tuple[int, int]:
  """Decoding size of the video for an input panel of about size * 80 pixels (80 dpi), 2x oversampled."""
  scale = min(1.0, 2 * size * 80 / max(width, height))
  return max(2, round(width * scale)), max(2, round(height * scale))


def infer_video(run: eval_lib.RestoredRun, video_path: str, out_dir: str, *, keypoints_path: str | None = None,
                detector: str | None = None, min_confidence: float = 0.5, action: str | None = None,
                routing: str | None = None, classifier: Any = None, viz_format: str = "mp4", fps: float | None = None,
                size: float = 5.0, limit: int = -1, downsample: int = 1) -> dict[str, str]:
  """Detects (or reads) the keypoints of one video, lifts them and writes the outputs; returns their paths.

  Args:
    detector: the detector environment's python (posejax.tools.detect.detector_python()).
    viz_format: 'mp4' or 'gif'; MP4 falls back to GIF (with a note) when no ffmpeg is found.
    fps: animation frame rate (None: the video's, else 50).
  """
  info = video_io.probe(video_path)
  paths = video_outputs(out_dir, video_path, animation_format(viz_format))
  if keypoints_path:
    video = video_keypoints(info, keypoints_path)
    del paths["keypoints"]
  else:
    detection = detect.detect_video(video_path, detector or detect.detector_python(),
                                    min_confidence=min_confidence, verbose=True)
    print(detect.summary(detection), flush=True)
    detect.write_custom(paths["keypoints"], [detection])
    video = Video(detection.name, detection.keypoints, detection.width, detection.height)
  (pred,), (how,) = lift_videos(run, [video], COCO.left, COCO.right, action=action, routing=routing,
                                classifier=classifier)
  world = _write_poses(paths["npz"], video, pred, how)
  # numpy.save appends .npy to a bare temporary name, so the atomic write goes through bytes.
  buffer = io.BytesIO()
  np.save(buffer, (pred if how.root is None else pred + how.root).astype(np.float32))
  atomic_write_bytes(paths["npy"], buffer.getvalue())
  background = render.read_video(video_path, *background_size(info.width, info.height, size), limit=limit)
  frames = render.render_animation(
      video.keypoints, {"Reconstruction": world}, H36M_SKELETON, output=paths["animation"],
      fps=fps or info.fps or DEFAULT_FPS, azimuth=render.DUMMY_AZIMUTH, viewport=(video.width, video.height),
      keypoints_right=COCO.right, layout_name=COCO.name, limit=limit, downsample=downsample, size=size,
      background=background, verbose=True)
  print(f"wrote {paths['animation']} ({frames} frames)")
  return paths


def main(argv: Sequence[str], flags: Any) -> None:
  """Entry point; user errors print one line and exit with status 2 (posejax.common.cli.run_guarded)."""
  # ffmpeg and the detector are started with fork + exec at once, which JAX's warning about
  # forking a multithreaded process does not concern.
  warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
  cli.quiet_logging()  # as quiet as train.py: no INFO lines from matplotlib's writer or orbax
  out, paths = cli.run_guarded(_main, argv, flags)
  print(f"wrote {len(paths)} file(s) to {out}")


def _checked_inputs(flags: Any, out: str) -> tuple[str | None, str]:
  """Checks the inputs and the outputs before the restore; returns (detector, animation format)."""
  if not flags.video:
    videos, _, _ = read_custom_keypoints(flags.keypoints)
    check_outputs(keypoints_outputs(out, videos, flags.render), flags.overwrite)
    return None, flags.viz_format
  info = video_io.probe(flags.video)
  detector = None
  if flags.keypoints:
    video_keypoints(info, flags.keypoints)
  else:
    detector = detect.detector_python(flags.detector_python)
  viz_format = animation_format(flags.viz_format)
  targets = video_outputs(out, flags.video, viz_format)
  if flags.keypoints:
    del targets["keypoints"]  # not written: the given file is the keypoints
  check_outputs(list(targets.values()), flags.overwrite)
  return detector, viz_format


def _main(argv: Sequence[str], flags: Any) -> tuple[str, list[str]]:
  if len(argv) > 1:
    raise PosejaxError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.video and not flags.keypoints:
    raise PosejaxError("pass --video VIDEO (the person is detected in it) or --keypoints data_2d_custom_NAME.npz")
  if flags.viz_format not in ("mp4", "gif"):
    raise PosejaxError(f"--viz_format {flags.viz_format!r}: use mp4 or gif")
  out = flags.out or os.path.join(flags.workdir, "infer")
  detector, viz_format = _checked_inputs(flags, out)  # bad input fails before the restore
  run = eval_lib.restore_run(flags.workdir, flags.checkpoint, flags.config)
  classifier = classifier_lib.restore(flags.workdir)
  choose_routing(run.actions_of_slices, flags.action, flags.routing, classifier is not None)
  route = dict(action=flags.action, routing=flags.routing, classifier=classifier)
  print(f"lifting with {run.describe()} of {flags.workdir}"
        + (" and its trajectory model(s)" if run.trajectory is not None else ""), flush=True)
  viz = dict(fps=flags.fps, size=flags.viz_size, limit=flags.viz_limit, downsample=flags.viz_downsample)
  if flags.video:
    paths = list(infer_video(run, flags.video, out, keypoints_path=flags.keypoints, detector=detector,
                             min_confidence=flags.min_confidence, viz_format=viz_format, **route, **viz).values())
  else:
    viz["fps"] = flags.fps or DEFAULT_FPS
    paths = infer_file(run, flags.keypoints, out, render_gif=flags.render, **route, **viz)
  return out, paths


def _define_flags(values: Any = None) -> Any:
  """Defines the command-line flags on `values` (default: absl's global FLAGS) and returns it."""
  from absl import flags
  from ml_collections import config_flags
  values = flags.FLAGS if values is None else values
  config_flags.DEFINE_config_file("config", None, "Training config file (default: WORKDIR/config.json).",
                                  flag_values=values)
  kw = dict(flag_values=values)
  flags.DEFINE_string("workdir", None, "Training workdir.", required=True, **kw)
  flags.DEFINE_string("video", None, "Video file: detect the person, lift, write 3D poses and an MP4.", **kw)
  flags.DEFINE_string("keypoints", None, "data_2d_custom_NAME.npz file (with --video: its keypoints, "
                      "no detection).", **kw)
  flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/infer).", **kw)
  flags.DEFINE_bool("overwrite", False, "Replace output files that exist in --out (else refused).", **kw)
  flags.DEFINE_string("checkpoint", eval_lib.DEFAULT_CHECKPOINT,
                      "latest (the final model), a step number, or best (runs with a validation split).", **kw)
  flags.DEFINE_string("routing", None, "Action-based workdirs with an action classifier: predicted (each video "
                      "to the model of its predicted action; the default) or soft (per frame, all models weighted "
                      "by the classifier's probabilities).", **kw)
  flags.DEFINE_string("action", None, "Action-based workdirs: lift every video with this action's model instead "
                      "(the default without a classifier: the first model).", **kw)
  flags.DEFINE_bool("render", False, "--keypoints alone: also write OUT/<video>.gif.", **kw)
  flags.DEFINE_string("viz_format", "mp4", "--video: animation format, mp4 or gif.", **kw)
  flags.DEFINE_float("fps", None, "Frame rate of the animation (default: the video's, else 50).", **kw)
  flags.DEFINE_float("viz_size", 5.0, "Figure size multiplier.", **kw)
  flags.DEFINE_integer("viz_limit", -1, "Render only the first N frames (< 1: all).", **kw)
  flags.DEFINE_integer("viz_downsample", 1, "Average every N frames when rendering.", **kw)
  flags.DEFINE_float("min_confidence", 0.5, "--video: detector confidence threshold.", **kw)
  flags.DEFINE_string("detector_python", None, "--video: the detector environment's python "
                      f"(default: ${detect.DETECTOR_ENV_VAR} or .venv-detect/bin/python).", **kw)
  return values


def run_cli() -> None:
  """`python -m posejax.infer`: the flags, then main (every problem one line, exit status 2)."""
  from absl import app
  flags = _define_flags()
  app.run(lambda argv: main(argv, flags), flags_parser=config_flags_parser.absl_flags_parser)


if __name__ == "__main__":
  run_cli()
