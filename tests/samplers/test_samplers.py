"""SGHMC and SGNHT (slt_jax.samplers.sghmc): kernels, exact Gaussian moments, known LLCs.

About 35 s on 2 CPU cores (load ~1).
"""

import dataclasses

import chex
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
from slt_jax.samplers import sghmc, sgld

QUIET = dict(progress=False, warn=False)


def _half_square(w, batch):
  return 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)


def _stationary_covariance(eta: float, alpha: float, k: float) -> np.ndarray:
  """Exact stationary covariance of (v, w) of the SGHMC recursion on
  ``U = k w^2 / 2`` (a discrete Lyapunov equation): the target of the
  discretised chain, step-size bias included."""
  a = np.array([[1 - alpha, -eta * k], [1 - alpha, 1 - eta * k]])
  b = np.sqrt(2 * alpha * eta) * np.ones(2)
  vec = np.linalg.solve(np.eye(4) - np.kron(a, a), np.outer(b, b).ravel())
  return vec.reshape(2, 2)


def _scan(kernel, state, settings, num_steps, key):
  def step(state, key):
    state, info = kernel(key, state, jnp.zeros(1), settings)
    return state, (state.position, info)

  return jax.lax.scan(step, state, jax.random.split(key, num_steps))


def _threefry_normals(key, like):
  """The kernels' default noise drawn here directly: one threefry key per
  leaf (``split(key, leaves)``, non-partitionable), flattened in leaf order
  into one float64 vector."""
  with jax.threefry_partitionable(False):
    keys = jax.random.split(key, len(jax.tree.leaves(like)))
    draws = [
      jax.random.normal(k, np.shape(x), jnp.float32)
      for k, x in zip(keys, jax.tree.leaves(like))
    ]
  return _flat(draws)


def _flat(tree) -> np.ndarray:
  """All leaves of ``tree`` raveled and concatenated, as float64."""
  return np.concatenate(
    [np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)]
  )


def _sghmc_step_numpy(
  w, v, alpha, prev_energy, xi, settings, *, anchor, friction, thermostat
):
  """One SGHMC/SGNHT step in float64, written from ``sghmc``'s equations.

  On ``U = nbeta |w|^2 / 2 + gamma/2 |w - w*|^2``, with eta = eps / 2:
  ``v <- (1 - alpha) v + sqrt(2 D eta) xi - eta grad U`` and ``w <- w + v``,
  D = alpha for SGHMC, D = ``friction`` (the diffusion A) for SGNHT, whose
  alpha then moves by ``|v|^2 / d - eta``. Energies are
  ``U + |p|^2 / (2 eta)`` at the synchronized momenta
  ``p = v -+ (eta/2) grad U``.

  Args:
    w, v: (d,) position and momentum.
    alpha: the friction this move uses.
    prev_energy: the previous move's start energy (nan before any move).
    xi: (d,) the standard normals of this step.
    settings: (eps, nbeta, gamma).
    anchor: w*, (d,) or a scalar.
    friction: the kernel's ``friction`` argument.
    thermostat: SGNHT instead of SGHMC.

  Returns:
    (new w (d,), new v (d,), next alpha, this move's start energy, dict of
    the expected ``SGHMCInfo`` fields).
  """
  eps, nbeta, gamma = settings
  eta, dims = eps / 2, w.size
  delta = w - anchor
  force = nbeta * w + gamma * delta
  potential = nbeta * 0.5 * w @ w + 0.5 * gamma * delta @ delta
  kinetic = lambda p: p @ p / (2 * eta)
  end_energy = potential + kinetic(v - 0.5 * eta * force)
  scale = np.sqrt(2 * (friction if thermostat else alpha) * eta)
  v_half = (1 - alpha) * v + scale * xi
  new_v = v_half - eta * force
  new_alpha = alpha + (new_v @ new_v / dims - eta)
  info = dict(
    loss=0.5 * w @ w,
    grad_norm=np.linalg.norm(w),
    noise_norm=scale * np.linalg.norm(xi),
    distance_sq=delta @ delta,
    mala_accept=np.minimum(1.0, np.exp(prev_energy - end_energy)),
    friction=alpha,
    kinetic_temperature=new_v @ new_v / (dims * eta),
  )
  return (
    w + new_v,
    new_v,
    new_alpha if thermostat else alpha,
    potential + kinetic(v_half - 0.5 * eta * force),
    info,
  )


