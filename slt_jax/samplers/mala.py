"""Full-batch MALA targeting the localized tempered posterior (reference sampler).

Same pattern as ``slt_jax.samplers.sgld``: ``init(position, loss_fn, batch)`` and
``build_kernel(loss_fn, ...) -> kernel(key, state, batch, settings) ->
(MALAState, SGLDInfo)``, with the batch the full data set and ``settings`` an
``sgld.SGLDSettings`` of scalars. Each move is the SGLD proposal followed by a
Metropolis-Hastings accept/reject, so the chain targets
``exp(-nbeta L_n(w) - gamma/2 ||w - w*||^2)`` exactly. The state carries the
loss and its gradient at the current point, so a move costs one gradient
evaluation (at the proposal). It is slower than SGLD (full batch) and serves
to cross-check SGLD estimates on small models.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from slt_jax.samplers.sgld import (
  SGLDInfo,
  SGLDSettings,
  apply_mask,
  gaussian_noise,
  sq_norm,
)
from slt_jax.tree_types import ArrayTree, PRNGKey


class MALAState(NamedTuple):
  """State of one MALA chain.

  Attributes:
    position: current parameters w.
    anchor: localization centre w*.
    loss: full-batch loss at ``position``.
    loss_grad: its (masked) gradient.
  """

  position: ArrayTree
  anchor: ArrayTree
  loss: jax.Array
  loss_grad: ArrayTree


def init(
  position: ArrayTree,
  loss_fn: Callable,
  batch,
  anchor: Optional[ArrayTree] = None,
  mask: Optional[ArrayTree] = None,
) -> MALAState:
  """Starts a chain at ``position`` (localized at ``anchor``, default there).

  Args:
    position: initial parameters.
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    batch: the full data set.
    anchor: localization centre; defaults to ``position``.
    mask: as ``build_kernel``'s.

  Returns:
    MALAState with the loss and gradient at ``position``.

  Example:
    >>> import jax.numpy as jnp
    >>> state = init(jnp.ones(2), lambda w, b: 0.5 * jnp.sum(w ** 2), None)
    >>> float(state.loss), state.loss_grad.tolist()
    (1.0, [1.0, 1.0])
  """
  anchor = position if anchor is None else anchor
  loss, grad = jax.value_and_grad(loss_fn)(position, batch)
  return MALAState(position, anchor, loss, apply_mask(grad, mask))


def build_kernel(
  loss_fn: Callable,
  mask: Optional[ArrayTree] = None,
  noise: str = "threefry2x32_unpartitioned",
) -> Callable:
  """Builds the MALA transition (arguments as ``sgld.build_kernel``).

  Returns:
    ``kernel(key, state, batch, settings) -> (MALAState, SGLDInfo)``;
    ``info.loss`` is the full-batch loss at the pre-move position and
    ``info.mala_accept`` the acceptance probability of this move.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2)
    >>> kernel = build_kernel(loss)
    >>> state, info = kernel(jax.random.key(0), init(jnp.ones(2), loss, None),
    ...                      None, SGLDSettings(1e-2, 10.0, 1.0))
    >>> 0.0 <= float(info.mala_accept) <= 1.0
    True
  """

  def parts(state: MALAState, settings: SGLDSettings):
    """Log density and its gradient (drift) at the state's point."""
    _, nbeta, localization = settings
    delta = apply_mask(
      jax.tree.map(jnp.subtract, state.position, state.anchor), mask
    )
    logdensity = -nbeta * state.loss - 0.5 * localization * sq_norm(delta)
    drift = jax.tree.map(
      lambda g, d: -(nbeta * g + localization * d), state.loss_grad, delta
    )
    return logdensity, drift, delta

  def kernel(
    key: PRNGKey, state: MALAState, batch, settings: SGLDSettings
  ) -> tuple[MALAState, SGLDInfo]:
    step_size = settings.step_size
    key_noise, key_accept = jax.random.split(key)
    logdensity, drift, delta = parts(state, settings)
    xi = apply_mask(gaussian_noise(key_noise, state.position, noise), mask)
    proposal = jax.tree.map(
      lambda x, f, z: x + 0.5 * step_size * f + jnp.sqrt(step_size) * z,
      state.position,
      drift,
      xi,
    )
    loss, grad = jax.value_and_grad(loss_fn)(proposal, batch)
    moved = MALAState(proposal, state.anchor, loss, apply_mask(grad, mask))
    new_logdensity, new_drift, _ = parts(moved, settings)
    # Reverse move proposal -> position: its noise would have been r / sqrt(eps).
    reverse = jax.tree.map(
      lambda x0, x, f: x0 - x - 0.5 * step_size * f,
      state.position,
      proposal,
      new_drift,
    )
    log_ratio = (
      new_logdensity
      - logdensity
      - 0.5 * sq_norm(reverse) / step_size
      + 0.5 * sq_norm(xi)
    )
    accept = jnp.minimum(1.0, jnp.exp(log_ratio))
    take = jax.random.uniform(key_accept) < accept
    new_state = jax.tree.map(
      lambda new, old: jnp.where(take, new, old), moved, state
    )
    info = SGLDInfo(
      state.loss,
      jnp.sqrt(sq_norm(state.loss_grad)),
      jnp.sqrt(step_size * sq_norm(xi)),
      sq_norm(delta),
      accept,
    )
    return new_state, info

  return kernel
