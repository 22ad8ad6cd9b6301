"""Training budgets (reference A6 and A10.2), lr and BN momentum schedules.

All functions are pure. A run trains A models (A = 1 in common mode) for a budget that
`config.train.epochs = E` (common-equivalent epochs) and `config.train.budget` define:

* 'fixed': every action trains `E * unit_epochs` epochs of its own data (the paper's
  experiments: unit_epochs = 15); common mode trains E epochs.
* 'frame_matched': action a trains `E * floor(sum_i n_i / n_a)` epochs (equation 2).
* 'equal_samples': every action draws the samples of E common epochs (`E * sum_i n_i`,
  equation 3); its lr decays per unit of data, `0.95^(samples / sum_i n_i)` at the
  granularity of its own epochs, and its BN momentum follows the fraction of the budget used.

`n_a` counts training examples per epoch (frames, doubled by flip augmentation). Action a
takes `S_a = ceil(samples_a / B)` optimizer steps; `posejax.training.slices` schedules them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from posejax.common.errors import PosejaxError

from posejax.config.run_config import BUDGETS, MODES, is_common


@dataclasses.dataclass(frozen=True)
class Budget:
  """What each of the A models trains.

  Attributes:
    rule: one of BUDGETS.
    common_epochs: E.
    batch_size: B, examples per optimizer step.
    examples_per_epoch: (A,) int64, n_a.
    epochs: (A,) float64, the budget in epochs of the model's own data (E_a).
    samples: (A,) int64, the sample budget `E_a * n_a`.
    steps: (A,) int64, S_a = ceil(samples / B) optimizer steps.
    lr_exponent_per_epoch: (A,) float64, how far the lr decay advances per own epoch
      (1, or n_a / sum n for 'equal_samples').
  """
  rule: str
  common_epochs: int
  batch_size: int
  examples_per_epoch: np.ndarray
  epochs: np.ndarray
  samples: np.ndarray
  steps: np.ndarray
  lr_exponent_per_epoch: np.ndarray

  @property
  def total_steps(self) -> int:
    """S_max, the longest budget (the scale of the log points, `log_steps`)."""
    return int(np.max(self.steps))


def make_budget(rule: str, mode: str, epochs: int, unit_epochs: int,
                examples_per_epoch: Sequence[int], batch_size: int) -> Budget:
  """The budget of each model.

  Args:
    rule: 'fixed', 'frame_matched' or 'equal_samples' (config.train.budget).
    mode: 'common' (one model on all actions) or 'action_based'.
    epochs: E, common-equivalent epochs (config.train.epochs).
    unit_epochs: AB epochs per common epoch under 'fixed' (config.train.unit_epochs).
    examples_per_epoch: (A,) n_a; in common mode (1,) holding the total.
    batch_size: B.

  Raises:
    PosejaxError: unknown rule or mode, or a non-positive count.
  """
  if rule not in BUDGETS:
    raise PosejaxError(f"config.train.budget: unknown rule {rule!r} (known: {', '.join(BUDGETS)})")
  if mode not in MODES:
    raise PosejaxError(f"config.mode: unknown mode {mode!r} (known: {', '.join(MODES)})")
  if epochs < 1:
    raise PosejaxError(f"config.train.epochs must be >= 1, got {epochs}")
  if unit_epochs < 1:
    raise PosejaxError(f"config.train.unit_epochs must be >= 1, got {unit_epochs}")
  if batch_size < 1:
    raise PosejaxError(f"config.train.batch_size must be >= 1, got {batch_size}")
  n = np.asarray(examples_per_epoch, np.int64)
  if n.ndim != 1 or n.size == 0 or np.any(n < 1):
    raise PosejaxError(f"no training examples for some model (examples per epoch: {n.tolist()})")
  total = int(n.sum())
  if is_common(mode):
    factor = np.ones_like(n)
  elif rule == "fixed":
    factor = np.full_like(n, unit_epochs)
  elif rule == "frame_matched":
    factor = total // n
  else:
    factor = None
  if factor is not None:
    samples = epochs * factor * n
    own_epochs = (epochs * factor).astype(np.float64)
    lr_rate = np.ones(n.shape, np.float64)
  else:
    samples = np.full_like(n, epochs * total)
    own_epochs = epochs * total / n.astype(np.float64)
    lr_rate = n / float(total)
  steps = -(-samples // batch_size)
  return Budget(rule=rule, common_epochs=int(epochs), batch_size=int(batch_size),
                examples_per_epoch=n, epochs=own_epochs, samples=samples.astype(np.int64),
                steps=steps.astype(np.int64), lr_exponent_per_epoch=lr_rate)


def log_steps(total_steps: int, epochs: int, logs_per_epoch: int = 1) -> list[tuple[float, int]]:
  """The log points: (common-equivalent epoch, global steps done), in increasing order.

  Point k of `epochs * logs_per_epoch` lies at global step ceil(k * S_max / (E * L)); its
  epoch is k / L rounded to 4 decimals (an int when whole). Points that would fall on the
  same step as a later one are dropped (tiny budgets only).
  """
  count = int(epochs) * int(logs_per_epoch)
  points: dict[int, float] = {}
  for k in range(1, count + 1):
    s = -(-k * int(total_steps) // count)
    epoch = round(k / logs_per_epoch, 4)
    points[s] = int(epoch) if float(epoch).is_integer() else epoch
  return [(e, s) for s, e in sorted(points.items())]


def learning_rate_schedule(lr: float, decay: float) -> optax.Schedule:
  """lr * decay^x of the decay exponent x (the action's epoch, or its data-based equivalent)."""
  return optax.exponential_decay(lr, transition_steps=1, decay_rate=decay)


def bn_momentum_schedule(start: float, end: float) -> optax.Schedule:
  """start * (end / start)^f of the fraction f of the budget done (reference V10.6: 0.1 -> 0.001)."""
  return optax.exponential_decay(start, transition_steps=1, decay_rate=end / start)


def hyperparams_fn(budget: Budget, lr: float, lr_decay: float, bn_start: float, bn_end: float,
                   num_models: int | None = None) -> Callable[[jax.Array, jax.Array], dict[str, jax.Array]]:
  """A jit-friendly map (own epochs (K,), model index (K,)) -> their lr and BN momentum (K,).

  Model a in its epoch e trains with lr * decay^(e * r_a) and BN momentum
  start * (end/start)^(e / E_a) (r_a = `lr_exponent_per_epoch`, E_a = `epochs`). Models past
  the A real ones (padding up to `num_models`) get the first model's constants.
  """
  size = num_models or budget.steps.size
  pad = lambda x: np.concatenate([x, np.full(size - x.size, x[0])]).astype(np.float32)
  rate = pad(budget.lr_exponent_per_epoch)
  own_epochs = pad(budget.epochs)
  lr_fn = learning_rate_schedule(lr, lr_decay)
  bn_fn = bn_momentum_schedule(bn_start, bn_end)

  def fn(epoch: jax.Array, model: jax.Array) -> dict[str, jax.Array]:
    e = jnp.asarray(epoch, jnp.float32)
    return {"learning_rate": lr_fn(e * jnp.asarray(rate)[model]).astype(jnp.float32),
            "bn_momentum": bn_fn(e / jnp.asarray(own_epochs)[model]).astype(jnp.float32)}

  return fn
