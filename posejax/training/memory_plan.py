"""Planning a compiled training call's memory against the device before it runs.

XLA's buffer assignment of a compiled call gives its bytes per device: arguments (the stacked
states, the resident tables), outputs not aliased to donated arguments, temporaries (the
activations and gradients of the slot models) and code. A run compares that with the device's
memory (what the device reports, or `config.train.device_memory_gib`) after compiling and before
its first step. When the call does not fit, fewer slots (models per global step) do: a model's
updates depend only on its own step count, so the run trains exactly the same models, in more
global steps. When not even one slot fits, the run stops with the figures, before any training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from posejax.common.errors import PosejaxError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Footprint:
  """Bytes per device of one compiled call (XLA's memory analysis)."""
  arguments: int
  outputs: int
  aliased: int  # outputs written in place of donated arguments
  temporaries: int
  code: int

  @property
  def total(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries + self.code

  def describe(self) -> str:
    return (f"{self.total / GIB:,.2f} GiB per device ({self.arguments / GIB:,.2f} arguments, "
            f"{self.temporaries / GIB:,.2f} temporaries)")


def footprint(compiled: Any) -> Footprint | None:
  """The footprint of a `jax.stages.Compiled`, or None where the backend gives no analysis."""
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, AttributeError, RuntimeError):
    return None
  if stats is None:
    return None
  return Footprint(arguments=int(stats.argument_size_in_bytes), outputs=int(stats.output_size_in_bytes),
                   aliased=int(stats.alias_size_in_bytes), temporaries=int(stats.temp_size_in_bytes),
                   code=int(stats.generated_code_size_in_bytes))


def device_limit(stated_gib: float, device: Any) -> int | None:
  """Bytes the call may use on `device`: `stated_gib` when > 0, else what the device reports
  (`memory_stats()['bytes_limit']`; CPUs report nothing: None, no limit)."""
  if stated_gib and float(stated_gib) > 0:
    return int(float(stated_gib) * GIB)
  stats = device.memory_stats() or {}
  limit = stats.get("bytes_limit")
  return int(limit) if limit else None


def bytes_in_use(device: Any) -> int:
  """Bytes the device holds now (0 where it does not say): the run's state and tables, and
  buffers the call does not take, such as the resident test set."""
  stats = device.memory_stats() or {}
  return int(stats.get("bytes_in_use", 0) or 0)


@dataclasses.dataclass(frozen=True)
class Plan:
  """The slots per action group chosen, the compiled call at that size, and its footprint."""
  slots: int
  compiled: Any
  footprint: Footprint | None
  limit: int | None
  requested: int  # slots per group the schedule asked for
  others: int = 0  # bytes held on the device beside the call's arguments (the resident test set)

  def describe(self, groups: int) -> str:
    """One line: the planned bytes against the limit, and what was reduced."""
    if self.footprint is None:
      return "memory: no analysis on this backend (not planned)"
    limit = "no stated limit" if self.limit is None else f"limit {self.limit / GIB:,.2f} GiB"
    line = f"memory: planned {self.footprint.describe()}, {limit}"
    if self.others:
      line += f" less {self.others / GIB:,.2f} GiB of other buffers on the device"
    if self.slots < self.requested:
      line += (f"; {self.requested * groups} slots do not fit, reduced to {self.slots * groups} "
               "(same models, more global steps)")
    return line


def fit_slots(compile_at: Callable[[int], Any], requested: int, limit: int | None,
              what: str = "the training step", in_use: int = 0) -> Plan:
  """The most slots per group, at most `requested`, whose compiled call fits `limit` bytes.

  `in_use`: bytes the device holds already (its `bytes_in_use`), the call's arguments among
  them; the rest stays beside the call and is subtracted from `limit`.
  `compile_at(k)` compiles the call with k slots per group (without changing the caller's run).
  Temporaries grow about linearly with k, so after the requested size and one slot the size is
  interpolated, then checked (and lowered one at a time while it does not fit): a handful of
  compilations at most.
  """
  compiled: dict[int, Any] = {}
  sizes: dict[int, Footprint | None] = {}

  def measure(k: int) -> Footprint | None:
    if k not in compiled:
      compiled[k] = compile_at(k)
      sizes[k] = footprint(compiled[k])
    return sizes[k]

  first = measure(requested)
  if first is None or limit is None:
    return Plan(requested, compiled[requested], first, limit, requested)
  others = max(0, int(in_use) - first.arguments)
  room = limit - others
  if first.total <= room:
    return Plan(requested, compiled[requested], first, limit, requested, others)
  one = measure(1)
  if one.total > room:
    beside = f" beside {others / GIB:,.2f} GiB of other buffers" if others else ""
    raise PosejaxError(
        f"memory: {what} needs {one.describe()} with a single slot{beside}, more than the device's "
        f"{limit / GIB:,.2f} GiB (config.train.device_memory_gib or what the device reports); "
        "lower config.train.batch_size or model.channels, or use --config.model.compute_dtype=bfloat16")
  if requested > 1:
    per_slot = (first.total - one.total) / (requested - 1)
    k = max(1, min(requested - 1, 1 + int((room - one.total) // max(per_slot, 1.0))))
  else:
    k = 1
  while k > 1 and measure(k).total > room:
    k -= 1
  return Plan(k, compiled[k], measure(k), limit, requested, others)
