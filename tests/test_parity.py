"""Parity of posejax's training step with the reference's PyTorch training (videopose3d.md 8.5, 10).

The reference side is written out here: `TemporalModelOptimized1f` (the strided training model,
spec 8.5, state-dict names of 8.8) and run.py's supervised loop (10.1-10.6): float32 batches,
target joint 0 zeroed, loss = MPJPE, `Adam(amsgrad=True)`, lr multiplied by `lr_decay` after
every epoch, BN momentum `0.1 * exp(-epoch / E * ln(0.1 / 0.001))` set after every epoch,
reshuffled batches from one `RandomState(1234)` with a short last batch. Dropout is 0 on both
sides (the only random part of a step).

posejax runs `train_step.train_step` with `optim.adam_amsgrad` from the same initial weights
(imported with `posejax.interop`) on the same batches. Teacher-forced: before every step
posejax takes the reference's parameters, BN statistics and Adam moments, so each step is
compared from identical states and float32 rounding cannot build up into chaos; then a short
free run of both.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import interop, optim, schedules, train_step
from posejax.model import TemporalModel, receptive_field

torch = pytest.importorskip("torch")
nn = torch.nn

WIDTHS, CHANNELS, K, J = (3, 3, 3), 32, 17, 17
RF = receptive_field(WIDTHS)
EXAMPLES, BATCH, EPOCHS = 38, 16, 10  # batches of 16, 16 and 6 per epoch: 30 steps
LR, LR_DECAY, BN_START, BN_END = 1e-3, 0.95, 0.1, 0.001
MOMENTS = {"exp_avg": "mu", "exp_avg_sq": "nu", "max_exp_avg_sq": "nu_max"}  # torch name -> posejax's


@pytest.fixture(autouse=True)
def one_torch_thread():
  """The reference's small steps run faster on one thread than contending with XLA's."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


class TemporalModelOptimized1f(nn.Module):
  """The reference's strided training model (non-causal), spec 8.5; names as its state dict."""

  def __init__(self, num_joints_in: int, num_joints_out: int, filter_widths, channels: int, dropout: float):
    super().__init__()
    self.num_joints_out, self.filter_widths = num_joints_out, list(filter_widths)
    self.drop, self.relu = nn.Dropout(dropout), nn.ReLU(inplace=True)
    self.expand_conv = nn.Conv1d(num_joints_in * 2, channels, filter_widths[0], stride=filter_widths[0],
                                 bias=False)
    self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
    convs, bns = [], []
    for w in filter_widths[1:]:
      convs += [nn.Conv1d(channels, channels, w, stride=w, bias=False), nn.Conv1d(channels, channels, 1, bias=False)]
      bns += [nn.BatchNorm1d(channels, momentum=0.1), nn.BatchNorm1d(channels, momentum=0.1)]
    self.layers_conv, self.layers_bn = nn.ModuleList(convs), nn.ModuleList(bns)
    self.shrink = nn.Conv1d(channels, num_joints_out * 3, 1)

  def set_bn_momentum(self, momentum: float) -> None:
    self.expand_bn.momentum = momentum
    for bn in self.layers_bn:
      bn.momentum = momentum

  def forward(self, x):
    b = x.shape[0]
    x = x.view(b, x.shape[1], -1).permute(0, 2, 1)
    x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
    for i, w in enumerate(self.filter_widths[1:]):
      res = x[:, :, w // 2::w]
      x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
      x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
    return self.shrink(x).permute(0, 2, 1).reshape(b, -1, self.num_joints_out, 3)


class Reference:
  """run.py's training of one model: `step(batch)` per batch, `end_epoch()` after each epoch."""

  def __init__(self, seed: int = 0):
    torch.manual_seed(seed)
    self.model = TemporalModelOptimized1f(K, J, WIDTHS, CHANNELS, dropout=0.0)
    self.model.train()
    self.lr, self.epoch = LR, 0
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr, amsgrad=True)

  def step(self, poses_2d: np.ndarray, poses_3d: np.ndarray) -> float:
    inputs_2d = torch.from_numpy(poses_2d.astype("float32"))
    inputs_3d = torch.from_numpy(poses_3d.astype("float32"))
    inputs_3d[:, :, 0] = 0
    self.optimizer.zero_grad()
    predicted = self.model(inputs_2d)
    loss = torch.mean(torch.norm(predicted - inputs_3d, dim=len(inputs_3d.shape) - 1))
    loss.backward()
    self.optimizer.step()
    return float(loss.detach())

  def end_epoch(self) -> None:
    self.epoch += 1
    self.lr *= LR_DECAY
    for group in self.optimizer.param_groups:
      group["lr"] *= LR_DECAY
    momentum = BN_START * np.exp(-self.epoch / EPOCHS * np.log(BN_START / BN_END))
    self.model.set_bn_momentum(momentum)

  def bn_momentum(self) -> float:
    return float(self.model.expand_bn.momentum)

  def variables(self) -> dict[str, Any]:
    """{'params', 'batch_stats'} in posejax's layout."""
    return interop.model_from_state_dict(_copies(self.model.state_dict()), filter_widths=WIDTHS, dropout=0.0)[1]

  def moments(self) -> dict[str, Any]:
    """{'mu', 'nu', 'nu_max'}: Adam's moments as params-shaped posejax trees (zeros before a step)."""
    buffers = {k: v for k, v in self.model.state_dict().items() if "running" in k or "num_batches" in k}
    out = {}
    for torch_name, field in MOMENTS.items():
      state = {name: (self.optimizer.state[p][torch_name] if p in self.optimizer.state else torch.zeros_like(p))
               for name, p in self.model.named_parameters()}
      out[field] = interop.model_from_state_dict(_copies({**state, **buffers}), filter_widths=WIDTHS)[1]["params"]
    return out


