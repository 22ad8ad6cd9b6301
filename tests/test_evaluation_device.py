"""Tests for posejax.evaluation.resident: the resident test set, on-device prediction and metrics.

References are float64 NumPy: the dilated network run over each whole edge-padded sequence,
and the metrics computed frame by frame.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.evaluation import chunk_plan, protocols as evaluation, resident as device_eval
from posejax.pose.skeleton import H36M_SKELETON
from test_evaluation import (FLIP, KPS_L, KPS_R, dataset, init_variables, random_poses, record, sequences,
                             tiny_model)

WIDTHS = (3, 3)
JOINTS_L, JOINTS_R = H36M_SKELETON.joints_left, H36M_SKELETON.joints_right


def stack(*trees):
  return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


def np_flip(x: np.ndarray, left, right) -> np.ndarray:
  y = np.array(x, np.float64)
  y[..., 0] *= -1
  y[..., list(left) + list(right), :] = y[..., list(right) + list(left), :]
  return y


def np_network(variables, x: np.ndarray, causal: bool) -> np.ndarray:
  """The dilated TemporalModel in float64 on a whole (T, K, 2) sequence, edge-padded as the
  reference's UnchunkedGenerator pads it -> (T, J, 3)."""
  v = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables)
  params, stats = v["params"], v["batch_stats"]
  pad = (int(np.prod(WIDTHS)) - 1) // 2
  shift = pad if causal else 0
  h = np.pad(np.asarray(x, np.float64), ((pad + shift, pad - shift), (0, 0), (0, 0)), mode="edge")
  h = h.reshape(len(h), -1)

  def conv(h, name, dilation):
    kernel = params[name]["kernel"]
    out = len(h) - (kernel.shape[0] - 1) * dilation
    return sum(h[k * dilation:k * dilation + out] @ kernel[k] for k in range(kernel.shape[0]))

  def bn_relu(h, name):
    s, p = stats[name], params[name]
    return np.maximum((h - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"], 0)

  h = bn_relu(conv(h, "expand_conv", 1), "expand_bn")
  dilation = WIDTHS[0]
  for block, w in enumerate(WIDTHS[1:]):
    half = (w - 1) * dilation // 2
    lag = (w // 2) * dilation if causal else 0
    res = h[half + lag:len(h) - half + lag]
    y = bn_relu(conv(h, f"layers_conv_{2 * block}", dilation), f"layers_bn_{2 * block}")
    h = res + bn_relu(conv(y, f"layers_conv_{2 * block + 1}", 1), f"layers_bn_{2 * block + 1}")
    dilation *= w
  out = h @ params["shrink"]["kernel"][0] + params["shrink"]["bias"]
  return out.reshape(len(out), -1, 3)


def np_predict(variables, x, causal, tta):
  plain = np_network(variables, x, causal)
  if not tta:
    return plain
  mirrored = np_network(variables, np_flip(x, KPS_L, KPS_R), causal)
  return (plain + np_flip(mirrored, JOINTS_L, JOINTS_R)) / 2


@pytest.mark.parametrize("causal,tta", [(False, False), (False, True), (True, False), (True, True)])
def test_device_prediction_equals_float64_whole_sequences(causal, tta):
  model = tiny_model(causal, WIDTHS)
  variables = [init_variables(model, seed) for seed in (10, 11, 12)]
  # Shorter than the receptive field (9), a single frame, exactly RF, several chunks.
  groups = [sequences([1, 30, 4], seed=1), sequences([9, 13], seed=2), sequences([5, 40, 2, 17], seed=3)]
  stacked = evaluation.predict_stacked(model, stack(*variables), groups, tta=tta, chunk=8, batch=2, **FLIP)
  for v, group, preds in zip(variables, groups, stacked):
    for x, p in zip(group, preds):
      assert p.shape == (len(x), 17, 3) and p.dtype == np.float32
      np.testing.assert_allclose(p, np_predict(v, x, causal, tta), rtol=1e-4, atol=2e-5)
  single = evaluation.predict(model, variables[1], groups[2], tta=tta, chunk=8, batch=3, **FLIP)
  for x, p in zip(groups[2], single):
    np.testing.assert_allclose(p, np_predict(variables[1], x, causal, tta), rtol=1e-4, atol=2e-5)


def np_frame_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """(3, L) float64 per-frame MPJPE, P-MPJPE, N-MPJPE of (L, J, 3) pairs."""
  pred, target = pred.astype(np.float64), target.astype(np.float64)
  mpjpe = np.linalg.norm(pred - target, axis=-1).mean(-1)
  scale = (np.sum(target * pred, axis=(1, 2)) / np.sum(pred**2, axis=(1, 2)))[:, None, None]
  n_mpjpe = np.linalg.norm(scale * pred - target, axis=-1).mean(-1)
  p_mpjpe = []
  for x, y in zip(target, pred):
    x0, y0 = x - x.mean(0), y - y.mean(0)
    u, s, vt = np.linalg.svd((x0 / np.linalg.norm(x0)).T @ (y0 / np.linalg.norm(y0)))
    if np.linalg.det(vt.T @ u.T) < 0:
      vt[-1] *= -1
      s[-1] *= -1
    r = vt.T @ u.T
    a = s.sum() * np.linalg.norm(x0) / np.linalg.norm(y0)
    p_mpjpe.append(np.linalg.norm(a * y @ r + (x.mean(0) - a * y.mean(0) @ r) - x, axis=-1).mean())
  return np.stack([mpjpe, np.asarray(p_mpjpe), n_mpjpe])


def np_sums(preds, targets) -> dict[str, np.ndarray]:
  """Per-sequence sums as the reference weights them (MPJVE: L x mean over L - 1 velocities)."""
  frame = [np_frame_errors(p, t).sum(1) for p, t in zip(preds, targets)]
  mpjve = [len(p) * np.linalg.norm(np.diff(p.astype(np.float64), axis=0) - np.diff(t.astype(np.float64), axis=0),
                                   axis=-1).mean() if len(p) > 1 else 0.0 for p, t in zip(preds, targets)]
  out = {name: np.asarray([f[i] for f in frame]) for i, name in enumerate(("mpjpe", "p_mpjpe", "n_mpjpe"))}
  return {**out, "mpjve": np.asarray(mpjve), "frames": np.asarray([len(p) for p in preds])}


def noisy_pairs(lengths, seed=0):
  rng = np.random.default_rng(seed)
  targets, preds = [], []
  for n in lengths:
    t = random_poses(n, int(rng.integers(1 << 30)))
    t[:, 0] = 0
    targets.append(t.astype(np.float32))
    preds.append((1.2 * t + 0.05 * rng.normal(size=t.shape)).astype(np.float32))
  return preds, targets


@pytest.mark.parametrize("block", [4, device_eval.METRIC_BLOCK])
def test_device_sums_equal_float64_reference(block):
  # Blocks of 4 frames: sequences and velocities straddle blocks; the last block overlaps.
  lengths = [1, 2, 7, 5, 11]
  preds, targets = noisy_pairs(lengths)
  frame_sequence = jnp.asarray(np.repeat(np.arange(len(lengths)), lengths).astype(np.int32))
  expected = np_sums(preds, targets)
  for full in (True, False):
    got = device_eval.sequence_sums(jnp.asarray(np.concatenate(preds)), jnp.asarray(np.concatenate(targets)),
                                    frame_sequence, np.asarray(lengths), full=full, block=block)
    assert set(got) == ({"frames", "mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"} if full else {"frames", "mpjpe", "mpjve"})
    for name, values in got.items():
      np.testing.assert_allclose(values, expected[name], rtol=2e-5 if name != "p_mpjpe" else 1e-4, atol=1e-7)
  assert got["mpjve"][0] == 0.0  # a single-frame sequence has no velocity
  public = evaluation.sequence_error_sums(preds, targets)
  for name in expected:
    np.testing.assert_allclose(public[name], expected[name], rtol=1e-4, atol=1e-7)


def labelled_data():
  recs = [record("S9", "Eating 1", random_poses(9, 40), 1), record("S9", "Walking 1", random_poses(14, 41), 2),
          record("S11", "Eating 2", random_poses(1, 42), 3), record("S11", "Walking 1", random_poses(6, 43), 4),
          record("S11", "Eating 1", random_poses(3, 44), 5)]
  return dataset(recs)


def test_resident_metrics_equal_float64_reference_and_are_reused_without_recompiling():
  model = tiny_model()
  va, vb = init_variables(model, 20), init_variables(model, 21)
  data, slices = labelled_data(), ["Eating", "Walking"]
  resident = evaluation.resident_test_set(data, slices, model, chunk=4, batch=2)
  assert resident.poses_2d.shape == (33, 17, 2) and resident.targets.shape == (33, 17, 3)
  assert resident.chunks.shape[1:] == (2, 2, 3)

  valid = evaluation.validation_metrics(model, stack(va, vb), resident, slices)
  sizes = (device_eval._predict._cache_size(), device_eval._sums._cache_size())
  other = evaluation.validation_metrics(model, stack(vb, va), resident, slices)  # new weights, same shapes
  again = evaluation.validation_metrics(model, stack(va, vb), resident, slices)
  assert (device_eval._predict._cache_size(), device_eval._sums._cache_size()) == sizes
  assert again == valid and other["mpjpe_valid"] != valid["mpjpe_valid"]
  assert evaluation.validation_metrics(model, stack(va, vb), data, slices, chunk=4, batch=2) == valid

  preds = evaluation.predict_dataset(model, stack(va, vb), data, slices, tta=False, chunk=4, batch=2)
  targets = [np.where(np.arange(17)[:, None] == 0, 0, r.poses_3d) for r in data.sequences]
  ref = np_sums(preds, targets)
  total = ref["frames"].sum()
  np.testing.assert_allclose([valid["frame_weighted"]["mpjpe_valid"], valid["frame_weighted"]["mpjve_valid"]],
                             [ref["mpjpe"].sum() / total, ref["mpjve"].sum() / total], rtol=1e-5)
  eating = [i for i, r in enumerate(data.sequences) if r.action == "Eating"]
  eat_frames = ref["frames"][eating].sum()
  np.testing.assert_allclose(valid["per_action"]["Eating"]["mpjve_valid"], ref["mpjve"][eating].sum() / eat_frames,
                             rtol=1e-5)
  assert valid["frames"] == {"Eating": 13, "Walking": 20, "total": 33}

  final = evaluation.evaluate_dataset(model, stack(va, vb), resident, slices, tta=False, by_subject=True)
  s11 = [i for i, r in enumerate(data.sequences) if r.subject == "S11" and r.action == "Eating"]
  for metric in evaluation.METRICS:
    np.testing.assert_allclose(final["per_action"]["Eating"][metric], 1000 * ref[metric][eating].sum() / eat_frames,
                               rtol=1e-4)
    np.testing.assert_allclose(final["by_subject"]["S11"]["per_action"]["Eating"][metric],
                               1000 * ref[metric][s11].sum() / ref["frames"][s11].sum(), rtol=1e-4)
  assert final == evaluation.evaluate_dataset(model, stack(va, vb), data, slices, tta=False, by_subject=True,
                                              chunk=4, batch=2)


def test_resident_set_rejects_mismatches():
  model = tiny_model()
  data, slices = labelled_data(), ["Eating", "Walking"]
  resident = evaluation.resident_test_set(data, slices, model, chunk=4, batch=2)
  v = init_variables(model, 3)
  with pytest.raises(PosejaxError, match="routed to Eating, Walking"):
    evaluation.validation_metrics(model, stack(v, v), resident, ["all"])
  with pytest.raises(PosejaxError, match="stack"):
    evaluation.validation_metrics(model, stack(v), resident, slices)
  with pytest.raises(PosejaxError, match="receptive field 9"):
    evaluation.validation_metrics(tiny_model(widths=(3,)), stack(v, v), resident, slices)
  sixteen = dataclasses.replace(model, num_joints_out=16)
  with pytest.raises(PosejaxError, match="17 3D joints; the model predicts 16"):
    evaluation.evaluate_dataset(sixteen, stack(v, v), resident, slices)
  causal = evaluation.resident_test_set(data, slices, tiny_model(causal=True), chunk=4, batch=2)
  with pytest.raises(PosejaxError, match="causal shift 4"):
    evaluation.evaluate_dataset(model, stack(v, v), causal, slices)
  unlabeled = dataset([dataclasses.replace(record("S9", "Eating 1", random_poses(5, 1)), poses_3d=None)])
  with pytest.raises(PosejaxError, match="S9 Eating 1 camera 0: no 3D"):
    evaluation.validation_metrics(model, stack(v), unlabeled, ["all"])
  with pytest.raises(PosejaxError, match="empty"):
    evaluation.validation_metrics(model, stack(v), dataset([]), ["all"])


def test_efficient_chunk_minimises_computed_frames():
  # 128-frame sequences, RF 27: chunk 512 computes 538 frames each, 128 computes 154, 64 computes 2 x 90.
  assert chunk_plan.efficient_chunk(np.full(10, 128), 512, 27) == 128
  # Long sequences keep the configured chunk: 1383 frames -> 3 x 538 = 1614 < 6 x 282 = 1692 at 256.
  assert chunk_plan.efficient_chunk(np.asarray([1383]), 512, 27) == 512
  # RF 243 on 100-frame sequences: 64 would compute 2 x 306 = 612 > 1 x 370 at 128.
  assert chunk_plan.efficient_chunk(np.full(3, 100), 512, 243) == 128
  # Halving stops at `smallest` (16 by default) and at odd sizes.
  assert chunk_plan.efficient_chunk(np.asarray([5]), 48, 3) == 24
  assert chunk_plan.efficient_chunk(np.asarray([5]), 48, 3, smallest=4) == 6
  assert chunk_plan.efficient_chunk(np.asarray([1]), 24, 3, smallest=1) == 3  # not 1: 3 is odd
