"""Atomic file writing and npz reading shared by every tool that touches disk."""

from __future__ import annotations

import os
import tempfile
import zipfile
from typing import Any, Callable

import numpy as np

from posejax.errors import PosejaxError
from posejax.safe_npz import load_member


def _atomic_target(path: str) -> tuple[int, str]:
  directory = os.path.dirname(os.path.abspath(path)) or "."
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  except OSError as e:
    raise PosejaxError(f"{path}: cannot write ({e.strerror})") from None
  # mkstemp creates 0600 files; give the result the permissions a plain open() would.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)
  return fd, tmp


def _write_atomically(path: str, mode: str, write: Callable[[Any], None]) -> None:
  """Calls write(file) on a temporary file next to `path`, then renames it to `path`.

  Readers never see a half-written file: either the old file or the complete new one
  exists, and a failure (a full disk) removes the temporary file.

  Raises:
    PosejaxError: the file cannot be written (names `path` and the system's reason).
  """
  fd, tmp = _atomic_target(path)
  try:
    with os.fdopen(fd, mode) as f:
      write(f)
    os.replace(tmp, path)
  except OSError as e:
    raise PosejaxError(f"{path}: cannot write ({e.strerror or e})") from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def atomic_savez(path: str, **arrays: Any) -> None:
  """`np.savez_compressed` to `path` via a temporary file and a rename.

  Dicts are stored as 0-d object arrays, as the reference does.
  """
  _write_atomically(path, "wb", lambda f: np.savez_compressed(f, **arrays))


def atomic_save_npy(path: str, array: np.ndarray) -> None:
  """`np.save` to `path` via a temporary file and a rename."""
  _write_atomically(path, "wb", lambda f: np.save(f, array))


def atomic_save_figure(fig: Any, path: str, dpi: int = 100) -> None:
  """A matplotlib figure to `path` (PNG) via a temporary file and a rename; closes the figure."""
  import matplotlib.pyplot as plt
  try:
    _write_atomically(path, "wb", lambda f: fig.savefig(f, format="png", dpi=dpi))
  finally:
    plt.close(fig)


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (temporary file, then rename)."""
  _write_atomically(path, "w", lambda f: f.write(text))


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically (temporary file, then rename)."""
  _write_atomically(path, "wb", lambda f: f.write(data))


def load_npz_dict(path: str, keys: tuple[str, ...]) -> dict[str, Any]:
  """Loads the given keys of an npz file; 0-d object arrays are unwrapped.

  Object members are unpickled with restrictions (`posejax.safe_npz`), so a shared
  data file cannot run code.

  Raises:
    PosejaxError: the file is missing, is not an npz archive, lacks a key, or
      pickles anything but plain data.
  """
  if not os.path.isfile(path):
    raise PosejaxError(f"{path}: file not found")
  try:
    archive = np.load(path)
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise PosejaxError(f"{path}: not a readable .npz file ({e})") from None
  with archive:
    missing = [k for k in keys if k not in archive.files]
    if missing:
      raise PosejaxError(
          f"{path}: missing key(s) {', '.join(missing)} (found: {', '.join(archive.files) or 'none'})")
    out = {}
    for k in keys:
      value = load_member(archive, k, path)
      out[k] = value.item() if value.dtype == object and value.ndim == 0 else value
    return out
