"""The run config's vocabulary: its mode and budget names, and the one dotted lookup."""

from __future__ import annotations

from typing import Any

MODES = ("common", "action_based")  # config.mode
BUDGETS = ("fixed", "frame_matched", "equal_samples")  # config.train.budget


def lookup(config: Any, dotted: str, default: Any = None) -> Any:
  """`config.a.b` or `default` when any part is absent (older configs lack newer fields)."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      return default
  return node
