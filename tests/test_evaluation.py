"""Tests for posejax.evaluation.protocols: chunked == whole sequence, TTA, per-action routing, averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.data.dataset import PoseDataset, SequenceRecord
from posejax.evaluation import protocols as evaluation
from posejax.models.tcn import TemporalModel
from posejax.pose.skeleton import H36M_SKELETON, LAYOUTS

K = J = 17
KPS_L, KPS_R = LAYOUTS["h36m"].left, LAYOUTS["h36m"].right
FLIP = dict(kps_left=KPS_L, kps_right=KPS_R, joints_left=H36M_SKELETON.joints_left,
            joints_right=H36M_SKELETON.joints_right)


def tiny_model(causal: bool = False, widths=(3, 3)) -> TemporalModel:
  return TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=widths, causal=causal,
                       channels=8, dropout=0.0)


def init_variables(model: TemporalModel, seed: int):
  """Random weights and non-trivial BatchNorm statistics (eval mode uses them).

  Filled from NumPy on the shapes of `model.init` (tracing only): compiling the random
  initialisers costs far more than these tests.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 9, K, 2)), train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name in ("var", "scale"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    elif name in ("mean", "bias"):
      value = 0.1 * rng.normal(size=leaf.shape)
    else:  # conv kernels (width, in, out): PyTorch's default range
      bound = 1 / np.sqrt(leaf.shape[0] * leaf.shape[1])
      value = rng.uniform(-bound, bound, leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def whole_sequence(model, variables, x: np.ndarray) -> np.ndarray:
  """Reference path: the whole sequence, edge-padded as the UnchunkedGenerator does."""
  rf = 9 if model.filter_widths == (3, 3) else None
  pad, shift = (rf - 1) // 2, ((rf - 1) // 2 if model.causal else 0)
  padded = np.pad(x, ((pad + shift, pad - shift), (0, 0), (0, 0)), mode="edge")
  return np.asarray(jax.jit(model.apply, static_argnames="train")(variables, padded[None], train=False))[0]


def np_flip(x: np.ndarray, left, right) -> np.ndarray:
  y = np.array(x, np.float64)
  y[..., 0] *= -1
  y[..., list(left) + list(right), :] = y[..., list(right) + list(left), :]
  return y.astype(np.float32)


def sequences(lengths, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(n, K, 2)).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_predict_equals_whole_sequence(causal):
  model = tiny_model(causal)
  variables = init_variables(model, 0)
  seqs = sequences([1, 4, 5, 13, 30])
  preds = evaluation.predict(model, variables, seqs, tta=False, chunk=4, batch=3, **FLIP)
  for x, p in zip(seqs, preds):
    assert p.shape == (len(x), J, 3)
    np.testing.assert_allclose(p, whole_sequence(model, variables, x), atol=1e-5)


def test_tta_unflips_and_averages():
  model = tiny_model()
  variables = init_variables(model, 1)
  seqs = sequences([11, 6], seed=3)
  preds = evaluation.predict(model, variables, seqs, tta=True, chunk=5, batch=2, **FLIP)
  for x, p in zip(seqs, preds):
    plain = whole_sequence(model, variables, x)
    mirrored = whole_sequence(model, variables, np_flip(x, KPS_L, KPS_R))
    expected = (plain + np_flip(mirrored, H36M_SKELETON.joints_left, H36M_SKELETON.joints_right)) / 2
    np.testing.assert_allclose(p, expected, atol=1e-5)
  # TTA makes the predictor mirror-equivariant: f(flip(x)) == flip(f(x)).
  flipped = evaluation.predict(model, variables, [np_flip(x, KPS_L, KPS_R) for x in seqs], tta=True,
                               chunk=5, batch=2, **FLIP)
  for p, q in zip(preds, flipped):
    np.testing.assert_allclose(q, np_flip(p, H36M_SKELETON.joints_left, H36M_SKELETON.joints_right),
                               atol=1e-5)


def test_stacked_prediction_routes_each_slice_to_its_own_model():
  model = tiny_model()
  va, vb = init_variables(model, 2), init_variables(model, 7)
  stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), va, vb)
  group_a, group_b = sequences([7, 12, 3], seed=4), sequences([20], seed=5)
  out_a, out_b = evaluation.predict_stacked(model, stacked, [group_a, group_b], tta=True,
                                            chunk=4, batch=2, **FLIP)
  own_a = evaluation.predict(model, va, group_a, tta=True, chunk=4, batch=2, **FLIP)
  own_b = evaluation.predict(model, vb, group_b, tta=True, chunk=4, batch=2, **FLIP)
  other_b = evaluation.predict(model, va, group_b, tta=True, chunk=4, batch=2, **FLIP)
  for p, q in zip(out_a + out_b, own_a + own_b):
    np.testing.assert_allclose(p, q, atol=1e-5)
  assert np.abs(out_b[0] - other_b[0]).max() > 1e-2  # the two models really differ


