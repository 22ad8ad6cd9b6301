"""The typed pieces of a test's run config, as the library functions take them."""

from posejax.config import run_config


def pieces(config, **overrides) -> run_config.RunConfig:
  """`run_config.from_config(config)`, with dotted `overrides` (e.g. mode="common")."""
  typed = run_config.from_config(config)
  return run_config.replace(typed, **overrides) if overrides else typed


def data_args(config) -> tuple[run_config.DataConfig, run_config.Selection]:
  """(data, selection): the pieces the data loaders take."""
  typed = pieces(config)
  return typed.data, typed.selection
