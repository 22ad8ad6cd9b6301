"""JAX's persistent compilation cache: a rerun or resume of the same step skips its compilation.

On by default in `~/.cache/posejax/xla` (or `$XDG_CACHE_HOME/posejax/xla`);
`config.compilation_cache_dir` or the environment variable POSEJAX_COMPILATION_CACHE_DIR
chooses another folder, and an empty string turns the cache off.
"""

from __future__ import annotations

import os

import jax

ENV = "POSEJAX_COMPILATION_CACHE_DIR"


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "posejax", "xla")


def cache_dir(configured: str | None = None) -> str:
  """The folder to use: the environment variable, else `configured`, else the default ('' = off)."""
  if ENV in os.environ:
    return os.environ[ENV]
  return default_dir() if configured is None else os.path.expanduser(str(configured))


def enable_compilation_cache(configured: str | None = None) -> str:
  """Points JAX's persistent cache at `cache_dir(configured)`; returns the folder ('' when off)."""
  path = cache_dir(configured)
  if not path:
    return ""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return ""  # an unwritable cache costs compile time only, never the run
  jax.config.update("jax_compilation_cache_dir", path)
  # Cache every compilation that takes a second or more (JAX's default threshold).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  return path
