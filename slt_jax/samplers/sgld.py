"""Localized SGLD (and its RMSprop-preconditioned variant) in the blackjax pattern.

``init(position, anchor) -> SGLDState`` and ``build_kernel(loss_fn, ...) ->
kernel(key, state, batch, settings) -> (SGLDState, SGLDInfo)``. As in blackjax
(whose ``sgld`` kernel takes ``step_size`` and ``temperature`` per call), the
hyperparameters eps, nβ and γ are passed at call time as ``SGLDSettings`` of
(possibly traced) scalars, so one compiled program serves a whole grid of
settings. The kernel is pure and not jitted; callers scan and vmap it (see
``slt_jax.llc``). It never sees a model: the caller passes
``loss_fn(params, batch) -> scalar``.

The target is ``log pi(w) = -nbeta L(w) - gamma/2 ||w - w*||^2`` and the step
(devinterp's convention) is
``w <- w + (eps/2) G grad log pi_B(w) + sqrt(eps G) xi``, ``xi ~ N(0, I)``,
with ``G = 1`` for SGLD and ``G = 1 / (delta + sqrt(v))`` for RMSprop-SGLD
(Li et al. 2016), ``v`` the running mean of squared loss gradients.

The state keeps the previous point and its log density so that a step can
also report the Metropolis-Hastings acceptance probability the previous move
would have had as a MALA proposal (devinterp's "MALA acceptance" proxy) at no
extra gradient evaluation: the forward proposal density needs only the norm
of the noise that was injected, the reverse one a reduction over all
parameters. That reduction costs ~30% of a step on CPU (measured at p=53,
K=1024), and recording the move (a copy of the point and the norm of the
noise) another pass over the parameters. The kernel always does both; a
caller that discards ``info.mala_accept`` on a step, and keeps the previous
record (``prev_position``, ``prev_logdensity``, ``prev_log_proposal``) in
the new state, leaves that work dead, and XLA removes it from the compiled
step (``slt_jax.llc`` does so on all but the steps of its proxy schedule).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax.samplers import noise
from slt_jax.tree_types import ArrayTree, PRNGKey


class SGLDSettings(NamedTuple):
  """The sampler's hyperparameters, passed to the kernel at call time.

  Each field is a scalar (one setting, possibly traced) or, for
  ``slt_jax.llc.estimate_llc``, a 1-D sequence of equal length (a grid of
  settings, zipped) or None (take ``SGLDConfig``'s value).

  Attributes:
    step_size: eps > 0.
    nbeta: n·beta > 0, the weight of the minibatch loss.
    localization: gamma >= 0.

  Example:
    >>> grid = SGLDSettings.product(step_size=[1e-4, 1e-3],
    ...                            localization=[1.0, 5.0])
    >>> grid.step_size, grid.nbeta, grid.localization
    ((0.0001, 0.0001, 0.001, 0.001), None, (1.0, 5.0, 1.0, 5.0))
  """

  step_size: Any = None
  nbeta: Any = None
  localization: Any = None

  @classmethod
  def product(
    cls,
    step_size: Optional[Sequence[float]] = None,
    nbeta: Optional[Sequence[float]] = None,
    localization: Optional[Sequence[float]] = None,
  ) -> "SGLDSettings":
    """The Cartesian product of the given axes (step size slowest).

    Axes left None stay None (they take ``SGLDConfig``'s value).
    """
    axes = [
      (name, tuple(values))
      for name, values in zip(cls._fields, (step_size, nbeta, localization))
      if values is not None
    ]
    if not axes:
      raise ValueError("SGLDSettings.product needs at least one axis")
    grid = list(itertools.product(*[values for _, values in axes]))
    return cls(
      **{
        name: tuple(point[i] for point in grid)
        for i, (name, _) in enumerate(axes)
      }
    )


class SGLDState(NamedTuple):
  """State of one chain.

  Attributes:
    position: current parameters w.
    anchor: localization centre w*.
    prev_position: the point the last move started from.
    prev_logdensity: minibatch log density there (nan before the first move).
    prev_log_proposal: log density (up to a constant) of the last move under
      its own Gaussian proposal, ``-|xi|^2 / 2``.
    second_moment: RMSprop running mean of squared gradients; None for plain
      SGLD (nothing is carried).
  """

  position: ArrayTree
  anchor: ArrayTree
  prev_position: ArrayTree
  prev_logdensity: jax.Array
  prev_log_proposal: jax.Array
  second_moment: Optional[ArrayTree]


class SGLDInfo(NamedTuple):
  """Diagnostics of one transition (not carried forward).

  Attributes:
    loss: minibatch loss at the pre-move position.
    grad_norm: norm of the (masked) minibatch loss gradient there.
    noise_norm: norm of the injected noise ``sqrt(eps G) xi``.
    distance_sq: ``||w - w*||^2`` at the pre-move position.
    mala_accept: MALA acceptance probability of the previous move (nan on the
      first step).
  """

  loss: jax.Array
  grad_norm: jax.Array
  noise_norm: jax.Array
  distance_sq: jax.Array
  mala_accept: jax.Array


def preconditioner(second_moment: ArrayTree, damping: float) -> ArrayTree:
  """RMSprop-SGLD's step multiplier per coordinate, ``G = 1 / (damping +
  sqrt(V))`` for the second moment V (``rmsprop``'s delta as ``damping``).

  >>> g = preconditioner(jnp.array([0.0, 0.04]), 0.1)
  >>> round(float(g[0]), 4), round(float(g[1]), 4)
  (10.0, 3.3333)
  """
  return jax.tree.map(lambda v: 1.0 / (damping + jnp.sqrt(v)), second_moment)


def smallest_preconditioner(state: SGLDState, damping: float) -> jax.Array:
  """RMSprop-SGLD's smallest step multiplier over the coordinates, the
  minimum of ``preconditioner(state.second_moment, damping)``: the
  localization relaxes coordinate i in ``2 / (eps G_i γ)`` steps, so this
  sets the slowest.

  >>> state = init({"a": jnp.zeros(2), "b": jnp.zeros(1)}, preconditioned=True)
  >>> v = {"a": jnp.array([0.0, 0.01]), "b": jnp.array([0.04])}
  >>> g = jax.jit(smallest_preconditioner, static_argnums=1)(
  ...   state._replace(second_moment=v), 0.1)
  >>> round(float(g), 6)  # 1 / (0.1 + sqrt(0.04))
  3.333333
  """
  leaves = jax.tree.leaves(preconditioner(state.second_moment, damping))
  return functools.reduce(jnp.minimum, [jnp.min(g) for g in leaves])


def sq_norm(tree: ArrayTree) -> jax.Array:
  """Squared Euclidean norm of all leaves of ``tree`` together."""
  return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))


def num_moving(like: ArrayTree, mask: Optional[ArrayTree] = None) -> int:
  """Number of coordinates of ``like`` that ``mask`` lets move.

  All of them for None, else the sum of the 0/1 mask broadcast to each leaf.
  Counted on the host from shapes, so ``like`` may hold tracers (``mask``
  must be concrete).

  >>> num_moving({"a": jnp.ones((2, 3)), "b": jnp.ones(4)},
  ...            {"a": jnp.array([True, False, True]), "b": False})
  4
  """
  leaves = jax.tree.leaves(like)
  if mask is None:
    return sum(math.prod(np.shape(x)) for x in leaves)
  return int(
    sum(
      np.sum(np.broadcast_to(np.asarray(m), np.shape(x)))
      for x, m in zip(leaves, jax.tree.leaves(mask))
    )
  )


def apply_mask(tree: ArrayTree, mask: Optional[ArrayTree]) -> ArrayTree:
  """``tree`` with masked-out entries zeroed (``mask`` None: unchanged)."""
  if mask is None:
    return tree
  return jax.tree.map(lambda x, m: x * jnp.asarray(m, x.dtype), tree, mask)


def init(
  position: ArrayTree,
  anchor: Optional[ArrayTree] = None,
  *,
  preconditioned: bool = False,
) -> SGLDState:
  """Starts a chain at ``position``, localized at ``anchor`` (default: there).

  Args:
    position: initial parameters (any pytree of float arrays).
    anchor: localization centre; defaults to ``position``.
    preconditioned: carry an RMSprop second moment (for kernels built with
      ``rmsprop``); plain SGLD carries none.

  Returns:
    SGLDState.

  Example:
    >>> import jax.numpy as jnp
    >>> init(jnp.zeros(3)).second_moment is None
    True
  """
  anchor = position if anchor is None else anchor
  nan = jnp.array(jnp.nan, jnp.float32)
  second_moment = (
    jax.tree.map(jnp.zeros_like, position) if preconditioned else None
  )
  return SGLDState(position, anchor, position, nan, nan, second_moment)


def gaussian_noise(key: PRNGKey, like: ArrayTree, impl: str) -> ArrayTree:
  """Standard normals shaped like ``like``, drawn with PRNG ``impl``.

  Args:
    key: a threefry JAX key.
    like: pytree giving shapes and dtypes.
    impl: ``threefry2x32_unpartitioned`` (the key's threefry with
      ``jax_threefry_partitionable=False``, set only while tracing this draw),
      ``threefry2x32``, ``rbg`` or ``unsafe_rbg`` (a key of ``impl`` is
      seeded from the key's bits), ``counter_hash`` (``slt_jax.samplers.noise``:
      hashed counters, the leaves on disjoint counter ranges), or ``zeros``
      (no noise: a benchmark ablation only).

  Returns:
    Pytree of N(0, 1) draws (zeros for ``zeros``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> gaussian_noise(jax.random.key(0), jnp.ones((2, 3)), "rbg").shape
    (2, 3)
  """
  if impl == "zeros":
    return jax.tree.map(jnp.zeros_like, like)
  if impl == "counter_hash":
    leaves, treedef = jax.tree.flatten(like)
    offsets = itertools.accumulate([x.size for x in leaves], initial=0)
    return jax.tree.unflatten(
      treedef,
      [
        noise.normal(key, x.shape, x.dtype, offset)
        for x, offset in zip(leaves, offsets)
      ],
    )
  if impl == "threefry2x32_unpartitioned":
    with jax.threefry_partitionable(False):
      return gaussian_noise(key, like, "threefry2x32")
  if impl != "threefry2x32":
    key = jax.random.wrap_key_data(
      jax.random.bits(key, (4,), jnp.uint32), impl=impl
    )
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef,
    [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)],
  )


def build_kernel(
  loss_fn: Callable,
  mask: Optional[ArrayTree] = None,
  rmsprop: Optional[tuple[float, float]] = None,
  noise: str = "threefry2x32_unpartitioned",
) -> Callable:
  """Builds the localized SGLD transition.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss.
    mask: optional pytree of booleans (or 0/1) like the parameters; masked-out
      leaves or entries stay at the anchor.
    rmsprop: ``(decay, delta)`` to precondition as RMSprop-SGLD (the state
      must come from ``init(..., preconditioned=True)``); None for SGLD.
    noise: PRNG implementation for the noise (see ``gaussian_noise``).

  Returns:
    ``kernel(key, state, batch, settings) -> (SGLDState, SGLDInfo)`` with
    ``settings`` an ``SGLDSettings`` of scalars (eps > 0, nβ > 0, γ >= 0;
    validated by the caller, since they may be traced).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2)
    >>> kernel = build_kernel(loss)
    >>> state, info = kernel(jax.random.key(0), init(jnp.zeros(3)), None,
    ...                      SGLDSettings(1e-3, 10.0, 1.0))
    >>> state.position.shape, info.loss.shape
    ((3,), ())
  """

  def kernel(
    key: PRNGKey, state: SGLDState, batch, settings: SGLDSettings
  ) -> tuple[SGLDState, SGLDInfo]:
    step_size, nbeta, localization = settings
    w = state.position
    loss, grad = jax.value_and_grad(loss_fn)(w, batch)
    grad = apply_mask(grad, mask)
    delta = apply_mask(jax.tree.map(jnp.subtract, w, state.anchor), mask)
    distance_sq = sq_norm(delta)
    logdensity = -nbeta * loss - 0.5 * localization * distance_sq
    if rmsprop is None:
      second_moment, precond = None, None
    else:
      decay, damping = rmsprop
      second_moment = jax.tree.map(
        lambda v, g: decay * v + (1 - decay) * jnp.square(g),
        state.second_moment,
        grad,
      )
      precond = preconditioner(second_moment, damping)
    drift = jax.tree.map(
      lambda g, d: -(nbeta * g + localization * d), grad, delta
    )
    xi = apply_mask(gaussian_noise(key, w, noise), mask)
    scaled_noise = jax.tree.map(lambda z: jnp.sqrt(step_size) * z, xi)
    if precond is not None:
      drift = jax.tree.map(jnp.multiply, precond, drift)
      scaled_noise = jax.tree.map(
        lambda c, z: jnp.sqrt(c) * z, precond, scaled_noise
      )
    new_w = jax.tree.map(
      lambda x, f, z: x + 0.5 * step_size * f + z, w, drift, scaled_noise
    )
    # MALA proxy for the move prev -> w: the reverse move w -> prev would need
    # noise (prev - w - eps/2 drift(w)) / sqrt(eps G). With RMSprop the
    # log-determinant change of G between the two steps is ignored.
    reverse = jax.tree.map(
      lambda x, x0, f: x0 - x - 0.5 * step_size * f,
      w,
      state.prev_position,
      drift,
    )
    if precond is not None:
      reverse = jax.tree.map(lambda r, c: r / jnp.sqrt(c), reverse, precond)
    log_reverse = -0.5 * sq_norm(reverse) / step_size
    log_ratio = (
      logdensity - state.prev_logdensity + log_reverse - state.prev_log_proposal
    )
    accept = jnp.minimum(1.0, jnp.exp(log_ratio))
    xi_sq = sq_norm(xi)
    noise_norm = (
      jnp.sqrt(step_size * xi_sq)
      if precond is None
      else jnp.sqrt(sq_norm(scaled_noise))
    )
    info = SGLDInfo(
      loss, jnp.sqrt(sq_norm(grad)), noise_norm, distance_sq, accept
    )
    new_state = SGLDState(
      new_w, state.anchor, w, logdensity, -0.5 * xi_sq, second_moment
    )
    return new_state, info

  return kernel
