"""Tests for posejax.training.semi.step: warm-up is supervised training, the full loss is the sum of its terms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models.tcn import TemporalModel, receptive_field
from posejax.pose import losses
from posejax.training import optim, step as ts
from posejax.training.semi import losses as semi_losses, step as ss

K, J, C, B = 4, 4, 16, 6
WIDTHS = (3, 3)
RF = receptive_field(WIDTHS)
PARENTS = (-1, 0, 1, 0)
MODEL = TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=WIDTHS, channels=C, strided=True,
                      dropout=0.25)
TRAJ = TemporalModel(num_joints_in=K, num_joints_out=1, filter_widths=WIDTHS, channels=C, strided=True,
                     dropout=0.25)
TX = optim.adam_amsgrad()
OPTIONS = ss.SemiOptions(parents=PARENTS, pad=RF // 2)
SEMI = jax.jit(functools.partial(ss.semi_train_step, model=MODEL, traj_model=TRAJ, optimizer=TX, options=OPTIONS))
SUP = jax.jit(functools.partial(ts.train_step, model=MODEL, optimizer=TX))


def _hp(warmup_steps):
  return {"learning_rate": jnp.float32(1e-3), "bn_momentum": jnp.float32(0.1),
          "warmup_steps": jnp.int32(warmup_steps)}


def _batch(seed):
  rng = np.random.default_rng(seed)
  traj = np.stack([rng.normal(scale=0.3, size=B), rng.normal(scale=0.3, size=B), rng.uniform(4, 6, B)], -1)
  cams = np.concatenate([np.full((B, 2), 1.15), rng.normal(scale=0.02, size=(B, 2)),
                         rng.normal(scale=0.05, size=(B, 5))], -1)
  f = lambda *s: rng.normal(scale=0.3, size=s).astype(np.float32)
  return {"poses_2d": f(B, RF, K, 2), "poses_3d": f(B, 1, J, 3), "trajectory": traj[:, None, None].astype(np.float32),
          "unlabeled_2d": f(B, RF, K, 2), "cameras": cams.astype(np.float32)}


@pytest.fixture(scope="module")
def state():
  ids = jnp.arange(1)
  return jax.tree.map(lambda x: x[0], ss.init_stacked_state(MODEL, TRAJ, TX, 0, ids, (1, RF, K, 2)))


def test_pose_model_starts_as_supervised(state):
  sup = jax.tree.map(lambda x: x[0], ts.init_stacked_state(MODEL, TX, 0, jnp.arange(1), (1, RF, K, 2)))
  jax.tree.map(np.testing.assert_array_equal, state.variables, sup.variables)
  last = lambda p: np.asarray(jax.tree.leaves(p)[-1])
  assert last(state.traj_params).shape[-1] == 3 and last(state.params).shape[-1] == 3 * J


def test_warmup_steps_are_supervised_training(state):
  """Two warm-up steps: the pose model's weights, statistics and losses are the supervised ones.

  The same arithmetic compiled into another program: equal up to XLA's fusion order (an ulp in
  the loss; Adam's first updates, about lr * sign(g), turn that into at most 1e-2 * lr).
  """
  sup = ts.TrainState(params=state.params, batch_stats=state.batch_stats,
                      opt_state=TX.init(state.params), step=state.step)
  rng = jax.random.key(7)
  semi = state
  for i in range(2):
    batch = _batch(i)
    semi, m_semi = SEMI(semi, batch, _hp(2), rng)
    sup, m_sup = SUP(sup, {k: batch[k] for k in ("poses_2d", "poses_3d")}, _hp(2), rng)
    np.testing.assert_allclose(m_semi["loss"], m_sup["loss"], rtol=1e-6)
    assert float(m_semi["semi"]) == 0.0 and float(m_semi["loss_2d"]) == 0.0
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5), semi.variables, sup.variables)
  # Not a vacuous comparison: the models moved.
  assert not np.allclose(jax.tree.leaves(semi.params)[-1], jax.tree.leaves(state.params)[-1])
  # The third step is past warm-up: the unlabeled windows join in.
  semi, m_semi = SEMI(semi, _batch(2), _hp(2), rng)
  assert float(m_semi["semi"]) == 1.0 and float(m_semi["loss_2d"]) > 0
  # The trajectory model trained too (its own loss, 1/depth weighted).
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(semi.traj_params),
                                                      jax.tree.leaves(state.traj_params)))


def _np_loss(pred, pred_traj, batch, options):
  """Reference V11.2 in float64 from the models' outputs (the bone term: test_semi_losses)."""
  pred, pred_traj = np.asarray(pred, np.float64), np.asarray(pred_traj, np.float64)
  target = np.array(batch["poses_3d"], np.float64)
  target[..., 0, :] = 0
  traj = np.asarray(batch["trajectory"], np.float64)
  loss_3d = np.linalg.norm(pred[:B] - target, axis=-1).mean()
  loss_traj = np.mean(np.linalg.norm(pred_traj[:B] - traj, axis=-1) / traj[..., 2])
  x = pred[B:] + pred_traj[B:]
  cam = np.asarray(batch["cameras"], np.float64)[:, None, None]
  xy = np.clip(x[..., :2] / x[..., 2:], -1, 1)
  r2 = np.sum(xy ** 2, -1, keepdims=True)
  radial = 1 + cam[..., 4:5] * r2 + cam[..., 5:6] * r2 ** 2 + cam[..., 6:7] * r2 ** 3
  tan = np.sum(cam[..., 7:9] * xy, -1, keepdims=True)
  proj = cam[..., 0:2] * (xy * (radial + tan) + cam[..., 7:9] * r2) + cam[..., 2:4]
  pad = options.pad
  loss_2d = np.linalg.norm(proj - np.asarray(batch["unlabeled_2d"])[:, pad:-pad, :, :2], axis=-1).mean()
  return loss_3d, loss_traj, loss_2d


