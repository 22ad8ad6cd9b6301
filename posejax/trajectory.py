"""A workdir's trajectory model (spec 8.10): WORKDIR/trajectory.npz beside the checkpoints.

The trajectory model has the pose model's architecture with one output joint: the camera-
space position of the root (metres). VideoPose3D checkpoints from semi-supervised training
hold one (`model_traj`); `posejax.interop --workdir` stores it here, and inference adds its
prediction to every joint when there is no ground truth (spec 13, step 2). The file holds
the flattened variables (`params/...`, `batch_stats/...`, float32) and `hparams`, a JSON
string of the TemporalModel fields.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from flax import traverse_util

from posejax import model_spec
from posejax.errors import PosejaxError
from posejax.io_utils import atomic_savez, load_npz_dict
from posejax.model import TemporalModel

FILE = "trajectory.npz"


def path(workdir: str) -> str:
  return os.path.join(workdir, FILE)


def save(workdir: str, model: TemporalModel, variables: Any) -> str:
  """Writes the model's hyper-parameters and `{'params', 'batch_stats'}` (unstacked); returns the path."""
  hparams = model_spec.of_model(model)
  flat = traverse_util.flatten_dict(dict(variables), sep="/")
  target = path(workdir)
  atomic_savez(target, hparams=json.dumps(hparams), **{k: np.asarray(v, np.float32) for k, v in flat.items()})
  return target


def load(workdir: str) -> tuple[TemporalModel, dict[str, Any]] | None:
  """(model, variables) of WORKDIR/trajectory.npz, or None when the workdir has none."""
  target = path(workdir)
  if not os.path.exists(target):
    return None
  with np.load(target) as archive:
    names = [k for k in archive.files if k != "hparams"]
  data = load_npz_dict(target, ("hparams", *names))
  try:
    hparams = json.loads(str(data.pop("hparams")))
    model = model_spec.build(hparams)
  except (ValueError, KeyError, TypeError) as e:
    raise PosejaxError(f"{target}: not a trajectory model file ({e})") from None
  variables = traverse_util.unflatten_dict(data, sep="/")
  if model.num_joints_out != 1 or "params" not in variables:
    raise PosejaxError(f"{target}: not a trajectory model (expected 1 output joint and params)")
  return model, variables
