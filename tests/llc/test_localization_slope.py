"""The estimate's slope in ln γ, read from the draws, against closed forms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.llc import (
  SGLDConfig,
  SGLDSettings,
  chain,
  diagnostics,
  estimate_llc,
)

NBETA = 100.0
# nβ h spans 1 to 100 around γ = 10: both sides of the localization scale.
CURVATURE = np.logspace(0.0, 2.0, 12) / NBETA


def quadratic_loss(w, batch):
  del batch
  return 0.5 * jnp.sum(CURVATURE * jnp.square(w))


def exact(localization: float) -> tuple[float, float]:
  """λ(γ) = Σ a / (2 (a + γ)) and its slope in ln γ, ``a = nβ h``."""
  a = NBETA * CURVATURE
  return (
    float(np.sum(a / (2 * (a + localization)))),
    float(-np.sum(a * localization / (2 * (a + localization) ** 2))),
  )


# Long full-batch chains: the covariance's relative error is a few %.
CHAINS = SGLDConfig(
  nbeta=NBETA, num_chains=32, num_burnin=3000, num_draws=40_000, batch_size=None
)


def run(key, cfg: SGLDConfig, **options):
  return estimate_llc(
    key, quadratic_loss, jnp.zeros(12), jnp.zeros((4, 1)), cfg, **options
  )


@pytest.mark.parametrize(
  "sampler, step_size",
  [("sgld", 2e-4), pytest.param("sghmc", 2e-5, marks=pytest.mark.slow)],
)
def test_slope_matches_the_gaussian_closed_form(sampler, step_size):
  localization = 10.0
  cfg = dataclasses.replace(
    CHAINS, sampler=sampler, step_size=step_size, localization=localization
  )
  res = run(jax.random.key(0), cfg)
  llc, slope = exact(localization)
  np.testing.assert_allclose(float(res.mean), llc, rtol=0.03)
  assert res.diagnostics.localization_slope.shape == ()
  read = float(res.diagnostics.localization_slope)
  se = float(res.diagnostics.localization_slope_se)
  np.testing.assert_allclose(read, slope, rtol=0.08)
  assert abs(read - slope) < 4 * se < 0.2 * abs(slope)


def test_slope_matches_a_finite_difference_of_the_estimate():
  """Estimates at γ e^{∓0.15} (one grid, common random numbers): their
  difference over Δ ln γ = 0.3 is the slope at γ, up to the chains' noise
  and a curvature term of order 0.15^2."""
  grid = SGLDSettings.product(
    step_size=[2e-4], nbeta=[NBETA], localization=10.0 * np.exp([-0.15, 0.15])
  )
  res = run(jax.random.key(1), CHAINS, settings=grid)
  finite_difference = float(res.mean[1] - res.mean[0]) / 0.3
  at_centre = float(np.mean(res.diagnostics.localization_slope))
  np.testing.assert_allclose(at_centre, finite_difference, rtol=0.1)
  np.testing.assert_allclose(finite_difference, exact(10.0)[1], rtol=0.1)


def _inputs(loss_CxT, dist_CxT):
  """``localization_slope``'s inputs for one point, from whole traces."""
  blocks = jax.vmap(chain.covariance_blocks)(
    jnp.asarray(loss_CxT), jnp.asarray(dist_CxT)
  )
  return (
    loss_CxT.mean(-1)[None],
    dist_CxT.mean(-1)[None],
    {k: np.asarray(v, np.float64)[None] for k, v in blocks.items()},
  )


def test_the_pooled_covariance_is_that_of_all_draws():
  """43 draws (not a multiple of the blocks): every draw counts."""
  rng = np.random.default_rng(1)
  loss = rng.normal(size=(3, 43)) + rng.normal(size=(3, 1))
  dist = 0.5 * loss + rng.normal(size=(3, 43))
  loss_PxC, dist_PxC, covariance = _inputs(loss, dist)
  slope, se = diagnostics.localization_slope(
    loss_PxC, dist_PxC, np.ones((1, 3), bool), covariance, NBETA, 2.0
  )
  grand = np.mean((loss - loss.mean()) * (dist - dist.mean()))
  np.testing.assert_allclose(slope, [-0.5 * 2.0 * NBETA * grand], rtol=1e-5)
  assert 0 < float(se[0]) < abs(float(slope[0]))


def test_an_excluded_chain_is_left_out():
  rng = np.random.default_rng(0)
  loss, dist = rng.normal(size=(2, 5, 50))
  kept = np.array([[True, True, True, False, True]])
  both = diagnostics.localization_slope(
    *_inputs(loss, dist)[:2], kept, _inputs(loss, dist)[2], NBETA, 10.0
  )
  loss_PxC, dist_PxC, covariance = _inputs(loss[kept[0]], dist[kept[0]])
  alone = diagnostics.localization_slope(
    loss_PxC, dist_PxC, np.ones((1, 4), bool), covariance, NBETA, 10.0
  )
  np.testing.assert_allclose(both, alone, rtol=1e-6)