def test_semi_step_losses_and_gradient_match_numpy(state):
  """Past warm-up (dropout off via a zero-rate copy of the models): each term and the total."""
  model, traj = MODEL.clone(dropout=0.0), TRAJ.clone(dropout=0.0)
  batch, rng = _batch(3), jax.random.key(0)
  x = np.concatenate([batch["poses_2d"], batch["unlabeled_2d"]])
  run = lambda net, v: net.apply(v, x, train=True, bn_momentum=0.1, mutable=["batch_stats"])[0]
  pred, pred_traj = run(model, state.variables), run(traj, state.traj_variables)
  loss_3d, loss_traj, loss_2d = _np_loss(pred, pred_traj, batch, OPTIONS)

  # The gradient is that of the sum of all four terms (and of three with each flag off).
  @functools.partial(jax.jit, static_argnums=1)
  @functools.partial(jax.grad)
  def total(params, options):
    out = lambda net, p, s: net.apply({"params": p, "batch_stats": s}, jnp.asarray(x), train=True, bn_momentum=0.1,
                                      mutable=["batch_stats"])[0]
    pred, pred_traj = out(model, params["pose"], state.batch_stats), out(traj, params["traj"], state.traj_batch_stats)
    target = jnp.asarray(batch["poses_3d"]).at[..., 0, :].set(0)
    t = losses.mpjpe(pred[:B], target) + semi_losses.trajectory_loss(pred_traj[:B], jnp.asarray(batch["trajectory"]))
    if options.projection:
      t += semi_losses.projection_loss(pred[B:], pred_traj[B:], jnp.asarray(batch["cameras"]),
                                       jnp.asarray(batch["unlabeled_2d"]), options.pad)
    if options.bone_length:
      t += semi_losses.bone_length_penalty(pred, PARENTS, B)
    return t

  for options in (OPTIONS, ss.SemiOptions(PARENTS, RF // 2, bone_length=False, projection=False)):
    step = jax.jit(functools.partial(ss.semi_train_step, model=model, traj_model=traj, optimizer=TX,
                                     options=options))
    new, metrics = step(state, batch, _hp(0), rng)
    assert float(metrics["semi"]) == 1.0
    np.testing.assert_allclose(metrics["loss"], loss_3d, rtol=2e-5)
    np.testing.assert_allclose(metrics["loss_traj"], loss_traj, rtol=2e-5)
    np.testing.assert_allclose(metrics["loss_2d"], loss_2d, rtol=2e-5)
    params = {"pose": state.params, "traj": state.traj_params}
    grads = total(params, options)
    updates, _ = TX.update(grads, optim.with_learning_rate(state.opt_state, 1e-3), params)
    want = jax.tree.map(lambda p, u: p + u, params, updates)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-7),
                 {"pose": new.params, "traj": new.traj_params}, want)


def test_vmapped_step_equals_vmap_of_the_step(state):
  """One branch when the slots agree, both when they do not: the same steps as plain vmap."""
  step = functools.partial(ss.semi_train_step, model=MODEL, traj_model=TRAJ, optimizer=TX, options=OPTIONS)
  two = lambda *trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
  states = two(state, state.replace(step=jnp.int32(3)))
  batch = two(_batch(5), _batch(6))
  rngs = jax.vmap(jax.random.key)(jnp.arange(2))
  fast, plain = jax.jit(ss.vmapped_step(step)), jax.jit(jax.vmap(step))
  # Steps 0 and 3: all in warm-up, mixed, none.
  for warmup, semi in (((4, 4), [0, 0]), ((1, 2), [0, 1]), ((0, 0), [1, 1])):
    hp = two(_hp(warmup[0]), _hp(warmup[1]))
    (a, ma), (b, mb) = fast(states, batch, hp, rngs), plain(states, batch, hp, rngs)
    np.testing.assert_array_equal(ma["semi"], semi)
    np.testing.assert_array_equal(mb["semi"], semi)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5), (a, ma), (b, mb))
