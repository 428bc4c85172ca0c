"""Full-batch MALA targeting the localized tempered posterior (reference sampler).

Same interface as ``slt_jax.sgld``: ``build_kernel(...) -> kernel(key, state,
batch) -> (SGLDState, SGLDInfo)``, with the batch the full data set. Each move
is the SGLD proposal followed by a Metropolis-Hastings accept/reject, so the
chain targets ``exp(-nbeta L_n(w) - gamma/2 ||w - w*||^2)`` exactly; it is
slower than SGLD (two gradient evaluations per move: at the point and at the
proposal) and serves to cross-check SGLD estimates on small models.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from slt_jax import sgld
from slt_jax.sgld import SGLDInfo, SGLDState
from slt_jax.types import ArrayTree, PRNGKey


def build_kernel(loss_fn: Callable, step_size: float, nbeta: float,
                 localization: float, mask: Optional[ArrayTree] = None,
                 noise: str = "threefry2x32_unpartitioned") -> Callable:
  """Builds the MALA transition (arguments as ``sgld.build_kernel``).

  Returns:
    ``kernel(key, state, batch) -> (SGLDState, SGLDInfo)``; ``info.loss`` is
    the full-batch loss at the pre-move position and ``info.mala_accept`` the
    acceptance probability of this move.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2)
    >>> kernel = build_kernel(loss, 1e-2, 10.0, 1.0)
    >>> state, info = kernel(jax.random.key(0), sgld.init(jnp.ones(2)), None)
    >>> float(info.mala_accept) <= 1.0
    True
  """
  proposal = sgld.build_kernel(loss_fn, step_size, nbeta, localization, mask,
                               noise=noise)

  def kernel(key: PRNGKey, state: SGLDState, batch) -> tuple[SGLDState, SGLDInfo]:
    key_move, key_accept = jax.random.split(key)
    # Move from the current point, then score the reverse move at the proposal.
    moved, info = proposal(key_move, state, batch)
    _, at_proposal = proposal(key_move, moved, batch)
    accept = at_proposal.mala_accept
    take = jax.random.uniform(key_accept) < accept
    position = jax.tree.map(lambda new, old: jnp.where(take, new, old),
                            moved.position, state.position)
    new_state = sgld.init(position, state.anchor)
    return new_state, info._replace(mala_accept=accept)

  return kernel