def record(subject, name, poses_3d, seed=0):
  n = len(poses_3d)
  poses_2d = np.random.default_rng(seed).normal(size=(n, K, 2)).astype(np.float32)
  return SequenceRecord(subject=subject, name=name, action=name.split(" ")[0], camera=0,
                        poses_2d=poses_2d, poses_3d=poses_3d.astype(np.float32), intrinsic=None,
                        res_w=1000, res_h=1000)


def dataset(records) -> PoseDataset:
  return PoseDataset(sequences=tuple(records), keypoints_left=KPS_L, keypoints_right=KPS_R,
                     skeleton=H36M_SKELETON, num_keypoints=K, fps=50.0, layout_name="h36m",
                     source="test")


def random_poses(n, seed):
  return np.random.default_rng(seed).normal(scale=0.3, size=(n, J, 3))


def test_metric_averaging_matches_hand_computation():
  # Prediction = root-zeroed target shifted along x by a + b t (metres): the per-frame MPJPE
  # is |a + b t|, the velocity error |b| per difference, P-MPJPE 0 (pure translation).
  specs = [("S9", "Eating 1", 3, 0.01, 0.002), ("S9", "Eating 2", 5, 0.02, -0.001),
           ("S11", "Eating 1", 2, 0.03, 0.0), ("S9", "Walking 1", 4, 0.05, 0.004)]
  records, preds = [], []
  for i, (subject, name, n, a, b) in enumerate(specs):
    target = random_poses(n, i)
    records.append(record(subject, name, target, i))
    zeroed = target.copy()
    zeroed[:, 0] = 0
    shift = np.zeros((n, 1, 3))
    shift[:, 0, 0] = a + b * np.arange(n)
    preds.append((zeroed + shift).astype(np.float32))
  result = evaluation.score(dataset(records), preds, by_subject=True)

  eat_mpjpe = (sum(abs(0.01 + 0.002 * t) for t in range(3)) + sum(abs(0.02 - 0.001 * t) for t in range(5))
               + 2 * 0.03) / (3 + 5 + 2)
  eat_mpjve = (3 * 0.002 + 5 * 0.001 + 2 * 0.0) / 10
  walk_mpjpe = sum(0.05 + 0.004 * t for t in range(4)) / 4
  walk_mpjve = 0.004
  eat, walk = result["per_action"]["Eating"], result["per_action"]["Walking"]
  assert list(result["per_action"]) == ["Eating", "Walking"]
  np.testing.assert_allclose([eat["mpjpe"], eat["mpjve"]], [1000 * eat_mpjpe, 1000 * eat_mpjve], rtol=1e-4)
  np.testing.assert_allclose([walk["mpjpe"], walk["mpjve"]], [1000 * walk_mpjpe, 1000 * walk_mpjve],
                             rtol=1e-4)
  np.testing.assert_allclose(result["average"]["mpjpe"], 500 * (eat_mpjpe + walk_mpjpe), rtol=1e-4)
  np.testing.assert_allclose(result["average"]["mpjve"], 500 * (eat_mpjve + walk_mpjve), rtol=1e-4)
  assert eat["p_mpjpe"] < 1e-3 and walk["p_mpjpe"] < 1e-3
  assert result["frames"] == {"Eating": 10, "Walking": 4, "total": 14}
  s11 = result["by_subject"]["S11"]
  assert list(s11["per_action"]) == ["Eating"]
  np.testing.assert_allclose(s11["per_action"]["Eating"]["mpjpe"], 30.0, rtol=1e-4)


