"""Parity of posejax's training step with the reference's PyTorch training (reference V8.5, V10).

The reference side is written out here: `TemporalModelOptimized1f` (the strided training model,
reference V8.5, state-dict names of V8.8) and run.py's supervised loop (reference V10.1-10.6): float32 batches,
target joint 0 zeroed, loss = MPJPE, `Adam(amsgrad=True)`, lr multiplied by `lr_decay` after
every epoch, BN momentum `0.1 * exp(-epoch / E * ln(0.1 / 0.001))` set after every epoch,
reshuffled batches from one `RandomState(1234)` with a short last batch. Dropout is 0 on both
sides (the only random part of a step).

posejax runs `train_step.train_step` with `optim.adam_amsgrad` from the same initial weights
(imported with `posejax.tools.interop`) on the same batches. Teacher-forced: before every step
posejax takes the reference's parameters, BN statistics and Adam moments, so each step is
compared from identical states and float32 rounding cannot build up into chaos; then a short
free run of both.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.models.tcn import TemporalModel, receptive_field
from posejax.models import videopose3d
from posejax.training import optim, schedules, step as train_step

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
  """The reference's strided training model (non-causal), reference V8.5; names as its state dict."""

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
    return videopose3d.model_from_state_dict(_copies(self.model.state_dict()), filter_widths=WIDTHS, dropout=0.0)[1]

  def moments(self) -> dict[str, Any]:
    """{'mu', 'nu', 'nu_max'}: Adam's moments as params-shaped posejax trees (zeros before a step)."""
    buffers = {k: v for k, v in self.model.state_dict().items() if "running" in k or "num_batches" in k}
    out = {}
    for torch_name, field in MOMENTS.items():
      state = {name: (self.optimizer.state[p][torch_name] if p in self.optimizer.state else torch.zeros_like(p))
               for name, p in self.model.named_parameters()}
      out[field] = videopose3d.model_from_state_dict(_copies({**state, **buffers}), filter_widths=WIDTHS)[1]["params"]
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
  """One epoch of the ChunkedGenerator (reference V7.1): one permutation, batches in order, short last."""
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
  """The trainer's lr and BN momentum of epoch `epoch` (0-based), from posejax.training.schedules."""
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


EPS32 = float(np.finfo(np.float32).eps)
B1, B2, ADAM_EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as optim.adam_amsgrad's
# Float32 rounding of a gradient element: nested sums of lengths n1, n2, ... err by at most
# (n1 + n2 + ...) eps times the magnitude of their terms (Higham, gamma_n). A kernel gradient sums
# over the batch's frames (<= BATCH * RF) products of a signal back-propagated through every layer,
# each a sum over <= CHANNELS * width inputs; the leaf's largest |gradient| stands for the terms.
GRADIENT_REDUCTION = BATCH * RF + (2 * len(WIDTHS) - 1) * CHANNELS * max(WIDTHS)
# A BatchNorm statistic sums over the batch's frames (<= BATCH * RF).
STATISTICS_REDUCTION = BATCH * RF
# The loss is a mean over BATCH * J joint distances, each a 3-term sum.
LOSS_REDUCTION = BATCH * J + 3


def assert_leaves_close(got: dict, want: dict, tolerance: dict, what: str) -> None:
  """|got - want| <= tolerance, element-wise, for every leaf (dicts of path -> array)."""
  assert set(got) == set(want), f"{what}: leaves {sorted(set(got) ^ set(want))} on one side only"
  for key, w in want.items():
    g = np.asarray(got[key], np.float64)
    excess = np.abs(g - w) - tolerance[key]
    worst = int(np.argmax(excess))
    assert excess.flat[worst] <= 0, (
        f"{what} {'/'.join(key)}: element {np.unravel_index(worst, w.shape)} differs by "
        f"{abs(g.flat[worst] - w.flat[worst]):.3g} > tolerance {tolerance[key].flat[worst]:.3g} "
        f"({(excess > 0).sum()} of {w.size} elements)")


def gradient_error(grads: np.ndarray) -> float:
  """Bound on a leaf's gradient difference between two float32 backward passes."""
  return GRADIENT_REDUCTION * EPS32 * float(np.max(np.abs(grads)))


def amsgrad_pytorch(g, m, v, v_max, t: int):
  """float64 reference of one PyTorch AMSGrad step at step t (1-based): (direction, m, v, v_max)."""
  m = B1 * m + (1 - B1) * g
  v = B2 * v + (1 - B2) * g * g
  v_max = np.maximum(v_max, v)
  direction = (m / (1 - B1 ** t)) / (np.sqrt(v_max) / np.sqrt(1 - B2 ** t) + ADAM_EPS)
  return direction, m, v, v_max


