"""Tests for posejax.models.family: the registry, the TCN's Window, build, dilated form and loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.models import family, spec as model_spec
from posejax.models.tcn import TemporalModel
from posejax.pose import losses


def _hparams(**changes):
  h = {"filter_widths": [3, 3], "channels": 8, "causal": False, "dense": False, "dropout": 0.0,
       "num_joints_in": 5, "in_features": 2, "num_joints_out": 4}
  return {**h, **changes}


def _old_build(h, *, strided=False, dtype="float32"):
  """spec.build before the family seam (commit 6299658), for the equality checks."""
  return TemporalModel(num_joints_in=h["num_joints_in"], in_features=h["in_features"],
                       num_joints_out=h["num_joints_out"], filter_widths=tuple(h["filter_widths"]),
                       causal=h["causal"], dropout=h["dropout"], channels=h["channels"], dense=h["dense"],
                       strided=strided and not h["dense"], dtype=dtype)


def test_registry_names_the_tcn_and_refuses_unknown_families_in_one_line():
  assert family.get("tcn") is family.TCN and family.TCN.name == "tcn"
  assert family.TCN.fields == model_spec.FIELDS
  with pytest.raises(PosejaxError) as e:
    family.get("mixste")
  assert str(e.value) == "--config.model.family: 'mixste' is not one of tcn"
  assert family.of_hparams({**_hparams(), "family": "tcn"}) is family.TCN
  with pytest.raises(PosejaxError, match="^--config.model.family: 'x' is not one of tcn$"):
    family.of_hparams({"family": "x"})


@pytest.mark.parametrize("widths,causal,rf,pad,shift", [
    ((3, 3, 3), True, 27, 13, 13), ((3, 3, 3), False, 27, 13, 0), ((3, 5), False, 15, 7, 0),
    ((3, 5), True, 15, 7, 7), ((1,), True, 1, 0, 0), ((3, 3, 3, 3, 3), False, 243, 121, 0)])
def test_tcn_window_and_model_members_are_the_hand_computed_ones(widths, causal, rf, pad, shift):
  h = _hparams(filter_widths=list(widths), causal=causal)
  assert family.TCN.window(h) == family.Window(rf, shift, None)
  assert family.TCN.window(h).pad == pad
  for strided in (False, True):
    model = family.TCN.build(h, strided=strided, dtype="float32")
    assert isinstance(model, family.PoseModel)
    assert (model.receptive_field, model.pad, model.causal_shift) == (rf, pad, shift)


def test_a_clip_window_reads_as_many_frames_as_it_returns():
  window = family.Window(243, 0, 243)
  assert (window.receptive_field, window.output_frames, window.pad) == (243, 243, 0)


@pytest.mark.parametrize("changes", [{}, {"causal": True, "filter_widths": [3, 5]}, {"dense": True}])
@pytest.mark.parametrize("strided", [False, True])
def test_build_is_the_old_spec_build(changes, strided):
  h = _hparams(**changes)
  new, old = model_spec.build(h, strided=strided), _old_build(h, strided=strided)
  assert new == old and family.TCN.build(h, strided=strided, dtype="bfloat16") == _old_build(
      h, strided=strided, dtype="bfloat16")
  frames = new.receptive_field if strided and not h["dense"] else new.receptive_field + 6
  x = jax.random.normal(jax.random.key(1), (3, frames, 5, 2))
  v_new, v_old = new.init(jax.random.key(2), x, train=False), old.init(jax.random.key(2), x, train=False)
  assert jax.tree.structure(v_new) == jax.tree.structure(v_old)
  jax.tree.map(np.testing.assert_array_equal, v_new, v_old)
  np.testing.assert_array_equal(new.apply(v_new, x, train=False), old.apply(v_old, x, train=False))


@pytest.mark.parametrize("causal", [False, True])
def test_dilated_of_a_strided_model_is_the_dilated_build(causal):
  h = _hparams(causal=causal, filter_widths=[3, 3, 3])
  strided = model_spec.build(h, strided=True)
  assert strided.strided and strided.dilated() == model_spec.build(h)
  assert hash(strided.dilated()) == hash(model_spec.build(h))  # a static argument of jitted passes
  x = jax.random.normal(jax.random.key(3), (2, 40, 5, 2))
  variables = strided.init(jax.random.key(4), x[:, :27], train=False)
  np.testing.assert_array_equal(strided.dilated().apply(variables, x, train=False),
                                model_spec.build(h).apply(variables, x, train=False))


def test_the_tcn_loss_is_mpjpe():
  assert family.TCN.loss is losses.mpjpe
  pred, target = jax.random.normal(jax.random.key(5), (2, 2, 4, 17, 3))
  assert float(family.TCN.loss(pred, target)) == float(losses.mpjpe(pred, target))
  assert float(family.TCN.loss(jnp.ones((1, 1, 2, 3)), jnp.zeros((1, 1, 2, 3)))) == pytest.approx(3 ** 0.5)


def test_records_without_a_family_are_tcns():
  old = {"filter_widths": [3], "channels": 8, "causal": False, "dense": False, "dropout": 0.25,
         "num_joints_in": 17, "num_joints_out": 17}  # a record of an earlier version
  normalized = model_spec.normalized_record(old)
  assert family.of_hparams(normalized) is family.TCN and family.of_hparams({}) is family.TCN
  assert model_spec.build(normalized) == _old_build({**old, "in_features": 2})


def test_the_trainer_refuses_an_unknown_family_before_loading_data(tmp_path):
  from configs import default
  from pieces import pieces
  from posejax import trainer
  config = default.get_config()
  config.data.dir = str(tmp_path / "no_data_here")
  config.model.family = "mixste"
  with pytest.raises(PosejaxError, match=r"^--config.model.family: 'mixste' is not one of tcn$"):
    trainer.Run(pieces(config), str(tmp_path / "w"))


def test_one_frame_and_architecture_forms_of_the_tcn():
  """Streaming's form (strided; dilated for the dense variant) and export's metadata, from the model."""
  dilated = TemporalModel(num_joints_in=17, filter_widths=(3, 3), channels=8, causal=True)
  assert dilated.one_frame() == dilated.clone(strided=True)
  dense = TemporalModel(num_joints_in=17, filter_widths=(3, 3), channels=8, dense=True)
  assert dense.one_frame() == dense and not dense.one_frame().strided
  assert dilated.architecture() == {"filter_widths": [3, 3], "causal": True, "channels": 8, "dense": False}
  assert isinstance(dilated, family.PoseModel)
