"""Fault injection (docs/reliability.md): damaged and interrupted checkpoints, failed saves,
repeated signals, and every command-line tool given bad input (one line on stderr, no traceback)."""

import errno
import functools
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from posejax.common.errors import PosejaxError
from posejax.models.tcn import TemporalModel
from posejax.training import optim, step as ts
from posejax.workdir import checkpoints as ck, layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = TemporalModel(num_joints_in=4, num_joints_out=3, filter_widths=(3,), channels=8, strided=True)
META = {"config": {}, "actions": ["Eating", "Walking"], "dataset_fingerprint": "abc", "model": {"channels": 8}}


_INIT = jax.jit(lambda seed: ts.init_stacked_state(MODEL, optim.adam_amsgrad(), seed, jnp.arange(2), (1, 3, 4, 2)))


@functools.lru_cache(maxsize=None)
def _state(seed: int):
  """A stacked state of 2 models whose weights depend on `seed` (to tell checkpoints apart)."""
  return _INIT(seed)


def _template():
  return jax.eval_shape(lambda: _state(0))


def _save_steps(workdir, steps, keep=3):
  """Checkpoints at `steps`; step s holds _state(s)."""
  mngr = ck.manager(str(workdir), keep=keep)
  for step in steps:
    ck.save(mngr, step, _state(step), ts.init_accumulator(2), 2, META)
  ck.close(mngr)


def _assert_state_is(state, seed):
  jax.tree.map(np.testing.assert_array_equal, state.params, jax.tree.map(np.asarray, _state(seed).params))


def _truncate_largest_array_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "variables", "**", "d", "*"), recursive=True)]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 2)


DAMAGE = {
    "truncated array file": _truncate_largest_array_file,
    "truncated metadata": lambda d: open(os.path.join(d, "metadata", "metadata"), "r+b").truncate(10),
    "missing item": lambda d: shutil.rmtree(os.path.join(d, "train")),
    "empty step directory": lambda d: (shutil.rmtree(d), os.makedirs(d)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
  _save_steps(tmp_path, (10, 20))
  DAMAGE[damage](os.path.join(layout.checkpoint_dir(str(tmp_path)), "20"))
  messages = []
  mngr = ck.manager(str(tmp_path))
  step, state, accum, metadata = ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2),
                                                        log=messages.append)
  assert step == 10 and metadata["global_step"] == 10
  _assert_state_is(state, 10)
  assert "checkpoint at step 20 is unreadable" in messages[0] and "moved it to" in messages[0]
  assert messages[1].endswith("resuming from step 10, the newest readable checkpoint")
  assert os.path.isdir(tmp_path / ck.UNREADABLE_DIR / "20")  # kept for inspection
  # The run can write step 20 again (it would collide with the damaged directory otherwise).
  ck.save(mngr, 20, _state(21), ts.init_accumulator(2), 2, META)
  ck.close(mngr)
  mngr = ck.manager(str(tmp_path))
  assert ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2))[0] == 20
  ck.close(mngr)


def test_no_readable_checkpoint_is_an_error_then_a_fresh_start(tmp_path):
  _save_steps(tmp_path, (10,))
  _truncate_largest_array_file(os.path.join(layout.checkpoint_dir(str(tmp_path)), "10"))
  mngr = ck.manager(str(tmp_path))
  with pytest.raises(PosejaxError, match=r"no readable checkpoint \(steps 10 moved to .*checkpoints_unreadable\); "
                                         "rerun to train from scratch"):
    ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2), log=lambda m: None)
  assert ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2)) is None
  ck.close(mngr)


def test_an_incompatible_checkpoint_is_not_treated_as_damage(tmp_path):
  _save_steps(tmp_path, (10, 20))

  def check(metadata):
    raise PosejaxError("incompatible run")
  mngr = ck.manager(str(tmp_path))
  with pytest.raises(PosejaxError, match="incompatible run"):
    ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2), check=check)
  assert list(mngr.all_steps()) == [10, 20]  # nothing moved
  ck.close(mngr)


def test_evaluation_falls_back_without_moving_anything(tmp_path):
  _save_steps(tmp_path, (10, 20))
  DAMAGE["truncated array file"](os.path.join(layout.checkpoint_dir(str(tmp_path)), "20"))
  messages = []
  _, variables, _, step, _ = ck.restore_for_eval(str(tmp_path), "latest", log=messages.append)
  assert step == 10 and "step 20 is unreadable" in messages[0] and "using step 10 instead" in messages[1]
  jax.tree.map(np.testing.assert_array_equal, variables["params"], jax.tree.map(np.asarray, _state(10).params))
  with pytest.raises(PosejaxError, match=r"checkpoint at step 20 is unreadable \(OUT_OF_RANGE: .*\)$"):
    ck.restore_for_eval(str(tmp_path), 20, log=lambda m: None)
  assert sorted(os.listdir(layout.checkpoint_dir(str(tmp_path)))) == ["10", "20"]