@pytest.mark.parametrize("thermostat", [False, True])
def test_steps_match_the_update_equations_in_numpy(thermostat):
  # Three steps on a two-leaf tree away from its anchor, against the update
  # written out in float64 from the same threefry normals: positions,
  # momenta, SGNHT's friction, the energy record and every info field (a
  # step's acceptance is that of the previous move). SGNHT starts its
  # thermostat (0.05) away from its diffusion A (0.01), so using one for
  # the other fails.
  position = {
    "a": jnp.arange(6.0).reshape(2, 3) / 6,
    "b": jnp.linspace(-1.0, 1.0, 4),
  }
  anchor = jax.tree.map(lambda x: 0.5 * jnp.ones_like(x), position)
  built = dict(friction=0.01 if thermostat else 0.1, thermostat=thermostat)
  state = sghmc.init(position, anchor, thermostat=0.05 if thermostat else None)
  assert (state.friction is None) == (not thermostat)
  loss = lambda w, batch: 0.5 * (jnp.sum(w["a"] ** 2) + jnp.sum(w["b"] ** 2))
  kernel = sghmc.build_kernel(loss, **built)
  settings = SGLDSettings(0.4, 3.0, 2.0)
  w, v, energy = _flat(position), np.zeros(10), np.nan
  alpha = 0.05 if thermostat else 0.1
  accepts = []
  for t in range(3):
    key = jax.random.key(t)
    state, info = kernel(key, state, None, settings)
    xi = _threefry_normals(key, position)
    w, v, alpha, energy, expected = _sghmc_step_numpy(
      w, v, alpha, energy, xi, settings, anchor=0.5, **built
    )
    chex.assert_shape([state.position["a"], state.momentum["a"]], (2, 3))
    chex.assert_shape([state.position["b"], state.momentum["b"]], (4,))
    chex.assert_shape(list(info), ())
    np.testing.assert_allclose(_flat(state.position), w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_flat(state.momentum), v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(state.prev_energy), energy, rtol=1e-6)
    if thermostat:
      chex.assert_shape(state.friction, ())
      np.testing.assert_allclose(float(state.friction), alpha, rtol=1e-5)
    else:
      assert state.friction is None
    for name, value in expected.items():
      np.testing.assert_allclose(
        float(getattr(info, name)), value, rtol=2e-5, err_msg=name
      )
    accepts.append(float(info.mala_accept))
  # No previous move on the first step; a real (unclipped) energy error on
  # the last.
  assert np.isnan(accepts[0]) and 0.1 < accepts[-1] < 0.3


def test_friction_one_is_sgld_exactly():
  settings = SGLDSettings(1e-2, 3.0, 1.0)
  hmc, lang = (
    sghmc.build_kernel(_half_square, friction=1.0),
    sgld.build_kernel(_half_square),
  )
  a, b = sghmc.init(jnp.ones(5)), sgld.init(jnp.ones(5))
  for t in range(5):
    a, _ = hmc(jax.random.key(t), a, jnp.zeros(1), settings)
    b, _ = lang(jax.random.key(t), b, jnp.zeros(1), settings)
  np.testing.assert_allclose(a.position, b.position, rtol=1e-5, atol=1e-6)


def test_zero_noise_is_heavy_ball_momentum():
  # v <- (1 - alpha) v - eta (nbeta w + gamma (w - w*)), w <- w + v, eta = eps/2.
  eps, nbeta, alpha = 0.1, 2.0, 0.5
  kernel = sghmc.build_kernel(_half_square, friction=alpha, noise="zeros")
  state = sghmc.init(jnp.ones(3))
  w, v = 1.0, 0.0
  for t in range(3):
    state, info = kernel(
      jax.random.key(t), state, jnp.zeros(1), SGLDSettings(eps, nbeta, 0.0)
    )
    v = (1 - alpha) * v - 0.5 * eps * nbeta * w
    w = w + v
    assert float(info.noise_norm) == 0.0
  np.testing.assert_allclose(state.position, w * np.ones(3), rtol=1e-6)


