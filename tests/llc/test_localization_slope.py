"""The estimate's slope in ln γ, read from the draws, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.llc import SGLDConfig, SGLDSettings, diagnostics, estimate_llc

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


def run(sampler: str, localization: float, step_size: float):
  cfg = SGLDConfig(
    sampler=sampler,
    step_size=step_size,
    nbeta=NBETA,
    localization=localization,
    num_chains=32,
    num_burnin=3000,
    num_draws=40_000,
    batch_size=None,
  )
  return estimate_llc(
    jax.random.key(0), quadratic_loss, jnp.zeros(12), jnp.zeros((4, 1)), cfg
  )


@pytest.mark.parametrize(
  "sampler, step_size",
  [("sgld", 2e-4), pytest.param("sghmc", 2e-5, marks=pytest.mark.slow)],
)
def test_slope_matches_the_gaussian_closed_form(sampler, step_size):
  localization = 10.0
  res = run(sampler, localization, step_size)
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
  cfg = SGLDConfig(
    nbeta=NBETA,
    num_chains=32,
    num_burnin=3000,
    num_draws=40_000,
    batch_size=None,
  )
  res = estimate_llc(
    jax.random.key(1),
    quadratic_loss,
    jnp.zeros(12),
    jnp.zeros((4, 1)),
    cfg,
    settings=grid,
  )
  finite_difference = float(res.mean[1] - res.mean[0]) / 0.3
  at_centre = float(np.mean(res.diagnostics.localization_slope))
  np.testing.assert_allclose(at_centre, finite_difference, rtol=0.1)
  np.testing.assert_allclose(finite_difference, exact(10.0)[1], rtol=0.1)


def test_an_excluded_chain_is_left_out_of_the_pooled_covariance():
  rng = np.random.default_rng(0)
  trace = rng.normal(size=(1, 5, 50))
  dist = rng.normal(size=(1, 5))
  blocks = rng.normal(size=(2, 1, 5, 10))
  excluded = trace.copy()
  excluded[0, 3] = np.nan
  kept = [0, 1, 2, 4]
  np.testing.assert_allclose(
    diagnostics.localization_slope(excluded, dist, *blocks, NBETA, 10.0),
    diagnostics.localization_slope(
      trace[:, kept], dist[:, kept], *blocks[:, :, kept], NBETA, 10.0
    ),
  )


def test_blocks_rebuild_the_pooled_covariance_of_the_draws():
  """Chain-centred block means, recombined: the covariance of all draws
  about the grand means, as NumPy computes it from the traces."""
  rng = np.random.default_rng(1)
  loss = rng.normal(size=(3, 40)) + rng.normal(size=(3, 1))
  dist = 0.5 * loss + rng.normal(size=(3, 40))
  centred = (loss - loss.mean(1, keepdims=True)) * (
    dist - dist.mean(1, keepdims=True)
  )
  in_blocks = lambda z: z.reshape(3, 10, 4).mean(-1)[None]
  slope, se = diagnostics.localization_slope(
    loss[None],
    dist.mean(1)[None],
    in_blocks(centred),
    in_blocks(dist),
    NBETA,
    2.0,
  )
  grand = np.mean((loss - loss.mean()) * (dist - dist.mean()))
  np.testing.assert_allclose(slope, [-0.5 * 2.0 * NBETA * grand])
  assert 0 < float(se[0]) < abs(float(slope[0]))
