"""Tests for posejax.common.sharding: mesh shapes, padding; 8 fake devices == 1 device == 2 processes."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from posejax.common import sharding
from posejax.common.errors import PosejaxError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("models,devices,want", [
    (1, 1, (1, 1)), (15, 1, (1, 1)), (1, 8, (1, 8)), (15, 8, (8, 1)), (3, 8, (2, 4)),
    (2, 8, (2, 4)), (16, 8, (8, 1)), (5, 6, (3, 2))])
def test_mesh_shape(models, devices, want):
  assert sharding.mesh_shape(models, devices) == want


def test_mesh_shape_forced_and_invalid():
  assert sharding.mesh_shape(15, 8, action_devices=1) == (1, 8)
  with pytest.raises(PosejaxError, match="action_devices"):
    sharding.mesh_shape(15, 8, action_devices=3)


def test_single_device_layout_and_padding():
  layout = sharding.make_layout(3, 10)
  assert (layout.action_size, layout.data_size, layout.padded_models) == (1, 1, 3)
  tree = {"w": np.arange(6.0).reshape(3, 2)}
  padded = sharding.pad_models(tree, 5)
  np.testing.assert_array_equal(padded["w"][3:], [[0, 1], [0, 1]])
  np.testing.assert_array_equal(sharding.unpad_models(padded, 3)["w"], tree["w"])


WORKER = os.path.join(ROOT, "tests", "engine_worker.py")


@pytest.fixture(scope="module")
def data_dir(synthetic_h36m_dir):
  return synthetic_h36m_dir  # read only


def _env(devices: int) -> dict[str, str]:
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
              POSEJAX_COMPILATION_CACHE_DIR="", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _worker(data_dir, devices, *args):
  """Starts tests/engine_worker.py (the library's own loop, a few log segments) in a subprocess."""
  return subprocess.Popen([sys.executable, WORKER, data_dir, *args], env=_env(devices), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc):
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]
  return json.loads(out.strip().splitlines()[-1])


def _assert_same_training(got, want):
  np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-5)
  assert got["steps"] == want["steps"]
  for name, value in want["params"].items():
    np.testing.assert_allclose(got["params"][name], value, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def eight_devices(data_dir):
  return _result(_worker(data_dir, 8))


def test_eight_devices_match_one_device(data_dir, eight_devices):
  one = _result(_worker(data_dir, 8, "--devices", "1"))
  assert one["mesh"] == [1, 1, 3]
  assert eight_devices["mesh"] == [2, 4, 4]  # 3 models padded to 4, 2 per action group, batch over 4
  _assert_same_training(eight_devices, one)


def test_two_processes_match_one_process(data_dir, eight_devices):
  """2 processes x 4 CPU devices (jax.distributed on localhost) == 1 process x 8 devices."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = str(s.getsockname()[1])
  procs = [_worker(data_dir, 4, "--processes", "2", "--process_id", str(i), "--port", port) for i in range(2)]
  results = [_result(p) if i == 0 else p.communicate(timeout=600) for i, p in enumerate(procs)]
  assert procs[1].returncode == 0, results[1][1][-3000:]
  assert results[0]["mesh"] == eight_devices["mesh"]
  _assert_same_training(results[0], eight_devices)
