"""Tests for posejax.tools.interop: VideoPose3D PyTorch checkpoints evaluate identically in JAX."""

import sys

import jax
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.models.tcn import TemporalModel, receptive_field
from posejax.models import videopose3d
from posejax.tools import interop

torch = pytest.importorskip("torch")
nn = torch.nn

K, C = 4, 16


class TorchTemporalModel(nn.Module):
  """VideoPose3D's TemporalModel (strided=False) and TemporalModelOptimized1f (strided=True), reference V8.3-8.5."""

  def __init__(self, num_joints_in, in_features, num_joints_out, filter_widths, causal=False, dropout=0.25,
               channels=1024, dense=False, strided=False):
    super().__init__()
    self.num_joints_out, self.filter_widths, self.strided = num_joints_out, filter_widths, strided
    self.drop, self.relu = nn.Dropout(dropout), nn.ReLU()
    self.expand_conv = nn.Conv1d(num_joints_in * in_features, channels, filter_widths[0],
                                 stride=filter_widths[0] if strided else 1, bias=False)
    self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
    self.pad, self.causal_shift = [filter_widths[0] // 2], [filter_widths[0] // 2 if causal else 0]
    convs, bns, dilation = [], [], filter_widths[0]
    for w in filter_widths[1:]:
      self.pad.append((w - 1) * dilation // 2)
      if strided:
        self.causal_shift.append(w // 2 if causal else 0)
        convs.append(nn.Conv1d(channels, channels, w, stride=w, bias=False))
      else:
        self.causal_shift.append(w // 2 * dilation if causal else 0)
        convs.append(nn.Conv1d(channels, channels, 2 * self.pad[-1] + 1 if dense else w,
                               dilation=1 if dense else dilation, bias=False))
      bns.append(nn.BatchNorm1d(channels, momentum=0.1))
      convs.append(nn.Conv1d(channels, channels, 1, bias=False))
      bns.append(nn.BatchNorm1d(channels, momentum=0.1))
      dilation *= w
    self.layers_conv, self.layers_bn = nn.ModuleList(convs), nn.ModuleList(bns)
    self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)

  def forward(self, x):
    b = x.shape[0]
    x = x.view(b, x.shape[1], -1).permute(0, 2, 1)
    x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
    for i in range(len(self.pad) - 1):
      pad, shift = self.pad[i + 1], self.causal_shift[i + 1]
      if self.strided:
        res = x[:, :, shift + self.filter_widths[i + 1] // 2::self.filter_widths[i + 1]]
      else:
        res = x[:, :, pad + shift: x.shape[2] - pad + shift]
      x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
      x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
    x = self.shrink(x).permute(0, 2, 1)
    return x.reshape(b, -1, self.num_joints_out, 3)


def _torch_model(widths, *, joints_out=3, seed=0, **kw):
  torch.manual_seed(seed)
  model = TorchTemporalModel(K, 2, joints_out, list(widths), channels=C, **kw)
  with torch.no_grad():  # non-trivial BatchNorm parameters and running statistics
    for module in model.modules():
      if isinstance(module, nn.BatchNorm1d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.1)
        module.running_mean.normal_(0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
        module.num_batches_tracked.fill_(7)
  return model


def _save(path, model_pos, model_traj=None):
  torch.save({"epoch": 3, "lr": 0.00095, "random_state": np.random.RandomState(1234),
              "optimizer": torch.optim.Adam(model_pos.parameters()).state_dict(),
              "model_pos": model_pos.state_dict(),
              "model_traj": None if model_traj is None else model_traj.state_dict(),
              "random_state_semi": None}, path)
  return str(path)


def _inputs(batch, frames, seed=1):
  return np.random.default_rng(seed).normal(size=(batch, frames, K, 2)).astype(np.float32)


@pytest.mark.parametrize("widths,causal,dense", [((3, 3), False, False), ((3, 5), True, False),
                                                 ((3, 3), False, True), ((1,), False, False)])
def test_import_matches_torch_eval(tmp_path, widths, causal, dense):
  torch_model = _torch_model(widths, causal=causal, dense=dense).eval()
  path = _save(tmp_path / "epoch_3.bin", torch_model)
  model, variables = videopose3d.from_videopose3d(path, causal=causal, dense=dense)
  assert model.filter_widths == widths and model.channels == C
  assert (model.num_joints_in, model.num_joints_out, model.causal, model.dense) == (K, 3, causal, dense)
  x = _inputs(2, receptive_field(widths) + 5)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(x)).numpy()
  out = jax.jit(model.apply, static_argnames="train")(variables, x, train=False)
  assert out.shape == expected.shape == (2, 6, 3, 3)
  np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("strided", [False, True])
def test_training_mode_matches_torch(tmp_path, strided):
  """Train-mode BatchNorm (biased normalisation, unbiased running variance) equals PyTorch."""
  widths, momentum = (3, 3), 0.3
  torch_model = _torch_model(widths, dropout=0.0, strided=strided)
  _, variables = videopose3d.from_videopose3d(_save(tmp_path / "a.bin", torch_model))
  model = TemporalModel(num_joints_in=K, num_joints_out=3, filter_widths=widths, channels=C, dropout=0.0,
                        strided=strided)
  for module in torch_model.modules():
    if isinstance(module, nn.BatchNorm1d):
      module.momentum = momentum
  x = _inputs(3, 9)
  torch_model.train()
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(x)).numpy()
  out, updates = model.apply(variables, x, train=True, bn_momentum=momentum, mutable=["batch_stats"])
  np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)
  _, torch_after = videopose3d.from_videopose3d(_save(tmp_path / "b.bin", torch_model))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4),
               updates["batch_stats"], torch_after["batch_stats"])