KILLED_SAVER = """
import sys, time
from orbax.checkpoint._src.handlers import json_checkpoint_handler as jh
sys.path.insert(0, {tests!r})
from test_faults import META, _state
from posejax.training import step as ts
from posejax.workdir import checkpoints as ck
mngr = ck.manager(sys.argv[1])
ck.save(mngr, 10, _state(10), ts.init_accumulator(2), 2, META)
ck.finish_saves(mngr)

async def stalled_write(self, x, directory):  # the last item of step 20 is being written...
  print("in save", flush=True)
  time.sleep(120)  # ...when the process is killed
jh.JsonCheckpointHandler._save_fn = stalled_write
ck.save(mngr, 20, _state(20), ts.init_accumulator(2), 2, META)
ck.finish_saves(mngr)
"""


def test_kill_during_an_asynchronous_save_keeps_the_previous_checkpoint(tmp_path):
  proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVER.format(tests=os.path.dirname(__file__)), str(tmp_path)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  try:
    assert proc.stdout.readline().strip() == "in save"
    directory = layout.checkpoint_dir(str(tmp_path))
    assert any(".orbax-checkpoint-tmp" in name for name in os.listdir(directory))  # mid-save
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
  mngr = ck.manager(str(tmp_path))
  assert list(mngr.all_steps()) == [10]
  step, state, _, _ = ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2))
  assert step == 10
  _assert_state_is(state, 10)
  ck.save(mngr, 20, _state(20), ts.init_accumulator(2), 2, META)  # over the interrupted one
  ck.close(mngr)
  assert sorted(os.listdir(directory)) == ["10", "20"]  # the temporary directory is gone


def test_half_written_temporary_directory_is_ignored_and_removed(tmp_path):
  _save_steps(tmp_path, (10,))
  directory = layout.checkpoint_dir(str(tmp_path))
  partial = os.path.join(directory, "30.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(directory, "10"), partial)
  _truncate_largest_array_file(partial)
  mngr = ck.manager(str(tmp_path))
  assert ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2))[0] == 10
  ck.close(mngr)
  assert sorted(os.listdir(directory)) == ["10"]


def _fail_json_writes(monkeypatch):
  async def full_disk(self, x, directory):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "metadata"))
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", full_disk)


# orbax's futures then call back into closed event loops (ignored RuntimeErrors; the tools hide them).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failed_asynchronous_save_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  mngr = ck.manager(str(tmp_path), keep=1)  # keep=1: a completed step 20 would delete step 10
  ck.save(mngr, 10, _state(10), ts.init_accumulator(2), 2, META)
  ck.finish_saves(mngr)
  _fail_json_writes(monkeypatch)
  ck.save(mngr, 20, _state(20), ts.init_accumulator(2), 2, META)  # fails in the background
  with pytest.raises(PosejaxError, match=r"writing a checkpoint failed \(No space left on device: .*\); "
                                         r"the last complete checkpoint is step 10") as info:
    ck.finish_saves(mngr)
  assert "\n" not in str(info.value)
  ck.close(mngr)
  monkeypatch.undo()
  mngr = ck.manager(str(tmp_path))
  step, state, _, _ = ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2))
  assert step == 10
  _assert_state_is(state, 10)
  ck.close(mngr)


def test_a_failed_synchronous_save_is_one_line(tmp_path, monkeypatch):
  _save_steps(tmp_path, (10,))
  mngr = ck.manager(str(tmp_path))

  def failing_save(*args, **kwargs):
    raise OSError(errno.EIO, os.strerror(errno.EIO))
  monkeypatch.setattr(mngr, "save", failing_save)
  with pytest.raises(PosejaxError, match=r"writing a checkpoint failed \(Input/output error\); the last complete "
                                         r"checkpoint is step 10 \(rerun to resume from it\)"):
    ck.save(mngr, 20, _state(20), ts.init_accumulator(2), 2, META)
  ck.close(mngr)


def test_repeated_signals_during_a_save_are_deferred():
  forwarded = []
  before = signal.signal(signal.SIGTERM, lambda signum, frame: forwarded.append(signum))
  try:
    notes = []
    with ck.StopRequest(log=notes.append) as stop:
      os.kill(os.getpid(), signal.SIGTERM)
      assert stop.requested and stop.signal == signal.SIGTERM
      with stop.saving():
        os.kill(os.getpid(), signal.SIGTERM)  # repeated signals inside a save: counted only
        os.kill(os.getpid(), signal.SIGINT)
      assert stop.deferred == 2 and forwarded == [] and "stopping once it is complete" in notes[0]
      os.kill(os.getpid(), signal.SIGTERM)  # outside a save: handed to the previous handler
      assert forwarded == [signal.SIGTERM] and "stopping without saving" in notes[-1]
  finally:
    signal.signal(signal.SIGTERM, before)


STOPPED_RUN = """
import time
from posejax.common.stop_request import StopRequest
with StopRequest() as stop:
  print("ready", flush=True)
  while not stop.requested:
    time.sleep(0.01)
  print("stop requested", flush=True)
  time.sleep(60)  # a stuck shutdown: the second SIGTERM must still end the process
"""


