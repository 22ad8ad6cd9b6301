"""Tests for posejax.workdir.checkpoints: round trips, retention, compatibility, eval restore, signals."""

import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from posejax.common import sharding
from posejax.common.errors import PosejaxError
from posejax.models.tcn import TemporalModel
from posejax.training import optim, step as ts
from posejax.workdir import checkpoints as ck, resume

K, J = 4, 3
MODEL = TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=(3,), channels=8, strided=True)


def _state(models=3, steps=2):
  """A stacked state after a few real steps, so moments and counters are non-trivial."""
  tx = optim.adam_amsgrad()
  state = ts.init_stacked_state(MODEL, tx, 0, jnp.arange(models), (1, 3, K, 2))
  step = jax.jit(lambda s, x, y: jax.vmap(lambda s1, x1, y1: ts.train_step(
      s1, {"poses_2d": x1, "poses_3d": y1}, {"learning_rate": 1e-3, "bn_momentum": 0.1},
      jax.random.key(0), model=MODEL, optimizer=tx))(s, x, y))
  rng = np.random.default_rng(0)
  for _ in range(steps):
    state, _ = step(state, rng.normal(size=(models, 4, 3, K, 2)).astype(np.float32),
                    rng.normal(size=(models, 4, 1, J, 3)).astype(np.float32))
  return state


def _meta(**kw):
  config = {"mode": "action_based", "seed": 1, "data": {"keypoints": "gt"},
            "train": {"batch_size": 4, "epochs": 1}}
  meta = {"config": config, "actions": ["Eating", "Walking"], "dataset_fingerprint": "abc",
          "model": {"channels": 8, "filter_widths": [3]}}
  meta.update(kw)
  return meta


def test_round_trip_drops_padding_and_restores_exactly(tmp_path):
  state = _state(models=3)  # 2 real models + 1 padding model
  acc = {"loss_sum": jnp.array([1.5, 2.5, 9.0]), "steps": jnp.array([3, 4, 0], jnp.int32),
         "first_nonfinite": jnp.array([-1, -1, -1], jnp.int32)}
  mngr = ck.manager(str(tmp_path))
  ck.save(mngr, 7, state, acc, 2, _meta(train_time_s=3.0))
  mngr.wait_until_finished()
  template = jax.eval_shape(lambda: state)
  restored, acc2, meta = ck.restore_train(mngr, 7, template, ts.init_accumulator(3))
  mngr.close()
  want = jax.tree.map(lambda x: np.asarray(x)[:2], state)
  assert jax.tree.structure(restored) == jax.tree.structure(want)
  jax.tree.map(np.testing.assert_array_equal, restored, want)
  np.testing.assert_array_equal(acc2["loss_sum"], [1.5, 2.5])
  assert meta["global_step"] == 7 and meta["train_time_s"] == 3.0
  # Re-padded for another layout, the optimizer state is usable by the step.
  padded = sharding.pad_models(restored, 4)
  assert padded.opt_state.inner_state[0].count.shape == (4,)


def test_keeps_latest_and_best(tmp_path):
  state, acc = _state(models=1, steps=1), ts.init_accumulator(1)
  mngr = ck.manager(str(tmp_path), keep=2)
  metrics = {10: 0.05, 20: 0.2, 30: None, 40: 0.3, 50: 0.4}
  for step, value in metrics.items():
    ck.save(mngr, step, state, acc, 1, _meta(), None if value is None else {ck.BEST_METRIC: value})
  mngr.wait_until_finished()
  assert list(mngr.all_steps()) == [10, 40, 50]  # best (10) + the last two
  assert mngr.best_step() == 10 and mngr.latest_step() == 50
  mngr.close()
  # Without a validation split: the last two only, and no metrics stored.
  mngr = ck.manager(str(tmp_path / "plain"), keep=2, select_best=False)
  for step in (10, 20, 30):
    ck.save(mngr, step, state, acc, 1, _meta(), {ck.BEST_METRIC: 0.1} if step == 10 else None)
  mngr.wait_until_finished()
  assert list(mngr.all_steps()) == [20, 30] and mngr.metrics(20) is None
  mngr.close()