def test_trajectory_model_and_metadata(tmp_path):
  pos, traj = _torch_model((3, 3)), _torch_model((3, 3), joints_out=1, seed=1).eval()
  imported = videopose3d.load_videopose3d(_save(tmp_path / "semi.bin", pos, traj))
  assert (imported.epoch, imported.lr) == (3, pytest.approx(0.00095))
  assert imported.model_traj.num_joints_out == 1
  x = _inputs(1, 12)
  with torch.no_grad():
    expected = traj(torch.from_numpy(x)).numpy()
  out = imported.model_traj.apply(imported.variables_traj, x, train=False)
  np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)
  supervised = videopose3d.load_videopose3d(_save(tmp_path / "sup.bin", pos))
  assert supervised.model_traj is None and supervised.variables_traj is None
  assert "model_traj: none" in interop.describe(supervised)


def test_state_dict_round_trip(tmp_path):
  torch_model = _torch_model((3, 5, 3))
  _, variables = videopose3d.from_videopose3d(_save(tmp_path / "m.bin", torch_model))
  assert variables["params"]["layers_conv_2"]["kernel"].shape == (3, C, C)
  back = videopose3d.torch_state_dict_from_variables(variables)
  original = {k: v.numpy() for k, v in torch_model.state_dict().items() if "num_batches" not in k}
  assert back.keys() == original.keys()
  for key, value in original.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_errors_name_the_file(tmp_path, monkeypatch):
  with pytest.raises(PosejaxError, match="missing.bin: file not found"):
    videopose3d.from_videopose3d(str(tmp_path / "missing.bin"))
  text = tmp_path / "notes.bin"
  text.write_text("not a checkpoint")
  with pytest.raises(PosejaxError, match="notes.bin: not a readable PyTorch checkpoint"):
    videopose3d.from_videopose3d(str(text))
  other = tmp_path / "other.bin"
  torch.save({"state_dict": {}}, other)
  with pytest.raises(PosejaxError, match="other.bin: not a VideoPose3D checkpoint"):
    videopose3d.from_videopose3d(str(other))
  path = _save(tmp_path / "m.bin", _torch_model((3, 3)))
  with pytest.raises(PosejaxError, match=r"m.bin model_pos: checkpoint has filter widths \[3, 3\]"):
    videopose3d.from_videopose3d(path, filter_widths=(3, 3, 3))
  torch.save({"model_pos": {**_torch_model((3, 3)).state_dict(), "extra.weight": torch.zeros(1)}}, other)
  with pytest.raises(PosejaxError, match="other.bin model_pos: unexpected keys"):
    videopose3d.from_videopose3d(str(other))
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(PosejaxError, match=r"requires PyTorch: pip install -e \.\[torch\] \(torch==2.13.0\)"):
    videopose3d.from_videopose3d(path)


def test_main_reports_the_import(tmp_path, capsys):
  path = _save(tmp_path / "m.bin", _torch_model((3, 3)), _torch_model((3, 3), joints_out=1))
  assert interop.main(["--from-videopose3d", path, "--architecture", "3,3"]) == 0
  out = capsys.readouterr().out
  assert "epoch: 3" in out and "filter widths [3, 3] (receptive field 9)" in out
  assert "model_traj: filter widths [3, 3]" in out
  assert interop.main(["--from-videopose3d", str(tmp_path / "none.bin")]) == 2
  assert "none.bin: file not found" in capsys.readouterr().err


def test_workdir_checkpoint_restores_the_reference_outputs(tmp_path, capsys):
  """`--workdir` writes a checkpoint whose restored model gives the torch model's outputs."""
  from posejax.workdir import checkpoints as checkpointing
  from posejax.models.tcn import TemporalModel
  torch_model = _torch_model((3, 3)).eval()
  path = _save(tmp_path / "epoch_3.bin", torch_model)
  workdir = tmp_path / "imported"
  assert interop.main(["--from-videopose3d", path, "--workdir", str(workdir), "--keypoints", "gt",
                       "--data-dir", str(tmp_path / "data")]) == 0
  assert "eval.py --workdir" in capsys.readouterr().out
  config, stacked, actions, step, metadata = checkpointing.restore_for_eval(str(workdir), "latest")
  assert actions == ["all"] and step == 3 and config.mode == "common"
  assert tuple(config.model.filter_widths) == (3, 3) and config.model.channels == C
  assert config.data.keypoints == "gt" and metadata["imported_from"] == path
  model = TemporalModel(num_joints_in=K, num_joints_out=3, filter_widths=(3, 3), channels=C)
  variables = jax.tree.map(lambda x: x[0], stacked)
  x = _inputs(2, 12)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(model.apply(variables, x, train=False), expected, atol=1e-4, rtol=1e-4)


def test_workdir_keeps_the_trajectory_model(tmp_path, capsys):
  """A semi-supervised .bin imported with `--workdir`: its trajectory model is the checkpoint's."""
  from posejax.evaluation import runs as eval_lib
  pos, traj = _torch_model((3, 3)).eval(), _torch_model((3, 3), joints_out=1, seed=1).eval()
  workdir = tmp_path / "imported"
  assert interop.main(["--from-videopose3d", _save(tmp_path / "semi.bin", pos, traj), "--workdir", str(workdir),
                       "--keypoints", "gt", "--data-dir", str(tmp_path / "data")]) == 0
  restored = eval_lib.restore_run(str(workdir)).trajectory
  assert restored.model.num_joints_out == 1 and tuple(restored.model.filter_widths) == (3, 3)
  x = _inputs(2, 12)
  with torch.no_grad():
    expected = traj(torch.from_numpy(x)).numpy()
  variables = jax.tree.map(lambda leaf: leaf[0], restored.variables)
  np.testing.assert_allclose(restored.model.apply(variables, x, train=False), expected, atol=1e-4, rtol=1e-4)
