"""The counter_hash normals (slt_jax.samplers.noise): distribution, independence,
counters, and SGLD driven by them. Bounds are 5 standard errors at a fixed
key (deterministic, so they cannot flake).

About 20 s on 2 CPU cores.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from slt_jax import known_cases
from slt_jax.llc import SGLDConfig, SGLDSettings, estimate_llc
from slt_jax.samplers import noise, sgld

N = 2**21


@pytest.fixture(scope="module")
def draws():
  z = noise.normal(jax.random.key(7), (N,))
  chex.assert_shape(z, (N,))
  chex.assert_type(z, jnp.float32)
  return np.asarray(z, np.float64)


def test_erfinv_is_accurate_to_float32_including_the_tails():
  x = np.concatenate(
    [
      np.linspace(-0.999, 0.999, 100001),
      1 - np.logspace(-7, -3, 200),
      -(1 - np.logspace(-7, -3, 200)),
    ]
  ).astype(np.float32)
  exact = scipy.special.erfinv(x.astype(np.float64))
  got = np.asarray(noise.erfinv(jnp.asarray(x)), np.float64)
  assert np.max(np.abs(got - exact) / np.abs(exact)) < 1e-6


def test_uniform_grid_is_symmetric_open_and_evenly_spaced():
  bits = jnp.arange(0, 2**32, 2**8 * 4099, dtype=jnp.uint32)
  u = np.asarray(noise.symmetric_uniform(bits), np.float64)
  assert np.all(np.abs(u) < 1) and not np.any(u == 0)
  k = np.asarray(bits, np.int64) >> 8
  np.testing.assert_array_equal(u, (2 * k + 1 - 2**24) / 2**24)
  assert np.max(np.abs(noise.normal(jax.random.key(0), (N,)))) <= (
    noise.MAX_ABS + 1e-5
  )


def test_moments_and_tails_are_standard_normal(draws):
  z = draws
  assert abs(z.mean()) < 5 / np.sqrt(N)
  assert abs(z.var() - 1) < 5 * np.sqrt(2 / N)
  assert abs(scipy.stats.skew(z)) < 5 * np.sqrt(6 / N)
  assert abs(scipy.stats.kurtosis(z)) < 5 * np.sqrt(24 / N)
  for c in (1.0, 2.0, 3.0, 4.0):
    p = 2 * scipy.stats.norm.sf(c)
    assert abs(np.mean(np.abs(z) > c) - p) < 5 * np.sqrt(p * (1 - p) / N), c


def test_kolmogorov_smirnov_against_the_normal_cdf(draws):
  assert scipy.stats.kstest(draws, "norm").pvalue > 1e-3
  # Bins of the uniform the draws came from: a chi-square on 1024 cells.
  counts = np.bincount(
    np.minimum((scipy.stats.norm.cdf(draws) * 1024).astype(int), 1023),
    minlength=1024,
  )
  assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_no_lag_correlation_in_values_or_squares(draws):
  z = draws
  bound = 5 / np.sqrt(N)
  for lag in (1, 2, 3, 7, 8, 16, 255, 256, 1024):
    assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < bound, lag
    assert abs(np.corrcoef(z[:-lag] ** 2, z[lag:] ** 2)[0, 1]) < bound, lag


def test_consecutive_step_keys_and_counter_ranges_are_independent(draws):
  bound = 5 / np.sqrt(N)
  a, b = (
    np.asarray(noise.normal(jax.random.fold_in(jax.random.key(3), t), (N,)))
    for t in (0, 1)
  )
  next_leaf = np.asarray(noise.normal(jax.random.key(7), (N,), offset=N))
  for x, y in ((a, b), (draws, next_leaf)):
    assert abs(np.corrcoef(x, y)[0, 1]) < bound
    assert abs(np.corrcoef(x**2, y**2)[0, 1]) < bound
  # A counter range is a slice of the longer stream, reshaped.
  tail = noise.normal(jax.random.key(7), (8, 16), offset=N - 128)
  np.testing.assert_array_equal(np.asarray(tail).ravel(), draws[-128:])


def test_same_key_same_draws_and_counter_overflow_raises():
  key = jax.random.key(11)
  np.testing.assert_array_equal(
    noise.normal(key, (5, 3)), noise.normal(key, (5, 3))
  )
  with pytest.raises(ValueError, match="32 bits"):
    noise.normal(key, (16,), offset=2**32 - 8)


def test_gaussian_noise_leaves_use_disjoint_counters():
  like = {"a": jnp.ones((4, 8)), "b": jnp.ones(32, jnp.bfloat16)}
  drawn = sgld.gaussian_noise(jax.random.key(0), like, "counter_hash")
  chex.assert_trees_all_equal_shapes_and_dtypes(drawn, like)
  flat = noise.normal(jax.random.key(0), (64,))
  np.testing.assert_array_equal(drawn["a"].ravel(), flat[:32])
  np.testing.assert_array_equal(drawn["b"], flat[32:].astype(jnp.bfloat16))


def test_sgld_with_counter_hash_has_the_exact_discrete_variance():
  # U = k |w|^2 / 2: the recursion w <- (1 - eps k / 2) w + sqrt(eps) xi has
  # stationary variance eps / (1 - (1 - eps k / 2)^2).
  k, eps = 4.0, 0.05
  kernel = sgld.build_kernel(
    lambda w, batch: 0.5 * jnp.sum(w**2), noise="counter_hash"
  )

  def step(state, key):
    state, _ = kernel(key, state, None, SGLDSettings(eps, k, 0.0))
    return state, state.position

  _, w = jax.lax.scan(
    step, sgld.init(jnp.zeros(200)), jax.random.split(jax.random.key(1), 20000)
  )
  exact = eps / (1 - (1 - eps * k / 2) ** 2)
  assert float(jnp.var(w[2000:])) == pytest.approx(exact, rel=0.02)


@pytest.mark.parametrize(
  "name",
  [
    "isotropic_quadratic_d20",
    pytest.param("rrr_5_3_5", marks=pytest.mark.slow),
  ],
)
def test_known_learning_coefficients_with_counter_hash(name):
  case = known_cases.make_case(name, jax.random.key(0), scale=0.5)
  cfg = dataclasses.replace(case.cfg, noise="counter_hash")
  assert isinstance(cfg, SGLDConfig)
  res = estimate_llc(
    jax.random.key(0),
    case.loss_fn,
    case.params,
    case.data,
    cfg,
    mask=case.mask,
    progress=False,
    warn=False,
  )
  assert not res.diagnostics.diverged.any()
  assert case.passed(float(res.mean), float(res.std)), (
    f"{name}: {res.mean:.4f} ± {res.std:.4f} vs {case.true_llc}"
  )
