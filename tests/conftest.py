"""Test-wide settings and shared fixtures.

No persistent compilation cache in the user's home folder. `synthetic_h36m_dir`: one synthetic
Human3.6M folder per session (read it only: a test that writes into its data folder copies it
first). `tiny_config`: the tiny run config of the end-to-end tests (`from conftest import
tiny_config`; tests/ is on sys.path, as for `from test_evaluation import ...`).
"""

import os

import pytest

os.environ.setdefault("POSEJAX_COMPILATION_CACHE_DIR", "")


@pytest.fixture(scope="session")
def synthetic_h36m_dir(tmp_path_factory) -> str:
  """`synthetic.generate(DIR, frames=16, seed=0)`, generated once per session; read-only."""
  from posejax.data import synthetic
  path = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.generate(path, frames=16, seed=0)
  return path


def tiny_config(data_dir, mode="action_based", **overrides):
  """configs/default.py made tiny: two actions, one 3-wide layer of 16 channels, 2 epochs of
  batch 32, 4 steps per call, a checkpoint every epoch; `overrides`: dotted paths, e.g.
  `tiny_config(d, **{"train.epochs": 3, "classifier.enabled": False})`."""
  from configs import default
  config = default.get_config()
  config.mode = mode
  config.actions = "Eating,Walking"
  config.data.dir = data_dir
  config.data.keypoints = "synthetic"
  config.model.filter_widths = (3,)
  config.model.channels = 16
  config.train.epochs = 2
  config.train.unit_epochs = 1
  config.train.batch_size = 32
  config.train.progress = False
  config.train.steps_per_call = 4
  config.eval.chunk = 16
  config.checkpoint.every_epochs = 1
  config.update_from_flattened_dict(overrides)
  return config
