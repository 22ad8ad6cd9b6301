"""Atomic file writing and npz reading shared by every tool that touches disk."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from typing import Any, Callable, Collection, Sequence

import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.safe_npz import load_member


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


def _new_folder_next_to(path: str, tag: str) -> str:
  parent = os.path.dirname(os.path.abspath(path)) or "."
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(os.path.abspath(path)) + ".", suffix=tag)
  except OSError as e:
    raise PosejaxError(f"{path}: cannot write ({e.strerror})") from None
  umask = os.umask(0)  # mkdtemp creates 0700 folders; give it a plain makedirs()'s permissions
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)
  return tmp


def _swap_in(tmp: str, path: str) -> None:
  """`tmp` becomes `path`; the previous `path` (if any) is removed once replaced."""
  old = None
  if os.path.exists(path):
    old = _new_folder_next_to(path, ".old")
    os.replace(path, os.path.join(old, "x"))
    try:
      os.replace(tmp, path)
    except OSError:
      os.replace(os.path.join(old, "x"), path)  # put the previous version back
      raise
  else:
    os.replace(tmp, path)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def _merge_in(tmp: str, path: str, owned: Collection[str]) -> None:
  """Moves the files of `tmp` into `path` one by one and removes the `owned` names not among them."""
  written = set(os.listdir(tmp))
  for name in sorted(written):
    os.replace(os.path.join(tmp, name), os.path.join(path, name))
  for name in set(owned) - written:
    if os.path.isfile(os.path.join(path, name)):
      os.remove(os.path.join(path, name))


def replace_folder(path: str, write: Callable[[str], Sequence[str]], owned: Collection[str]) -> list[str]:
  """Writes a folder of results as a whole: `write(tmp)` fills a temporary folder next to `path`
  and returns the paths it wrote; the folder then replaces `path`, so no file of an earlier
  version of it remains.

  A `path` holding anything but `owned` names (e.g. an --out folder the user shares with other
  files) is not replaced: the new files are renamed into it and the `owned` files that this
  version did not write are removed. Returns the paths written, in `write`'s order.

  Raises:
    PosejaxError: `path` is a file, or the folder cannot be written (names `path` and the
      system's reason).
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise PosejaxError(f"{path}: not a folder")
  tmp = _new_folder_next_to(path, ".tmp")
  try:
    names = [os.path.relpath(p, tmp) for p in write(tmp)]
    if os.path.isdir(path) and not set(os.listdir(path)) <= set(owned):
      _merge_in(tmp, path, owned)
    else:
      _swap_in(tmp, path)
  except OSError as e:
    raise PosejaxError(f"{path}: cannot write ({e.strerror or e})") from None
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return [os.path.join(path, name) for name in names]


def load_npz_dict(path: str, keys: tuple[str, ...]) -> dict[str, Any]:
  """Loads the given keys of an npz file; 0-d object arrays are unwrapped.

  Object members are unpickled with restrictions (`posejax.common.safe_npz`), so a shared
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
