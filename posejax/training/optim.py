"""Adam with PyTorch's AMSGrad rule (reference V10.1 item 5), as optax transformations.

PyTorch keeps the running maximum of the RAW second moment and bias-corrects it
afterwards, at step k:

    m = b1 m + (1 - b1) g,   v = b2 v + (1 - b2) g^2,   v_max = max(v_max, v)
    update = -lr / (1 - b1^k) * m / (sqrt(v_max) / sqrt(1 - b2^k) + eps)

`optax.scale_by_amsgrad` (0.2.8) takes the maximum of the bias-corrected `v` instead
(or, with `bias_correction_nu=False`, drops the correction of the denominator), which
gives different updates in the first steps; so the PyTorch rule is written out here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByAmsgradPytorchState(NamedTuple):
  """Per-parameter Adam moments; `count` is the number of updates done (k - 1)."""
  count: jax.Array  # () int32
  mu: optax.Updates
  nu: optax.Updates
  nu_max: optax.Updates


def _one_minus_power(base: float, k: jax.Array) -> jax.Array:
  """1 - base^k in float32 to a few ulp, as PyTorch's float64 bias corrections.

  `1 - jnp.power(0.999, k)` rounds 0.999 to float32 first and then cancels: at k = 1 it is off
  by 1.3e-5 relative, which moves the first Adam update by as much. `-expm1(k log(base))`, with
  the logarithm taken in float64 on the host, keeps every step's correction within float32 rounding.
  """
  return -jnp.expm1(k * math.log(base))


def scale_by_amsgrad_pytorch(b1: float = 0.9, b2: float = 0.999,
                             eps: float = 1e-8) -> optax.GradientTransformation:
  """Rescales gradients to `m_hat / (sqrt(v_max) / sqrt(1 - b2^k) + eps)` (no learning rate).

  `m_hat = m / (1 - b1^k)`; the sign is that of the gradient (chain with
  `optax.scale_by_learning_rate` for a descent direction).
  """

  def init_fn(params: optax.Params) -> ScaleByAmsgradPytorchState:
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return ScaleByAmsgradPytorchState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros(),
                                      nu_max=zeros())

  def update_fn(updates: optax.Updates, state: ScaleByAmsgradPytorchState,
                params: optax.Params | None = None):
    del params
    mu = jax.tree.map(lambda g, m: b1 * m + (1.0 - b1) * g, updates, state.mu)
    nu = jax.tree.map(lambda g, v: b2 * v + (1.0 - b2) * jnp.square(g), updates, state.nu)
    nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
    count = optax.safe_increment(state.count)
    k = count.astype(jnp.float32)
    correction_mu = _one_minus_power(b1, k)
    sqrt_correction_nu = jnp.sqrt(_one_minus_power(b2, k))
    new_updates = jax.tree.map(
        lambda m, vmax: (m / correction_mu) / (jnp.sqrt(vmax) / sqrt_correction_nu + eps), mu, nu_max)
    return new_updates, ScaleByAmsgradPytorchState(count=count, mu=mu, nu=nu, nu_max=nu_max)

  return optax.GradientTransformation(init_fn, update_fn)


def _adam_amsgrad(learning_rate: float | jax.Array, b1: float, b2: float,
                  eps: float) -> optax.GradientTransformation:
  return optax.chain(scale_by_amsgrad_pytorch(b1, b2, eps),
                     optax.scale_by_learning_rate(learning_rate))


def adam_amsgrad(learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> optax.GradientTransformationExtraArgs:
  """`torch.optim.Adam(amsgrad=True)` with the learning rate as a state hyper-parameter.

  The learning rate lives in `opt_state.hyperparams['learning_rate']` (via
  `optax.inject_hyperparams`) so that each action of a stacked, vmapped state can
  train with its own rate, set every step with `with_learning_rate`.
  """
  return optax.inject_hyperparams(_adam_amsgrad, static_args=("b1", "b2", "eps"))(
      learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)


def with_learning_rate(opt_state: optax.OptState, learning_rate: jax.Array) -> optax.OptState:
  """The state of `adam_amsgrad` with its learning rate replaced (a traced scalar is fine)."""
  hyperparams = dict(opt_state.hyperparams)
  hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
  return opt_state._replace(hyperparams=hyperparams)


def learning_rate_of(opt_state: optax.OptState) -> jax.Array:
  """The learning rate stored in an `adam_amsgrad` state."""
  return opt_state.hyperparams["learning_rate"]


def gradient_update(loss_fn: Callable[[Any], tuple[jax.Array, Any]], params: Any, opt_state: Any,
                    learning_rate: jax.Array, optimizer: optax.GradientTransformation
                    ) -> tuple[jax.Array, Any, Any, Any]:
  """One optimizer step on `loss_fn(params) -> (loss, aux)`, at `learning_rate`.

  The one gradient-and-update of every model this package trains (pose models, their
  trajectory models, the action classifier). Returns (loss, aux, new params, new opt_state).
  """
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  opt_state = with_learning_rate(opt_state, learning_rate)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return loss, aux, optax.apply_updates(params, updates), opt_state
