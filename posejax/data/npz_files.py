"""Where a dataset's published npz files lie, with one-line errors, and their fingerprint.

VideoPose3D's datasets are one 3D file and one 2D file per source, `PATTERN.format(source)`
(Human3.6M: `data_3d_h36m.npz`, `data_2d_h36m_<source>.npz`; HumanEva-I alike).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os

from posejax.common.errors import PosejaxError


@dataclasses.dataclass(frozen=True)
class FileLayout:
  """A dataset's file names and what to tell a user who lacks them."""
  file_3d: str                       # e.g. 'data_3d_h36m.npz'
  pattern_2d: str                    # e.g. 'data_2d_h36m_{}.npz'
  published_sources: tuple[str, ...]
  how_to_get: str

  def available_sources(self, data_dir: str) -> list[str]:
    """The 2D sources `X` of the 2D files in `data_dir`, sorted."""
    prefix, suffix = self.pattern_2d.split("{}")
    paths = glob.glob(os.path.join(glob.escape(data_dir), prefix + "*" + suffix))
    return sorted(os.path.basename(p)[len(prefix):-len(suffix)] for p in paths)

  def paths(self, data_dir: str, keypoints: str) -> tuple[str, str]:
    """The 3D and 2D file paths; raises with instructions when either is missing."""
    path_3d = os.path.join(data_dir, self.file_3d)
    if not os.path.isdir(data_dir):
      raise PosejaxError(f"{data_dir}: data directory not found; {self.how_to_get}")
    if not os.path.isfile(path_3d):
      raise PosejaxError(f"{path_3d}: file not found; {self.how_to_get}")
    path_2d = os.path.join(data_dir, self.pattern_2d.format(keypoints))
    if not os.path.isfile(path_2d):
      present = ", ".join(self.available_sources(data_dir)) or "none"
      raise PosejaxError(
          f"{path_2d}: file not found: unknown 2D source {keypoints!r} (sources present in "
          f"{data_dir}: {present}; published sources: {', '.join(self.published_sources)})")
    return path_3d, path_2d

  def fingerprint(self, data_dir: str, keypoints: str) -> str:
    """A 16-hex-digit SHA-256 digest of the 3D file followed by the 2D file of `keypoints`."""
    digest = hashlib.sha256()
    for path in self.paths(data_dir, keypoints):
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
    return digest.hexdigest()[:16]
