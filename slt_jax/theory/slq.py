"""Matrix-free curvature by stochastic Lanczos quadrature (SLQ), in float64.

``predict_llc_hat_slq`` is ``slt_jax.theory.curvature.predict_llc_hat``
without the dense Hessian, and ``hessian_spectrum_slq`` a Hessian spectral
density from which any ``tr f(H)`` follows; both use Hessian-vector products
only, through ``matfree`` (an optional dependency, imported on call). Float64
is enabled only inside each call (``jax.enable_x64``).

References:
  Ubaru, Chen and Saad (2017), "Fast estimation of tr(f(A)) via stochastic
    Lanczos quadrature".
  Ghorbani, Krishnan and Xiao (2019), "An investigation into neural net
    optimization via Hessian eigenvalue density".
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax.theory.closed_forms import _check_int, _check_positive, _require
from slt_jax.theory.curvature import _flatten_float64, _to_float64
from slt_jax.tree_types import ArrayLikeTree, ArrayTree, PRNGKey

__all__ = [
  "SLQEstimate",
  "predict_llc_hat_slq",
  "HessianSpectrum",
  "hessian_spectrum_slq",
]


class SLQEstimate(NamedTuple):
  """Matrix-free estimate of the Laplace-predicted SGLD estimate.

  Attributes:
    llc_hat: curvature_term + gradient_term.
    curvature_term: SLQ estimate of ``(nbeta / 2) tr(H A^{-1})``.
    curvature_sem: standard error of curvature_term over probe vectors.
    gradient_term: ``nbeta (g . mu + mu^T H mu / 2)`` with mu from CG.
    min_ritz_value: smallest Ritz value of A seen by the Lanczos runs (an
      upper bound on A's smallest eigenvalue; negative means A is indefinite).
  """

  llc_hat: float
  curvature_term: float
  curvature_sem: float
  gradient_term: float
  min_ritz_value: float


def _flat_float64_gradient(
  loss_fn: Callable[[ArrayTree, Any], jax.Array],
  params: ArrayLikeTree,
  batch: Any,
  num_matvecs: int,
):
  """Flattened float64 params and the gradient of the loss over them.

  Call inside ``jax.enable_x64(True)``. Checks ``1 <= num_matvecs <= P``.

  Returns:
    ((P,) float64 parameters, ``grad_fn((P,)) -> (P,)``, the checked
    ``num_matvecs``).
  """
  flat_P, unravel = _flatten_float64(params)
  num_matvecs = _check_int("num_matvecs", num_matvecs, 1)
  _require(
    num_matvecs <= flat_P.size,
    f"num_matvecs={num_matvecs} is invalid: must be <= the number of "
    f"parameters {flat_P.size}",
  )
  batch64 = _to_float64(batch)
  grad_fn = jax.grad(
    lambda f_P: jnp.asarray(loss_fn(unravel(f_P), batch64), jnp.float64)
  )
  return flat_P, grad_fn, num_matvecs


def predict_llc_hat_slq(
  key: PRNGKey,
  loss_fn: Callable[[ArrayTree, Any], jax.Array],
  params: ArrayLikeTree,
  batch: Any,
  nbeta: float,
  gamma: float,
  num_matvecs: int = 30,
  num_probes: int = 50,
  cg_maxiter: int = 500,
) -> SLQEstimate:
  """Matrix-free ``predict_llc_hat`` by stochastic Lanczos quadrature.

  ``tr(f(H))`` with ``f(h) = nbeta h / (nbeta h + gamma)`` is estimated with
  Rademacher probes and ``num_matvecs`` Lanczos steps per probe
  (``matfree.decomp.tridiag_sym``, ``matfree.funm.monte_carlo_funm_sym``,
  ``matfree.stochtrace.estimator_monte_carlo_mean_and_sem``), using
  Hessian-vector products only. The gradient term solves ``A mu = -nbeta g``
  by conjugate gradients. Runs in float64; needs ``gamma > 0``.

  Args:
    key: PRNG key for the probe vectors.
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: the point w* (pytree).
    batch: data for loss_fn.
    nbeta: n times the inverse temperature (> 0).
    gamma: localization strength (> 0).
    num_matvecs: Lanczos depth per probe (1 <= num_matvecs <= P).
    num_probes: number of probe vectors (>= 2).
    cg_maxiter: conjugate-gradient iteration cap.

  Returns:
    SLQEstimate with an error bar on the curvature term.

  Raises:
    ValueError: if an argument is out of range, or a Lanczos run finds a
      non-positive Ritz value of A (A is not positive definite).

  References:
    Ubaru, Chen and Saad (2017), "Fast estimation of tr(f(A)) via stochastic
    Lanczos quadrature"; Cullen et al. (2026) as ``predict_llc_hat``.
  """
  from matfree import decomp, funm, stochtrace  # optional dependency

  nbeta = _check_positive("nbeta", nbeta)
  gamma = _check_positive("gamma", gamma)
  num_probes = _check_int("num_probes", num_probes, 2)
  cg_maxiter = _check_int("cg_maxiter", cg_maxiter, 1)
  with jax.enable_x64(True):
    flat_P, grad_fn, num_matvecs = _flat_float64_gradient(
      loss_fn, params, batch, num_matvecs
    )
    num_params = int(flat_P.size)

    def hvp(v_P):
      return jax.jvp(grad_fn, (flat_P,), (v_P,))[1]

    def a_matvec(v_P):
      return nbeta * hvp(v_P) + gamma * v_P

    def ratio(a):  # f(h) with a = nbeta h + gamma: nbeta h / a = 1 - gamma/a
      return 1.0 - gamma / a

    tridiag = decomp.tridiag_sym(num_matvecs)
    integrand = funm.monte_carlo_funm_sym(
      funm.dense_funm_sym_eigh(ratio), tridiag
    )
    sampler = stochtrace.sampler_signs(flat_P, num=num_probes)
    estimate = stochtrace.estimator_monte_carlo_mean_and_sem(integrand, sampler)
    key_probe, key_ritz = jax.random.split(key)
    del key
    trace, sem = jax.jit(lambda k: estimate(a_matvec, k))(key_probe)

    def min_ritz(v_P):
      _, t_small, *_ = tridiag(a_matvec, v_P / jnp.linalg.norm(v_P))
      return jnp.linalg.eigvalsh(t_small)[0]

    probes = jax.random.rademacher(key_ritz, (4, num_params), jnp.float64)
    min_theta = float(jnp.min(jax.jit(jax.vmap(min_ritz))(probes)))
    _require(
      min_theta > 0,
      f"precision A = nbeta H + gamma I is not positive definite: a "
      f"Ritz value is {min_theta:.6g} (nbeta={nbeta}, gamma={gamma})",
    )
    g_P = grad_fn(flat_P)
    mu_P, _ = jax.scipy.sparse.linalg.cg(
      a_matvec, -nbeta * g_P, maxiter=cg_maxiter, tol=1e-10
    )
    gradient = float(nbeta * (g_P @ mu_P + 0.5 * mu_P @ hvp(mu_P)))
    curvature = 0.5 * float(trace)
    curvature_sem = 0.5 * float(sem)
  return SLQEstimate(
    curvature + gradient, curvature, curvature_sem, gradient, min_theta
  )


class HessianSpectrum(NamedTuple):
  """Stochastic Lanczos quadrature (SLQ) of a Hessian's spectral density.

  Attributes:
    nodes: (probes, matvecs) Ritz values of each probe's Lanczos run.
    weights: (probes, matvecs) squared first components of the Ritz vectors
      (each row sums to 1).
    num_params: P, the dimension of the Hessian.
  """

  nodes: np.ndarray
  weights: np.ndarray
  num_params: int

  def trace(
    self, fn: Callable[[np.ndarray], np.ndarray]
  ) -> tuple[float, float]:
    """SLQ estimate of ``tr fn(H)`` and its standard error over probes.

    Args:
      fn: vectorised scalar function of the eigenvalues.

    Returns:
      ``(P mean_probes sum_j w_j fn(theta_j), standard error)``.
    """
    per_probe = self.num_params * np.sum(self.weights * fn(self.nodes), axis=1)
    sem = per_probe.std(ddof=1) / np.sqrt(per_probe.size)
    return float(per_probe.mean()), float(sem)


def hessian_spectrum_slq(
  key: PRNGKey,
  loss_fn: Callable[[ArrayTree, Any], jax.Array],
  params: ArrayLikeTree,
  batch: Any,
  num_matvecs: int = 30,
  num_probes: int = 10,
) -> HessianSpectrum:
  """Matrix-free spectral density of the loss Hessian by SLQ, in float64.

  One Lanczos run (``matfree.decomp.tridiag_sym``, full reorthogonalisation)
  of Hessian-vector products per Rademacher probe; the Ritz values and the
  squared first components of their vectors form a quadrature rule for
  ``v^T f(H) v / |v|^2``. One spectrum serves every function of H: the soft
  rank ``1/2 tr(nbeta H (nbeta H + gamma)^-1)`` of ``predict_llc_hat`` at any
  (nbeta, gamma) (Lanczos on H and on ``nbeta H + gamma I`` build the same
  Krylov space), or eigenvalue counts above a threshold (coarser: a step
  function is not smooth).

  Args:
    key: PRNG key for the probes.
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: the point (pytree).
    batch: data for loss_fn.
    num_matvecs: Lanczos depth per probe (1 <= num_matvecs <= P).
    num_probes: number of probes (>= 2).

  Returns:
    HessianSpectrum.

  Raises:
    ValueError: if an argument is out of range.

  References:
    Ubaru, Chen and Saad (2017); Ghorbani, Krishnan and Xiao (2019), "An
    investigation into neural net optimization via Hessian eigenvalue
    density".

  Example:
    >>> import jax, jax.numpy as jnp
    >>> s = hessian_spectrum_slq(jax.random.key(0),
    ...                          lambda w, b: 0.5 * jnp.sum(b * w ** 2),
    ...                          jnp.zeros(3), jnp.array([1.0, 2.0, 4.0]),
    ...                          num_matvecs=3, num_probes=2)
    >>> round(s.trace(lambda h: h)[0], 6)  # tr H = 7
    7.0
  """
  from matfree import decomp  # optional dependency

  num_probes = _check_int("num_probes", num_probes, 2)
  with jax.enable_x64(True):
    flat_P, grad_fn, num_matvecs = _flat_float64_gradient(
      loss_fn, params, batch, num_matvecs
    )
    num_params = int(flat_P.size)
    tridiag = decomp.tridiag_sym(num_matvecs)

    def one_probe(key_probe):
      v_P = jax.random.rademacher(key_probe, (num_params,), jnp.float64)
      hvp = lambda u_P: jax.jvp(grad_fn, (flat_P,), (u_P,))[1]
      _, t_MxM, *_ = tridiag(hvp, v_P / jnp.linalg.norm(v_P))
      theta_M, u_MxM = jnp.linalg.eigh(t_MxM)
      return theta_M, jnp.square(u_MxM[0])

    nodes, weights = jax.jit(
      lambda k: jax.lax.map(one_probe, jax.random.split(k, num_probes))
    )(key)
  return HessianSpectrum(
    np.asarray(nodes, np.float64), np.asarray(weights, np.float64), num_params
  )
