"""Import of VideoPose3D PyTorch checkpoints (`.bin`) into posejax variables and workdirs.

The conversion is the TCN family's (`posejax.models.videopose3d`, re-exported here); this
module keeps the command line and the workdir writing.

    python -m posejax.interop --from-videopose3d pretrained_h36m_cpn.bin
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import jax
import numpy as np

from posejax.common import cli
from posejax.common.errors import PosejaxError
from posejax.config.config_file import load_config_file
from posejax.models import spec as model_spec
from posejax.models.tcn import count_params
from posejax.models.videopose3d import VideoPose3DImport, load_videopose3d
from posejax.workdir import checkpoints as checkpointing


def describe(imported: VideoPose3DImport) -> str:
  """Human-readable summary of an import, one model per line."""
  lines = [f"epoch: {imported.epoch}  lr: {imported.lr}"]
  for name, model, variables in (("model_pos", imported.model_pos, imported.variables_pos),
                                 ("model_traj", imported.model_traj, imported.variables_traj)):
    if model is None:
      lines.append(f"{name}: none")
      continue
    lines.append(f"{name}: filter widths {list(model.filter_widths)} (receptive field "
                 f"{model.receptive_field}), {model.num_joints_in} joints in, "
                 f"{model.num_joints_out} joints out, {model.channels} channels, "
                 f"{count_params(variables['params']):,} parameters")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Imports a checkpoint and reports what it holds; exit status 2 on a user error."""
  cli.quiet_environment()
  cli.quiet_logging()
  parser = cli.ArgumentParser(prog="python -m posejax.interop", description=__doc__.splitlines()[0])
  parser.add_argument("--from-videopose3d", required=True, metavar="FILE", help="VideoPose3D .bin checkpoint")
  parser.add_argument("--architecture", default=None, help="expected filter widths, e.g. 3,3,3,3,3")
  parser.add_argument("--causal", action="store_true", help="the checkpoint was trained with --causal")
  parser.add_argument("--dense", action="store_true", help="the checkpoint is the dense variant")
  parser.add_argument("--trust-pickle", action="store_true",
                      help="let torch unpickle arbitrary objects (trusted files only)")
  parser.add_argument("--workdir", default=None,
                      help="write the imported model as a checkpoint of this workdir (for eval.py)")
  parser.add_argument("--config", default=None,
                      help="config file the workdir records (default: configs/default.py)")
  parser.add_argument("--keypoints", default=None,
                      help="2D source the model was trained on (default: the config's, cpn_ft_h36m_dbb)")
  parser.add_argument("--data-dir", default=None, help="data directory recorded in the config")
  args = parser.parse_args(argv)
  try:
    widths = None
    if args.architecture:
      try:
        widths = tuple(int(w) for w in args.architecture.split(","))
      except ValueError:
        raise PosejaxError(f"--architecture: expected comma-separated integers, got {args.architecture!r}") from None
    imported = load_videopose3d(args.from_videopose3d, filter_widths=widths, causal=args.causal,
                                dense=args.dense, trust_pickle=args.trust_pickle)
    print(f"{args.from_videopose3d}:\n{describe(imported)}")
    if args.workdir:
      path = save_to_workdir(imported, args.workdir, config_path=args.config,
                             keypoints=args.keypoints, data_dir=args.data_dir,
                             source=args.from_videopose3d)
      print(f"wrote {path}: evaluate with `python eval.py --workdir {args.workdir}`")
  except PosejaxError as e:
    print(f"error: {cli.one_line(e)}", file=sys.stderr)
    return 2
  except OSError as e:  # a full disk, an unwritable folder
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def _default_config_path() -> str:
  return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "default.py")


def _load_config(path: str | None):
  """`get_config()` of a config file (configs/default.py when none is given)."""
  return load_config_file(path or _default_config_path())


def save_to_workdir(imported: "VideoPose3DImport", workdir: str, *, config_path: str | None = None,
                    keypoints: str | None = None, data_dir: str | None = None, source: str = "") -> str:
  """Writes the imported pose model (and its trajectory model, when the .bin has one) as a
  common-mode checkpoint usable by eval.py and posejax.tools.infer.

  The config records the architecture read from the checkpoint, so evaluation builds the
  same model; the data fields say which 2D source it expects.
  """
  config = _load_config(config_path)
  model = imported.model_pos
  config.mode = "common"
  config.actions = "*"
  config.model.filter_widths = tuple(int(w) for w in model.filter_widths)
  config.model.channels = int(model.channels)
  config.model.causal = bool(model.causal)
  config.model.dense = bool(model.dense)
  config.model.dropout = float(model.dropout)
  if keypoints:
    config.data.keypoints = keypoints
  if data_dir:
    config.data.dir = data_dir
  stack = lambda variables: jax.tree.map(lambda x: np.asarray(x)[None], variables)
  traj = {}
  if imported.model_traj is not None:  # evaluation reports it; posejax.tools.infer adds its trajectory
    traj = dict(trajectory=stack(imported.variables_traj),
                trajectory_model=model_spec.of_model(imported.model_traj))
  return checkpointing.save_imported(workdir, stack(imported.variables_pos), config, ["all"],
                                     source=source or "videopose3d", model=model_spec.of_model(model),
                                     step=int(imported.epoch or 0), **traj)


if __name__ == "__main__":
  sys.exit(main())
