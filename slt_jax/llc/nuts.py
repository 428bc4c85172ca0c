"""A NUTS reference for the LLC: numpyro's No-U-Turn sampler, full batch.

``nuts_llc`` samples the localized tempered posterior

  ``p(w) ∝ exp(-nβ L_n(w) - γ/2 ||w - w*||^2)``

exactly (up to Monte Carlo error: NUTS is Metropolis-adjusted and has no
step-size bias), and returns the LLC estimate ``nβ (E[L_n(w)] - L_n(w*))``
with its Monte Carlo standard error. It is the ground truth against which the
SGLD-family estimates of ``slt_jax.llc`` can be checked on small models
(reduced-rank regression, normal crossings, a quadratic network with p ≤ 7,
K ≤ 16): every leapfrog step is a full-batch gradient, and NUTS builds up
to ``2^max_tree_depth`` of them per draw, so it is for models of hundreds of
parameters and data sets of thousands of examples, not for the Fig. 3
network.

Batching: numpyro's ``MCMC`` driver takes one potential, so it cannot vmap
over points with different w*. This module uses numpyro's functional kernel
(``numpyro.infer.hmc.hmc(potential_fn_gen=..., algo="NUTS")``, whose
potential is generated from w*) and vmaps a warmup + sampling scan over all
points × chains in one compiled program: what numpyro's
``chain_method="vectorized"`` does for chains, extended to points. Each
vmapped lane pays for the deepest tree in its batch (a ``while_loop`` under
vmap runs until every lane is done), so very different points are better run
in separate calls.

Masks: coordinates that ``mask`` freezes are replaced by w* in the loss and
given an independent standard normal in the potential (NUTS needs a proper
density in every coordinate); they do not enter the estimate.

The engine wall holds: this module never imports the model, data or
training code.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc

from slt_jax.checks import check, is_int, is_real
from slt_jax.llc import diagnostics
from slt_jax.llc.arguments import resolve_key, resolve_mask
from slt_jax.samplers.sgld import apply_mask, sq_norm
from slt_jax.tree_types import ArrayLikeTree, ArrayTree, PRNGKey

__all__ = ["NUTSResult", "nuts_llc"]


class NUTSResult(NamedTuple):
  """NUTS estimates; ``...`` is the ``batch_ndim`` leading shape of params.

  Attributes:
    mean: (...) LLC estimate ``nβ (mean over all draws of L_n - L_n(w*))``.
    mcse: (...) its Monte Carlo standard error, ``nβ sd(L_n) / sqrt(ess)``.
    per_chain: (..., chains) the estimate of each chain.
    ess: (...) effective sample size of the loss trace (all chains).
    rhat: (...) split R-hat of the loss trace.
    loss_trace: (..., chains, draws) full-batch loss of every draw.
    init_loss: (...) L_n(w*).
    num_divergent: (..., chains) divergent transitions among the draws.
    accept_prob: (..., chains) mean acceptance probability of the draws.
    step_size: (..., chains) the adapted leapfrog step size.
    gradient_evals: (..., chains) leapfrog steps (full-batch gradients) in
      all, warmup included.
    nbeta: n·β.
    localization: γ.
  """

  mean: np.ndarray
  mcse: np.ndarray
  per_chain: np.ndarray
  ess: np.ndarray
  rhat: np.ndarray
  loss_trace: np.ndarray
  init_loss: np.ndarray
  num_divergent: np.ndarray
  accept_prob: np.ndarray
  step_size: np.ndarray
  gradient_evals: np.ndarray
  nbeta: float
  localization: float


def _moving_point(
  w: ArrayTree, anchor: ArrayTree, mask: Optional[ArrayTree]
) -> ArrayTree:
  """The point the loss sees: w where ``mask`` lets it move, w* elsewhere.

  Args:
    w: a point, a pytree like the parameters of one point.
    anchor: w*, like ``w``.
    mask: 0/1 pytree like ``w``, or None (everything moves).

  Returns:
    Pytree like ``w``: ``w* + mask (w - w*)``.

  Example:
    >>> _moving_point(jnp.array([1.0, 2.0]), jnp.zeros(2), jnp.array([1.0, 0.0]))
    Array([1., 0.], dtype=float32)
  """
  return jax.tree.map(
    jnp.add, anchor, apply_mask(jax.tree.map(jnp.subtract, w, anchor), mask)
  )


def _potential_fn_gen(
  loss_fn: Callable,
  data: ArrayTree,
  nbeta: float,
  localization: float,
  mask: Optional[ArrayTree],
) -> Callable:
  """numpyro's ``potential_fn_gen``: ``gen(anchor) -> potential(w) -> ()``.

  The potential is ``nβ L_n(moving point) + γ/2 ||mask (w - w*)||^2`` plus
  ``||(1 - mask) (w - w*)||^2 / 2``, an independent standard normal in each
  frozen coordinate (so the density is proper there too).

  Args:
    loss_fn: ``loss_fn(params, data) -> scalar`` mean loss L_n.
    data: the full data set.
    nbeta: n·β.
    localization: γ.
    mask: 0/1 pytree like one point, or None.

  Returns:
    ``gen(anchor)``, taking w* (a pytree like one point) and returning the
    potential, a function of a point w (like w*) with a scalar value.
  """

  def potential_fn_gen(anchor: ArrayTree) -> Callable:
    def potential(w: ArrayTree) -> jax.Array:
      delta = jax.tree.map(jnp.subtract, w, anchor)
      frozen = (
        0.0
        if mask is None
        else 0.5
        * sq_norm(
          jax.tree.map(
            lambda d, m: d * (1.0 - jnp.asarray(m, d.dtype)), delta, mask
          )
        )
      )
      return (
        nbeta * loss_fn(_moving_point(w, anchor, mask), data)
        + 0.5 * localization * sq_norm(apply_mask(delta, mask))
        + frozen
      )

    return potential

  return potential_fn_gen


def _chain_fn(
  loss_fn: Callable,
  data: ArrayTree,
  nbeta: float,
  localization: float,
  mask: Optional[ArrayTree],
  *,
  num_warmup: int,
  num_samples: int,
  target_accept_prob: float,
  max_tree_depth: int,
  dense_mass: bool,
) -> Callable:
  """``chain(key, anchor) -> dict`` running one NUTS chain at one point.

  The chain starts at w* (``anchor``), adapts for ``num_warmup`` steps and
  then draws ``num_samples`` times. Its dict holds ``loss_trace``
  (num_samples,), the full-batch loss of each draw, and the scalars
  ``num_divergent``, ``accept_prob`` (mean over the draws), ``step_size``
  (adapted) and ``gradient_evals`` (leapfrog steps, warmup included).
  The keyword arguments are ``nuts_llc``'s.
  """
  potential_fn_gen = _potential_fn_gen(loss_fn, data, nbeta, localization, mask)

  def chain(key: PRNGKey, anchor: ArrayTree) -> dict:
    init_kernel, sample_kernel = hmc(
      potential_fn_gen=potential_fn_gen, algo="NUTS"
    )
    state = init_kernel(
      anchor,
      num_warmup,
      target_accept_prob=target_accept_prob,
      max_tree_depth=max_tree_depth,
      dense_mass=dense_mass,
      model_args=(anchor,),
      rng_key=key,
    )

    def warmup(state, _):
      state = sample_kernel(state, model_args=(anchor,))
      return state, state.num_steps

    def draw(state, _):
      state = sample_kernel(state, model_args=(anchor,))
      return state, (
        loss_fn(_moving_point(state.z, anchor, mask), data),
        state.num_steps,
        state.diverging,
        state.accept_prob,
      )

    state, warm_steps = jax.lax.scan(warmup, state, None, length=num_warmup)
    state, (loss, steps, diverging, accept) = jax.lax.scan(
      draw, state, None, length=num_samples
    )
    return {
      "loss_trace": loss,
      "num_divergent": jnp.sum(diverging),
      "accept_prob": jnp.mean(accept),
      "step_size": state.adapt_state.step_size,
      "gradient_evals": jnp.sum(warm_steps) + jnp.sum(steps),
    }

  return chain


def _check_arguments(
  nbeta, localization, target_accept_prob, **budgets: int
) -> None:
  """Raises ValueError naming the first bad budget, nβ, γ or target."""
  for name, low in (
    ("num_warmup", 1),
    ("num_samples", 4),
    ("num_chains", 1),
    ("max_tree_depth", 1),
  ):
    value = budgets[name]
    check(
      is_int(value) and value >= low,
      name,
      value,
      f"must be an integer >= {low}",
    )
  check(
    is_real(nbeta) and nbeta > 0,
    "nbeta",
    nbeta,
    "must be a finite number > 0",
  )
  check(
    is_real(localization) and localization >= 0,
    "localization",
    localization,
    "must be a finite number >= 0",
  )
  check(
    is_real(target_accept_prob) and 0 < target_accept_prob < 1,
    "target_accept_prob",
    target_accept_prob,
    "must lie in (0, 1)",
  )


def _batch_shape(params: ArrayLikeTree, batch_ndim: int) -> tuple:
  """The ``batch_ndim`` leading axes that every leaf of ``params`` shares.

  Raises:
    ValueError: naming ``batch_ndim`` when it is not an integer in
      ``[0, min leaf ndim]``, or the leaf shapes when the leaves disagree on
      those axes.
  """
  leaves = jax.tree.leaves(params)
  shapes = [np.shape(x) for x in leaves]
  check(bool(leaves), "params", params, "must have at least one leaf")
  check(
    is_int(batch_ndim) and 0 <= batch_ndim <= min(map(len, shapes)),
    "batch_ndim",
    batch_ndim,
    f"must be an integer in [0, {min(map(len, shapes))}] for leaves of "
    f"shapes {shapes}",
  )
  batch_shapes = {shape[:batch_ndim] for shape in shapes}
  if len(batch_shapes) > 1:
    raise ValueError(
      f"params leaves of shapes {shapes} disagree on their "
      f"batch_ndim={batch_ndim} leading axes: {sorted(batch_shapes)}"
    )
  return shapes[0][:batch_ndim]


def _flat_points(
  params: ArrayLikeTree, batch_ndim: int, num_points: int
) -> ArrayTree:
  """``params`` as float32 with its ``batch_ndim`` point axes merged into one.

  Args:
    params: pytree whose leaves have shapes ``batch_shape + point_shape``.
    batch_ndim: number of leading point axes.
    num_points: P, the product of ``batch_shape``.

  Returns:
    Pytree whose leaves are (P, *point_shape) float32 arrays.

  Example:
    >>> _flat_points({"w": jnp.zeros((2, 3, 4))}, 2, 6)["w"].shape
    (6, 4)
  """
  return jax.tree.map(
    lambda x: jnp.asarray(x, jnp.float32).reshape(
      (num_points,) + np.shape(x)[batch_ndim:]
    ),
    params,
  )


def _run_chains(
  chain: Callable, key: PRNGKey, flat: ArrayTree, num_chains: int
) -> dict:
  """Runs ``num_chains`` chains at each of P points in one compiled program.

  Point i, chain j uses the key ``split(split(key, P)[i], C)[j]`` and starts
  at point i.

  Args:
    chain: ``chain(key, anchor) -> dict`` from ``_chain_fn``.
    key: PRNG key.
    flat: pytree of (P, ...) leaves, the points w* (see ``_flat_points``).
    num_chains: C.

  Returns:
    ``chain``'s dict as host arrays, each field shaped (P, C, ...).
  """
  num_points = len(jax.tree.leaves(flat)[0])
  keys = jax.vmap(lambda k: jax.random.split(k, num_chains))(
    jax.random.split(key, num_points)
  ).reshape(-1)
  anchors = jax.tree.map(lambda x: jnp.repeat(x, num_chains, axis=0), flat)
  out = jax.jit(jax.vmap(chain))(keys, anchors)
  return {
    k: np.asarray(v).reshape((num_points, num_chains) + v.shape[1:])
    for k, v in out.items()
  }


def _summarize(
  out: dict,
  init_loss: np.ndarray,
  batch_shape: tuple,
  nbeta: float,
  localization: float,
) -> NUTSResult:
  """The estimates and diagnostics of P points' chains, shaped as the points.

  Args:
    out: ``_run_chains``' dict: (P, C, ...) host arrays, ``loss_trace``
      (P, C, draws) among them.
    init_loss: (P,) float64, L_n(w*) of each point.
    batch_shape: the points' leading shape (its product is P).
    nbeta: n·β.
    localization: γ.

  Returns:
    NUTSResult whose (P, ...) fields are reshaped to ``batch_shape + ...``.
  """
  num_points = len(init_loss)
  trace = out["loss_trace"].astype(np.float64)
  per_chain = nbeta * (trace.mean(-1) - init_loss[:, None])
  mean = nbeta * (trace.mean((-2, -1)) - init_loss)
  by_point = np.moveaxis(trace, 0, -1)  # (chains, draws, points)
  ess = diagnostics.effective_sample_size(by_point)
  rhat = diagnostics.split_rhat(by_point)
  sd = nbeta * trace.reshape(num_points, -1).std(-1, ddof=1)
  mcse = sd / np.sqrt(np.maximum(ess, 1.0))
  shape = lambda x: np.asarray(x).reshape(batch_shape + np.shape(x)[1:])
  return NUTSResult(
    mean=shape(mean),
    mcse=shape(mcse),
    per_chain=shape(per_chain),
    ess=shape(ess),
    rhat=shape(rhat),
    loss_trace=shape(trace),
    init_loss=shape(init_loss),
    num_divergent=shape(out["num_divergent"]),
    accept_prob=shape(out["accept_prob"]),
    step_size=shape(out["step_size"]),
    gradient_evals=shape(out["gradient_evals"]),
    nbeta=nbeta,
    localization=localization,
  )


def nuts_llc(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  nbeta: float,
  localization: float,
  *,
  num_warmup: int = 500,
  num_samples: int = 1000,
  num_chains: int = 4,
  batch_ndim: int = 0,
  mask: Union[None, ArrayLikeTree, Callable] = None,
  target_accept_prob: float = 0.8,
  max_tree_depth: int = 10,
  dense_mass: bool = False,
) -> NUTSResult:
  """NUTS estimate of the LLC at every point of ``params`` (full batch).

  Args:
    key: PRNG key, typed or legacy (``jax.random.PRNGKey``: the numbers
      of the typed key of the same seed); point i, chain j uses
      ``split(split(key, P)[i], C)[j]``.
    loss_fn: ``loss_fn(params, data) -> scalar`` mean loss L_n.
    params: pytree whose leaves carry ``batch_ndim`` leading axes of points
      w*; every chain starts at its w*.
    data: the full data set (every gradient uses all of it).
    nbeta: n·β > 0.
    localization: γ >= 0 (with γ = 0 the posterior must be proper without
      it).
    num_warmup: adaptation steps per chain (step size by dual averaging and
      a diagonal, or dense, mass matrix), discarded.
    num_samples: draws per chain.
    num_chains: chains per point.
    batch_ndim: number of leading point axes of ``params``.
    mask: which parameters move (as ``slt_jax.llc.resolve_mask``).
    target_accept_prob: dual-averaging target. Singular posteriors with
      cross- or ridge-shaped level sets need smaller steps than numpyro's
      0.8 gives: on ``normal_crossing_12`` (nβ = 1e4) divergences at 0.8 bias
      the estimate 15% low (0.197 ± 0.010 against the exact 0.233); 0.99
      recovers it (0.222 ± 0.010). Check ``num_divergent``.
    max_tree_depth: NUTS' maximal tree depth (at most ``2^depth`` leapfrog
      steps per draw).
    dense_mass: adapt a dense mass matrix (for strongly correlated
      posteriors of few parameters).

  Returns:
    NUTSResult (host arrays).

  Raises:
    ValueError: naming a bad budget, nβ, γ, target_accept_prob or
      batch_ndim, or the leaf shapes when the leaves of ``params`` disagree
      on their ``batch_ndim`` leading axes.
    TypeError: naming ``key`` when it is not a PRNG key.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, x: 0.5 * jnp.sum(w ** 2) + 0.0 * jnp.sum(x)
    >>> res = nuts_llc(jax.random.key(0), loss, jnp.zeros(4), jnp.zeros(1),
    ...                nbeta=9.0, localization=1.0, num_warmup=200,
    ...                num_samples=500, num_chains=2)
    >>> res.per_chain.shape, res.loss_trace.shape
    ((2,), (2, 500))
    >>> bool(abs(res.mean - 4 / 2 * 9 / 10) < 5 * res.mcse)
    True
  """
  _check_arguments(
    nbeta,
    localization,
    target_accept_prob,
    num_warmup=num_warmup,
    num_samples=num_samples,
    num_chains=num_chains,
    max_tree_depth=max_tree_depth,
  )
  key = resolve_key(key)
  nbeta, localization = float(nbeta), float(localization)
  num_warmup, num_samples, num_chains, max_tree_depth = map(
    int, (num_warmup, num_samples, num_chains, max_tree_depth)
  )
  batch_shape = _batch_shape(params, batch_ndim)
  flat = _flat_points(params, batch_ndim, math.prod(batch_shape))
  data = jax.tree.map(jnp.asarray, data)
  mask = resolve_mask(mask, jax.tree.map(lambda x: x[0], flat))
  chain = _chain_fn(
    loss_fn,
    data,
    nbeta,
    localization,
    mask,
    num_warmup=num_warmup,
    num_samples=num_samples,
    target_accept_prob=target_accept_prob,
    max_tree_depth=max_tree_depth,
    dense_mass=dense_mass,
  )
  out = _run_chains(chain, key, flat, num_chains)
  init_loss = np.asarray(
    jax.jit(jax.vmap(lambda w: loss_fn(w, data)))(flat), np.float64
  )
  return _summarize(out, init_loss, batch_shape, nbeta, localization)
