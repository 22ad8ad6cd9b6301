"""Human3.6M as a TFDS dataset built from the published npz files in `manual_dir`.

One builder config per 2D source (`gt`, `synthetic`, `cpn_ft_h36m_dbb`, ...; any other
`data_2d_h36m_<name>.npz` works as a custom config), one example per (subject, sequence,
camera), preprocessed exactly as `posejax.data.h36m.load_h36m` does. Splits are per (subject,
action), e.g. `S1_Walking`, so reading a selection (`S1_Walking+S5_Walking`) opens only the
files of those splits. `load_records` turns the examples back into a `PoseDataset` equal to the
direct loader's, so the input pipeline runs the same from either source.

  records = load_records('~/tensorflow_datasets', 'cpn_ft_h36m_dbb', subjects=['S1', 'S5'],
                         actions=['Walking'], manual_dir='data/')
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
from etils import epath

from posejax.tf_compat import tf  # noqa: F401  (TensorFlow without the GPU, before TFDS loads it)

import tensorflow_datasets as tfds  # noqa: E402

from posejax.data.actions import resolve_actions  # noqa: E402
from posejax.data.dataset import PoseDataset, SequenceRecord  # noqa: E402
from posejax.errors import PosejaxError  # noqa: E402
from posejax.io_utils import load_npz_dict  # noqa: E402
from posejax.skeleton import Skeleton  # noqa: E402

# Published 2D sources (and the synthetic generator's) with their keypoint counts.
KNOWN_SOURCES = {"gt": 17, "synthetic": 17, "cpn_ft_h36m_dbb": 17, "detectron_ft_h36m": 17,
                 "detectron_pt_h36m": 17, "detectron_pt_coco": 17, "sh_pt_mpii": 16,
                 "sh_ft_h36m": 16}
NUM_JOINTS_3D = 17


@dataclasses.dataclass(eq=False)
class H36mConfig(tfds.core.BuilderConfig):
  """A 2D source: `name` is the `<name>` of `data_2d_h36m_<name>.npz`."""

  num_keypoints: int = 17


class H36mPosejax(tfds.core.GeneratorBasedBuilder):
  """Human3.6M sequences with 2D keypoints (normalized) and camera-space 3D poses."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "One example per (subject, sequence, camera); splits per (subject, action)."}
  BUILDER_CONFIGS = [H36mConfig(name=name, num_keypoints=k, description=f"2D source {name}")
                     for name, k in KNOWN_SOURCES.items()]
  # TFDS derives this path through `importlib_resources`, a backport it only installs for
  # Python < 3.9 but imports unconditionally; the file is where the builder lives anyway.
  code_path = epath.Path(__file__)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put data_3d_h36m.npz and data_2d_h36m_<config name>.npz in the manual directory "
      "(prepared with `python -m posejax.data.prepare_h36m`, or generated with "
      "`python -m posejax.data.synthetic`).")

  def _info(self) -> tfds.core.DatasetInfo:
    tensor = tfds.features.Tensor
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            "subject": tfds.features.Text(),
            "sequence": tfds.features.Text(),
            "action": tfds.features.Text(),
            "camera": np.int32,
            # Position in the direct loader's output: restores the reference record order.
            "record_index": np.int32,
            "poses_2d": tensor(shape=(None, self.builder_config.num_keypoints, 2), dtype=np.float32),
            "poses_3d": tensor(shape=(None, NUM_JOINTS_3D, 3), dtype=np.float32),
            "intrinsic": tensor(shape=(9,), dtype=np.float32),
            "num_frames": np.int32,
            "res_w": np.int32,
            "res_h": np.int32,
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    from posejax.data.h36m import load_h36m  # the loader's numerics stay the single source

    dataset = load_h36m(os.fspath(dl_manager.manual_dir), self.builder_config.name)
    if dataset.num_keypoints != self.builder_config.num_keypoints:
      raise PosejaxError(f"{dl_manager.manual_dir}: {self.builder_config.name} has "
                         f"{dataset.num_keypoints} keypoints, the config expects "
                         f"{self.builder_config.num_keypoints}")
    self.info.metadata.update(
        keypoints_left=list(dataset.keypoints_left), keypoints_right=list(dataset.keypoints_right),
        parents=list(dataset.skeleton.parents), joints_left=list(dataset.joints_left),
        joints_right=list(dataset.joints_right), fps=dataset.fps,
        layout_name=dataset.layout_name, source=dataset.source, subjects=list(dataset.subjects))
    splits: dict[str, list[tuple[int, SequenceRecord]]] = {}
    for index, record in enumerate(dataset.sequences):
      splits.setdefault(split_name(record.subject, record.action), []).append((index, record))
    return {name: self._generate_examples(items) for name, items in splits.items()}

  def _generate_examples(self, items: list[tuple[int, SequenceRecord]]):
    for index, r in items:
      yield f"{r.subject}/{r.name}/{r.camera}", {
          "subject": r.subject, "sequence": r.name, "action": r.action, "camera": r.camera,
          "record_index": index, "poses_2d": r.poses_2d, "poses_3d": r.poses_3d,
          "intrinsic": r.intrinsic, "num_frames": r.num_frames, "res_w": r.res_w,
          "res_h": r.res_h}


