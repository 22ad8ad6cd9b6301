"""Graceful stop on SIGTERM / SIGINT: a flag the training loop polls at step boundaries.

The first signal sets the flag: the loop saves a checkpoint at its next step boundary and
returns. A second signal is handed to the handler that was installed before (the default one
terminates the process at once, Python's SIGINT handler raises KeyboardInterrupt), so a stuck
run can still be stopped; except while a checkpoint is being written: inside `saving()`, or
while `busy()` reports an asynchronous save in flight, repeated signals are only counted and
the run stops as for the first one, once the save is complete. Even a SIGKILL during a save
leaves only orbax's temporary directory (see posejax.workdir.checkpoints), never a torn checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Callable, Iterator


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


class StopRequest:
  """Context manager installing the handlers; `requested` tells the loop to save and stop.

  Args:
    busy: optional, whether an asynchronous save is in flight (e.g. the checkpoint manager's
      `is_saving_in_progress`).
    log: where the note about a deferred signal goes.
  """

  def __init__(self, busy: Callable[[], bool] | None = None, log: Callable[[str], None] = _warn):
    self.signal: int | None = None
    self.deferred = 0  # repeated signals that arrived during a save
    self._busy, self._log = busy, log
    self._saving = 0
    self._previous: dict[int, Any] = {}

  def __enter__(self) -> "StopRequest":
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave the signals alone
        pass
    return self

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signal is None:
      self.signal = signum
      return
    if self.saving_in_progress:
      self.deferred += 1
      self._log(f"signal {signum} while a checkpoint is being written: stopping once it is complete "
                "(SIGKILL stops at once; complete checkpoints are kept either way)")
      return
    self._log(f"second signal {signum}: stopping without saving (the last complete checkpoint is kept)")
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
    os.kill(os.getpid(), signum)  # delivered again, now to the previous handler

  @property
  def saving_in_progress(self) -> bool:
    return self._saving > 0 or bool(self._busy is not None and self._busy())

  @contextlib.contextmanager
  def saving(self) -> Iterator[None]:
    """Marks a checkpoint save: repeated signals inside it are deferred, not raised."""
    self._saving += 1
    try:
      yield
    finally:
      self._saving -= 1

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  @property
  def requested(self) -> bool:
    return self.signal is not None