def adam_step_tolerances(before: dict, grads: np.ndarray, t: int, lr: float, *,
                         gradient_bound: np.ndarray | float | None = None,
                         state_bounds: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Element-wise bounds on the differences between two sides after one step.

  The two sides' gradients differ by at most `gradient_bound` (default `gradient_error(grads)`)
  and, in a free run, their states before the step by `state_bounds` ('params', 'mu', 'nu',
  'nu_max'; zero when teacher-forced). Adam divides the gradient by its own root, so near
  |g| ~ eps a gradient's rounding can move the update by up to lr: the bound on the update is
  the largest change of the float64 rule over that box (g' sampled densely in [g - d, g + d] with
  the kink at 0, the moments at their box's corners: the rule is monotone in each), plus the
  float32 rounding of the stored values.
  """
  delta = gradient_error(grads) if gradient_bound is None else gradient_bound
  bounds = state_bounds or {}
  g = grads.astype(np.float64)
  state = [before[k].astype(np.float64) for k in ("mu", "nu", "nu_max")]
  radii = [np.asarray(bounds.get(k, 0.0)) for k in ("mu", "nu", "nu_max")]
  central = amsgrad_pytorch(g, *state, t)
  spread = [np.zeros_like(g) for _ in central]
  shifts = [g + s * delta for s in np.linspace(-1.0, 1.0, 33)]
  shifts.append(np.where(np.abs(g) <= delta, 0.0, g))  # the kink of |g'| at 0, when inside
  corners = itertools.product(*[(-1.0, 1.0) if np.any(r) else (0.0,) for r in radii])
  for signs in corners:
    moved = [np.maximum(x + sign * r, 0.0) if i else x + sign * r
             for i, (x, r, sign) in enumerate(zip(state, radii, signs))]
    for shifted in shifts:
      candidates = amsgrad_pytorch(shifted, *moved, t)
      spread = [np.maximum(a, np.abs(c - x)) for a, c, x in zip(spread, candidates, central)]
  direction, m, v, v_max = central
  params = before["params"].astype(np.float64)
  # Each side rounds about 8 times on the way to the update (m_hat, sqrt(v_max), two bias
  # corrections, + eps, the quotient, lr, the subtraction) and 4 times per moment, each within
  # half an ulp: 16 and 8 ulps cover both sides together twice over.
  update, moment = 16 * EPS32, 8 * EPS32
  return {"params": np.asarray(bounds.get("params", 0.0)) + lr * (spread[0] + update * np.abs(direction))
          + 2 * EPS32 * np.abs(params),
          "mu": spread[1] + moment * np.abs(m), "nu": spread[2] + moment * np.abs(v),
          "nu_max": spread[3] + moment * np.abs(v_max)}


def reference_gradients(reference: Reference) -> dict[tuple[str, ...], np.ndarray]:
  """The reference's last gradients (`.grad`), as posejax params paths."""
  buffers = {k: v for k, v in reference.model.state_dict().items() if "running" in k or "num_batches" in k}
  grads = {name: p.grad for name, p in reference.model.named_parameters()}
  return _flat(videopose3d.model_from_state_dict(_copies({**grads, **buffers}), filter_widths=WIDTHS)[1]["params"])


def reference_state(reference: Reference) -> dict[str, Any]:
  """{'params', 'batch_stats', 'mu', 'nu', 'nu_max'}: flat float64 copies of the reference's state."""
  variables = reference.variables()
  flat = {"params": _flat(variables["params"]), "batch_stats": _flat(variables["batch_stats"])}
  flat.update({field: _flat(tree) for field, tree in reference.moments().items()})
  return {k: {path: np.asarray(leaf, np.float64) for path, leaf in v.items()} for k, v in flat.items()}


def compare_step(state, reference: Reference, before: dict[str, Any], t: int, lr: float, where: str, *,
                 gradient_scale: float = 1.0, bounds: dict[str, dict] | None = None) -> dict[str, dict]:
  """posejax's state after one step against the reference's; returns the tolerances used.

  Teacher-forced, both sides start from `before`. In a free run `bounds` are the tolerances of
  the previous step (how far apart the two states may already be) and `gradient_scale` widens
  the gradient's bound for the rounding of the earlier steps it depends on.
  """
  after = reference_state(reference)
  grads = reference_gradients(reference)
  tolerances = {k: {} for k in ("params", "mu", "nu", "nu_max")}
  for path, g in grads.items():
    leaf = {k: before[k][path] for k in tolerances}
    leaf_bounds = {k: v[path] for k, v in bounds.items()} if bounds else None
    for k, tol in adam_step_tolerances(leaf, g, t, lr, gradient_bound=gradient_scale * gradient_error(g),
                                       state_bounds=leaf_bounds).items():
      tolerances[k][path] = tol
  assert_leaves_close(_flat(state.params), after["params"], tolerances["params"], f"{where}: params")
  leaves = _moment_leaves(state.opt_state)
  for field in ("mu", "nu", "nu_max"):
    got = {path: leaf for (f, path), leaf in leaves.items() if f == field}
    assert got, f"the optimizer state holds no '{field}' tree (Adam moments)"
    assert_leaves_close(got, after[field], tolerances[field], f"{where}: Adam {field}")
  # Running statistics: (1 - momentum) old + momentum batch statistic, the batch statistic a sum
  # over the batch's frames; the leaf's largest magnitude stands for its terms.
  stats_tol = {path: np.full(w.shape, 2 * STATISTICS_REDUCTION * EPS32 * float(np.max(np.abs(w))))
               for path, w in after["batch_stats"].items()}
  assert_leaves_close(_flat(state.batch_stats), after["batch_stats"], stats_tol, f"{where}: batch_stats")
  return tolerances


def test_teacher_forced_steps_match_the_reference():
  reference = Reference()
  data = dataset()
  epoch_rng = np.random.RandomState(1234)
  step = posejax_step()[2]
  state = initial_state(reference)
  initial = reference_state(reference)
  for path, w in initial["params"].items():  # identical initial weights
    np.testing.assert_array_equal(np.asarray(_flat(state.params)[path]), w)
  steps = 0
  for epoch in range(EPOCHS):
    hparams = posejax_hparams(epoch)
    # The schedules are the reference's: lr * 0.95^epoch, BN momentum set after each epoch.
    assert float(hparams["learning_rate"]) == pytest.approx(reference.lr, rel=4 * EPS32)
    assert float(hparams["bn_momentum"]) == pytest.approx(reference.bn_momentum(), rel=4 * EPS32)
    sizes = []
    for poses_2d, poses_3d in batches(epoch_rng, data):
      # Teacher forcing: posejax starts each step from the reference's state.
      variables = reference.variables()
      before = reference_state(reference)
      state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"],
                            opt_state=set_moments(state.opt_state, reference.moments()))
      batch = {"poses_2d": jnp.asarray(poses_2d, jnp.float32), "poses_3d": jnp.asarray(poses_3d, jnp.float32)}
      state, metrics = step(state, batch, hparams, jax.random.key(steps))
      loss = reference.step(poses_2d, poses_3d)
      assert float(metrics["loss"]) == pytest.approx(loss, rel=2 * LOSS_REDUCTION * EPS32), f"step {steps}: loss"
      compare_step(state, reference, before, steps + 1, reference.lr, f"step {steps}")
      sizes.append(len(poses_2d))
      steps += 1
    assert sizes == [16, 16, 6]
    reference.end_epoch()
  assert steps == 30 and int(state.step) == 30


def test_free_run_stays_with_the_reference():
  """Five steps without teacher forcing (three of epoch 0, two of epoch 1) from the same weights.

  Each step's bound starts from the previous step's (the states may already differ by that
  much) and its gradient bound grows by one step's rounding per earlier step.
  """
  reference = Reference(seed=1)
  data = dataset(seed=1)
  step = posejax_step()[2]
  state = initial_state(reference)
  epoch_rng, losses, bounds = np.random.RandomState(1234), [], None
  for epoch in range(2):
    for poses_2d, poses_3d in batches(epoch_rng, data)[:5 - len(losses)]:
      before = reference_state(reference)
      batch = {"poses_2d": jnp.asarray(poses_2d, jnp.float32), "poses_3d": jnp.asarray(poses_3d, jnp.float32)}
      state, metrics = step(state, batch, posejax_hparams(epoch), jax.random.key(len(losses)))
      losses.append(reference.step(poses_2d, poses_3d))
      k = len(losses)
      assert float(metrics["loss"]) == pytest.approx(losses[-1], rel=2 * k * LOSS_REDUCTION * EPS32), \
          f"step {k - 1}: loss"
      bounds = compare_step(state, reference, before, k, reference.lr, f"free step {k - 1}",
                            gradient_scale=float(k), bounds=bounds)
    reference.end_epoch()
  assert len(losses) == 5 and losses[-1] < losses[0]  # the steps train
