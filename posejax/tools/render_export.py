"""One sequence rendered, and predictions exported, from a workdir (`eval.py --render`, `--export`).

`render_workdir` draws (and/or exports) one subject/sequence/camera of the configured data:
with 3D ground truth the prediction is placed on the true trajectory (reference V13); without it,
when the checkpoint holds trajectory models, their predicted trajectory moves the pose, as
the reference does. `export_workdir` writes every test sequence's prediction in camera and
world coordinates, and each one's predicted root when there are trajectory models.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_save_npy, atomic_savez
from posejax.data.dataset import PoseDataset, SequenceRecord
from posejax.data.h36m_cameras import h36m_cameras
from posejax.evaluation import (
    protocols as evaluation, resident as device_eval, runs as eval_lib,
    trajectory as trajectory_lib)
from posejax.models.family import PoseModel
from posejax.pose.actions import action_of
from posejax.pose.camera import image_coordinates
from posejax.tools import render


def find_record(dataset: PoseDataset, subject: str, name: str, camera: int) -> SequenceRecord:
  """The record of a subject, sequence name and camera; PosejaxError listing valid choices."""
  subjects = dataset.subjects
  if subject not in subjects:
    raise PosejaxError(f"--viz_subject {subject!r}: unknown (choices: {', '.join(subjects)})")
  of_subject = [r for r in dataset.sequences if r.subject == subject]
  names = list(dict.fromkeys(r.name for r in of_subject))
  if name not in names:
    raise PosejaxError(f"--viz_action {name!r}: no such sequence of {subject} (choices: {', '.join(names)})")
  cameras = [r.camera for r in of_subject if r.name == name]
  if camera not in cameras:
    raise PosejaxError(f"--viz_camera {camera}: not available for {subject} {name} "
                       f"(choices: {', '.join(map(str, cameras))})")
  return next(r for r in of_subject if r.name == name and r.camera == camera)


def _slice_variables(run: eval_lib.RestoredRun, action: str, stacked: Any = None) -> Any:
  """Unstacked variables of the model that serves `action` (oracle routing in AB mode), taken
  from `stacked` (default: the pose models)."""
  slices = list(run.actions_of_slices)
  index = 0 if slices == [evaluation.COMMON_SLICE] else (slices.index(action) if action in slices else -1)
  if index < 0:
    raise PosejaxError(f"no model for action {action!r} in this checkpoint (models: {', '.join(slices)})")
  return jax.tree_util.tree_map(lambda leaf: leaf[index], run.variables if stacked is None else stacked)


def predict_record(run: eval_lib.RestoredRun, model: PoseModel, dataset: PoseDataset,
                   rec: SequenceRecord) -> np.ndarray:
  """(T, 17, 3) camera-space root-relative prediction of one record (TTA as configured)."""
  tta = run.config.eval.tta
  return evaluation.predict(model, _slice_variables(run, rec.action), [rec.poses_2d], tta=tta,
                            kps_left=dataset.keypoints_left, kps_right=dataset.keypoints_right,
                            joints_left=dataset.joints_left, joints_right=dataset.joints_right,
                            **run.config.eval.chunking)[0]


def predict_root(run: eval_lib.RestoredRun, dataset: PoseDataset, rec: SequenceRecord) -> np.ndarray | None:
  """(T, 1, 3) camera-space root of one record from its action's trajectory model (None without)."""
  if run.trajectory is None:
    return None
  variables = _slice_variables(run, rec.action, run.trajectory.variables)
  return evaluation.predict(run.trajectory.model, variables, [rec.poses_2d],
                            tta=run.config.eval.tta,
                            kps_left=dataset.keypoints_left, kps_right=dataset.keypoints_right,
                            joints_left=(), joints_right=(), **run.config.eval.chunking)[0]


