"""Progress bars that move when compiled calls complete on the device.

Dispatch is asynchronous: a bar updated when a call is enqueued reaches its end long before
the device does. `Completions` instead advances when a call has finished: after dispatching
call k, the host waits on a tiny output of call k-1 (never a host copy of a big array), so at
most two calls are in flight and the device always has the next one queued. `Bar` is a tqdm
bar in steps (its ETA) with the rate of useful samples (or frames) in its postfix.

Bars are shown on process 0 only: inside `shown(flag)` (the trainer passes
config.train.progress) as the flag says, elsewhere when stderr is a terminal.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np
import tqdm

_SHOWN: bool | None = None  # None: bars on when stderr is a terminal


@contextlib.contextmanager
def shown(flag: bool) -> Iterator[None]:
  """Bars on (or off) whatever stderr is, within the block."""
  global _SHOWN
  previous, _SHOWN = _SHOWN, bool(flag)
  try:
    yield
  finally:
    _SHOWN = previous


def enabled() -> bool:
  if jax.process_index() != 0:
    return False
  if _SHOWN is not None:
    return _SHOWN
  isatty = getattr(sys.stderr, "isatty", None)
  return bool(isatty and isatty())


@jax.jit
def _marker(x: jax.Array) -> jax.Array:
  return x.ravel()[:1]


def marker(leaf: jax.Array) -> jax.Array:
  """A one-element copy of `leaf`: ready when the call that wrote `leaf` is done, and still
  there after `leaf` is donated to the next call."""
  return _marker(leaf)


class Completions:
  """Reports each dispatched call's size to `on_complete` once the call has completed.

  `dispatched(token, n)` after each call: it waits (`wait(token)`) for the calls before the
  last `depth` ones; `drain()` waits for the rest. Reports come in dispatch order, one per call.
  """

  def __init__(self, on_complete: Callable[[int], None], depth: int = 1,
               wait: Callable[[Any], Any] = jax.block_until_ready):
    self._on_complete, self._depth, self._wait = on_complete, depth, wait
    self._pending: collections.deque = collections.deque()

  def dispatched(self, token: Any, n: int) -> None:
    self._pending.append((token, n))
    while len(self._pending) > self._depth:
      self._complete_oldest()

  def drain(self) -> None:
    while self._pending:
      self._complete_oldest()

  def _complete_oldest(self) -> None:
    token, n = self._pending.popleft()
    self._wait(token)
    self._on_complete(n)


class Bar:
  """A tqdm bar over `len(per_step)` steps whose postfix is the rate of per_step's units.

  Args:
    per_step: useful samples (or frames) of each step.
    unit: their name in the postfix ('samples' -> 'samples/s').
  """

  def __init__(self, per_step: Sequence[int] | np.ndarray, desc: str, unit: str = "samples",
               step_unit: str = "step", disable: bool | None = None):
    self._cumulative = np.concatenate([[0], np.cumsum(np.asarray(per_step, np.int64))])
    self._unit, self._done, self._start = unit, 0, time.perf_counter()
    self.bar = tqdm.tqdm(total=len(self._cumulative) - 1, desc=desc, unit=step_unit, leave=False,
                         disable=not enabled() if disable is None else disable)

  @property
  def steps(self) -> int:
    """The steps reported so far (a disabled tqdm bar counts none)."""
    return self._done

  @property
  def samples(self) -> int:
    """The units of the steps reported so far."""
    return int(self._cumulative[self._done])

  def update(self, steps: int) -> None:
    self._done = min(self._done + int(steps), len(self._cumulative) - 1)
    elapsed = max(time.perf_counter() - self._start, 1e-9)
    self.bar.set_postfix_str(f"{self.samples / elapsed:,.0f} {self._unit}/s", refresh=False)
    self.bar.update(steps)

  def close(self) -> None:
    self.bar.close()

  def __enter__(self) -> Bar:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