def test_masked_entries_stay_at_the_anchor():
  mask = jnp.array([1.0, 0.0, 1.0])
  kernel = sghmc.build_kernel(
    _half_square, mask=mask, friction=0.01, thermostat=True
  )
  state = sghmc.init(jnp.ones(3), thermostat=0.01)
  _, info = kernel(
    jax.random.key(0), state, jnp.zeros(1), SGLDSettings(1e-2, 1.0, 1.0)
  )
  state, (draws, _) = _scan(
    kernel, state, SGLDSettings(1e-2, 1.0, 1.0), 50, jax.random.key(1)
  )
  np.testing.assert_array_equal(draws[:, 1], 1.0)
  assert float(state.momentum[1]) == 0.0
  assert sgld.num_moving(jnp.ones(3), mask) == 2


def test_settings_are_traced_one_compile_for_many_values():
  traced = chex.assert_max_traces(_half_square, n=1)
  kernel = jax.jit(sghmc.build_kernel(traced, friction=0.01, thermostat=True))
  state = sghmc.init(jnp.ones(3), thermostat=0.01)
  for eps, nbeta, gamma in (
    (1e-3, 10.0, 1.0),
    (2e-3, 5.0, 0.0),
    (1e-4, 100.0, 10.0),
  ):
    new, _ = kernel(
      jax.random.key(0),
      state,
      jnp.zeros(1),
      SGLDSettings(jnp.float32(eps), jnp.float32(nbeta), jnp.float32(gamma)),
    )
    # Each call takes its own values: the move of these settings.
    w, v, alpha, _, _ = _sghmc_step_numpy(
      np.ones(3),
      np.zeros(3),
      0.01,
      np.nan,
      _threefry_normals(jax.random.key(0), state.position),
      (eps, nbeta, gamma),
      anchor=1.0,
      friction=0.01,
      thermostat=True,
    )
    np.testing.assert_allclose(new.position, w, rtol=1e-6)
    np.testing.assert_allclose(new.momentum, v, rtol=1e-5)
    np.testing.assert_allclose(float(new.friction), alpha, rtol=1e-5)


def test_sghmc_samples_the_exact_discrete_gaussian():
  # exp(-(nbeta + gamma) |w|^2 / 2) in 200 dimensions: the chain's variance is
  # the exact stationary variance of the recursion (within sampling error),
  # which is within 3% of 1 / (nbeta + gamma) at this step.
  nbeta, gamma, eps, alpha = 3.0, 1.0, 0.05, 0.1
  kernel = sghmc.build_kernel(_half_square, friction=alpha)
  _, (draws, info) = _scan(
    kernel,
    sghmc.init(jnp.zeros(200)),
    SGLDSettings(eps, nbeta, gamma),
    20000,
    jax.random.key(1),
  )
  variance = float(jnp.var(draws[2000:]))
  exact = _stationary_covariance(eps / 2, alpha, nbeta + gamma)[1, 1]
  assert variance == pytest.approx(exact, rel=0.02)
  assert exact == pytest.approx(1 / (nbeta + gamma), rel=0.03)
  accept = np.asarray(info.mala_accept[2000:])
  assert 0.3 < np.nanmean(accept) < 1.0


def test_sgnht_thermostat_sets_the_kinetic_temperature():
  nbeta, gamma, eps = 3.0, 1.0, 0.01
  kernel = sghmc.build_kernel(_half_square, friction=0.05, thermostat=True)
  _, (draws, info) = _scan(
    kernel,
    sghmc.init(jnp.zeros(200), thermostat=0.05),
    SGLDSettings(eps, nbeta, gamma),
    20000,
    jax.random.key(2),
  )
  assert float(jnp.var(draws[4000:])) == pytest.approx(
    1 / (nbeta + gamma), rel=0.05
  )
  assert float(jnp.mean(info.kinetic_temperature[4000:])) == pytest.approx(
    1.0, abs=0.02
  )
  # The thermostat moves (it may swing below 0: Nosé-Hoover friction can).
  assert float(jnp.std(info.friction)) > 0
  assert float(info.friction[0]) == pytest.approx(0.05)