def world_poses(rec: SequenceRecord, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
  """World-coordinate prediction and ground truth of a record, and the camera azimuth."""
  cameras = h36m_cameras().get(rec.subject)
  cam = cameras[rec.camera] if cameras is not None and rec.camera < len(cameras) else None
  if cam is not None and cam.orientation is not None and rec.poses_3d is not None:
    pred, gt = render.to_world(prediction, rec.poses_3d, cam.orientation, cam.translation)
    return pred, gt, cam.azimuth
  pred, _ = render.to_world(prediction, None, render.DUMMY_ORIENTATION, None)
  return pred, None, cam.azimuth if cam is not None else render.DUMMY_AZIMUTH


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  subject: str
  action: str           # sequence name, e.g. 'Walking 1'
  camera: int = 0
  output: str | None = None
  size: float = 5.0
  downsample: int = 1
  limit: int = -1
  azimuth: float | None = None  # None: the camera's
  video: str | None = None
  video_skip: int = 0
  export: str | None = None     # .npz of this one sequence (and the reference's .npy beside it)
  bitrate: int = 3000           # MP4 bitrate (kbit/s)
  ground_truth: bool = True     # draw the ground-truth panel when the data have one


def render_workdir(workdir: str, options: RenderOptions, which: str | int = eval_lib.DEFAULT_CHECKPOINT,
                   config: Any = None) -> None:
  """Renders (and/or exports) one subject/sequence/camera of the configured data."""
  if options.output:
    render.check_output(options.output)
  try:
    action = action_of(options.action)
  except PosejaxError as e:
    raise PosejaxError(f"--viz_action: {e}") from None
  run = eval_lib.restore_run(workdir, which, config)
  print(f"rendering with {run.describe()}", flush=True)
  dataset = eval_lib.load_test_dataset(run.config, subjects=[options.subject], actions=[action])
  rec = find_record(dataset, options.subject, options.action, options.camera)
  model = eval_lib.build_model(run, dataset)
  prediction = predict_record(run, model, dataset, rec)
  root = predict_root(run, dataset, rec)
  if root is not None and rec.poses_3d is None:
    # As the reference: without ground truth the predicted trajectory moves the pose (reference V13
    # step 2); with it, the renderer places the pose on the true trajectory.
    prediction = prediction + root
  world, gt, azimuth = world_poses(rec, prediction)
  if options.export:
    export_predictions(options.export, [(rec, prediction, world)], None if root is None else [root])
    # The reference's --viz-export: this sequence's (T, 17, 3) camera-space prediction.
    npy = os.path.splitext(options.export)[0] + ".npy"
    atomic_save_npy(npy, prediction.astype(np.float32))
    print(f"exported {npy} (the reference's format: (T, joints, 3) camera space)")
  if options.output:
    show_gt = gt is not None and options.ground_truth
    panels = {"Reconstruction": world} | ({"Ground truth": gt} if show_gt else {})
    keypoints = image_coordinates(rec.poses_2d[..., :2], rec.res_w, rec.res_h)
    background = None
    if options.video:
      # As the reference: video frames [skip, limit) against keypoints and poses from `skip` on.
      frames_needed = options.limit * max(options.downsample, 1) if options.limit >= 1 else -1
      background = render.read_video(options.video, rec.res_w, rec.res_h, options.video_skip,
                                     frames_needed + options.video_skip if frames_needed >= 1 else -1)
      keypoints = keypoints[options.video_skip:]
      panels = {k: v[options.video_skip:] for k, v in panels.items()}
    frames = render.render_animation(
        keypoints, panels, dataset.skeleton,
        output=options.output, fps=dataset.fps or 50.0,
        azimuth=azimuth if options.azimuth is None else options.azimuth, viewport=(rec.res_w, rec.res_h),
        keypoints_right=dataset.keypoints_right, layout_name=dataset.layout_name, limit=options.limit,
        downsample=options.downsample, size=options.size, background=background, bitrate=options.bitrate,
        verbose=True)
    print(f"wrote {options.output} ({frames} frames)")


def export_predictions(path: str, entries: Sequence[tuple[SequenceRecord, np.ndarray, np.ndarray]],
                       roots: Sequence[np.ndarray] | None = None) -> None:
  """Saves predictions as `positions_3d[subject][name] = [camera-space (T, 17, 3) per camera]`
  and the same in world coordinates under `positions_3d_world` (metres, 0-d object dicts);
  with `roots` (the trajectory models' (T, 1, 3) camera-space roots, one per entry) also
  `trajectory[subject][name]`."""
  if not path.endswith(".npz"):
    raise PosejaxError(f"--export {path}: the file name must end in .npz")
  arrays: dict[str, dict[str, dict[str, dict[int, np.ndarray]]]] = {"positions_3d": {}, "positions_3d_world": {}}
  if roots is not None:
    arrays["trajectory"] = {}
  for i, (rec, pred, world) in enumerate(entries):
    values = {"positions_3d": pred, "positions_3d_world": world}
    if roots is not None:
      values["trajectory"] = roots[i]
    for key, value in values.items():
      arrays[key].setdefault(rec.subject, {}).setdefault(rec.name, {})[rec.camera] = value.astype(np.float32)
  as_lists = lambda d: {s: {n: [c[k] for k in sorted(c)] for n, c in seqs.items()} for s, seqs in d.items()}
  cameras = {s: {n: sorted(c) for n, c in seqs.items()} for s, seqs in arrays["positions_3d"].items()}
  atomic_savez(path, **{k: np.array(as_lists(v), dtype=object) for k, v in arrays.items()},
               cameras=np.array(cameras, dtype=object))
  print(f"exported {len(entries)} sequence(s) to {path}")


def export_workdir(workdir: str, path: str, which: str | int = eval_lib.DEFAULT_CHECKPOINT,
                   config: Any = None) -> None:
  """Exports the predictions of every test sequence (camera and world coordinates)."""
  run = eval_lib.restore_run(workdir, which, config)
  print(f"exporting the predictions of {run.describe()}", flush=True)
  dataset = eval_lib.load_test_dataset(run.config)
  model = eval_lib.build_model(run, dataset)
  tta = run.config.eval.tta
  resident = evaluation.resident_test_set(dataset, run.actions_of_slices, model, with_targets=False,
                                          **run.config.eval.chunking)
  preds = evaluation.split_records(device_eval.predict(model, run.variables, resident, tta=tta), resident)
  roots = None
  if run.trajectory is not None:  # each sequence's root from its action's trajectory model
    roots = evaluation.split_records(trajectory_lib.roots(run.trajectory, resident, tta=tta), resident)
  export_predictions(path, [(rec, p, world_poses(rec, p)[0]) for rec, p in zip(dataset.sequences, preds)], roots)