def test_restore_for_eval_and_which(tmp_path):
  state, acc = _state(models=2, steps=1), ts.init_accumulator(2)
  config = ml_collections.ConfigDict({"mode": "action_based", "model": {"channels": 8}})
  mngr = ck.manager(str(tmp_path))
  for step, value in ((5, 0.1), (9, 0.2)):
    ck.save(mngr, step, state, acc, 2, _meta(config=config.to_dict()), {ck.BEST_METRIC: value})
  mngr.wait_until_finished()
  mngr.close()
  cfg, variables, actions, step, meta = ck.restore_for_eval(str(tmp_path), "best")
  assert step == 5 and actions == ["Eating", "Walking"] and cfg.model.channels == 8
  assert meta["model"]["channels"] == 8
  jax.tree.map(np.testing.assert_array_equal, variables, jax.tree.map(np.asarray, state.variables))
  assert ck.restore_for_eval(str(tmp_path), "latest")[3] == 9
  assert ck.restore_for_eval(str(tmp_path), 9)[3] == 9
  _save_plain(tmp_path / "nometrics", state, acc)
  assert ck.restore_for_eval(str(tmp_path / "nometrics"))[3] == 3  # default: the latest
  with pytest.raises(PosejaxError, match="held-out validation split .* never used to select"):
    ck.restore_for_eval(str(tmp_path / "nometrics"), "best")
  with pytest.raises(PosejaxError, match="no checkpoint at step 7"):
    ck.restore_for_eval(str(tmp_path), 7)
  with pytest.raises(PosejaxError, match="no checkpoints directory"):
    ck.restore_for_eval(str(tmp_path / "nothing"), "best")


def _save_plain(workdir, state, acc):
  """Checkpoints at steps 2 and 3 without held-out metrics (no 'best' to choose)."""
  mngr = ck.manager(str(workdir))
  for step in (2, 3):
    ck.save(mngr, step, state, acc, 2, _meta(config={}))
  mngr.wait_until_finished()
  mngr.close()


def test_save_imported_is_evaluable_not_resumable(tmp_path):
  variables = jax.tree.map(np.asarray, _state(models=1, steps=0).variables)
  config = ml_collections.ConfigDict({"mode": "common", "model": {"channels": 8}})
  ck.save_imported(str(tmp_path), variables, config, ["all"], source="pretrained.bin")
  assert (tmp_path / "config.json").exists()
  cfg, restored, actions, step, meta = ck.restore_for_eval(str(tmp_path), "latest")
  assert actions == ["all"] and step == 0 and meta["imported_from"] == "pretrained.bin"
  jax.tree.map(np.testing.assert_array_equal, restored, variables)
  mngr = ck.manager(str(tmp_path))
  with pytest.raises(PosejaxError, match="imported from pretrained.bin"):
    ck.restore_train(mngr, 0, jax.eval_shape(lambda: _state(1, 0)), ts.init_accumulator(1))
  mngr.close()
  with pytest.raises(PosejaxError, match="leading sizes"):
    ck.save_imported(str(tmp_path / "x"), variables, config, ["Eating", "Walking"], source="x")


@pytest.mark.parametrize("change,message", [
    (dict(actions=["Eating"]), "actions Eating, Walking"),
    (dict(model={"channels": 16, "filter_widths": [3]}), "model channels=8"),
    (dict(dataset_fingerprint="zzz"), "dataset fingerprint abc"),
])
def test_incompatible_runs_are_named(change, message):
  with pytest.raises(PosejaxError, match=message):
    resume.check_compatible(_meta(), _meta(**change), "WORKDIR/checkpoints")
  resume.check_compatible(_meta(), _meta(), "WORKDIR/checkpoints")


def test_incompatible_config_entry():
  other = _meta()
  other["config"] = dict(other["config"], data={"keypoints": "cpn_ft_h36m_dbb"})
  with pytest.raises(PosejaxError, match="data.keypoints='gt' \\(config: 'cpn_ft_h36m_dbb'\\)"):
    resume.check_compatible(_meta(), other, "W")


def test_stop_request_sets_flag_and_restores_handlers():
  before = signal.getsignal(signal.SIGTERM)
  with ck.StopRequest() as stop:
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and stop.signal == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == before


def test_read_only_opening_logs_nothing_but_other_absl_warnings_pass(tmp_path, caplog):
  from absl import logging as absl_logging
  variables = jax.tree.map(np.asarray, _state(models=1, steps=0).variables)
  config = ml_collections.ConfigDict({"mode": "common", "model": {"channels": 8}})
  ck.save_imported(str(tmp_path), variables, config, ["all"], source="x")
  with caplog.at_level("INFO"):
    ck.manager(str(tmp_path), read_only=True).close()
    ck.restore_for_eval(str(tmp_path), "latest")
    absl_logging.warning("Given directory is writable=%s", "d")  # the filter drops that notice only
  messages = [r.getMessage() for r in caplog.records]
  assert not [m for m in messages if "read only" in m] and "Given directory is writable=d" in messages
