"""Renders a few frames of several synthetic actions as 3D stick figures.

Writes docs/synthetic_actions.png (rows: actions, columns: evenly spaced time points) so
that a person can check that the generated motion looks human.

Usage: python scripts/render_synthetic_preview.py [--out docs/synthetic_actions.png]
       [--subject S1] [--frames 600] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from posejax.common.errors import PosejaxError  # noqa: E402
from posejax.common.io_utils import atomic_write_bytes  # noqa: E402
from posejax.data import synthetic  # noqa: E402
from posejax.pose.actions import ACTIONS as ACTION_NAMES  # noqa: E402
from posejax.pose.skeleton import H36M_KEPT_JOINTS, H36M_SKELETON  # noqa: E402

ACTIONS = ("Walking", "SittingDown", "Sitting", "Eating", "Phoning", "Photo", "Greeting", "Purchases")
COLUMNS = 5


def _draw(ax, joints: np.ndarray, heading_xy: np.ndarray) -> None:
  """One 17-joint pose (17, 3) in world metres (right side red, left blue), seen from 55 degrees
  to the body's left of straight ahead, orthographically."""
  for j, p in enumerate(H36M_SKELETON.parents):
    if p < 0:
      continue
    side = "tab:red" if j in H36M_SKELETON.joints_right else "tab:blue"
    colour = side if j in H36M_SKELETON.joints_right + H36M_SKELETON.joints_left else "k"
    ax.plot(*joints[[p, j]].T, color=colour, linewidth=2)
  ax.scatter(*joints[10], color="k", s=25)
  cx, cy = joints[0, :2]
  ax.set(xlim=(cx - 0.7, cx + 0.7), ylim=(cy - 0.7, cy + 0.7), zlim=(0, 1.9))
  ax.set_box_aspect((1.4, 1.4, 1.9), zoom=1.5)
  ax.set_axis_off()
  ax.set_proj_type("ortho")
  # Floor grid so the support and the height read at a glance.
  for v in np.linspace(-0.6, 0.6, 5):
    ax.plot([cx + v, cx + v], [cy - 0.6, cy + 0.6], [0, 0], color="0.85", linewidth=0.6)
    ax.plot([cx - 0.6, cx + 0.6], [cy + v, cy + v], [0, 0], color="0.85", linewidth=0.6)
  azim = np.degrees(np.arctan2(heading_xy[1], heading_xy[0])) + 55
  ax.view_init(elev=12, azim=azim)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("docs", "synthetic_actions.png"))
  parser.add_argument("--subject", default="S1")
  parser.add_argument("--frames", type=int, default=600)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--actions", default=",".join(ACTIONS), help="comma-separated actions, one row each")
  args = parser.parse_args(argv)

  actions = args.actions.split(",")
  try:
    unknown = [a for a in actions if a not in ACTION_NAMES]
    if unknown:
      raise PosejaxError(f"--actions: unknown {unknown} (known: {', '.join(ACTION_NAMES)})")
    positions = synthetic.generate_positions_3d(args.frames, args.seed, (args.subject,))[args.subject]
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  fig = plt.figure(figsize=(2.0 * COLUMNS, 2.6 * len(actions)))
  for row, action in enumerate(actions):
    seq = next(v for name, v in positions.items() if name.split(" ")[0] == action)  # its first sequence
    kept = seq[:, list(H36M_KEPT_JOINTS)]
    for col, t in enumerate(np.linspace(0, len(seq) - 1, COLUMNS).astype(int)):
      ax = fig.add_subplot(len(actions), COLUMNS, row * COLUMNS + col + 1, projection="3d")
      # Forward = perpendicular to the hip line, horizontal.
      across = kept[t, 1, :2] - kept[t, 4, :2]
      _draw(ax, kept[t], np.array([-across[1], across[0]]))
      ax.set_title(f"{action}  t={t / 50:.1f}s", fontsize=8)
  fig.subplots_adjust(left=0, right=1, bottom=0, top=0.97, wspace=0, hspace=0.08)
  fig.suptitle(f"synthetic Human3.6M-like motion ({args.subject}, seed {args.seed})", fontsize=10)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=90)
  atomic_write_bytes(args.out, buffer.getvalue())
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
