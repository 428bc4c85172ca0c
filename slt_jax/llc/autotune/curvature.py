"""The curvature bound at w* and the checks that w* is a point with an LLC:
a finite, non-constant loss near a minimum."""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt_jax import batching
from slt_jax.checks import check, is_int, is_real
from slt_jax.llc.arguments import count_examples, flatten_points, resolve_mask
from slt_jax.samplers.sgld import num_moving
from slt_jax.tree_types import ArrayLikeTree, PRNGKey

NUM_LOSS_PROBES = 2  # points at the localization scale for the constant check.
CONSTANT_LOSS = 1e-6  # nβ |L(w* + δ) - L(w*)| below this: a constant loss.


class _Probe(NamedTuple):
  """Per-point quantities at w* (each (P,)), in units of the potential U."""

  loss: np.ndarray  # L at w* on the probe data.
  h_loss: np.ndarray  # top |eigenvalue| of the Hessian of nβ L.
  grad_norm: np.ndarray  # |grad nβ L| over the moving coordinates.
  descent: np.ndarray  # |g|^2 / (2 g'Hg/|g|^2): the drop along -g of U.
  change: np.ndarray  # max nβ |L(w* + δ) - L(w*)|, δ ~ N(0, I / γ).


def _power_iteration(hvp: Callable, v: jax.Array, num_iters: int) -> jax.Array:
  """The Rayleigh quotient of ``hvp`` after ``num_iters`` power steps from
  ``v`` (0 for a zero Hessian): its eigenvalue of largest magnitude."""

  def step(_, v):
    hv = hvp(v)
    return hv / jnp.maximum(jnp.linalg.norm(hv), jnp.finfo(hv.dtype).tiny)

  v = jax.lax.fori_loop(0, num_iters, step, v / jnp.linalg.norm(v))
  return jnp.vdot(v, hvp(v))


def _probe_point(
  key, w, mask, *, unravel, loss_fn, data, nbeta, localization, num_iters
) -> dict:
  """``_Probe``'s fields at one point ``w`` (flat), moving coordinates
  ``mask`` (flat 0/1)."""
  potential = lambda v: nbeta * loss_fn(unravel(v), data)
  hvp = lambda v: mask * jax.jvp(jax.grad(potential), (w,), (mask * v,))[1]
  key_v, key_delta = jax.random.split(key)
  value, grad = jax.value_and_grad(potential)(w)
  grad = mask * grad
  grad_sq = jnp.vdot(grad, grad)
  tiny = jnp.finfo(grad.dtype).tiny
  along = jnp.vdot(grad, hvp(grad)) / jnp.maximum(grad_sq, tiny) + localization
  scale = 1.0 / math.sqrt(localization) if localization > 0 else 1.0
  deltas = jax.random.normal(key_delta, (NUM_LOSS_PROBES,) + w.shape, w.dtype)
  probes = jax.vmap(potential)(w[None] + scale * mask[None] * deltas)
  return {
    "loss": value / nbeta,
    "h_loss": _power_iteration(
      hvp, mask * jax.random.normal(key_v, w.shape, w.dtype), num_iters
    ),
    "grad_norm": jnp.sqrt(grad_sq),
    "descent": jnp.where(along > 0, grad_sq / (2 * along), jnp.inf),
    "change": jnp.max(jnp.abs(probes - value)),
  }