def test_n_mpjpe_and_p_mpjpe_against_float64_reference():
  target = random_poses(6, 11)
  target[:, 0] = 0
  rng = np.random.default_rng(12)
  pred = (1.3 * target + 0.05 * rng.normal(size=target.shape)).astype(np.float32)
  result = evaluation.score(dataset([record("S9", "Posing 1", target)]), [pred])["per_action"]["Posing"]
  scale = (np.sum(target * pred, axis=(1, 2)) / np.sum(pred**2, axis=(1, 2)))[:, None, None]
  n_ref = np.linalg.norm(scale * pred - target, axis=-1).mean()
  p_errors = []
  for x, y in zip(target.astype(np.float64), pred.astype(np.float64)):
    x0, y0 = x - x.mean(0), y - y.mean(0)
    u, s, vt = np.linalg.svd((x0 / np.linalg.norm(x0)).T @ (y0 / np.linalg.norm(y0)))
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:
      vt[-1] *= -1
      s[-1] *= -1
      r = vt.T @ u.T
    a = s.sum() * np.linalg.norm(x0) / np.linalg.norm(y0)
    aligned = a * y @ r + (x.mean(0) - a * y.mean(0) @ r)
    p_errors.append(np.linalg.norm(aligned - x, axis=-1).mean())
  np.testing.assert_allclose(result["n_mpjpe"], 1000 * n_ref, rtol=1e-4)
  np.testing.assert_allclose(result["p_mpjpe"], 1000 * np.mean(p_errors), rtol=1e-3)


def test_evaluate_dataset_common_vs_action_based_and_validation():
  model = tiny_model()
  va, vb = init_variables(model, 3), init_variables(model, 4)
  recs = [record("S9", "Eating 1", random_poses(9, 20), 1), record("S9", "Walking 1", random_poses(14, 21), 2),
          record("S11", "Eating 2", random_poses(6, 22), 3)]
  data = dataset(recs)
  stack = lambda *vs: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *vs)
  kw = dict(chunk=4, batch=2)
  common = evaluation.evaluate_dataset(model, stack(va), data, ["all"], **kw)
  same_twice = evaluation.evaluate_dataset(model, stack(va, va), data, ["Eating", "Walking"], **kw)
  assert common["tta"] is True
  for action in ("Eating", "Walking"):
    for m in evaluation.METRICS:
      np.testing.assert_allclose(same_twice["per_action"][action][m], common["per_action"][action][m],
                                 rtol=1e-5)
  # Walking's slice holds model b: its row equals model b's common evaluation of Walking only.
  ab = evaluation.evaluate_dataset(model, stack(va, vb), data, ["Eating", "Walking"], **kw)
  b_walk = evaluation.evaluate_dataset(model, stack(vb), data.select(actions=["Walking"]), ["all"], **kw)
  np.testing.assert_allclose(ab["per_action"]["Walking"]["mpjpe"], b_walk["per_action"]["Walking"]["mpjpe"],
                             rtol=1e-5)
  np.testing.assert_allclose(ab["per_action"]["Eating"]["mpjpe"], common["per_action"]["Eating"]["mpjpe"],
                             rtol=1e-5)

  valid = evaluation.validation_metrics(model, stack(va, vb), data, ["Eating", "Walking"], **kw)
  no_tta = evaluation.evaluate_dataset(model, stack(va, vb), data, ["Eating", "Walking"], tta=False, **kw)
  for action in ("Eating", "Walking"):
    np.testing.assert_allclose(1000 * valid["per_action"][action]["mpjpe_valid"],
                               no_tta["per_action"][action]["mpjpe"], rtol=1e-5)
    np.testing.assert_allclose(1000 * valid["per_action"][action]["mpjve_valid"],
                               no_tta["per_action"][action]["mpjve"], rtol=1e-5)
  np.testing.assert_allclose(1000 * valid["mpjpe_valid"], no_tta["average"]["mpjpe"], rtol=1e-5)

  with pytest.raises(PosejaxError, match="Walking"):
    evaluation.evaluate_dataset(model, stack(va), data, ["Eating"], **kw)


def test_plan_pads_slices_to_whole_batches():
  plan = evaluation.plan_chunks([[5, 3], [9]], chunk=4, batch=2, receptive_field=9)
  assert plan.chunk_seq.shape == (2, 4)
  np.testing.assert_array_equal(plan.chunk_seq, [[0, 0, 1, -1], [2, 2, 2, -1]])
  np.testing.assert_array_equal(plan.chunk_start, [[0, 4, 0, 0], [0, 4, 8, 0]])
  np.testing.assert_array_equal(plan.offsets, [0, 5, 8])
  auto = evaluation.plan_chunks([[5, 3], [9]], chunk=4, batch=None, receptive_field=9)
  assert auto.batch == 3 and auto.chunk_seq.shape == (2, 3)  # capped at the largest slice
  with pytest.raises(PosejaxError, match="chunk"):
    evaluation.plan_chunks([[5]], chunk=0, batch=None, receptive_field=9)
