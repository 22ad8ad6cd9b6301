"""Guards of a training workdir: writable before a run starts, used by one run at a time.

`check_writable(workdir)` creates, writes, fsyncs and removes a probe file, so a read-only
or full file system is a one-line error before any data is read, not a failed checkpoint an
epoch later.

`WorkdirLock(workdir)` holds WORKDIR/posejax.lock for the duration of a run: the file names
its owner (pid, host, start time, command) and the owner holds an exclusive `flock` on it.
A second run in the same workdir refuses with a message naming that pid and host. A lock
left behind by a run that died (same host, process gone; the kernel has released its flock)
is taken over with a warning. A lock of another host is never taken over: whether that run
is alive cannot be told from here, so the message says which file to delete if it is not.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Callable

from posejax.common.errors import PosejaxError

LOCK_FILE = "posejax.lock"
PROBE_BYTES = 64 * 1024  # enough to hit a full disk; far less than a checkpoint


def missing_folders(path: str) -> list[str]:
  """The folders of `path` (itself and its parents) that do not exist yet, innermost first."""
  missing, current = [], os.path.abspath(path)
  while not os.path.exists(current):
    missing.append(current)
    parent = os.path.dirname(current)
    if parent == current:
      break
    current = parent
  return missing


def remove_empty(folders: list[str]) -> None:
  """Removes each of `folders` (innermost first) that exists and is empty: what a rejected run
  created and did not use."""
  for folder in folders:
    try:
      os.rmdir(folder)
    except OSError:  # not empty, or already gone: keep what is there
      return


def check_writable(workdir: str, flag: str = "--workdir") -> None:
  """Creates `workdir` if needed and proves that a file can be written and synced there.

  `flag` names the option in messages (`--out` for a tool's output folder).

  Raises:
    PosejaxError: the folder cannot be created, or the probe file cannot be written (a
      read-only file system, missing permissions, a full disk).
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise PosejaxError(f"{flag} {workdir}: cannot create it ({e.strerror})") from None
  probe = os.path.join(workdir, f".posejax-write-test-{os.getpid()}")
  fd = None
  try:
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"\0" * PROBE_BYTES)
    os.fsync(fd)
  except OSError as e:
    raise PosejaxError(f"{flag} {workdir}: not writable ({e.strerror})") from None
  finally:
    if fd is not None:
      os.close(fd)
    if os.path.exists(probe):
      os.remove(probe)


@dataclasses.dataclass(frozen=True)
class LockOwner:
  pid: int
  host: str
  started: str
  command: str

  def describe(self) -> str:
    return f"pid {self.pid} on host {self.host} (since {self.started}: {self.command})"


def _me() -> LockOwner:
  return LockOwner(pid=os.getpid(), host=socket.gethostname(),
                   started=datetime.datetime.now().isoformat(timespec="seconds"),
                   command=" ".join([os.path.basename(sys.argv[0] or "python")] + sys.argv[1:])[:200])


def _parse_owner(text: str) -> LockOwner | None:
  try:
    record = json.loads(text)
    return LockOwner(pid=int(record["pid"]), host=str(record["host"]), started=str(record.get("started", "?")),
                     command=str(record.get("command", "?")))
  except (ValueError, KeyError, TypeError):
    return None


def read_owner(workdir: str) -> LockOwner | None:
  """The owner recorded in WORKDIR/posejax.lock, or None (no lock file, or an unreadable one)."""
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      return _parse_owner(f.read())
  except OSError:
    return None


def pid_alive(pid: int) -> bool:
  """Whether a process with this id exists on this host."""
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _try_flock(fd: int) -> bool | None:
  """True: locked; False: another process holds it; None: the file system has no flock."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return False
    return None


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


class WorkdirLock:
  """`with WorkdirLock(workdir):` one run at a time in `workdir` (see the module docstring).

  Raises (on entry):
    PosejaxError: another live run holds the workdir, or the lock file cannot be written.
  """

  def __init__(self, workdir: str, log: Callable[[str], None] = _warn):
    self.workdir, self.path, self._log = workdir, os.path.join(workdir, LOCK_FILE), log
    self._fd: int | None = None

  def _in_use(self, owner: LockOwner | None) -> PosejaxError:
    who = owner.describe() if owner else "another process (its lock file names no owner yet)"
    hint = "wait for it to finish or use another --workdir"
    if owner and owner.host != socket.gethostname():
      hint += f"; if that run is no longer running, delete {self.path}"
    return PosejaxError(f"--workdir {self.workdir}: in use by {who}; {hint}")

  def acquire(self) -> None:
    try:
      os.makedirs(self.workdir, exist_ok=True)
    except OSError as e:
      raise PosejaxError(f"--workdir {self.workdir}: cannot create it ({e.strerror})") from None
    for _ in range(10):  # retried only when the file was replaced between open and flock
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      except OSError as e:
        raise PosejaxError(f"{self.path}: cannot create the lock file ({e.strerror})") from None
      try:
        if self._take(fd):
          self._fd = fd
          return
      except BaseException:
        os.close(fd)
        raise
      os.close(fd)
    raise PosejaxError(f"{self.path}: the lock file keeps changing; is another run starting?")

  def _take(self, fd: int) -> bool:
    """Locks the open lock file `fd`; False when it is no longer the file at self.path."""
    locked = _try_flock(fd)
    if locked is False:
      raise self._in_use(read_owner(self.workdir))
    try:
      if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
        return False  # released and removed by its owner meanwhile: open the new one
    except FileNotFoundError:
      return False
    previous = _parse_owner(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
    if previous is not None:
      here = previous.host == socket.gethostname()
      # With flock, holding it proves the recorded owner is gone (even if its pid was reused).
      if not here or (locked is None and pid_alive(previous.pid) and previous.pid != os.getpid()):
        raise self._in_use(previous)
      self._log(f"{self.path}: taking over the lock of {previous.describe()}, which is no longer running")
    data = json.dumps(dataclasses.asdict(_me())).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
    return True

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.remove(self.path)  # while still locked: a waiting run then opens a fresh file
    except OSError:
      pass
    os.close(self._fd)  # releases the flock
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
