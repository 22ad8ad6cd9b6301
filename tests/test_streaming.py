"""Tests for posejax.tools.streaming: frame-by-frame poses equal whole-sequence evaluation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.evaluation import protocols as evaluation
from posejax.models.tcn import TemporalModel
from posejax.tools import streaming
from posejax.workdir import checkpoints as checkpointing
from test_evaluation import K, init_variables

RF = 9  # filter widths (3, 3)
NO_FLIP = dict(kps_left=(), kps_right=(), joints_left=(), joints_right=())


def tiny_model(causal: bool) -> TemporalModel:
  return TemporalModel(num_joints_in=K, num_joints_out=17, filter_widths=(3, 3), causal=causal, channels=16)


def keypoints(frames: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(frames, K, 2)).astype(np.float32)


def reference(model, variables, x: np.ndarray) -> np.ndarray:
  """Whole-sequence evaluation (edge padding, dilated model, no TTA): (T, 17, 3)."""
  return evaluation.predict(model, variables, [x], tta=False, **NO_FLIP)[0]


@pytest.mark.parametrize("frames", [23, 4])  # longer (wrapping the ring buffer twice) and shorter than RF
def test_causal_stream_equals_whole_sequence_evaluation(frames):
  model = tiny_model(causal=True)
  variables = init_variables(model, 0)
  x = keypoints(frames, frames)
  want = reference(model, variables, x)
  stream = streaming.PoseStream(model, variables)
  assert stream.latency == 0
  for n in range(frames):
    pose = stream.push(x[n])  # the pose of frame n, as soon as frame n arrives
    np.testing.assert_allclose(pose, want[n], atol=2e-5, rtol=1e-5)
    if n == 0:
      compiled = streaming.step._cache_size()
  assert int(stream.state.count) < 2 * RF
  assert stream.flush() == []
  # Fixed shapes: every frame reuses the step compiled for the first one.
  assert streaming.step._cache_size() == compiled


@pytest.mark.parametrize("frames", [23, 3])
def test_non_causal_stream_has_a_latency_of_pad_frames(frames):
  model = tiny_model(causal=False)
  variables = init_variables(model, 1)
  x = keypoints(frames, 10 + frames)
  want = reference(model, variables, x)
  stream = streaming.PoseStream(model, variables)
  assert stream.latency == (RF - 1) // 2
  out = [stream.push(frame) for frame in x]
  assert all(p is None for p in out[:stream.latency])
  out = [p for p in out if p is not None] + stream.flush()
  np.testing.assert_allclose(np.stack(out), want, atol=2e-5, rtol=1e-5)
  # flush() reset the stream: the next sequence starts afresh.
  np.testing.assert_allclose(stream.predict_sequence(x[::-1]), reference(model, variables, x[::-1]),
                             atol=2e-5, rtol=1e-5)


def test_stacked_variables_choose_a_slice_and_restore_from_a_workdir(tmp_path):
  model = tiny_model(causal=True)
  slices = [init_variables(model, seed) for seed in (2, 3)]
  stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *slices)
  config = ml_collections.ConfigDict({
      "mode": "action_based", "actions": ["Eating", "Walking"], "data": {"keypoints": "gt"},
      "model": {"filter_widths": [3, 3], "channels": 16, "causal": True, "dropout": 0.25, "dense": False}})
  checkpointing.save_imported(str(tmp_path), stacked, config, ["Eating", "Walking"], source="test", step=5)
  x = keypoints(12, 4)
  want = reference(model, slices[1], x)
  stream = streaming.from_workdir(str(tmp_path), "latest", action="Walking")
  np.testing.assert_allclose(stream.predict_sequence(x), want, atol=2e-5, rtol=1e-5)
  chosen = streaming.select_slice(stacked, ["Eating", "Walking"], "Eating")
  jax.tree_util.tree_map(np.testing.assert_array_equal, chosen, slices[0])
  with pytest.raises(PosejaxError, match="one model per action.*Eating, Walking"):
    streaming.select_slice(stacked, ["Eating", "Walking"], None)
  with pytest.raises(PosejaxError, match="'Sitting': no such model"):
    streaming.from_workdir(str(tmp_path), "latest", action="Sitting")


def test_common_slice_and_bad_frames():
  model = tiny_model(causal=True)
  variables = init_variables(model, 5)
  stacked = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf)[None], variables)
  stream = streaming.PoseStream(model, streaming.select_slice(stacked, ["all"], None))
  # A common model serves every action.
  jax.tree_util.tree_map(np.testing.assert_array_equal, streaming.select_slice(stacked, ["all"], "Walking"),
                         variables)
  with pytest.raises(PosejaxError, match=r"shape \(16, 2\), expected \(17, 2\)"):
    stream.push(np.zeros((16, 2)))
  assert stream.frames == 0
  assert stream.predict_sequence(np.zeros((0, K, 2))).shape == (0, 17, 3)
