"""Closed forms of slt_jax.theory against hand values and float64 ranks.

Every rank check evaluates the float64 Jacobian at a random (generic) point
and requires a clear spectral gap, so a pass means the closed form equals the
generic rank, not merely that both are small.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import theory
from slt_jax.grokking import model

MIN_GAP = 1e6  # singular-value ratio across the rank cut


def _random_params(seed, K, d, m):
  rng = np.random.default_rng(seed)
  return {"W": rng.normal(size=(K, d)), "V": rng.normal(size=(m, K))}


def _gaussian_inputs(seed, d):
  """N = 2D + 2 Gaussian inputs, at least twice the D entries of each M_j."""
  dim = d * (d + 1) // 2
  return jnp.asarray(np.random.default_rng(seed).normal(size=(2 * dim + 2, d)))


def _grid(p):
  return np.array(list(itertools.product(range(p), range(p))))


def _assert_rank(res, expected):
  assert isinstance(res, theory.RankResult)
  chex.assert_rank(res.singular_values, 1)
  assert res.rank == expected, (res.rank, expected, res.singular_values)
  assert res.gap > MIN_GAP, res.gap


# --------------------------------------------------------------------------
# Closed forms against hand values.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
  "M, H, N, r, expected",
  [
    # Case 1, M+H+N+r = 13 odd: [2*3*10 - 0 - 9 + 1] / 8 = 52/8.
    (5, 3, 5, 0, 6.5),
    # Case 1, 14 even: [2*4*10 - 0 - 16] / 8 = 64/8.
    (5, 4, 5, 0, 8.0),
    # N + H = 7 < M + r = 8: (H N - H r + M r) / 2 = 12/2.
    (8, 3, 4, 0, 6.0),
    # M + H = 7 < N + r = 8: (H M - H r + N r) / 2 = 12/2.
    (4, 3, 8, 0, 6.0),
    # M + N = 4 < H + r = 6: regular, M N / 2.
    (2, 5, 2, 1, 2.0),
    # Case 1 with r > 0, 2+3+4+1 = 10 even: [2*4*6 - 4 - 16] / 8 = 28/8.
    (2, 3, 4, 1, 3.5),
  ],
)
def test_reduced_rank_regression_hand_values(M, H, N, r, expected):
  assert theory.reduced_rank_regression_llc(M, H, N, r) == expected


@pytest.mark.parametrize("M, H, N", [(3, 2, 4), (4, 3, 4), (5, 2, 3)])
def test_reduced_rank_regression_full_rank_truth_is_jacobian_rank(M, H, N):
  # With true rank r = H the model is regular on the rank-H matrices:
  # lambda = H (M + N - H) / 2 = rank of (A, B) -> B A at a generic point / 2.
  rng = np.random.default_rng(M * 100 + H * 10 + N)
  params = {"A": rng.normal(size=(H, M)), "B": rng.normal(size=(N, H))}
  res = theory.jacobian_rank(lambda q: q["B"] @ q["A"], params)
  _assert_rank(res, H * (M + N - H))
  assert theory.reduced_rank_regression_llc(M, H, N, H) == res.rank / 2


def test_toy_landscapes():
  assert theory.normal_crossing_llc([1, 1]) == 0.5
  assert theory.normal_crossing_llc([1, 2]) == 0.25
  assert theory.normal_crossing_llc([2, 3]) == pytest.approx(1 / 6)
  assert theory.normal_crossing_llc([0, 1]) == 0.5
  assert theory.polynomial_potential_llc([1, 1]) == 1.0
  assert theory.polynomial_potential_llc([1, 2]) == 0.75
  assert theory.polynomial_potential_llc([2, 2, 2]) == 0.75
  assert theory.isotropic_quadratic_llc(7) == 3.5
  assert theory.isotropic_quadratic_llc_hat(4, 3.0, 1.0) == 1.5
  assert theory.isotropic_quadratic_llc_hat(6, 2.0, 0.0) == 3.0


def test_gaussian_closed_form_hand_values():
  # m = 1: K d - K (K - 1) / 2 up to K = d, then D.
  assert [theory.gaussian_rank(4, 1, K) for K in range(1, 7)] == [
    4,
    7,
    9,
    10,
    10,
    10,
  ]
  # m >= 2: min(K (d + m - 1), m D, K (m + D - K) if K <= m).
  assert theory.gaussian_rank(3, 2, 1) == 4
  assert theory.gaussian_rank(3, 8, 5) == 45  # flattening 5 * 9 < 48 = m D
  assert theory.gaussian_rank(4, 3, 5) == 29  # defective (3, 4, 5): 30 - 1
  assert theory.gaussian_rank(4, 5, 6) == 47  # defective (5, 4, 6): 48 - 1
  # (3, 2, 2) is k = 0 of the published family (3, 2k+2, 3k+2) but not defective.
  assert theory.gaussian_rank(2, 3, 2) == 8
  assert theory.gaussian_llc(4, 2, 20) == 10.0
  assert theory.gaussian_critical_width(4, 1) == 4
  assert theory.gaussian_critical_width(3, 2) == 3
  # ceil(m D / (d + m - 1)) = 5 here, but flattening keeps K = 5 short.
  assert theory.gaussian_critical_width(3, 8) == 6
  assert theory.gaussian_critical_width(4, 3) == 6  # (3, 4, 5) is defective


def test_pair_graph_counts():
  star = [(0, b) for b in range(5)]
  assert theory.pair_graph(5, star) == (5, 1, 5, 1, 5)
  blocks = [(0, 0), (0, 1), (1, 0), (1, 1), (3, 3)]
  assert theory.pair_graph(5, blocks) == (5, 3, 3, 2, 4)
  assert theory.pair_graph(5, _grid(5)).shift_rank == 9


def test_lazy_and_ntk_closed_forms():
  assert theory.lazy_random_features_llc(5, 8, 6) == 15.0
  assert theory.lazy_random_features_llc(5, 4, 6) == 10.0
  assert theory.lazy_random_features_llc(2, 8, 20, "gaussian", d=3) == 6.0
  rng = np.random.default_rng(0)
  jac = rng.normal(size=(7, 3)) @ rng.normal(size=(3, 5))
  assert theory.ntk_llc(jac) == 1.5


# --------------------------------------------------------------------------
# Closed forms against the float64 Jacobian rank at random points.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
  "d, m, K",
  [
    # Overparameterised (Thm 4.1): m D.
    (3, 1, 5),
    (3, 2, 4),
    (2, 3, 4),
    (4, 2, 6),
    # Underparameterised, m = 1 (Thm 4.2): K d - K (K - 1) / 2.
    (4, 1, 2),
    (5, 1, 3),
    (3, 1, 1),
    # Underparameterised, m >= 2: the K (d + m - 1) term.
    (3, 2, 2),
    (4, 3, 3),
    (5, 2, 4),
    # Flattening term K (m + D - K) is the strict minimum.
    (3, 8, 5),
    (4, 12, 8),
    # Defective triples (m, d, K) = (3, 4, 5), (5, 4, 6); and (3, 2, 2),
    # which the published statement lists as defective (k = 0) but is not.
    (4, 3, 5),
    (4, 5, 6),
    (2, 3, 2),
  ],
)
def test_gaussian_rank_matches_jacobian(d, m, K):
  params = _random_params(d * 1000 + m * 10 + K, K, d, m)
  x_NxD = _gaussian_inputs(d + m + K, d)
  res = theory.jacobian_rank(lambda q: model.apply_one_hot(q, x_NxD), params)
  _assert_rank(res, theory.gaussian_rank(d, m, K))


def _outputs_seen_by(loss, pairs_Nx2):
  """Network outputs modulo the directions the loss cannot see."""

  def fn(params):
    out_NxP = model.apply(params, pairs_Nx2)
    if loss == "centered_mse":  # residuals centered over examples
      return out_NxP - jnp.mean(out_NxP, axis=0, keepdims=True)
    if loss == "cross_entropy":  # softmax ignores per-example shifts
      return out_NxP - jnp.mean(out_NxP, axis=1, keepdims=True)
    return out_NxP

  return fn


def _train_sets(p):
  grid = _grid(p)
  rng = np.random.default_rng(p)
  return {
    "full": grid,
    "random_half": grid[rng.choice(p * p, p * p // 2, replace=False)],
    "two_blocks": np.array(
      [(0, 0), (0, 1), (1, 0), (1, 1)]
      + [(a, b) for a in range(2, p) for b in range(2, p)]
    ),
    # One cycle of length 2p through every residue: n - s = 1.
    "cycle": np.array(
      [(a, a) for a in range(p)] + [(a, (a + 1) % p) for a in range(p)]
    ),
  }


@pytest.mark.parametrize(
  "p, K, train_set, loss",
  [
    (5, 1, "full", "mse"),
    (5, 3, "full", "mse"),
    (5, 12, "full", "mse"),
    (7, 4, "full", "mse"),
    (7, 4, "full", "centered_mse"),
    (7, 4, "full", "cross_entropy"),
    (5, 12, "full", "centered_mse"),
    (5, 2, "random_half", "mse"),
    (5, 6, "random_half", "centered_mse"),
    (5, 3, "random_half", "cross_entropy"),
    (5, 2, "two_blocks", "mse"),
    (5, 4, "two_blocks", "cross_entropy"),
    (5, 3, "cycle", "mse"),
    (5, 3, "cycle", "centered_mse"),
    (5, 3, "cycle", "cross_entropy"),
  ],
)
def test_modular_rank_matches_jacobian(p, K, train_set, loss):
  pairs = _train_sets(p)[train_set]
  params = _random_params(p * 100 + K, K, 2 * p, p)
  res = theory.jacobian_rank(_outputs_seen_by(loss, jnp.asarray(pairs)), params)
  _assert_rank(res, theory.modular_rank(p, K, pairs, loss))


def test_modular_rank_generic_values():
  p, K = 7, 4
  grid = _grid(p)
  assert theory.modular_rank(p, K, grid) == K * (3 * p - 2)
  assert theory.modular_rank(p, K, grid, "centered_mse") == K * (3 * p - 2)
  assert theory.modular_rank(p, K, grid, "cross_entropy") == K * (3 * p - 3)
  assert theory.modular_llc(p, K, grid) == K * (3 * p - 2) / 2
  # Saturated: n m, and n m - m once centered.
  assert theory.modular_rank(5, 12, _grid(5)) == 125
  assert theory.modular_rank(5, 12, _grid(5), "centered_mse") == 120
  # Few cycles (n - s = 1 < K): centering also lowers the flattening bound,
  # K (m + n - 1 - K) = 3 * 11 = 33, where the published r - max(0, r + m - n m)
  # would give 36 (the Jacobian test above confirms 33).
  cycle = _train_sets(5)["cycle"]
  assert theory.modular_rank(5, 3, cycle) == 36
  assert theory.modular_rank(5, 3, cycle, "centered_mse") == 33


@pytest.mark.parametrize("p, K, n", [(5, 3, 10), (5, 8, 6), (7, 5, 5)])
def test_lazy_one_hot_matches_jacobian(p, K, n):
  rng = np.random.default_rng(p + K + n)
  pairs = jnp.asarray(_grid(p)[rng.choice(p * p, n, replace=False)])
  w_KxD = jnp.asarray(rng.normal(size=(K, 2 * p)))
  res = theory.jacobian_rank(
    lambda v: model.apply({"W": w_KxD, "V": v}, pairs), rng.normal(size=(p, K))
  )
  _assert_rank(res, 2 * theory.lazy_random_features_llc(p, K, n))


@pytest.mark.parametrize(
  "d, m, K, n", [(3, 2, 8, 20), (3, 2, 4, 20), (4, 3, 12, 7)]
)
def test_lazy_gaussian_matches_jacobian(d, m, K, n):
  rng = np.random.default_rng(d + m + K + n)
  x_NxD = jnp.asarray(rng.normal(size=(n, d)))
  w_KxD = rng.normal(size=(K, d))
  res = theory.jacobian_rank(
    lambda v: model.apply_one_hot({"W": w_KxD, "V": v}, x_NxD),
    rng.normal(size=(m, K)),
  )
  _assert_rank(
    res, 2 * theory.lazy_random_features_llc(m, K, n, "gaussian", d=d)
  )


def test_jacobian_rank_result_and_x64_scope():
  x64_before = jax.config.jax_enable_x64
  params = {"a": jnp.ones(3, jnp.float32), "b": jnp.arange(2.0)}
  res = theory.jacobian_rank(
    lambda q: jnp.concatenate([q["a"], q["a"]]), params
  )
  assert jax.config.jax_enable_x64 == x64_before
  chex.assert_shape(res.singular_values, (5,))
  assert res.singular_values.dtype == np.float64
  assert res.rank == 3 and res.gap == np.inf
  assert res.threshold == pytest.approx(
    6 * np.finfo(np.float64).eps * res.singular_values[0]
  )


def test_numerical_rank_gap_and_rtol():
  s = np.diag([10.0, 1.0, 1e-3, 1e-15])
  res = theory.numerical_rank(s)
  assert res.rank == 3 and res.gap == pytest.approx(1e12)
  res = theory.numerical_rank(s, rtol=1e-2)
  assert res.rank == 2 and res.gap == pytest.approx(1e3)


# --------------------------------------------------------------------------
# Hessian and the finite-temperature Laplace prediction.
# --------------------------------------------------------------------------


def _quadratic_loss(params, batch):
  a_PxP, c_P = batch
  delta = params["w"] - c_P
  return 0.5 * delta @ a_PxP @ delta


def test_hessian_eigenvalues_of_known_quadratic():
  rng = np.random.default_rng(0)
  q_PxP, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  eig_P = np.array([-1.0, 0.0, 0.5, 2.0, 3.0, 10.0])
  a_PxP = (q_PxP * eig_P) @ q_PxP.T
  batch = (a_PxP, rng.normal(size=6))  # float64 NumPy: cast inside x64
  params = {"w": jnp.zeros(6, jnp.float32)}
  got = theory.hessian_eigenvalues(_quadratic_loss, params, batch)
  chex.assert_shape(got, (6,))
  np.testing.assert_allclose(got, eig_P, atol=1e-12)
  expansion = theory.dense_hessian(_quadratic_loss, params, batch)
  chex.assert_shape([expansion.grad, expansion.hessian], [(6,), (6, 6)])
  np.testing.assert_allclose(expansion.grad, -a_PxP @ batch[1], atol=1e-12)


@pytest.mark.parametrize(
  "d, nbeta, gamma", [(3, 10.0, 1.0), (8, 2.5, 5.0), (1, 1.0, 0.0)]
)
def test_predict_llc_hat_isotropic(d, nbeta, gamma):
  pred = theory.predict_llc_hat(
    lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(d), None, nbeta, gamma
  )
  expected = theory.isotropic_quadratic_llc_hat(d, nbeta, gamma)
  assert pred.llc_hat == pytest.approx(expected, rel=1e-12)
  assert pred.gradient_term == 0.0


def test_predict_llc_hat_with_gradient_matches_gaussian_moments():
  # L(w) = 0.5 h (w - c)^2 at w* = 0, 1-D. Under w ~ N(mu, 1/A):
  # E[nbeta (L(w) - L(0))] = nbeta h (mu^2 + 1/A - 2 mu c) / 2.
  h, c, nbeta, gamma = 2.0, 0.7, 5.0, 3.0
  a = nbeta * h + gamma
  mu = nbeta * h * c / a
  expected = nbeta * h * (mu**2 + 1 / a - 2 * mu * c) / 2
  pred = theory.predict_llc_hat(
    lambda w, b: 0.5 * h * jnp.sum((w - c) ** 2),
    jnp.zeros(1),
    None,
    nbeta,
    gamma,
  )
  assert pred.llc_hat == pytest.approx(expected, rel=1e-12)
  assert pred.curvature_term == pytest.approx(0.5 * nbeta * h / a)
  assert pred.gradient_term < 0


@pytest.mark.slow
def test_predict_llc_hat_slq_matches_dense():
  p, K = 3, 2
  params = _random_params(3, K, 2 * p, p)
  pairs = jnp.asarray(_grid(p))
  y_NxP = jnp.asarray(np.random.default_rng(1).normal(size=(p * p, p)))

  def loss_fn(q, y):
    return 0.5 * jnp.mean(jnp.sum((model.apply(q, pairs) - y) ** 2, axis=1))

  nbeta = 4.0
  h_min = theory.hessian_eigenvalues(loss_fn, params, y_NxP)[0]
  gamma = 1.0 + nbeta * max(0.0, -h_min)
  dense = theory.predict_llc_hat(loss_fn, params, y_NxP, nbeta, gamma)
  num_params = 2 * p * K + p * K
  slq = theory.predict_llc_hat_slq(
    jax.random.key(0),
    loss_fn,
    params,
    y_NxP,
    nbeta,
    gamma,
    num_matvecs=num_params,
    num_probes=200,
  )
  assert slq.curvature_sem > 0
  assert abs(slq.curvature_term - dense.curvature_term) < (
    5 * slq.curvature_sem + 1e-6
  )
  assert slq.gradient_term == pytest.approx(
    dense.gradient_term, rel=1e-6, abs=1e-8
  )


# --------------------------------------------------------------------------
# Violated hypotheses raise ValueError naming the condition.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: theory.gaussian_rank(0, 1, 1), "d=0"),
    (lambda: theory.gaussian_rank(3, 1, 2.5), "K=2.5"),
    (lambda: theory.gaussian_llc(3, -1, 2), "m=-1"),
    (lambda: theory.modular_rank(5, 2, [[0, 5]]), r"\[0, 5\)"),
    (lambda: theory.modular_rank(5, 2, [[0, 1], [0, 1]]), "duplicate"),
    (lambda: theory.modular_rank(5, 2, np.zeros((0, 2), int)), "n >= 1"),
    (lambda: theory.modular_rank(5, 2, [[0, 1]], loss="l1"), "loss='l1'"),
    (lambda: theory.modular_llc(5, 0, [[0, 1]]), "K=0"),
    (lambda: theory.lazy_random_features_llc(2, 3, 4, "gaussian"), "d=None"),
    (lambda: theory.lazy_random_features_llc(2, 3, 4, "sphere"), "inputs"),
    (lambda: theory.reduced_rank_regression_llc(3, 2, 4, 3), "r=3"),
    (lambda: theory.reduced_rank_regression_llc(3, 2, 4, -1), "r=-1"),
    (lambda: theory.normal_crossing_llc([]), "non-empty"),
    (lambda: theory.normal_crossing_llc([0, 0]), "some k_i >= 1"),
    (lambda: theory.polynomial_potential_llc([1, 0]), r"k\[1\]=0"),
    (lambda: theory.isotropic_quadratic_llc(0), "d=0"),
    (lambda: theory.isotropic_quadratic_llc_hat(2, 0.0, 1.0), "nbeta=0.0"),
    (lambda: theory.isotropic_quadratic_llc_hat(2, 1.0, -1.0), "gamma=-1.0"),
    (lambda: theory.isotropic_quadratic_llc_hat(2, "x", 1.0), "nbeta='x'"),
    (lambda: theory.ntk_llc(np.ones(3)), "ndim=1"),
    (lambda: theory.numerical_rank(np.eye(2), rtol=0.0), "rtol=0.0"),
  ],
)
def test_violated_hypotheses_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_hessian_refuses_large_models():
  with pytest.raises(ValueError, match="max_params=10"):
    theory.hessian_eigenvalues(
      lambda w, b: jnp.sum(w**2), jnp.zeros(11), None, max_params=10
    )


def test_predict_llc_hat_rejects_indefinite_precision():
  with pytest.raises(ValueError, match="smallest eigenvalue is -"):
    theory.predict_llc_hat(
      lambda w, b: -0.5 * jnp.sum(w**2),
      jnp.zeros(3),
      None,
      nbeta=2.0,
      gamma=1.0,
    )
