"""A config file's `get_config()`, loaded as `--config FILE[:ARG]` loads it."""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

from posejax.common.errors import PosejaxError


def load_config_file(flag_value: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, as `--config FILE[:ARG]` loads it.

  Raises:
    PosejaxError: the file is missing, does not run, or has no get_config().
  """
  path, args = flag_value, ()
  if not os.path.isfile(flag_value) and ":" in flag_value:  # ml_collections' FILE:ARG form
    path, arg = flag_value.split(":", 1)
    args = (arg,)
  if not os.path.isfile(path):
    raise PosejaxError(f"--config {path}: file not found")
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if repo_root not in sys.path:
    sys.path.insert(0, repo_root)  # variants import `configs.default`
  spec = importlib.util.spec_from_file_location("_posejax_config_file", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if get_config is None:
      raise PosejaxError(f"--config {path}: defines no get_config() function")
    return get_config(*args)
  except PosejaxError:
    raise
  except Exception as e:  # the file is user code: any error is a problem of that file
    first = next((line for line in str(e).splitlines() if line.strip()), "")
    raise PosejaxError(f"--config {path}: {type(e).__name__}: {first}") from None
