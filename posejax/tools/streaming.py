"""Frame-by-frame 3D poses from a live stream of 2D keypoints.

A causal model (`causal=True`) predicts frame `n` from frames `n - RF + 1 .. n` only, so a
stream can return the pose of each frame as soon as the frame arrives. The state is a ring
buffer of the last RF input frames and a frame count; each pushed frame costs ONE jitted
call of fixed shapes (write the frame, run the model on the RF-frame window).

Start-up equals whole-sequence evaluation (`evaluation.predict`, tta=False): evaluation
edge-pads a sequence with `pad + shift` copies of its first frame (2 * pad for a causal model),
and the first frame pushed here fills the whole buffer, so frame `n < RF - 1` sees
`RF - 1 - n` copies of frame 0 followed by frames 0 .. n, as in evaluation.

A non-causal model needs `pad` frames of look-ahead: pushing frame `n` returns the pose of
frame `n - pad` (None for the first `pad` frames), and `flush()` returns the last `pad`
poses by repeating the final frame (evaluation's edge padding after the sequence). Its
latency is `pad` frames; `latency` is 0 for causal models.

The window runs through the strided form of the model (only the activations that reach the
single output frame are computed; same variables as the dilated form). Dense models have no
strided form and run dilated.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.evaluation import runs as eval_lib
from posejax.evaluation.protocols import COMMON_SLICE
from posejax.models.family import PoseModel


@flax.struct.dataclass
class StreamState:
  """Ring buffer of the last RF input frames.

  buffer: (RF, K, F); the next frame goes to slot `count % RF`, which holds the oldest frame.
  count: () int32 frames received; after 2 * RF frames it stays in [RF, 2 * RF) (only
    `count == 0` and `count % RF` matter, so it never overflows).
  """
  buffer: jax.Array
  count: jax.Array


def stream_model(model: PoseModel) -> PoseModel:
  """The form that computes one output frame from RF input frames (strided unless dense)."""
  return model.one_frame()


def init_state(model: PoseModel) -> StreamState:
  """An empty stream: the first frame pushed fills the whole buffer."""
  rf = model.receptive_field
  return StreamState(jnp.zeros((rf, model.num_joints_in, model.in_features), jnp.float32),
                     jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, static_argnames=("model",))
def step(model: PoseModel, variables: Any, state: StreamState,
         frame: jax.Array) -> tuple[StreamState, jax.Array]:
  """Adds one frame and predicts from the RF-frame window ending with it.

  Args:
    model: the stream form (`stream_model(...)`).
    variables: unstacked {'params', 'batch_stats'}.
    state: buffer (RF, K, F) and count.
    frame: (K, F) 2D keypoints of the new frame (normalized screen coordinates).

  Returns:
    The new state and the (J, 3) pose predicted for the window: for a causal model the pose
    of `frame`; otherwise that of the frame `pad` frames earlier.
  """
  rf = state.buffer.shape[0]
  slot = state.count % rf
  frame = frame.astype(state.buffer.dtype)
  buffer = jnp.where(state.count == 0, jnp.broadcast_to(frame, state.buffer.shape),
                     state.buffer.at[slot].set(frame))
  count = state.count + 1
  count = jnp.where(count >= 2 * rf, count - rf, count)
  window = jnp.roll(buffer, -(slot + 1), axis=0)  # oldest frame first, `frame` last
  pose = model.apply(variables, window[None], train=False)[0, 0]
  return StreamState(buffer, count), pose


def select_slice(stacked_variables: Any, actions_of_slices: Sequence[str], action: str | None) -> Any:
  """Unstacked variables of the model that serves `action` (leading slice axis dropped).

  A common-mode checkpoint (one slice 'all') serves every action; an action-based one needs
  the action whose model to use.
  """
  slices = list(actions_of_slices)
  if slices == [COMMON_SLICE]:
    index = 0
  elif action is None:
    raise PosejaxError(f"this checkpoint holds one model per action; choose one with action= "
                       f"(choices: {', '.join(slices)})")
  elif action not in slices:
    raise PosejaxError(f"action {action!r}: no such model in this checkpoint (choices: {', '.join(slices)})")
  else:
    index = slices.index(action)
  return jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf[index]), stacked_variables)


class PoseStream:
  """Pushes 2D frames one at a time; returns 3D poses `latency` frames later (0 when causal).

      stream = PoseStream(model, variables)
      for keypoints in camera:          # (K, 2) normalized screen coordinates
        pose = stream.push(keypoints)   # (J, 3), or None during a non-causal model's latency
      tail = stream.flush()             # the last `latency` poses; the stream starts afresh
  """

  def __init__(self, model: PoseModel, variables: Any):
    """model: the trained model (any form); variables: unstacked {'params', 'batch_stats'}."""
    self.model = stream_model(model)
    self.variables = jax.device_put(variables)
    rf = model.receptive_field
    self.receptive_field = rf
    self.latency = model.pad - model.causal_shift
    self.reset()

  def reset(self) -> None:
    """Forgets every frame: the next frame pushed starts a new sequence."""
    self.state = init_state(self.model)
    self.frames = 0
    self._last: np.ndarray | None = None

  def _check(self, frame: Any) -> np.ndarray:
    frame = np.asarray(frame, np.float32)
    expected = (self.model.num_joints_in, self.model.in_features)
    if frame.shape != expected:
      raise PosejaxError(f"stream frame has shape {frame.shape}, expected {expected} "
                         "(one frame of 2D keypoints)")
    return frame

  def push(self, frame: Any) -> np.ndarray | None:
    """frame: (K, 2) -> (J, 3) pose of frame `frames - latency` (None while that is negative)."""
    frame = self._check(frame)
    self.state, pose = step(self.model, self.variables, self.state, frame)
    self.frames += 1
    self._last = frame
    return np.asarray(pose) if self.frames > self.latency else None

  def flush(self) -> list[np.ndarray]:
    """Poses of the last `min(latency, frames)` frames (edge padding after), then `reset()`."""
    out = []
    for k in range(self.latency if self._last is not None else 0):
      self.state, pose = step(self.model, self.variables, self.state, self._last)
      if self.frames + k >= self.latency:  # the output frame index is not negative
        out.append(np.asarray(pose))
    self.reset()
    return out

  def predict_sequence(self, poses_2d: np.ndarray) -> np.ndarray:
    """(T, K, 2) -> (T, J, 3), frame by frame; the stream is reset before and after."""
    self.reset()
    poses = [self.push(frame) for frame in poses_2d]
    poses = [p for p in poses if p is not None] + self.flush()
    return np.stack(poses) if poses else np.zeros((0, self.model.num_joints_out, 3), np.float32)


def from_workdir(workdir: str, which: str | int = "best", action: str | None = None) -> PoseStream:
  """A stream of a training workdir's model (`action` picks an action-based run's model)."""
  run = eval_lib.restore_run(workdir, which)
  variables = select_slice(run.variables, run.actions_of_slices, action)
  return PoseStream(eval_lib.build_model(run), variables)
