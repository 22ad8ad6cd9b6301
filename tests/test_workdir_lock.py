"""Tests for posejax.common.workdir_lock: a real second process, stale locks, writability probe."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from posejax.common import workdir_lock as wl
from posejax.common.errors import PosejaxError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLDER = ("import sys; from posejax.common.workdir_lock import WorkdirLock\n"
          "with WorkdirLock(sys.argv[1]):\n"
          "  print('locked', flush=True)\n"
          "  sys.stdin.read()\n")


def hold_lock(workdir) -> subprocess.Popen:
  """A second process holding the workdir's lock until its stdin is closed."""
  proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], cwd=REPO, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_second_process_is_refused_naming_the_owner(tmp_path):
  holder = hold_lock(tmp_path)
  try:
    owner = wl.read_owner(str(tmp_path))
    assert owner.pid == holder.pid and owner.host == socket.gethostname()
    with pytest.raises(PosejaxError, match=rf"in use by pid {holder.pid} on host {socket.gethostname()}"):
      wl.WorkdirLock(str(tmp_path)).acquire()
  finally:
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
  assert not os.path.exists(tmp_path / wl.LOCK_FILE)  # released and removed on exit
  warnings = []
  with wl.WorkdirLock(str(tmp_path), log=warnings.append):
    assert wl.read_owner(str(tmp_path)).pid == os.getpid()
    with pytest.raises(PosejaxError, match=f"in use by pid {os.getpid()}"):  # not re-entrant
      wl.WorkdirLock(str(tmp_path)).acquire()
  assert warnings == []


def test_stale_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path):
  holder = hold_lock(tmp_path)
  holder.kill()
  holder.wait(timeout=30)
  assert wl.read_owner(str(tmp_path)).pid == holder.pid  # left behind by the dead run
  warnings = []
  with wl.WorkdirLock(str(tmp_path), log=warnings.append):
    assert wl.read_owner(str(tmp_path)).pid == os.getpid()
  assert len(warnings) == 1 and f"taking over the lock of pid {holder.pid}" in warnings[0]
  assert "no longer running" in warnings[0]


def _write_owner(workdir, pid, host):
  record = {"pid": pid, "host": host, "started": "2024-01-01T00:00:00", "command": "train.py"}
  (workdir / wl.LOCK_FILE).write_text(json.dumps(record))


def test_lock_of_another_host_is_not_taken_over(tmp_path):
  _write_owner(tmp_path, 12345, "some-other-host")
  with pytest.raises(PosejaxError, match=r"in use by pid 12345 on host some-other-host .*if that run is no "
                                         rf"longer running, delete {tmp_path / wl.LOCK_FILE}"):
    wl.WorkdirLock(str(tmp_path)).acquire()


def test_without_flock_the_pid_decides(tmp_path, monkeypatch):
  """File systems without flock: a live pid of this host holds the lock, a dead one is stale."""
  monkeypatch.setattr(wl, "_try_flock", lambda fd: None)
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    _write_owner(tmp_path, sleeper.pid, socket.gethostname())
    with pytest.raises(PosejaxError, match=f"in use by pid {sleeper.pid}"):
      wl.WorkdirLock(str(tmp_path)).acquire()
  finally:
    sleeper.send_signal(signal.SIGKILL)
    sleeper.wait(timeout=30)
  assert not wl.pid_alive(sleeper.pid)
  warnings = []
  with wl.WorkdirLock(str(tmp_path), log=warnings.append):
    pass
  assert f"pid {sleeper.pid}" in warnings[0]


def test_check_writable(tmp_path, monkeypatch):
  wl.check_writable(str(tmp_path / "new" / "run"))
  assert os.listdir(tmp_path / "new" / "run") == []  # the probe is removed
  (tmp_path / "file").write_text("x")
  with pytest.raises(PosejaxError, match=r"--workdir .*file/run: cannot create it \(Not a directory\)"):
    wl.check_writable(str(tmp_path / "file" / "run"))

  def full_disk(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, "fsync", full_disk)
  with pytest.raises(PosejaxError, match=r"--out .*: not writable \(No space left on device\)"):
    wl.check_writable(str(tmp_path / "full"), "--out")
  assert os.listdir(tmp_path / "full") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_read_only_folder(tmp_path):
  folder = tmp_path / "ro"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    with pytest.raises(PosejaxError, match="not writable"):
      wl.check_writable(str(folder))
  finally:
    folder.chmod(0o755)
