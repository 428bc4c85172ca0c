"""Float64 curvature numerics that check the closed forms.

Jacobian ranks (``jacobian_rank``, ``ntk_llc``), dense Hessians and the
finite-temperature Laplace prediction of the localized SGLD estimate
(``predict_llc_hat``, ``sgld_llc_hat_quadratic``), and 2-D quadrature of the
exact Gibbs expectation (``gibbs_expectation``). JAX runs with float64 enabled
only inside each function (``jax.enable_x64``); results are NumPy arrays or
Python floats. Arguments are checked and violations raise ``ValueError``.

References:
  Cullen et al. (2026), "Grokking as a phase transition between competing
    basins": Sec. 4 (lambda = r / 2 at points of constant rank), Thm 5.1
    (NTK / linearised model), LLC estimation by localized SGLD.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from slt_jax.theory.closed_forms import (
  _check_int,
  _check_nonnegative,
  _check_positive,
  _require,
)
from slt_jax.tree_types import ArrayLikeTree, ArrayTree

__all__ = [
  "RankResult",
  "numerical_rank",
  "ntk_llc",
  "jacobian_rank",
  "QuadraticExpansion",
  "dense_hessian",
  "hessian_eigenvalues",
  "LLCHatPrediction",
  "predict_llc_hat",
  "sgld_llc_hat_quadratic",
  "gibbs_expectation",
  "gibbs_expectation_2d",
]


# ----------------------------------------------------------------------------
# Numerical rank and the linearised (NTK) regime (Thm 5.1).
# ----------------------------------------------------------------------------


class RankResult(NamedTuple):
  """Numerical rank of a matrix.

  Attributes:
    rank: number of singular values above the threshold.
    singular_values: (min(rows, cols),) float64, descending.
    gap: ``s[rank - 1] / s[rank]``, the ratio of the smallest singular value
      kept to the largest one dropped (inf when nothing or everything is
      dropped, or the dropped value is 0). A large gap (>> 1e3) means the rank
      is unambiguous.
    threshold: the absolute cut used.
  """

  rank: int
  singular_values: np.ndarray
  gap: float
  threshold: float


def numerical_rank(matrix: Any, rtol: Optional[float] = None) -> RankResult:
  """Rank of a dense matrix from its float64 singular values.

  Args:
    matrix: (R, C) array-like.
    rtol: threshold relative to the largest singular value; default
      ``max(R, C) * eps(float64)`` as ``numpy.linalg.matrix_rank``.

  Returns:
    RankResult.

  Raises:
    ValueError: if matrix is not 2-D or not finite, or rtol is not > 0.

  Example:
    >>> import numpy as np
    >>> numerical_rank(np.outer([1.0, 2.0], [3.0, 4.0, 5.0])).rank
    1
  """
  a = np.asarray(matrix, np.float64)
  _require(a.ndim == 2, f"matrix.ndim={a.ndim} is invalid: must be 2")
  _require(
    bool(np.all(np.isfinite(a))), "matrix is invalid: it has non-finite entries"
  )
  if rtol is None:
    rtol = max(a.shape) * np.finfo(np.float64).eps
  else:
    _check_positive("rtol", rtol)
  s = np.linalg.svd(a, compute_uv=False) if a.size else np.zeros(0)
  s_max = float(s[0]) if s.size else 0.0
  threshold = rtol * s_max
  rank = int(np.sum(s > threshold))
  if 0 < rank < s.size and s[rank] > 0:
    gap = float(s[rank - 1] / s[rank])
  else:
    gap = math.inf
  return RankResult(rank, s, gap, float(threshold))


def ntk_llc(jacobian: Any, rtol: Optional[float] = None) -> float:
  """Learning coefficient of the linearised (NTK) model, ``rank(J) / 2``.

  The linearised model ``f(w*) + J (w - w*)`` is linear in the parameters, so
  it is regular in the ``rank(J)`` directions it can move and flat in the
  others.

  Args:
    jacobian: (outputs, params) Jacobian on the training inputs.
    rtol: relative singular-value threshold (see ``numerical_rank``).

  Returns:
    lambda = numerical rank / 2.

  Raises:
    ValueError: as ``numerical_rank``.

  References:
    Cullen et al. (2026), Thm 5.1.

  Example:
    >>> import numpy as np
    >>> ntk_llc(np.eye(4)[:, :3])
    1.5
  """
  return numerical_rank(jacobian, rtol).rank / 2


# ----------------------------------------------------------------------------
# Jacobian rank, Hessian, finite-temperature Laplace prediction.
# ----------------------------------------------------------------------------


def _to_float64(tree: ArrayLikeTree) -> ArrayTree:
  """Casts floating leaves to float64 (call inside ``jax.enable_x64``)."""

  def cast(x):
    x = jnp.asarray(x)
    return x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(cast, tree)


def _flatten_float64(
  params: ArrayLikeTree,
) -> tuple[jax.Array, Callable[[jax.Array], ArrayTree]]:
  """Flattens params to one (P,) float64 vector (call inside ``enable_x64``).

  Returns:
    ``(flat_P, unravel)`` as ``jax.flatten_util.ravel_pytree``, with floating
    leaves cast to float64 first (integer leaves are promoted too).
  """
  flat_P, unravel = ravel_pytree(_to_float64(params))
  return flat_P.astype(jnp.float64), unravel


def jacobian_rank(
  fn: Callable[[ArrayTree], jax.Array],
  params: ArrayLikeTree,
  rtol: Optional[float] = None,
) -> RankResult:
  """Numerical rank of the Jacobian of ``fn`` at ``params``, in float64.

  The parameters are cast to float64 and flattened with ``ravel_pytree``;
  the dense Jacobian of ``ravel(fn(params))`` is taken with ``jacfwd`` or
  ``jacrev`` (whichever is cheaper) under ``jax.enable_x64`` and its singular
  values with NumPy. Float64 stays disabled outside this call.

  Args:
    fn: ``fn(params) -> outputs`` (any shape); it must not cast to float32.
    params: parameter pytree (float leaves).
    rtol: relative threshold; default ``max(J.shape) * eps(float64)``.

  Returns:
    RankResult of the (outputs, params) Jacobian.

  Raises:
    ValueError: if params has no leaves or the Jacobian is not finite.

  References:
    Cullen et al. (2026), Sec. 4 (lambda = r / 2 at points of constant rank).

  Example:
    >>> import jax.numpy as jnp
    >>> jacobian_rank(lambda w: jnp.stack([w[0] * w[1], w[0] * w[1]]),
    ...               jnp.array([1.0, 2.0])).rank
    1
  """
  _require(
    len(jax.tree.leaves(params)) > 0, "params is invalid: it has no leaves"
  )
  with jax.enable_x64(True):
    flat_P, unravel = _flatten_float64(params)

    def flat_fn(f_P):
      return jnp.ravel(fn(unravel(f_P))).astype(jnp.float64)

    num_out = jax.eval_shape(flat_fn, flat_P).size
    jac = jax.jacfwd if flat_P.size <= num_out else jax.jacrev
    j_OxP = np.asarray(jax.jit(jac(flat_fn))(flat_P), np.float64)
  return numerical_rank(j_OxP, rtol)


class QuadraticExpansion(NamedTuple):
  """Second-order Taylor expansion of a loss at a point, in float64.

  Attributes:
    loss: L0, the loss at the point.
    grad: (P,) gradient over the flattened parameters.
    hessian: (P, P) symmetric Hessian.
  """

  loss: float
  grad: np.ndarray
  hessian: np.ndarray


def dense_hessian(
  loss_fn: Callable[[ArrayTree, Any], jax.Array],
  params: ArrayLikeTree,
  batch: Any,
  max_params: int = 5000,
) -> QuadraticExpansion:
  """Loss, gradient and dense Hessian over the flattened parameters.

  Computed in float64 (``jax.enable_x64`` inside the call); float leaves of
  params and batch are cast to float64.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: parameter pytree.
    batch: data passed unchanged (after the float64 cast) to loss_fn.
    max_params: refuse models with more parameters than this.

  Returns:
    QuadraticExpansion with a symmetrised Hessian.

  Raises:
    ValueError: if the number of parameters exceeds max_params, or the loss,
      gradient or Hessian is not finite.

  Example:
    >>> import jax.numpy as jnp
    >>> q = dense_hessian(lambda w, b: jnp.sum(b * w ** 2), jnp.ones(2),
    ...                   jnp.array([1.0, 3.0]))
    >>> q.hessian.tolist()
    [[2.0, 0.0], [0.0, 6.0]]
  """
  max_params = _check_int("max_params", max_params, 1)
  with jax.enable_x64(True):
    flat_P, unravel = _flatten_float64(params)
    num_params = int(flat_P.size)
    _require(
      num_params <= max_params,
      f"number of parameters {num_params} is invalid: exceeds "
      f"max_params={max_params} (dense Hessian)",
    )
    batch64 = _to_float64(batch)

    def flat_loss(f_P):
      return jnp.asarray(loss_fn(unravel(f_P), batch64), jnp.float64)

    loss, grad_P = jax.jit(jax.value_and_grad(flat_loss))(flat_P)
    hess_PxP = jax.jit(jax.hessian(flat_loss))(flat_P)
    loss = float(loss)
    grad_P = np.asarray(grad_P, np.float64)
    hess_PxP = np.asarray(hess_PxP, np.float64)
  _require(
    np.isfinite(loss)
    and bool(np.all(np.isfinite(grad_P)))
    and bool(np.all(np.isfinite(hess_PxP))),
    f"loss={loss} is invalid: loss, gradient and Hessian must be finite",
  )
  return QuadraticExpansion(loss, grad_P, 0.5 * (hess_PxP + hess_PxP.T))


def hessian_eigenvalues(
  loss_fn: Callable[[ArrayTree, Any], jax.Array],
  params: ArrayLikeTree,
  batch: Any,
  max_params: int = 5000,
) -> np.ndarray:
  """Eigenvalues of the dense float64 Hessian of the loss (small models).

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: parameter pytree.
    batch: data for loss_fn.
    max_params: refuse models with more parameters than this.

  Returns:
    (P,) float64 eigenvalues in ascending order.

  Raises:
    ValueError: as ``dense_hessian``.

  Example:
    >>> import jax.numpy as jnp
    >>> hessian_eigenvalues(lambda w, b: 0.5 * w @ b @ w, jnp.zeros(2),
    ...                     jnp.array([[2.0, 1.0], [1.0, 2.0]])).tolist()
    [1.0, 3.0]
  """
  hess_PxP = dense_hessian(loss_fn, params, batch, max_params).hessian
  return np.linalg.eigvalsh(hess_PxP)


class LLCHatPrediction(NamedTuple):
  """Finite-temperature Laplace prediction of the localized SGLD estimate.

  Attributes:
    llc_hat: ``E[nbeta (L(w) - L0)]`` under the Gaussian SGLD target; the sum
      of the two terms below.
    curvature_term: ``(nbeta / 2) tr(H A^{-1})``, the "soft rank"
      ``1/2 sum_i nbeta h_i / (nbeta h_i + gamma)`` (the whole answer when
      the gradient vanishes).
    gradient_term: ``nbeta (g . mu + mu^T H mu / 2)`` from the shift
      ``mu = -nbeta A^{-1} g`` of the target's mean (<= 0).
    min_precision_eigenvalue: smallest eigenvalue of ``A = nbeta H + gamma I``.
  """

  llc_hat: float
  curvature_term: float
  gradient_term: float
  min_precision_eigenvalue: float


def predict_llc_hat(
  loss_fn: Callable[[ArrayTree, Any], jax.Array],
  params: ArrayLikeTree,
  batch: Any,
  nbeta: float,
  gamma: float,
  max_params: int = 5000,
) -> LLCHatPrediction:
  """Laplace prediction of the localized SGLD LLC estimate at ``params``.

  With ``L(w*+delta) ~ L0 + g . delta + delta^T H delta / 2`` the SGLD target
  ``exp(-nbeta L(w) - gamma |delta|^2 / 2)`` is Gaussian with precision
  ``A = nbeta H + gamma I`` and mean ``mu = -nbeta A^{-1} g``, and

    ``E[nbeta (L(w) - L0)] = nbeta (g . mu + mu^T H mu / 2
                                    + tr(H A^{-1}) / 2)``,

  which for g = 0 is ``1/2 sum_i nbeta h_i / (nbeta h_i + gamma)``: the
  directions with ``h_i >> gamma / nbeta`` count 1/2 each, the rest less. For
  ``L = 0.5 ||w||^2`` it is ``(d/2) nbeta / (nbeta + gamma)``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` (the loss SGLD samples).
    params: the point w* (pytree).
    batch: data for loss_fn (the full training set for L_n).
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (>= 0).
    max_params: refuse models with more parameters than this (dense).

  Returns:
    LLCHatPrediction.

  Raises:
    ValueError: if nbeta <= 0, gamma < 0, the model is too large, or A is not
      positive definite (the message gives its smallest eigenvalue).

  References:
    Cullen et al. (2026), LLC estimation by localized SGLD; "the gap
    to explain", item 2.

  Example:
    >>> import jax.numpy as jnp
    >>> pred = predict_llc_hat(lambda w, b: 0.5 * jnp.sum(w ** 2), jnp.ones(4),
    ...                        None, nbeta=3.0, gamma=1.0)
    >>> round(pred.curvature_term, 12)
    1.5
  """
  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_nonnegative("gamma", gamma)
  expansion = dense_hessian(loss_fn, params, batch, max_params)
  h_P, u_PxP = np.linalg.eigh(expansion.hessian)
  a_P = nbeta * h_P + gamma
  min_a = float(a_P.min())
  scale = max(float(np.abs(a_P).max()), 1e-300)
  _require(
    min_a > 1e-12 * scale,
    f"precision A = nbeta H + gamma I is not positive definite: its "
    f"smallest eigenvalue is {min_a:.6g} (nbeta={nbeta}, gamma={gamma})",
  )
  g_P = u_PxP.T @ expansion.grad  # gradient in the eigenbasis
  mu_P = -nbeta * g_P / a_P
  curvature = 0.5 * nbeta * float(np.sum(h_P / a_P))
  gradient = nbeta * float(g_P @ mu_P + 0.5 * np.sum(h_P * mu_P**2))
  return LLCHatPrediction(curvature + gradient, curvature, gradient, min_a)


def sgld_llc_hat_quadratic(
  eigenvalues: Any,
  nbeta: float,
  gamma: float,
  step_size: float,
  num_burnin: int,
  num_draws: int,
) -> float:
  """Expected SGLD estimate of a finite full-batch run on a quadratic loss.

  With zero gradient at w* and Hessian eigenvalues ``h``, full-batch SGLD
  started at w* moves each eigendirection as ``delta <- c delta + sqrt(eps)
  xi`` with ``c = 1 - eps a / 2``, ``a = nbeta h + gamma``, so after t steps
  ``Var delta_t = (1 - c^(2t)) / (a (1 - eps a / 4))``. The estimate averages
  ``nbeta h Var delta_t / 2`` over the draws ``t = B, ..., B + D - 1``. As
  ``eps -> 0`` and ``B -> inf`` this is ``predict_llc_hat``'s curvature term;
  the difference measures the bias of the run (discretisation, unrelaxed slow
  directions), not of the quadratic approximation.

  Args:
    eigenvalues: (P,) Hessian eigenvalues of the loss at w*.
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (>= 0).
    step_size: eps (> 0), with ``eps a < 2`` for every direction.
    num_burnin: B, discarded steps (>= 0).
    num_draws: D, averaged steps (>= 1).

  Returns:
    The expected estimate.

  Raises:
    ValueError: if an argument is out of range or some ``eps a >= 2``
      (the discretised dynamics diverge).

  Example:
    >>> round(sgld_llc_hat_quadratic([1.0, 1.0], 3.0, 1.0, 1e-4, 10 ** 6, 10),
    ...       4)  # (2 / 2) * 3 / 4 = 0.75, up to the eps a / 4 inflation
    0.7501
  """
  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_nonnegative("gamma", gamma)
  eps = _check_positive("step_size", step_size)
  num_burnin = _check_int("num_burnin", num_burnin, 0)
  num_draws = _check_int("num_draws", num_draws, 1)
  h_P = np.asarray(eigenvalues, np.float64)
  a_P = nbeta * h_P + gamma
  _require(
    bool(np.all((a_P > 0) & (eps * a_P < 2))),
    f"step_size={eps!r} is invalid: eps (nbeta h + gamma) must lie in "
    f"(0, 2); its range is [{eps * a_P.min():.3g}, "
    f"{eps * a_P.max():.3g}]",
  )
  log_c2_P = 2 * np.log1p(-0.5 * eps * a_P)
  # Mean over the draws of c^(2t) = c^(2B) (1 - c^(2D)) / (D (1 - c^2)).
  decay_P = (
    np.exp(num_burnin * log_c2_P)
    * np.expm1(num_draws * log_c2_P)
    / (num_draws * np.expm1(log_c2_P))
  )
  var_P = (1 - decay_P) / (a_P * (1 - 0.25 * eps * a_P))
  return float(0.5 * nbeta * np.sum(h_P * var_P))


# ----------------------------------------------------------------------------
# Exact finite-temperature expectations by quadrature (2-D).
# ----------------------------------------------------------------------------


def gibbs_expectation(
  potential: Callable[[np.ndarray, np.ndarray], np.ndarray],
  nbeta: float,
  gamma: float,
  num_grid: int = 800,
) -> float:
  """``E[nbeta K]`` under ``exp(-nbeta K - gamma |w|^2 / 2)`` on R^2.

  Computed by quadrature (NumPy float64).

  ``K = potential(w1, w2)`` must vanish at its minimum (the localization
  centre 0). A log-spaced grid resolves potentials that concentrate sharply
  near the origin or along the axes.

  Args:
    potential: NumPy-vectorised ``K(w1, w2)`` on (G, G) grids, >= 0.
    nbeta: n·beta.
    gamma: localization.
    num_grid: grid points per half-axis.

  Returns:
    The expectation.

  Example:
    >>> round(gibbs_expectation(lambda w1, w2: w1 ** 2, 100.0, 1.0), 3)
    0.498
  """
  half = np.logspace(-8, 1.5, num_grid)
  grid = np.concatenate([-half[::-1], half])
  width = np.gradient(grid)
  w1, w2 = np.meshgrid(grid, grid, indexing="ij")
  energy = potential(w1, w2)
  logp = -nbeta * energy - 0.5 * gamma * (w1**2 + w2**2)
  weight = np.exp(logp - logp.max()) * width[:, None] * width[None, :]
  return float(np.sum(weight * nbeta * energy) / np.sum(weight))


def gibbs_expectation_2d(
  exponents: tuple[int, int], nbeta: float, gamma: float, num_grid: int = 800
) -> float:
  """``gibbs_expectation`` of the normal-crossing potential.

  ``K(w) = w1^(2 k1) w2^(2 k2) / 2``, the loss of
  ``slt_jax.known_cases.normal_crossing`` with unit input variance.

  Args:
    exponents: (k1, k2).
    nbeta: n·beta.
    gamma: localization.
    num_grid: grid points per half-axis.

  Returns:
    The expectation.

  Example:
    >>> round(gibbs_expectation_2d((1, 0), 100.0, 1.0), 3)  # K = w1^2 / 2
    0.495
  """
  k1, k2 = exponents
  return gibbs_expectation(
    lambda w1, w2: 0.5 * w1 ** (2 * k1) * w2 ** (2 * k2), nbeta, gamma, num_grid
  )
