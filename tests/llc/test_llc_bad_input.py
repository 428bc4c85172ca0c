"""LLC engine: bad input refused at entry, failed chains flagged, not averaged."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import known_cases
from slt_jax.llc import (
  SGLDConfig,
  SGLDSettings,
  calibrate,
  compile_sweep,
  estimate_llc,
)
from slt_jax.llc.summary import stuck_chains

QUIET = dict(progress=False, warn=False)
QUAD = known_cases.isotropic_quadratic(d=3)
CFG = SGLDConfig(
  step_size=1e-2,
  nbeta=20.0,
  localization=2.0,
  num_chains=2,
  num_draws=30,
  num_burnin=5,
  batch_size=4,
)


def _quad(key, cfg=CFG, **kw):
  return estimate_llc(key, QUAD.loss_fn, QUAD.params, QUAD.data, cfg, **kw)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_legacy_key_gives_the_typed_keys_numbers():
  typed = _quad(jax.random.key(0), **QUIET)
  legacy = _quad(jax.random.PRNGKey(0), **QUIET)
  np.testing.assert_array_equal(legacy.loss_trace, typed.loss_trace)
  np.testing.assert_array_equal(legacy.per_chain, typed.per_chain)
  other = _quad(jax.random.key(1), **QUIET)
  assert not np.array_equal(other.loss_trace, typed.loss_trace)
  sweep = compile_sweep(QUAD.loss_fn, CFG, QUAD.data, QUAD.params)
  again = sweep.run(jax.random.PRNGKey(0), QUAD.params, **QUIET)
  np.testing.assert_array_equal(again.loss_trace, typed.loss_trace)


@pytest.mark.parametrize(
  "key", [0, np.zeros(3, np.uint32), jnp.zeros(2, jnp.float32)]
)
def test_non_key_is_refused_naming_what_to_pass(key):
  with pytest.raises(TypeError, match=r"key=.* is invalid: .*jax\.random\.key"):
    _quad(key, **QUIET)


def test_tree_structure_mismatch_shows_both_structures():
  sweep = compile_sweep(QUAD.loss_fn, CFG, QUAD.data, QUAD.params)
  with pytest.raises(
    ValueError, match=r"tree structure PyTreeDef\(\{'w': \*\}\)"
  ):
    sweep.run(jax.random.key(0), {"w": QUAD.params}, **QUIET)


@pytest.mark.parametrize(
  "settings, match",
  [
    (SGLDSettings(nbeta=[20.0, 1e-50]), r"settings\.nbeta=1e-50 .*rounds to 0"),
    (
      SGLDSettings(step_size=[1e-50]),
      r"settings\.step_size=1e-50 .*rounds to 0",
    ),
    (SGLDSettings(nbeta=[1e39]), r"settings\.nbeta=1e\+39 .*overflows"),
    (SGLDSettings(localization=[1e39]), r"settings\.localization=1e\+39"),
    (SGLDSettings(localization=[-1.0]), r"settings\.localization=-1\.0"),
  ],
)
def test_grid_values_lost_in_float32_are_refused(settings, match):
  with pytest.raises(ValueError, match=match):
    _quad(jax.random.key(0), settings=settings, **QUIET)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_zero_localization_is_accepted():
  res = _quad(jax.random.key(0), settings=SGLDSettings(localization=[0.0]))
  assert np.isfinite(res.mean).all()


def test_stuck_chains_rule():
  trace = np.array([[[1.0, 1.0, 1.0], [1.0, 2.0, 1.0]], [[3.0, 4.0, 5.0]] * 2])
  distance = np.array([[0.5, 0.5], [0.5, 0.0]])
  assert stuck_chains(trace, distance).tolist() == [
    [True, False],
    [False, True],
  ]
  # One draw is no evidence of a constant trace.
  assert not stuck_chains(trace[..., :1], distance + 1).any()


def test_mala_rejecting_every_proposal_is_flagged_not_averaged():
  cfg = dataclasses.replace(
    CFG, sampler="mala", step_size=50.0, batch_size=None
  )
  grid = SGLDSettings(step_size=[1e-2, 50.0])
  with pytest.warns(
    RuntimeWarning, match=r"2 of 4 chains did not move .*\(1,\)"
  ):
    res = _quad(jax.random.key(0), cfg, settings=grid, progress=False)
  assert res.stuck.tolist() == [[False, False], [True, True]]
  assert res.diagnostics.diverged.tolist() == [[False, False], [True, True]]
  # Every proposal rejected: the chain sits at w*, per-chain estimate 0.
  np.testing.assert_array_equal(res.per_chain[1], 0.0)
  assert np.isnan(res.mean[1]) and np.isfinite(res.mean[0])
  assert np.array_equal(res.mean[0], res.per_chain[0].mean())


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_zero_noise_is_warned_and_marked():
  cfg = dataclasses.replace(CFG, noise="zeros")
  with pytest.warns(
    RuntimeWarning, match=r'noise="zeros" .*not an LLC'
  ) as seen:
    res = estimate_llc(
      jax.random.key(0),
      QUAD.loss_fn,
      QUAD.params + 1.0,  # off the minimum: gradient descent moves.
      QUAD.data,
      cfg,
      progress=False,
    )
  assert sum("zeros" in str(w.message) for w in seen) == 1
  assert res.noiseless and np.isfinite(res.mean)
  assert not _quad(jax.random.key(0), **QUIET).noiseless


@pytest.mark.parametrize("min_accept", [1.5, -0.1, float("nan")])
def test_calibrate_checks_min_accept(min_accept):
  with pytest.raises(ValueError, match=r"min_accept=.* is invalid: .*\[0, 1\]"):
    calibrate(
      jax.random.key(0),
      QUAD.loss_fn,
      QUAD.params,
      QUAD.data,
      CFG,
      min_accept=min_accept,
    )


@pytest.mark.slow
def test_minibatch_noise_is_not_divergence_on_a_regular_model():
  # y = W x + noise with W (3, 6): regular, lambda = d / 2 = 9. At nbeta =
  # n / ln n and minibatches of 500, nbeta L_B at w* fluctuates by about 100,
  # far above divergence_factor x d = 180 within a few thousand draws.
  case = known_cases.deep_linear(
    jax.random.key(0), (6, 3), rank=3, num_examples=20_000
  )
  assert case.true_llc == 9.0
  cfg = dataclasses.replace(
    case.cfg,
    step_size=1e-5,
    divergence_factor=10.0,
    num_draws=2_000,
    num_burnin=1_000,
  )
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    res = estimate_llc(
      jax.random.key(1),
      case.loss_fn,
      case.params,
      case.data,
      cfg,
      progress=False,
    )
  assert not res.diagnostics.diverged.any()
  assert abs(res.mean - 9.0) < 0.1 * 9.0
  # The old rule (no minibatch allowance) flags these healthy chains.
  excess = res.nbeta * (res.loss_trace - res.init_loss).max()
  assert excess > cfg.divergence_factor * res.num_moving_params


def test_blow_up_on_minibatches_is_still_diverged():
  cfg = dataclasses.replace(CFG, step_size=1.0, nbeta=100.0, localization=10.0)
  with pytest.warns(RuntimeWarning, match="diverged"):
    res = _quad(jax.random.key(0), cfg, progress=False)
  assert res.diagnostics.diverged.all() and np.isnan(res.mean)
