"""Atomic file writing and npz reading shared by every tool that touches disk."""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from posejax.errors import PosejaxError


def _atomic_target(path: str) -> tuple[int, str]:
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  # mkstemp creates 0600 files; give the result the permissions a plain open() would.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  return fd, tmp


def atomic_savez(path: str, **arrays: Any) -> None:
  """`np.savez_compressed` to `path` via a temporary file and a rename.

  Readers never see a half-written file: either the old file or the complete
  new one exists. Dicts are stored as 0-d object arrays, as the reference does.
  """
  fd, tmp = _atomic_target(path)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (temporary file, then rename)."""
  fd, tmp = _atomic_target(path)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically (temporary file, then rename)."""
  fd, tmp = _atomic_target(path)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_npz_dict(path: str, keys: tuple[str, ...]) -> dict[str, Any]:
  """Loads the given keys of an npz file; 0-d object arrays are unwrapped.

  Raises:
    PosejaxError: the file is missing, is not an npz archive, or lacks a key.
  """
  if not os.path.isfile(path):
    raise PosejaxError(f"{path}: file not found")
  try:
    archive = np.load(path, allow_pickle=True)
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise PosejaxError(f"{path}: not a readable .npz file ({e})") from None
  with archive:
    missing = [k for k in keys if k not in archive.files]
    if missing:
      raise PosejaxError(
          f"{path}: missing key(s) {', '.join(missing)} (found: {', '.join(archive.files) or 'none'})")
    out = {}
    for k in keys:
      value = archive[k]
      out[k] = value.item() if value.dtype == object and value.ndim == 0 else value
    return out