def split_name(subject: str, action: str) -> str:
  """'S1', 'Walking' -> 'S1_Walking'."""
  return f"{subject}_{action}"


def load_split_names(subjects: Sequence[str] | str, actions: Sequence[str] | str | None) -> str:
  """The TFDS split expression of a selection: subjects x actions, 'S1_Walking+S5_Walking'."""
  if isinstance(subjects, str):
    subjects = [s.strip() for s in subjects.split(",") if s.strip()]
  return "+".join(split_name(s, a) for s in subjects for a in resolve_actions(actions))


def builder_config(keypoints: str, manual_dir: str | None = None) -> str | H36mConfig:
  """The registered config name, or a custom config sized from the 2D file's metadata."""
  if keypoints in KNOWN_SOURCES:
    return keypoints
  if manual_dir is None:
    raise PosejaxError(f"keypoints {keypoints!r}: not a known source ({', '.join(KNOWN_SOURCES)}); "
                       "a custom source needs manual_dir holding its data_2d_h36m_<name>.npz")
  from posejax.data.h36m import FILE_2D_PATTERN

  path = os.path.join(manual_dir, FILE_2D_PATTERN.format(keypoints))
  metadata = load_npz_dict(path, ("metadata",))["metadata"]
  try:
    num_keypoints = int(metadata["num_joints"])
  except (TypeError, KeyError, ValueError):
    raise PosejaxError(f"{path}: metadata has no integer num_joints") from None
  return H36mConfig(name=keypoints, num_keypoints=num_keypoints, description=f"2D source {keypoints}")


def _selected_splits(builder: H36mPosejax, subjects: Sequence[str] | str | None,
                     actions: Sequence[str] | str | None) -> tuple[list[str], list[str]]:
  """(subjects in order, existing split names); unknown subjects raise."""
  known = list(builder.info.metadata["subjects"])
  if isinstance(subjects, str):
    subjects = [s.strip() for s in subjects.split(",") if s.strip()]
  subjects = known if subjects is None else list(dict.fromkeys(subjects))
  unknown = [s for s in subjects if s not in known]
  if unknown:
    raise PosejaxError(f"{builder.data_dir}: subject(s) {', '.join(unknown)} not in the dataset "
                       f"(subjects: {', '.join(known)})")
  names = load_split_names(subjects, actions).split("+")
  # A subject may lack an action altogether (S11 has no Directions in the published files).
  present = [n for n in names if n in builder.info.splits]
  if not present:
    raise PosejaxError(f"{builder.data_dir}: no sequences for subjects {', '.join(subjects)} "
                       f"and actions {', '.join(resolve_actions(actions))}")
  return subjects, present


def load_records(data_dir: str, keypoints: str = "gt", subjects: Sequence[str] | str | None = None,
                 actions: Sequence[str] | str | None = None,
                 manual_dir: str | None = None) -> PoseDataset:
  """A `PoseDataset` read from the TFDS dataset (built first from `manual_dir` if needed).

  Only the splits of the requested (subject, action) pairs are read; pairs without sequences
  (S11 has no Directions) are skipped, where `load_h36m` rejects an explicitly requested action
  that a subject lacks. Records come in the direct loader's order: subjects as given, then the
  2D file's sequence order, then camera. Only labeled subjects (those of the 3D file) are built.
  """
  builder = H36mPosejax(data_dir=os.path.expanduser(data_dir),
                        config=builder_config(keypoints, manual_dir))
  if not builder.is_prepared():
    if manual_dir is None:
      raise PosejaxError(f"{builder.data_dir}: TFDS dataset not built; pass manual_dir with the "
                         "npz files to build it")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir)))
  subjects, splits = _selected_splits(builder, subjects, actions)
  examples = tfds.as_numpy(builder.as_dataset(
      split="+".join(splits), shuffle_files=False,
      read_config=tfds.ReadConfig(try_autocache=False, skip_prefetch=True)))
  records = []
  for ex in examples:
    subject = ex["subject"].decode()
    records.append((subjects.index(subject), int(ex["record_index"]), SequenceRecord(
        subject=subject, name=ex["sequence"].decode(), action=ex["action"].decode(),
        camera=int(ex["camera"]), poses_2d=ex["poses_2d"], poses_3d=ex["poses_3d"],
        intrinsic=ex["intrinsic"], res_w=int(ex["res_w"]), res_h=int(ex["res_h"]))))
  records.sort(key=lambda item: item[:2])
  meta = builder.info.metadata
  skeleton = Skeleton(tuple(meta["parents"]), tuple(meta["joints_left"]), tuple(meta["joints_right"]))
  return PoseDataset(
      sequences=tuple(r for _, _, r in records), keypoints_left=tuple(meta["keypoints_left"]),
      keypoints_right=tuple(meta["keypoints_right"]), skeleton=skeleton,
      num_keypoints=builder.builder_config.num_keypoints, fps=meta["fps"],
      layout_name=meta["layout_name"], source=meta["source"])