def probe_points(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  nbeta: float,
  localization: float,
  batch_ndim: int,
  mask,
  num_iters: int,
  max_examples: Optional[int],
) -> tuple[_Probe, tuple, int]:
  """``_Probe`` of every point (on at most ``max_examples`` random examples),
  the points' batch shape and the number of moving parameters."""
  flat, batch_shape, num_points = flatten_points(params, batch_ndim)
  point = jax.tree.map(lambda x: jnp.asarray(x[0]), flat)
  _, unravel = ravel_pytree(point)
  moving = resolve_mask(mask, point)
  if moving is None:
    moving = jax.tree.map(jnp.ones_like, point)
  mask_flat = ravel_pytree(
    jax.tree.map(lambda m, x: jnp.broadcast_to(m, x.shape), moving, point)
  )[0].astype(ravel_pytree(point)[0].dtype)
  key_data, key_points = jax.random.split(key)
  n = count_examples(data, None)
  if max_examples is not None and max_examples < n:
    data = batching.take(
      data, jax.random.permutation(key_data, n)[:max_examples]
    )
  fn = functools.partial(
    _probe_point,
    unravel=unravel,
    loss_fn=loss_fn,
    data=data,
    nbeta=nbeta,
    localization=localization,
    num_iters=num_iters,
  )
  points = jax.vmap(lambda p: ravel_pytree(p)[0])(flat)
  out = jax.jit(jax.vmap(fn, (0, 0, None)))(
    jax.random.split(key_points, num_points), points, mask_flat
  )
  probe = _Probe(**{k: np.asarray(v, np.float64) for k, v in out.items()})
  return probe, batch_shape, num_moving(point, moving)


def hessian_top_eigenvalue(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  nbeta: float,
  localization: float = 0.0,
  *,
  batch_ndim: int = 0,
  mask=None,
  num_iters: int = 30,
  max_examples: Optional[int] = None,
) -> np.ndarray:
  """Top eigenvalue of the Hessian of ``nbeta L_n(w) + localization/2 |w -
  w*|^2`` at each point w*, by power iteration with Hessian-vector products
  (``jax.jvp`` of ``jax.grad``), over the coordinates ``mask`` moves.

  Power iteration finds the eigenvalue of largest magnitude (the top one at
  a minimum); its Rayleigh quotient approaches it from below.

  Args:
    key: PRNG key (start vectors; the subset of examples).
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss.
    params: points with ``batch_ndim`` leading axes.
    data: pytree with the example axis first.
    nbeta: n·beta > 0.
    localization: gamma >= 0.
    batch_ndim: number of leading point axes of ``params``.
    mask: which parameters move (see ``slt_jax.llc.resolve_mask``).
    num_iters: power iterations.
    max_examples: evaluate L on at most this many random examples (None: all).

  Returns:
    (batch shape) float64.

  Example:
    >>> loss = lambda w, batch: 0.5 * (4.0 * w[0] ** 2 + w[1] ** 2)
    >>> h = hessian_top_eigenvalue(jax.random.key(0), loss, jnp.zeros(2),
    ...                            jnp.zeros((3, 1)), 10.0, 1.0)
    >>> round(float(h), 3)  # 10 * 4 + 1
    41.0
  """
  check(is_real(nbeta) and nbeta > 0, "nbeta", nbeta, "must be > 0")
  check(
    is_real(localization) and localization >= 0,
    "localization",
    localization,
    "must be >= 0",
  )
  check(
    is_int(num_iters) and num_iters >= 1, "num_iters", num_iters, "must be >= 1"
  )
  probe, batch_shape, _ = probe_points(
    key,
    loss_fn,
    params,
    data,
    float(nbeta),
    float(localization),
    batch_ndim,
    mask,
    num_iters,
    max_examples,
  )
  return (probe.h_loss + localization).reshape(batch_shape)


def check_points(probe: _Probe, num_params: int) -> None:
  """Raises ``ValueError`` naming the first point whose loss is not finite or
  constant, or which is not near a minimum."""
  for i in range(len(probe.loss)):
    at = f"at point {i}"
    for name in ("loss", "grad_norm", "h_loss"):
      value = float(getattr(probe, name)[i])
      check(np.isfinite(value), f"{name} {at}", value, "must be finite")
    check(
      probe.change[i] > CONSTANT_LOSS,
      f"nbeta * |L(w* + delta) - L(w*)| {at}",
      float(probe.change[i]),
      f"must exceed {CONSTANT_LOSS}: the loss is constant near w* (delta at "
      "the localization scale 1/sqrt(gamma)), there is no LLC to estimate",
    )
    check(
      probe.descent[i] <= num_params / 2,
      f"descent along the gradient {at}",
      float(probe.descent[i]),
      f"must be <= d/2 = {num_params / 2:g}: params is not near a minimum "
      f"(|grad nbeta L| = {probe.grad_norm[i]:.4g}); the chains would descend "
      "rather than sample around w*",
    )
