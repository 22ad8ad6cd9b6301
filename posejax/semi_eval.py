"""Semi-supervised training's extra end-of-epoch metrics (spec 11.4), in eval mode, no TTA.

For a set of sequences with cameras (the test set, the labeled training set, the unlabeled
set): the trajectory error `||pred_traj - true root||` (when the set has 3D) and the 2D
reprojection error of `project_to_2d(pred + pred_traj)` (always the non-linear projection)
against the input keypoints, both averaged over all frames (frame-weighted, as the reference).

Each sequence is edge-padded as the reference's UnchunkedGenerator pads it and cut into chunks
of `chunk` output frames with their receptive field; the chunks of all sequences are packed
once into host arrays (`pack`), and every log point runs one compiled function over batches
of them for each model slice (a record is evaluated by its action's model pair).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from posejax import camera, evaluation, losses
from posejax.data.dataset import PoseDataset

CHUNK = 64
BATCH = 32


@dataclasses.dataclass(frozen=True)
class Packed:
  """Chunks of a set of sequences.

  Attributes:
    inputs: (N, CHUNK + RF - 1, Kp, F) float32 input windows.
    cameras: (N, 9) float32.
    roots: (N, CHUNK, 1, 3) float32 true camera-space roots (zeros without 3D).
    mask: (N, CHUNK) float32, 1 for real output frames.
    slice_of: (N,) int32 model slice of each chunk.
    has_3d: whether every sequence had 3D (traj metric defined).
  """
  inputs: np.ndarray
  cameras: np.ndarray
  roots: np.ndarray
  mask: np.ndarray
  slice_of: np.ndarray
  has_3d: bool


def pack(dataset: PoseDataset, actions_of_slices: Sequence[str], receptive_field: int, shift: int,
         chunk: int = CHUNK) -> Packed:
  """Cuts every sequence into chunks (edge padding: `pad + shift` before, `pad - shift` after)."""
  pad = (receptive_field - 1) // 2
  route = evaluation.slice_of_sequences(dataset, actions_of_slices)
  has_3d = all(r.poses_3d is not None for r in dataset.sequences)
  inputs, cams, roots, masks, slice_of = [], [], [], [], []
  for record, s in zip(dataset.sequences, route):
    length = record.num_frames
    n = -(-length // chunk)
    # Frame rows of each chunk's window and outputs, clipped to the sequence (edge replication).
    starts = np.arange(n) * chunk
    window = np.clip(starts[:, None] + np.arange(chunk + 2 * pad) - pad - shift, 0, length - 1)
    out = starts[:, None] + np.arange(chunk)
    inputs.append(record.poses_2d[window])
    cams.append(np.broadcast_to(np.asarray(record.intrinsic, np.float32), (n, 9)))
    root = record.poses_3d[np.minimum(out, length - 1), :1] if has_3d else np.zeros((n, chunk, 1, 3))
    roots.append(root)
    masks.append((out < length).astype(np.float32))
    slice_of.append(np.full(n, s, np.int32))
  cat = lambda xs, dtype: np.concatenate(xs).astype(dtype)
  return Packed(cat(inputs, np.float32), cat(cams, np.float32), cat(roots, np.float32), cat(masks, np.float32),
                cat(slice_of, np.int32), has_3d)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sums(model: nn.Module, traj_model: nn.Module, pad: int, variables: Any, traj_variables: Any,
          inputs: jax.Array, cameras: jax.Array, roots: jax.Array, mask: jax.Array) -> jax.Array:
  """(3,) sums over the batch's real frames: trajectory error, 2D error, frames."""
  pred = model.apply(variables, inputs, train=False)
  pred_traj = traj_model.apply(traj_variables, inputs, train=False)
  traj_err = losses.mpjpe_per_frame(pred_traj, roots)
  recon = camera.project_to_2d(pred + pred_traj, cameras, xp=jnp)
  err_2d = losses.mpjpe_per_frame(recon, inputs[:, pad:inputs.shape[1] - pad, :, :2])
  return jnp.stack([jnp.sum(traj_err * mask), jnp.sum(err_2d * mask), jnp.sum(mask)])


def metrics(model: nn.Module, traj_model: nn.Module, variables: Any, traj_variables: Any, packed: Packed,
            batch: int = BATCH) -> dict[str, float]:
  """{'traj': m or None, '2d': normalized units} over all frames of `packed`.

  variables, traj_variables: stacked (A, ...) eval-model variables of the model pairs.
  """
  pad = (packed.inputs.shape[1] - packed.mask.shape[1]) // 2
  total = np.zeros(3)
  for s in np.unique(packed.slice_of):
    rows = np.flatnonzero(packed.slice_of == s)
    take = lambda tree: jax.tree.map(lambda x: x[s], tree)
    v, tv = take(variables), take(traj_variables)
    for start in range(0, len(rows), batch):
      idx = rows[start:start + batch]
      idx = np.concatenate([idx, np.full(batch - len(idx), idx[-1])])  # one shape: one compilation
      mask = packed.mask[idx] * (np.arange(batch) < len(rows) - start)[:, None]
      total += np.asarray(_sums(model, traj_model, pad, v, tv, packed.inputs[idx], packed.cameras[idx],
                                packed.roots[idx], mask), np.float64)
  frames = max(total[2], 1.0)
  return {"traj": float(total[0] / frames) if packed.has_3d else None, "2d": float(total[1] / frames)}