@pytest.mark.parametrize("sampler", ["sghmc", "sgnht"])
@pytest.mark.parametrize(
  "name",
  [
    "isotropic_quadratic_d20",
    "normal_crossing_12",
    pytest.param("rrr_5_3_5", marks=pytest.mark.slow),
  ],
)
def test_known_learning_coefficients(name, sampler):
  # Half the draws of the SGLD validation (momentum mixes faster), same step.
  case = known_cases.make_case(name, jax.random.key(0), scale=0.5)
  cfg = dataclasses.replace(case.cfg, sampler=sampler)
  res = estimate_llc(
    jax.random.key(0),
    case.loss_fn,
    case.params,
    case.data,
    cfg,
    mask=case.mask,
    **QUIET,
  )
  # SGNHT's weakly damped chains can leave the integrator's stability region
  # in the crossing's stiff directions (one of 16 chains shot to nβ L ~ 1900
  # once at this step): the engine flags and excludes such a chain.
  assert res.diagnostics.diverged.sum() <= (1 if sampler == "sgnht" else 0)
  assert case.passed(float(res.mean), float(res.std)), (
    f"{name}/{sampler}: {res.mean:.4f} ± {res.std:.4f} vs {case.true_llc}"
  )
  if case.finite_temp is not None:
    # Exact finite-temperature value within 4 standard errors + 3% bias.
    se = res.std / np.sqrt(cfg.num_chains)
    assert abs(res.mean - case.finite_temp) <= (
      4 * se + 0.03 * case.finite_temp
    )
  assert 0 < np.nanmean(res.diagnostics.mala_accept) <= 1


@pytest.mark.parametrize(
  "sampler", ["sghmc", pytest.param("sgnht", marks=pytest.mark.slow)]
)
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_settings_grid_equals_separate_calls(sampler):
  case = known_cases.isotropic_quadratic(d=4)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=50.0,
    localization=5.0,
    num_chains=2,
    num_draws=60,
    num_burnin=10,
    batch_size=None,
    sampler=sampler,
  )
  grid = SGLDSettings(step_size=[1e-3, 2e-3], localization=[5.0, 2.0])
  sweep = compile_sweep(case.loss_fn, cfg, case.data, case.params)
  both = sweep.run(jax.random.key(3), case.params, settings=grid, **QUIET)
  for i, (eps, gamma) in enumerate(zip(grid.step_size, grid.localization)):
    one = sweep.run(
      jax.random.key(3),
      case.params,
      **QUIET,
      settings=SGLDSettings(step_size=[eps], localization=[gamma]),
    )
    np.testing.assert_allclose(both.per_chain[i], one.per_chain[0], rtol=1e-5)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_calibrate_picks_a_stable_step_for_sghmc():
  case = known_cases.isotropic_quadratic(d=20)
  cfg = dataclasses.replace(
    case.cfg, num_draws=200, num_burnin=100, num_chains=2, sampler="sghmc"
  )
  chosen, rows = calibrate(
    jax.random.key(0),
    case.loss_fn,
    case.params,
    case.data,
    cfg,
    step_sizes=(1e-4, 1e-3, 0.1),
  )
  assert chosen.sampler == "sghmc" and chosen.step_size in (1e-4, 1e-3)
  assert not rows[-1]["ok"]  # eps k = 11 > 8 - 4 alpha: unstable.


@pytest.mark.parametrize(
  "field, value",
  [
    ("sghmc_friction", 0.0),
    ("sghmc_friction", 1.5),
    ("sgnht_diffusion", -0.1),
    ("sgnht_diffusion", 2.0),
    ("sghmc_friction", float("nan")),
  ],
)
def test_bad_config_values_raise_naming_them(field, value):
  with pytest.raises(ValueError, match=f"{field}={value!r} is invalid"):
    SGLDConfig(**{field: value})
  assert SGLDConfig(sampler="sgnht").sampler == "sgnht"
  with pytest.raises(ValueError, match="sampler='nuts' is invalid"):
    SGLDConfig(sampler="nuts")
