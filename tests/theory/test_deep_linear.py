"""Deep linear networks: Aoyagi's coefficient and the known case built on it.

The closed form is checked against independent results: Aoyagi-Watanabe's
reduced-rank regression (one hidden layer), the regular count where the
network's product map is a submersion, normal crossings for a chain of scalar
layers, a brute-force search for the subset Σ, the bound ``λ <= d / 2`` and
hand computations.
"""

import dataclasses
import itertools
import time

import jax
import numpy as np
import pytest

from slt_jax import known_cases, theory
from slt_jax.llc import SGLDConfig, estimate_llc
from slt_jax.theory.deep_linear import _deep_linear_llc_exact


def _num_params(widths):
  return sum(a * b for a, b in zip(widths, widths[1:]))


def _shapes(num_layers, max_width):
  return itertools.product(range(1, max_width + 1), repeat=num_layers + 1)


def test_one_hidden_layer_is_reduced_rank_regression():
  # widths (M, H, N): input M, hidden H, output N, as in the RRR closed form;
  # its multiplicity is 2 exactly in the balanced case with M + H + N + r odd.
  checked = 0
  for M, H, N in _shapes(2, 8):
    for r in range(min(M, H, N) + 1):
      lam, mult = theory.deep_linear_llc((M, H, N), r)
      assert lam == theory.reduced_rank_regression_llc(M, H, N, r), (M, H, N, r)
      balanced = N + r <= M + H and M + r <= N + H and H + r <= M + N
      odd = (M + H + N + r) % 2 == 1
      assert mult == (2 if balanced and odd else 1), (M, H, N, r)
      checked += 1
  assert checked == 1808


def test_one_layer_is_regular():
  for h0, h1 in _shapes(1, 8):
    for r in range(min(h0, h1) + 1):
      assert theory.deep_linear_llc((h0, h1), r) == (h0 * h1 / 2, 1)


def test_full_rank_truth_counts_the_rank_r_manifold():
  # With r = min(widths) every factor of w* has full rank r at the narrowest
  # layer, so the product map is a submersion onto the rank-r matrices
  # (dimension r (H_0 + H_L - r)) near w*: lambda = r (H_0 + H_L - r) / 2, m = 1.
  checked = 0
  for num_layers in (2, 3, 4):
    for widths in _shapes(num_layers, 6):
      r = min(widths)
      expected = r * (widths[0] + widths[-1] - r) / 2
      assert theory.deep_linear_llc(widths, r) == (expected, 1), widths
      checked += 1
  assert checked == 6**3 + 6**4 + 6**5


@pytest.mark.parametrize("num_layers", [2, 3, 4, 5, 6])
def test_scalar_chain_is_a_normal_crossing(num_layers):
  # widths (H_0, 1, ..., 1, H_L), r = 0: K = |v|^2 c_2^2 ... c_{L-1}^2 |u|^2,
  # a product of squared radii of blocks of n_i = H_0, 1, ..., 1, H_L
  # coordinates: lambda = min n_i / 2, m = the number of blocks attaining it.
  for h0, hl in itertools.product(range(1, 7), repeat=2):
    blocks = [h0] + [1] * (num_layers - 2) + [hl]
    widths = (h0,) + (1,) * (num_layers - 1) + (hl,)
    expected = (min(blocks) / 2, blocks.count(min(blocks)))
    assert theory.deep_linear_llc(widths, 0) == expected, widths


def _brute_force_subsets(excess):
  """Every index set satisfying Aoyagi's three conditions."""
  found = []
  for size in range(1, len(excess) + 1):
    for subset in itertools.combinations(range(len(excess)), size):
      inside = [excess[i] for i in subset]
      outside = [m for i, m in enumerate(excess) if i not in subset]
      ell, total = size - 1, sum(inside)
      ok = total >= ell * max(inside)
      if outside:
        ok &= max(inside) < min(outside) and total < ell * min(outside)
      if ok:
        found.append(set(subset))
  return found