def test_a_second_sigterm_outside_a_save_ends_the_process():
  proc = subprocess.Popen([sys.executable, "-c", STOPPED_RUN], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "ready"
  proc.send_signal(signal.SIGTERM)
  assert proc.stdout.readline().strip() == "stop requested"
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=30)
  assert proc.returncode == -signal.SIGTERM and "Traceback" not in err
  assert "second signal 15: stopping without saving (the last complete checkpoint is kept)" in err


def test_two_sigterms_during_an_asynchronous_save_leave_it_complete(tmp_path, monkeypatch):
  original = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def slow_write(self, x, directory):
    time.sleep(0.5)  # the save is in flight while the signals arrive
    await original(self, x, directory)
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", slow_write)
  mngr = ck.manager(str(tmp_path))
  with ck.StopRequest(busy=mngr.is_saving_in_progress, log=lambda m: None) as stop:
    ck.save(mngr, 10, _state(10), ts.init_accumulator(2), 2, META)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    ck.finish_saves(mngr)
  assert stop.requested and stop.deferred == 1
  ck.close(mngr)
  mngr = ck.manager(str(tmp_path))
  _assert_state_is(ck.restore_latest_good(mngr, _template(), ts.init_accumulator(2))[1], 10)
  ck.close(mngr)


# Command-line tools given bad input: (command, expected exit status, text the one line must contain).
HOLDER = ("import sys; from posejax.common.workdir_lock import WorkdirLock\n"
          "with WorkdirLock(sys.argv[1]):\n  print('locked', flush=True)\n  sys.stdin.read()\n")


def _cli_cases(tmp_path, locked):
  cfg = os.path.join(REPO, "configs", "quickstart.py")
  (tmp_path / "file").write_text("x")
  bad_bin = tmp_path / "bad.bin"
  bad_bin.write_text("not a checkpoint")
  train = [sys.executable, "train.py", "--config", cfg]
  ev = [sys.executable, "eval.py"]
  interop = [sys.executable, "-m", "posejax.tools.interop"]
  prepare = [sys.executable, "-m", "posejax.data.prepare_h36m"]
  w = str(tmp_path / "w")
  return [
      (train + ["--workdir", w, "--config.train.epoch=3"], 2, "did you mean --config.train.epochs?"),
      (train + ["--workdir", w, "--config.model.filter_widths=2,2"], 2, "--config.model.filter_widths=2,2"),
      (train + ["--workdir", w, "--config.train.lr=abc"], 2, "--config.train.lr=abc"),
      (train + ["--workdir", str(tmp_path / "file" / "w")], 2, "cannot create it (Not a directory)"),
      (train + ["--workdir", str(locked)], 2, "in use by pid"),
      (train + ["--workdir", str(tmp_path / "new" / "run"), "--config.data.dir", str(tmp_path / "none"),
                "--config.data.synthetic_frames=0"], 2, "data directory not found"),
      ([sys.executable, "train.py", "--workdir", w, "--config", str(tmp_path / "nope.py")], 2, "file not found"),
      (ev + ["--workdir", str(tmp_path / "none")], 2, "directory not found"),
      (ev + ["--workdir", w, "--bogus"], 2, "Unknown command line flag 'bogus'"),
      (ev + ["--config", cfg, "--config.eval.chunck=3", "--workdir", w], 2, "did you mean --config.eval.chunk?"),
      (ev + ["--workdir", str(tmp_path), "--checkpoint", "x"], 2, "'x' is not 'latest', 'best' or a step"),
      (interop, 2, "the following arguments are required: --from-videopose3d"),
      (interop + ["--from-videopose3d", str(bad_bin)], 2, "not a readable PyTorch checkpoint"),
      (prepare + ["--from-cdf", str(tmp_path), "--out", str(tmp_path / "file" / "o")], 2, "--out"),
      (prepare + ["--from-cdf", str(tmp_path / "none"), "--out", str(tmp_path / "o")], 2, "directory not found"),
  ]


def test_every_tool_reports_bad_input_in_one_line(tmp_path):
  locked = tmp_path / "locked"
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(locked)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  try:
    cases = _cli_cases(tmp_path, locked)
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd, _, _ in cases]
    for (cmd, code, text), proc in zip(cases, procs):
      out, err = proc.communicate(timeout=120)
      where = " ".join(cmd[1:])
      assert proc.returncode == code, (where, proc.returncode, err)
      assert "Traceback" not in err and "Traceback" not in out, (where, err)
      assert err.count("\n") == 1 and err.startswith("error: ") and text in err, (where, err)
      if "in use by pid" in text:
        assert f"pid {holder.pid} on host" in err
  finally:
    holder.stdin.close()
    holder.wait(timeout=30)
  assert not os.path.exists(tmp_path / "o")  # nothing half-written (not even an empty folder)
  assert not os.path.exists(tmp_path / "new")  # a rejected run leaves no empty workdir
  assert not os.path.exists(tmp_path / "w" / "checkpoints")
  assert not (locked / "posejax.lock").exists()  # the holder released it; the refused run left it alone