def _copies(tensors) -> dict[str, np.ndarray]:
  """NumPy copies: on a CPU, JAX may alias an aligned host buffer instead of copying it, and the
  reference updates its tensors in place."""
  return {k: v.detach().numpy().copy() for k, v in tensors.items()}


def _moment_leaves(opt_state) -> dict[tuple[str, tuple[str, ...]], Any]:
  """{(field, parameter path): leaf} of the mu / nu / nu_max trees inside an optimizer state."""
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
    names = [getattr(k, "name", None) for k in path]
    hits = [i for i, n in enumerate(names) if n in MOMENTS.values()]
    if hits:
      found[(names[hits[0]], tuple(k.key for k in path[hits[0] + 1:]))] = leaf
  return found


def _flat(tree) -> dict[tuple[str, ...], np.ndarray]:
  return {tuple(k.key for k in path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def set_moments(opt_state, moments: dict[str, Any]):
  """`opt_state` with its Adam moments replaced by the reference's."""
  flat = {field: _flat(tree) for field, tree in moments.items()}

  def replace(path, leaf):
    names = [getattr(k, "name", None) for k in path]
    hits = [i for i, n in enumerate(names) if n in flat]
    if not hits:
      return leaf
    return jnp.asarray(flat[names[hits[0]]][tuple(k.key for k in path[hits[0] + 1:])], leaf.dtype)

  return jax.tree_util.tree_map_with_path(replace, opt_state)


def batches(epoch_rng: np.random.RandomState, data) -> list[tuple[np.ndarray, np.ndarray]]:
  """One epoch of the ChunkedGenerator (spec 7.1): one permutation, batches in order, short last."""
  order = epoch_rng.permutation(EXAMPLES)
  return [(data[0][order[i:i + BATCH]], data[1][order[i:i + BATCH]]) for i in range(0, EXAMPLES, BATCH)]


def dataset(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Float64 (as the reference's buffers) 2D windows and 3D targets that depend on the inputs."""
  rng = np.random.default_rng(seed)
  poses_2d = rng.normal(scale=0.4, size=(EXAMPLES, RF, K, 2))
  mix = rng.normal(scale=0.3, size=(K * 2, J * 3))
  poses_3d = (poses_2d[:, RF // 2].reshape(EXAMPLES, -1) @ mix).reshape(EXAMPLES, 1, J, 3)
  return poses_2d, poses_3d + rng.normal(scale=0.05, size=poses_3d.shape)


@functools.lru_cache(maxsize=1)
def _schedule() -> dict[str, np.ndarray]:
  budget = schedules.make_budget("fixed", "common", EPOCHS, 1, [EXAMPLES], BATCH)
  hp = schedules.hyperparams_fn(budget, LR, LR_DECAY, BN_START, BN_END)(jnp.arange(EPOCHS), jnp.zeros(EPOCHS, jnp.int32))
  return {k: np.asarray(v) for k, v in hp.items()}


def posejax_hparams(epoch: int) -> dict[str, np.ndarray]:
  """The trainer's lr and BN momentum of epoch `epoch` (0-based), from posejax.schedules."""
  return {k: v[epoch] for k, v in _schedule().items()}


@functools.lru_cache(maxsize=1)
def posejax_step():
  """(model, optimizer, jitted step): the trainer's step through its public API, dropout 0."""
  model = TemporalModel(num_joints_in=K, num_joints_out=J, filter_widths=WIDTHS, channels=CHANNELS,
                        dropout=0.0, strided=True)
  tx = optim.adam_amsgrad(LR)
  step = jax.jit(functools.partial(train_step.train_step, model=model, optimizer=tx))
  return model, tx, step


def initial_state(reference: Reference):
  """A fresh posejax state holding the reference's initial weights."""
  model, tx, _ = posejax_step()
  variables = reference.variables()
  state = train_step.init_state(model, tx, jax.random.key(0), (1, RF, K, 2))
  return state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state=tx.init(variables["params"]))


def assert_leaves_close(got: dict, want: dict, what: str, *, rtol: float = 0.0, atol: float = 0.0,
                        atol_scale: float = 0.0) -> None:
  """|got - want| <= rtol |want| + atol + atol_scale * max|want| (the leaf's own scale), leaf-wise."""
  assert set(got) == set(want), f"{what}: leaves {sorted(set(got) ^ set(want))} on one side only"
  for key, w in want.items():
    tol = atol + atol_scale * float(np.max(np.abs(w)))
    np.testing.assert_allclose(np.asarray(got[key]), w, rtol=rtol, atol=tol, err_msg=f"{what} {'/'.join(key)}")


def compare_states(state, reference: Reference, where: str, *, loose: float = 1.0) -> None:
  """Parameters, BN running statistics and Adam moments of posejax's state against the reference.

  Float32 tolerances (measured worst cases in brackets, teacher-forced): parameters within 4 ulp
  plus 5e-5 of an update (lr) [1 ulp, 2e-5 lr]; BN statistics within 2e-6 and moments within 5e-5
  of the leaf's largest magnitude [3e-7, 8e-6]. `loose` scales them all (free runs).
  """
  want = reference.variables()
  assert_leaves_close(_flat(state.params), _flat(want["params"]), f"{where}: params",
                      rtol=5e-7 * loose, atol=5e-5 * reference.lr * loose)
  assert_leaves_close(_flat(state.batch_stats), _flat(want["batch_stats"]), f"{where}: batch_stats",
                      atol_scale=2e-6 * loose)
  leaves = _moment_leaves(state.opt_state)
  for field, tree in reference.moments().items():
    got = {path: leaf for (f, path), leaf in leaves.items() if f == field}
    assert got, f"the optimizer state holds no '{field}' tree (Adam moments)"
    assert_leaves_close(got, _flat(tree), f"{where}: Adam {field}", atol_scale=5e-5 * loose)


def test_teacher_forced_steps_match_the_reference():
  reference = Reference()
  data = dataset()
  epoch_rng = np.random.RandomState(1234)
  step = posejax_step()[2]
  state = initial_state(reference)
  compare_states(state, reference, "initial", loose=0.0)  # identical initial weights
  steps = 0
  for epoch in range(EPOCHS):
    hparams = posejax_hparams(epoch)
    # The schedules are the reference's: lr * 0.95^epoch, BN momentum set after each epoch.
    assert float(hparams["learning_rate"]) == pytest.approx(reference.lr, rel=1e-6)
    assert float(hparams["bn_momentum"]) == pytest.approx(reference.bn_momentum(), rel=1e-6)
    sizes = []
    for poses_2d, poses_3d in batches(epoch_rng, data):
      # Teacher forcing: posejax starts each step from the reference's state.
      variables = reference.variables()
      state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                            opt_state=set_moments(state.opt_state, reference.moments()))
      batch = {"poses_2d": jnp.asarray(poses_2d, jnp.float32), "poses_3d": jnp.asarray(poses_3d, jnp.float32)}
      state, metrics = step(state, batch, hparams, jax.random.key(steps))
      loss = reference.step(poses_2d, poses_3d)
      assert float(metrics["loss"]) == pytest.approx(loss, rel=5e-6), f"step {steps}: loss"
      compare_states(state, reference, f"step {steps}")
      sizes.append(len(poses_2d))
      steps += 1
    assert sizes == [16, 16, 6]
    reference.end_epoch()
  assert steps == 30 and int(state.step) == 30


def test_free_run_stays_with_the_reference():
  """Five steps without teacher forcing (three of epoch 0, two of epoch 1) from the same weights."""
  reference = Reference(seed=1)
  data = dataset(seed=1)
  step = posejax_step()[2]
  state = initial_state(reference)
  epoch_rng, losses = np.random.RandomState(1234), []
  for epoch in range(2):
    for poses_2d, poses_3d in batches(epoch_rng, data)[:5 - len(losses)]:
      batch = {"poses_2d": jnp.asarray(poses_2d, jnp.float32), "poses_3d": jnp.asarray(poses_3d, jnp.float32)}
      state, metrics = step(state, batch, posejax_hparams(epoch), jax.random.key(len(losses)))
      losses.append(reference.step(poses_2d, poses_3d))
      assert float(metrics["loss"]) == pytest.approx(losses[-1], rel=1e-5), f"step {len(losses) - 1}: loss"
    reference.end_epoch()
  assert len(losses) == 5 and losses[-1] < losses[0]  # the steps train
  compare_states(state, reference, "after 5 free steps", loose=10.0)