def test_subset_is_unique_and_lambda_within_bounds():
  checked = 0
  for widths in _shapes(3, 6):
    for r in range(min(widths) + 1):
      excess = [h - r for h in widths]
      found = _brute_force_subsets(excess)
      assert len(found) == 1, (widths, r, found)
      sigma = found[0]
      lam, mult = _deep_linear_llc_exact(widths, r)
      # Recompute from the brute-force subset.
      inside = sorted(excess[i] for i in sigma)
      ell, total = len(inside) - 1, sum(inside)
      a = total - (-(-total // ell) - 1) * ell
      assert 1 <= a <= ell and mult == a * (ell - a) + 1
      assert 0 < lam <= _num_params(widths) / 2, (widths, r, lam)
      checked += 1
  assert checked == 3571


def test_bounds_four_layers():
  checked = 0
  for widths in _shapes(4, 6):
    for r in range(min(widths) + 1):
      lam, mult = theory.deep_linear_llc(widths, r)
      assert 0 < lam <= _num_params(widths) / 2 and mult >= 1
      checked += 1
  assert checked == 19977


@pytest.mark.parametrize(
  "widths, rank, expected",
  [
    # M = (4, 3, 5, 3), sorted 3, 3, 4, 5. {3, 3}: S = 6 < 1 * 4 fails;
    # {3, 3, 4}: S = 10 < 2 * 5 fails; all: l = 3, S = 15 >= 3 * 5.
    # c = 5, a = 15 - 4 * 3 = 3. sum_{i<j} M_i M_j = (15^2 - 59) / 2 = 83.
    # lambda = 0 + 0 - (3 * 2 / 4) * 5^2 + 83 / 2 = -37.5 + 41.5 = 4, m = 1.
    ((4, 3, 5, 3), 0, (4.0, 1)),
    # M = (3, 2, 4, 2), sorted 2, 2, 3, 4. {2, 2}: 4 < 1 * 3 fails;
    # {2, 2, 3}: l = 2, S = 7 >= 2 * 3 and 7 < 2 * 4. c = 4, a = 7 - 6 = 1.
    # lambda = (-1 + 7) / 2 + 1 / 8 - (2 / 4) * 3.5^2 + (4 + 6 + 6) / 2
    #        = 3 + 0.125 - 6.125 + 8 = 5, m = 1 * 1 + 1 = 2.
    ((4, 3, 5, 3), 1, (5.0, 2)),
    # M = (3, 3, 3, 3), all tied: l = 3, S = 12 >= 9. c = 4, a = 3.
    # lambda = (-1 + 8) / 2 + 0 - (6 / 4) * 4^2 + 6 * 9 / 2 = 3.5 - 24 + 27
    #        = 6.5, m = 1.
    ((4, 4, 4, 4), 1, (6.5, 1)),
    # M = (5, 5, 5, 5), all tied: l = 3, S = 20 >= 15. c = 7, a = 2.
    # lambda = 0 + 2 / 12 - (6 / 4) (20 / 3)^2 + 6 * 25 / 2
    #        = 1/6 - 200/3 + 75 = 51/6, m = 2 * 1 + 1 = 3.
    ((5, 5, 5, 5), 0, (51 / 6, 3)),
    # M = (2, 0, 1, 4, 3) (r = 1): sorted 0, 1, 2, 3, 4. {0, 1}: S = 1 >= 1
    # and 1 < 1 * 2. c = 1, a = 1 - 0 = 1 = l: lambda = (-1 + 7) / 2 + 0 - 0
    # + 0 = 3, m = 1 (H_1 = r: the full-rank-bottleneck count r(H0+HL-r)/2).
    ((3, 1, 2, 5, 4), 1, (3.0, 1)),
  ],
)
def test_hand_computed(widths, rank, expected):
  assert theory.deep_linear_llc(widths, rank) == expected


@pytest.mark.parametrize(
  "widths, rank, bad",
  [
    ((3,), 0, "widths="),
    ((), 0, "widths="),
    ((3, 0, 2), 0, "widths[1]=0"),
    ((3, 2.0), 0, "widths[1]=2.0"),
    ((3, True), 0, "widths[1]=True"),
    ((3, 2), -1, "rank=-1"),
    ((3, 2), 3, "rank=3"),
    ((3, 2), 1.0, "rank=1.0"),
  ],
)
def test_bad_input(widths, rank, bad):
  with pytest.raises(ValueError, match="is invalid") as err:
    theory.deep_linear_llc(widths, rank)
  assert bad in str(err.value)


@pytest.mark.parametrize("widths, rank", [((4, 3, 5, 3), 2), ((3, 4, 2), 0)])
def test_case_true_point(widths, rank):
  case = known_cases.deep_linear(
    jax.random.key(3), widths, rank, 200, noise_std=0.0, input_scale=2.0
  )
  assert (case.true_llc, case.multiplicity) == theory.deep_linear_llc(
    widths, rank
  )
  factors = [np.asarray(w, np.float64) for w in case.params]
  assert [w.shape for w in factors] == list(zip(widths[1:], widths[:-1]))
  product = np.linalg.multi_dot(factors[::-1])
  for w in factors:
    assert np.linalg.matrix_rank(w, tol=1e-4) == rank
  expected_sv = [1.0] * rank + [0.0] * (min(product.shape) - rank)
  np.testing.assert_allclose(
    np.linalg.svd(product, compute_uv=False), expected_sv, atol=1e-5
  )
  x, y = np.asarray(case.data["x"]), np.asarray(case.data["y"])
  assert x.shape == (200, widths[0]) and y.shape == (200, widths[-1])
  np.testing.assert_allclose(y, x @ product.T, atol=1e-4)
  assert abs(np.std(x) - 2.0) < 0.25
  assert float(case.loss_fn(case.params, case.data)) < 1e-8
  # step size 0.03 / (nbeta input_scale^2) with nbeta = 200 / ln 200.
  nbeta = case.cfg.resolve_nbeta(200)
  assert nbeta == pytest.approx(200 / np.log(200))
  assert case.cfg.step_size == pytest.approx(0.03 / (nbeta * 4))
  assert case.cfg.batch_size == 200 and case.cfg.localization == 2.0


def test_case_noise_sets_the_loss():
  # With unit noise and the true map, each example's loss is chi^2_4 / 2:
  # mean H_L / 2 = 2. The divergence rule allows for the minibatch noise
  # itself (slt_jax.llc.summary), so the case keeps the default factor.
  n = 20_000
  case = known_cases.deep_linear(jax.random.key(0), (3, 2, 4), 1, n)
  assert float(case.loss_fn(case.params, case.data)) == pytest.approx(
    2.0, rel=0.03
  )
  assert case.cfg.divergence_factor == SGLDConfig().divergence_factor


@pytest.mark.parametrize(
  "kwargs, bad",
  [
    ({"num_examples": 1}, "num_examples=1"),
    ({"num_examples": 10.0}, "num_examples=10.0"),
    ({"input_scale": 0.0}, "input_scale=0.0"),
    ({"noise_std": -1.0}, "noise_std=-1.0"),
    ({"rank": 3}, "rank=3"),
  ],
)
def test_case_bad_input(kwargs, bad):
  args = {"widths": (3, 2, 4), "rank": 1, "num_examples": 10} | kwargs
  with pytest.raises(ValueError, match="is invalid") as err:
    known_cases.deep_linear(jax.random.key(0), **args)
  assert bad in str(err.value)


@pytest.mark.slow
def test_estimate_recovers_lambda():
  # Noiseless labels make L_n(w) - L_n(w*) the empirical KL exactly (no
  # dataset fluctuation of the estimate), and a 100-example minibatch keeps
  # the run short: its gradient noise vanishes with the residuals. Measured
  # over seeds, the estimate sits 5-8% below lambda = 6.5 (the finite-nbeta
  # localized posterior's own value, ~6.0-6.2 by long population-loss runs).
  case = known_cases.deep_linear(
    jax.random.key(0), (4, 4, 4, 4), 1, 10_000, noise_std=0.0, scale=0.7
  )
  assert (case.true_llc, case.multiplicity) == (6.5, 1)
  cfg = dataclasses.replace(case.cfg, batch_size=100)
  start = time.perf_counter()
  res = estimate_llc(
    jax.random.key(1), case.loss_fn, case.params, case.data, cfg, progress=False
  )
  elapsed = time.perf_counter() - start
  assert case.passed(float(res.mean), float(res.std)), float(res.mean)
  assert not res.diagnostics.diverged.any()
  assert elapsed < 60, elapsed
