"""Closed-form learning coefficients and the numerics that check them.

Four modules, one concept each; every public name is re-exported here, so
``slt_jax.theory.<name>`` works for all of them:

* ``closed_forms``: host-side Python (ints and floats, no JAX) closed forms:
  quadratic network with Gaussian inputs (``gaussian_rank``, ``gaussian_llc``,
  ``gaussian_critical_width``), one-hot modular pairs (``pair_graph``,
  ``modular_rank``, ``modular_llc``), the lazy regime
  (``lazy_random_features_llc``), reduced-rank regression, normal crossings,
  polynomial potentials and the isotropic quadratic.
* ``curvature``: float64 numerics (``jax.enable_x64`` inside each call,
  NumPy out): ``numerical_rank``, ``jacobian_rank``, ``ntk_llc``,
  ``dense_hessian``, ``hessian_eigenvalues``, the Laplace prediction of the
  SGLD estimate (``predict_llc_hat``, ``sgld_llc_hat_quadratic``) and exact
  2-D Gibbs expectations by quadrature (``gibbs_expectation``,
  ``gibbs_expectation_2d``).
* ``slq``: matrix-free stochastic Lanczos quadrature (``predict_llc_hat_slq``,
  ``hessian_spectrum_slq``), using ``matfree``.
* ``deep_linear``: Aoyagi's exact learning coefficient and multiplicity of
  deep linear networks (``deep_linear_llc``), in exact rational arithmetic.

Every function checks its hypotheses and raises ``ValueError`` naming the
violated condition and the offending value.

Example:
  >>> from slt_jax import theory
  >>> theory.gaussian_llc(d=4, m=2, K=20), theory.ntk_llc([[1.0, 0.0]])
  (10.0, 0.5)
"""

from slt_jax.theory.closed_forms import (
  INPUTS,
  LOSSES,
  PairGraph,
  gaussian_critical_width,
  gaussian_llc,
  gaussian_rank,
  isotropic_quadratic_llc,
  isotropic_quadratic_llc_hat,
  lazy_random_features_llc,
  modular_llc,
  modular_rank,
  normal_crossing_llc,
  pair_graph,
  polynomial_potential_llc,
  reduced_rank_regression_llc,
)
from slt_jax.theory.curvature import (
  LLCHatPrediction,
  QuadraticExpansion,
  RankResult,
  dense_hessian,
  gibbs_expectation,
  gibbs_expectation_2d,
  hessian_eigenvalues,
  jacobian_rank,
  ntk_llc,
  numerical_rank,
  predict_llc_hat,
  sgld_llc_hat_quadratic,
)
from slt_jax.theory.deep_linear import deep_linear_llc
from slt_jax.theory.slq import (
  HessianSpectrum,
  SLQEstimate,
  hessian_spectrum_slq,
  predict_llc_hat_slq,
)

__all__ = [
  # closed_forms
  "INPUTS",
  "LOSSES",
  "PairGraph",
  "gaussian_critical_width",
  "gaussian_llc",
  "gaussian_rank",
  "isotropic_quadratic_llc",
  "isotropic_quadratic_llc_hat",
  "lazy_random_features_llc",
  "modular_llc",
  "modular_rank",
  "normal_crossing_llc",
  "pair_graph",
  "polynomial_potential_llc",
  "reduced_rank_regression_llc",
  # curvature
  "LLCHatPrediction",
  "QuadraticExpansion",
  "RankResult",
  "dense_hessian",
  "gibbs_expectation",
  "gibbs_expectation_2d",
  "hessian_eigenvalues",
  "jacobian_rank",
  "ntk_llc",
  "numerical_rank",
  "predict_llc_hat",
  "sgld_llc_hat_quadratic",
  # deep_linear
  "deep_linear_llc",
  # slq
  "HessianSpectrum",
  "SLQEstimate",
  "hessian_spectrum_slq",
  "predict_llc_hat_slq",
]
