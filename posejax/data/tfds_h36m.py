"""Human3.6M as a TFDS dataset built from the published npz files in `manual_dir`.

One builder config per 2D source (`gt`, `synthetic`, `cpn_ft_h36m_dbb`, ...; any other
`data_2d_h36m_<name>.npz` works as a custom config), one example per (subject, sequence,
camera), preprocessed exactly as `posejax.data.h36m.load_h36m` does. Splits are per (subject,
action), e.g. `S1_Walking`, so reading a selection (`S1_Walking+S5_Walking`) opens only the
files of those splits. `load_records` turns the examples back into a `PoseDataset` equal to the
direct loader's, so the input pipeline runs the same from either source. The dataset records
the fingerprint of the npz files it was built from (`h36m.dataset_fingerprint`), so a run reading
it has the fingerprint of a run reading those files.

  python -m posejax.data.tfds_h36m --data-dir data/ --out ~/tensorflow_datasets --keypoints gt

  records = load_records('~/tensorflow_datasets', 'cpn_ft_h36m_dbb', subjects=['S1', 'S5'],
                         actions=['Walking'], manual_dir='data/')
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Sequence

import numpy as np
from etils import epath

from posejax.common.tf_compat import tf  # noqa: F401  (TensorFlow without the GPU, before TFDS loads it)

import tensorflow_datasets as tfds  # noqa: E402

from posejax.common.errors import PosejaxError  # noqa: E402
from posejax.common.io_utils import load_npz_dict  # noqa: E402
from posejax.data import h36m
from posejax.data.dataset import PoseDataset, SequenceRecord  # noqa: E402
from posejax.pose.actions import resolve_actions  # noqa: E402
from posejax.pose.skeleton import Skeleton  # noqa: E402

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

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "One example per (subject, sequence, camera); splits per (subject, action).",
                   "1.1.0": "Metadata records the npz files' fingerprint."}
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
    # The loader's numerics stay the single source.

    manual_dir = os.fspath(dl_manager.manual_dir)
    dataset = h36m.load_h36m(manual_dir, self.builder_config.name)
    if dataset.num_keypoints != self.builder_config.num_keypoints:
      raise PosejaxError(f"{dl_manager.manual_dir}: {self.builder_config.name} has "
                         f"{dataset.num_keypoints} keypoints, the config expects "
                         f"{self.builder_config.num_keypoints}")
    self.info.metadata.update(
        keypoints_left=list(dataset.keypoints_left), keypoints_right=list(dataset.keypoints_right),
        parents=list(dataset.skeleton.parents), joints_left=list(dataset.joints_left),
        joints_right=list(dataset.joints_right), fps=dataset.fps,
        layout_name=dataset.layout_name, source=dataset.source, subjects=list(dataset.subjects),
        fingerprint=h36m.dataset_fingerprint(manual_dir, self.builder_config.name))
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


def not_built_error(data_dir: str, keypoints: str) -> PosejaxError:
  """The one-line error for a TFDS dataset that is not there, with the command that builds it."""
  return PosejaxError(
      f"{data_dir}: TFDS dataset {H36mPosejax.name}/{keypoints} (version {H36mPosejax.VERSION}) not "
      f"built; build it with `python -m posejax.data.tfds_h36m --data-dir NPZ_DIR --out {data_dir} "
      f"--keypoints {keypoints}` (NPZ_DIR holding data_3d_h36m.npz and data_2d_h36m_{keypoints}.npz)")


def builder_config(keypoints: str, manual_dir: str | None = None,
                   data_dir: str | None = None) -> str | H36mConfig:
  """The registered config name, or a custom config sized from the 2D file's metadata (or,
  without `manual_dir`, from the dataset already built in `data_dir`)."""
  if keypoints in KNOWN_SOURCES:
    return keypoints
  if manual_dir is None:
    if data_dir is None:
      raise PosejaxError(f"keypoints {keypoints!r}: not a known source ({', '.join(KNOWN_SOURCES)}); "
                         "a custom source needs manual_dir holding its data_2d_h36m_<name>.npz")
    built = epath.Path(data_dir) / H36mPosejax.name / keypoints / str(H36mPosejax.VERSION)
    if not (built / "dataset_info.json").exists():
      raise not_built_error(data_dir, keypoints)
    num_keypoints = tfds.builder_from_directory(os.fspath(built)).info.features["poses_2d"].shape[1]
    return H36mConfig(name=keypoints, num_keypoints=int(num_keypoints), description=f"2D source {keypoints}")

  path = os.path.join(manual_dir, h36m.FILE_2D_PATTERN.format(keypoints))
  metadata = load_npz_dict(path, ("metadata",))["metadata"]
  try:
    num_keypoints = int(metadata["num_joints"])
  except (TypeError, KeyError, ValueError):
    raise PosejaxError(f"{path}: metadata has no integer num_joints") from None
  return H36mConfig(name=keypoints, num_keypoints=num_keypoints, description=f"2D source {keypoints}")


def dataset_fingerprint(builder: H36mPosejax) -> str:
  """The fingerprint of the npz files the dataset was built from (`h36m.dataset_fingerprint`)."""
  return str(builder.info.metadata["fingerprint"])


def prepared_builder(data_dir: str, keypoints: str = "gt", manual_dir: str | None = None) -> H36mPosejax:
  """The builder of a built dataset in `data_dir` (a local or bucket path).

  With `manual_dir` (the npz files), a missing dataset is built first, and a built one must
  have been built from those very files.
  """
  data_dir = os.path.expanduser(data_dir)
  manual_dir = None if manual_dir is None else os.path.expanduser(manual_dir)
  builder = H36mPosejax(data_dir=data_dir, config=builder_config(keypoints, manual_dir, data_dir))
  if not builder.is_prepared():
    if manual_dir is None:
      raise not_built_error(data_dir, keypoints)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  elif manual_dir is not None:

    built, files = dataset_fingerprint(builder), h36m.dataset_fingerprint(manual_dir, keypoints)
    if built != files:
      raise PosejaxError(f"{builder.data_dir}: built from other files than those in {manual_dir} "
                         f"(fingerprint {built}, files {files}); build into another data dir")
  return builder


def _selected_splits(builder: H36mPosejax, subjects: Sequence[str] | str | None,
                     actions: Sequence[str] | str | None,
                     require_actions: bool) -> tuple[list[str], list[str]]:
  """(subjects in order, existing split names); unknown subjects raise."""
  known = list(builder.info.metadata["subjects"])
  if isinstance(subjects, str):
    subjects = [s.strip() for s in subjects.split(",") if s.strip()]
  subjects = known if subjects is None else list(dict.fromkeys(subjects))
  unknown = [s for s in subjects if s not in known]
  if unknown:
    raise PosejaxError(f"{builder.data_dir}: subject(s) {', '.join(unknown)} not in the dataset "
                       f"(subjects: {', '.join(known)})")
  if require_actions:  # as `load_h36m` treats explicitly requested actions
    for subject in subjects:
      absent = [a for a in resolve_actions(actions) if split_name(subject, a) not in builder.info.splits]
      if absent:
        raise PosejaxError(f"{builder.data_dir}: requested action(s) {', '.join(absent)} have no "
                           f"sequences for subject {subject}")
  names = load_split_names(subjects, actions).split("+")
  # A subject may lack an action altogether (S11 has no Directions in the published files).
  present = [n for n in names if n in builder.info.splits]
  if not present:
    raise PosejaxError(f"{builder.data_dir}: no sequences for subjects {', '.join(subjects)} "
                       f"and actions {', '.join(resolve_actions(actions))}")
  return subjects, present


def read_records(builder: H36mPosejax, subjects: Sequence[str] | str | None = None,
                 actions: Sequence[str] | str | None = None, *,
                 require_actions: bool = False) -> PoseDataset:
  """The `PoseDataset` of the selected (subject, action) splits of a built dataset.

  Only those splits' files are read. Pairs without sequences are skipped, or raise when
  `require_actions` (as `load_h36m` does for explicitly requested actions). Records come in the
  direct loader's order: subjects as given, then the 2D file's sequence order, then camera.
  """
  subjects, splits = _selected_splits(builder, subjects, actions, require_actions)
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


def load_records(data_dir: str, keypoints: str = "gt", subjects: Sequence[str] | str | None = None,
                 actions: Sequence[str] | str | None = None,
                 manual_dir: str | None = None) -> PoseDataset:
  """A `PoseDataset` read from the TFDS dataset (built first from `manual_dir` if needed).

  Only labeled subjects (those of the 3D file) are built; see `read_records` for the selection.
  """
  return read_records(prepared_builder(data_dir, keypoints, manual_dir), subjects, actions)


def main(argv: Sequence[str] | None = None) -> int:

  parser = argparse.ArgumentParser(
      prog="python -m posejax.data.tfds_h36m",
      description="Builds the TFDS dataset read by --config.data.source=tfds from the npz files.")
  parser.add_argument("--data-dir", required=True,
                      help="folder holding data_3d_h36m.npz and data_2d_h36m_<source>.npz")
  parser.add_argument("--out", required=True,
                      help="TFDS data dir to build into (local or gs://...), the run's --config.data.dir")
  parser.add_argument("--keypoints", default="",
                      help="comma-separated 2D sources (default: every data_2d_h36m_<source>.npz there)")
  args = parser.parse_args(argv)
  try:
    sources = [k.strip() for k in args.keypoints.split(",") if k.strip()] or h36m.available_sources(args.data_dir)
    if not sources:
      raise PosejaxError(f"--data-dir {args.data_dir}: no data_2d_h36m_<source>.npz files")
    for source in sources:
      builder = prepared_builder(args.out, source, manual_dir=args.data_dir)
      examples = sum(split.num_examples for split in builder.info.splits.values())
      print(f"{source}: {builder.data_dir} ({examples} examples in {len(builder.info.splits)} "
            f"splits, fingerprint {dataset_fingerprint(builder)})")
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
