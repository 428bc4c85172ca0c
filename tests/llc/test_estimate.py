"""LLC engine: validation against known coefficients, batching, diagnostics."""

import dataclasses
import json
import os
import subprocess
import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slt_jax as sj
from slt_jax import known_cases
from slt_jax.llc import SGLDConfig, SGLDSettings, compile_sweep, estimate_llc

QUIET = dict(progress=False, warn=False)


def _run_case(case, key=0):
  return estimate_llc(
    jax.random.key(key),
    case.loss_fn,
    case.params,
    case.data,
    case.cfg,
    mask=case.mask,
    **QUIET,
  )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(known_cases.CASES))
def test_known_learning_coefficients(name):
  case = known_cases.make_case(name, jax.random.key(0))
  res = _run_case(case)
  chex.assert_shape(res.per_chain, (case.cfg.num_chains,))
  chex.assert_shape(res.loss_trace, (case.cfg.num_chains, case.cfg.num_draws))
  assert not res.diagnostics.diverged.any()
  assert case.passed(float(res.mean), float(res.std)), (
    f"{case.name}: {res.mean:.4f} ± {res.std:.4f} vs true {case.true_llc:.4f}"
  )
  if case.finite_temp is not None:
    # The sampler itself: the exact finite-temperature expectation, within
    # 4 standard errors (chains are independent) plus 3% step-size bias.
    se = res.std / np.sqrt(case.cfg.num_chains)
    assert abs(res.mean - case.finite_temp) <= 4 * se + 0.03 * case.finite_temp


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_batched_sweep_matches_loop_and_compiles_once():
  case = known_cases.isotropic_quadratic(d=6)
  cfg = SGLDConfig(
    step_size=2e-4,
    nbeta=100.0,
    localization=10.0,
    num_chains=4,
    num_draws=1000,
    num_burnin=200,
    batch_size=None,
    chunk_size=2,
  )
  anchors = jnp.zeros((2, 3, 6))
  # One program for all points and chunks: the loss is traced once for the
  # initial loss and once per step body (plain, recording, MALA proxy).
  traced = chex.assert_max_traces(case.loss_fn, n=4)
  res = estimate_llc(
    jax.random.key(0), traced, anchors, case.data, cfg, batch_ndim=2, **QUIET
  )
  chex.assert_shape([res.mean, res.std, res.init_loss], (2, 3))
  chex.assert_shape(res.per_chain, (2, 3, 4))
  chex.assert_shape(res.loss_trace, (2, 3, 4, 1000))
  chex.assert_shape(res.diagnostics.diverged, (2, 3, 4))
  # Looping over the points one by one estimates the same thing: compare
  # the average over the 6 points, within 4 standard errors, to each other
  # and to the closed form.
  loop = np.array(
    [
      estimate_llc(k, case.loss_fn, anchors[0, 0], case.data, cfg, **QUIET).mean
      for k in jax.random.split(jax.random.key(1), 6)
    ]
  )
  se = np.std(res.per_chain) / np.sqrt(res.per_chain.size)
  truth = (6 / 2) * 100 / 110
  assert abs(res.mean.mean() - loop.mean()) < 4 * np.sqrt(2) * se + 0.03 * truth
  assert abs(res.mean.mean() - truth) < 4 * se + 0.03 * truth


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_host_only_settings_do_not_change_the_chains():
  case = known_cases.isotropic_quadratic(d=3)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=10.0,
    localization=1.0,
    num_chains=2,
    num_draws=20,
    num_burnin=0,
    batch_size=None,
  )
  run = lambda c: estimate_llc(
    jax.random.key(0), case.loss_fn, case.params, case.data, c, **QUIET
  )
  first = run(cfg)
  for changed in (
    dict(divergence_factor=3.0),
    dict(chunk_size=4),
    dict(memory_budget_bytes=10**6),
  ):
    again = run(dataclasses.replace(cfg, **changed))
    np.testing.assert_array_equal(again.per_chain, first.per_chain)


def test_burnin_step_size_relaxes_the_chain_sooner():
  # L = |w|^2 / 2, curvature k = nβ + γ = 110: the draws' step (eps k =
  # 1e-3) relaxes over ~2000 steps, the burn-in step (eps k = 0.4) over ~5.
  # Burned in at the larger step, the draws start at the stationary spread
  # E|w|^2 = d / k (inflated by 1 / (1 - eps k / 4) = 1.11 at that step) and
  # the estimate is the exact (d/2) nβ / k; burned in at the draws' step,
  # the chains are still near w*.
  d = 20
  case = known_cases.isotropic_quadratic(d)
  k = case.cfg.nbeta + case.cfg.localization
  cfg = dataclasses.replace(
    case.cfg, step_size=1e-3 / k, num_burnin=100, num_draws=100
  )
  run = lambda c: estimate_llc(
    jax.random.key(0), case.loss_fn, case.params, case.data, c, **QUIET
  )
  slow, fast = run(cfg), run(dataclasses.replace(cfg, burnin_step_size=0.4 / k))
  assert float(slow.mean) < 0.2 * case.finite_temp
  assert float(fast.mean) == pytest.approx(1.11 * case.finite_temp, rel=0.1)
  spread = fast.diagnostics.distance_sq.mean()
  assert spread == pytest.approx(1.11 * d / k, rel=0.1)
  # A burn-in step equal to the draws' changes nothing.
  same = run(dataclasses.replace(cfg, burnin_step_size=cfg.step_size))
  np.testing.assert_allclose(same.per_chain, slow.per_chain, rtol=1e-5)


def test_a_sweep_compiles_once_for_many_runs_and_settings():
  case = known_cases.isotropic_quadratic(d=3)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=10.0,
    localization=1.0,
    num_chains=2,
    num_draws=20,
    num_burnin=0,
    batch_size=None,
    chunk_size=2,
  )
  traced = chex.assert_max_traces(case.loss_fn, n=4)
  anchors = jnp.zeros((3, 3))
  sweep = compile_sweep(traced, cfg, case.data, anchors, 1)
  assert sweep.chunk_size == 2
  first = sweep.run(jax.random.key(0), anchors, 1, **QUIET)
  again = sweep.run(jax.random.key(0), anchors + 0.0, 1, **QUIET)
  grid = sweep.run(
    jax.random.key(0),
    anchors,
    1,
    settings=SGLDSettings(step_size=[1e-3, 2e-3]),
    **QUIET,
  )
  np.testing.assert_array_equal(first.per_chain, again.per_chain)
  np.testing.assert_array_equal(grid.per_chain[0], first.per_chain)
  stats = sweep.memory_analysis()
  assert stats.argument_size_in_bytes > 0
  with pytest.raises(ValueError, match="compiled for"):
    sweep.run(jax.random.key(0), jnp.zeros((3, 4)), 1, **QUIET)


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_settings_grid_is_one_program_with_common_random_numbers():
  case = known_cases.isotropic_quadratic(d=4)
  cfg = SGLDConfig(
    step_size=5e-4,
    nbeta=100.0,
    localization=10.0,
    num_chains=2,
    num_draws=60,
    num_burnin=10,
    batch_size=None,
    chunk_size=2,
  )
  anchors = 0.1 * jax.random.normal(jax.random.key(1), (5, 4))
  grid = SGLDSettings(
    step_size=[2.5e-4, 5e-4, 1e-3],
    nbeta=[50.0, 100.0, 100.0],
    localization=[10.0, 10.0, 1.0],
  )
  # 15 items in 8 chunks of 2, one compiled program: the loss is traced for
  # the initial loss and the three step bodies only.
  traced = chex.assert_max_traces(case.loss_fn, n=4)
  res = estimate_llc(
    jax.random.key(2),
    traced,
    anchors,
    case.data,
    cfg,
    batch_ndim=1,
    settings=grid,
    **QUIET,
  )
  chex.assert_shape([res.mean, res.std, res.init_loss], (3, 5))
  chex.assert_shape(res.per_chain, (3, 5, 2))
  chex.assert_shape(res.loss_trace, (3, 5, 2, 60))
  chex.assert_shape([res.diagnostics.ess, res.diagnostics.stationary], (3, 5))
  chex.assert_shape(res.diagnostics.diverged, (3, 5, 2))
  np.testing.assert_allclose(res.nbeta, [50.0, 100.0, 100.0])
  for s in range(3):
    one = dataclasses.replace(
      cfg,
      step_size=grid.step_size[s],
      nbeta=grid.nbeta[s],
      localization=grid.localization[s],
    )
    alone = estimate_llc(
      jax.random.key(2),
      case.loss_fn,
      anchors,
      case.data,
      one,
      batch_ndim=1,
      **QUIET,
    )
    np.testing.assert_allclose(res.per_chain[s], alone.per_chain, rtol=1e-5)
    np.testing.assert_allclose(
      res.diagnostics.ess[s], alone.diagnostics.ess, rtol=1e-5
    )
  # A grid of one equals the plain call exactly; None fields take cfg's value.
  single = estimate_llc(
    jax.random.key(2),
    case.loss_fn,
    anchors,
    case.data,
    cfg,
    batch_ndim=1,
    settings=SGLDSettings(localization=[10.0]),
    **QUIET,
  )
  plain = estimate_llc(
    jax.random.key(2),
    case.loss_fn,
    anchors,
    case.data,
    cfg,
    batch_ndim=1,
    **QUIET,
  )
  np.testing.assert_array_equal(single.per_chain[0], plain.per_chain)
  assert plain.nbeta == 100.0 and plain.settings.step_size == 5e-4


@pytest.mark.parametrize(
  "bad, match",
  [
    (SGLDSettings(step_size=[1e-3, 2e-3], nbeta=[1.0]), "differ in length"),
    (SGLDSettings(step_size=[]), "non-empty"),
    (SGLDSettings(step_size=1e-3), "1-D"),
    (SGLDSettings(nbeta=["default"]), "strings"),
    (SGLDSettings(step_size=[float("nan")]), "step_size"),
    (SGLDSettings(localization=[-1.0]), "localization"),
    (SGLDSettings(), "no field"),
    ((1e-3, 1.0, 1.0), "SGLDSettings"),
  ],
)
def test_bad_settings_raise(bad, match):
  case = known_cases.isotropic_quadratic(d=2)
  with pytest.raises(ValueError, match=match):
    estimate_llc(
      jax.random.key(0),
      case.loss_fn,
      case.params,
      case.data,
      SGLDConfig(batch_size=None),
      settings=bad,
      **QUIET,
    )


def test_settings_product():
  grid = SGLDSettings.product(step_size=[1.0, 2.0], nbeta=[3.0, 4.0, 5.0])
  assert grid.step_size == (1.0,) * 3 + (2.0,) * 3
  assert grid.nbeta == (3.0, 4.0, 5.0) * 2
  assert grid.localization is None


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_chunking_does_not_change_results():
  case = known_cases.isotropic_quadratic(d=4)
  anchors = jnp.zeros((5, 4))
  base = dict(
    step_size=2e-4,
    nbeta=100.0,
    localization=10.0,
    num_chains=2,
    num_draws=200,
    num_burnin=10,
    batch_size=None,
  )
  a = estimate_llc(
    jax.random.key(3),
    case.loss_fn,
    anchors,
    case.data,
    SGLDConfig(**base, chunk_size=2),
    batch_ndim=1,
    **QUIET,
  )
  b = estimate_llc(
    jax.random.key(3),
    case.loss_fn,
    anchors,
    case.data,
    SGLDConfig(**base, chunk_size=5),
    batch_ndim=1,
    **QUIET,
  )
  np.testing.assert_allclose(a.per_chain, b.per_chain, rtol=1e-5)


@pytest.mark.parametrize(
  "every", [pytest.param(7, marks=pytest.mark.slow), 1000]
)
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_thinned_mala_proxy_leaves_the_chains_unchanged(every):
  case = known_cases.isotropic_quadratic(d=4)
  cfg = SGLDConfig(
    step_size=2e-3,
    nbeta=100.0,
    localization=10.0,
    num_chains=4,
    num_draws=300,
    num_burnin=20,
    batch_size=None,
    mala_every=1,
  )
  full = estimate_llc(
    jax.random.key(5), case.loss_fn, case.params, case.data, cfg, **QUIET
  )
  thin = estimate_llc(
    jax.random.key(5),
    case.loss_fn,
    case.params,
    case.data,
    dataclasses.replace(cfg, mala_every=every),
    **QUIET,
  )
  np.testing.assert_array_equal(full.loss_trace, thin.loss_trace)
  accept = np.nanmean(full.diagnostics.mala_accept)
  assert 0.5 < accept < 1.0
  if every == 1000:  # longer than the chains: never computed
    assert np.isnan(thin.diagnostics.mala_accept).all()
  else:
    assert abs(np.nanmean(thin.diagnostics.mala_accept) - accept) < 0.05


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_minibatch_sgld_on_quadratic_network_runs_and_is_deterministic(
  tmp_path,
):
  d = sj.data.modular_arithmetic(jax.random.key(0), sj.DataConfig(p=7))
  params = jax.vmap(lambda k: sj.model.init(k, sj.ModelConfig(p=7, width=8)))(
    jax.random.split(jax.random.key(1), 3)
  )
  loss = sj.losses.make_loss("centered_mse")
  cfg = SGLDConfig(
    step_size=1e-4,
    nbeta="default",
    num_chains=2,
    num_draws=50,
    num_burnin=10,
    batch_size=8,
  )
  path = str(tmp_path / "chains")
  a = estimate_llc(
    jax.random.key(2),
    loss,
    params,
    d.train,
    cfg,
    batch_ndim=1,
    out_path=path,
    **QUIET,
  )
  b = estimate_llc(
    jax.random.key(2), loss, params, d.train, cfg, batch_ndim=1, **QUIET
  )
  resumed = estimate_llc(
    jax.random.key(2),
    loss,
    params,
    d.train,
    cfg,
    batch_ndim=1,
    out_path=path,
    **QUIET,
  )
  np.testing.assert_array_equal(a.per_chain, b.per_chain)
  np.testing.assert_array_equal(a.per_chain, resumed.per_chain)
  assert a.nbeta == pytest.approx(8 / np.log(8))
  # The estimate from its parts, computed here: L_n(w*) of each point on the
  # full training set, nβ (mean draw loss - L_n(w*)) per chain, and the mean
  # and std over the (undiverged) chains; to float32 rounding of L_n(w*)
  # times nβ (~2e-7), against estimates of ~0.1.
  init_loss = np.array(
    [
      float(loss(jax.tree.map(lambda x, i=i: x[i], params), d.train))
      for i in range(3)
    ]
  )
  np.testing.assert_allclose(a.init_loss, init_loss, rtol=1e-6)
  per_chain = a.nbeta * (
    a.loss_trace.astype(np.float64).mean(-1) - init_loss[:, None]
  )
  assert not a.diagnostics.diverged.any()
  np.testing.assert_allclose(a.per_chain, per_chain, atol=1e-6)
  np.testing.assert_allclose(a.mean, per_chain.mean(-1), atol=1e-6)
  np.testing.assert_allclose(a.std, per_chain.std(-1), atol=1e-6)
  # w* is a random initialization, not a minimum: at this small step the
  # gradient drift outweighs the noise and every chain descends below
  # L_n(w*), so every estimate is negative (here -0.07 to -0.13).
  assert np.all(a.per_chain < 0)


@pytest.mark.slow
def test_restricted_llc_moves_only_masked_parameters():
  case = known_cases.lazy_random_features(
    jax.random.key(0), 5, 4, 10, 2.0, 5e-5
  )
  res = _run_case(case)
  assert res.num_moving_params == case.params["V"].size
  # Only V moves: the loss is quadratic in V with Hessian rank p min(K, n),
  # so the estimate is p min(K, n) / 2 = 10 (W moving too would change it).
  assert case.true_llc == 10.0
  assert case.passed(float(res.mean), float(res.std)), (
    f"{res.mean:.3f} ± {res.std:.3f} vs {case.true_llc}"
  )
  full = dict(case.params)
  with pytest.raises(ValueError, match="mask selects no parameters"):
    estimate_llc(
      jax.random.key(0),
      case.loss_fn,
      full,
      case.data,
      case.cfg,
      mask=lambda path, _: False,
      **QUIET,
    )


@pytest.mark.slow
def test_flax_model_llc():
  flax_linen = pytest.importorskip("flax.linen")

  class Net(flax_linen.Module):
    @flax_linen.compact
    def __call__(self, x):
      return flax_linen.Dense(1, use_bias=False)(x)[:, 0]

  x = jax.random.normal(jax.random.key(0), (500, 3))
  net = Net()
  variables = net.init(jax.random.key(1), x)

  def loss_fn(v, x_B):
    return 0.5 * jnp.mean(jnp.square(net.apply(v, x_B)))

  # Regular linear model with 3 parameters at its minimum: lambda = 3/2.
  cfg = SGLDConfig(
    step_size=1e-4,
    nbeta=1e3,
    localization=1.0,
    num_chains=8,
    num_draws=4000,
    num_burnin=500,
    batch_size=None,
  )
  zero = jax.tree.map(jnp.zeros_like, variables)
  res = estimate_llc(jax.random.key(2), loss_fn, zero, x, cfg, **QUIET)
  assert res.num_moving_params == 3
  assert abs(res.mean - 1.5) < 0.1 * 1.5


def test_huge_step_is_flagged_diverged_and_excluded():
  case = known_cases.isotropic_quadratic(d=5)
  cfg = SGLDConfig(
    step_size=1.0,
    nbeta=100.0,
    localization=10.0,
    num_chains=2,
    num_draws=50,
    num_burnin=0,
    batch_size=None,
  )
  with pytest.warns(RuntimeWarning, match="diverged"):
    res = estimate_llc(
      jax.random.key(0),
      case.loss_fn,
      case.params,
      case.data,
      cfg,
      progress=False,
    )
  assert res.diagnostics.diverged.all()
  assert np.isnan(res.mean)


def test_nonstationary_chain_is_reported():
  # Paper-like regime: relaxation time 2/(eps gamma) far beyond the draws.
  loss = lambda w, batch: 0.0 * jnp.sum(batch) + 0.0 * jnp.sum(w)
  flat_plus = lambda w, batch: loss(w, batch) + 1e-3 * jnp.sum(w**2)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=1.0,
    localization=1.0,
    num_chains=3,
    num_draws=400,
    num_burnin=0,
    batch_size=None,
  )
  with pytest.warns(RuntimeWarning, match="not stationary"):
    res = estimate_llc(
      jax.random.key(0),
      flat_plus,
      jnp.zeros(500),
      jnp.zeros((4, 1)),
      cfg,
      progress=False,
    )
  assert not res.diagnostics.stationary
  assert res.diagnostics.trend_per_draw > 0


@pytest.mark.parametrize(
  "bad, match",
  [
    (dict(step_size=-1e-3), "step_size"),
    (dict(num_chains=0), "num_chains"),
    (dict(nbeta=-1.0), "nbeta"),
    (dict(localization=-1.0), "localization"),
    (dict(sampler="hmc"), "sampler"),
    (dict(mala_every=0), "mala_every"),
    (dict(noise="philox"), "noise"),
    (dict(num_chains=2.5), "num_chains=2.5 is invalid: must be an integer"),
    (dict(num_draws=True), "num_draws"),
    (
      dict(step_size=float("inf")),
      "step_size=inf is invalid: must be a finite",
    ),
    (dict(nbeta=float("nan")), "nbeta"),
    (dict(chunk_size=1.5), "chunk_size"),
    (dict(burnin_step_size=0.0), "burnin_step_size=0.0 is invalid"),
  ],
)
def test_bad_config_raises(bad, match):
  with pytest.raises(ValueError, match=match):
    SGLDConfig(**bad)


def test_bad_inputs_raise():
  case = known_cases.isotropic_quadratic(d=3)
  with pytest.raises(ValueError, match="batch_size=32"):
    estimate_llc(
      jax.random.key(0),
      case.loss_fn,
      case.params,
      case.data,
      SGLDConfig(batch_size=32),
      **QUIET,
    )
  with pytest.raises(ValueError, match="empty"):
    estimate_llc(
      jax.random.key(0),
      case.loss_fn,
      case.params,
      jnp.zeros((0, 1)),
      SGLDConfig(batch_size=None),
      **QUIET,
    )
  with pytest.raises(ValueError, match="batch_ndim"):
    estimate_llc(
      jax.random.key(0),
      case.loss_fn,
      case.params,
      case.data,
      SGLDConfig(batch_size=None),
      batch_ndim=2,
      **QUIET,
    )


def test_nbeta_conventions():
  assert SGLDConfig(batch_size=128).resolve_nbeta(1123) == pytest.approx(
    128 / np.log(128)
  )
  assert SGLDConfig(nbeta="n_log_n").resolve_nbeta(1123) == pytest.approx(
    1123 / np.log(1123)
  )
  assert SGLDConfig(nbeta=5.0).resolve_nbeta(10) == 5.0


@pytest.mark.parametrize("sampler", ["rmsprop_sgld", "mala"])
def test_other_samplers_recover_isotropic_quadratic(sampler):
  case = known_cases.isotropic_quadratic(d=10)
  step = 1e-3 if sampler == "mala" else 2e-5
  cfg = SGLDConfig(
    step_size=step,
    nbeta=100.0,
    localization=10.0,
    num_chains=8,
    num_draws=4000,
    num_burnin=1000,
    batch_size=None,
    sampler=sampler,
    # A slowly adapting preconditioner: pSGLD drops the
    # Gamma correction term, so a fast one biases the target.
    rmsprop_decay=0.9999,
  )
  res = estimate_llc(
    jax.random.key(0), case.loss_fn, case.params, case.data, cfg, **QUIET
  )
  truth = case.true_llc
  assert abs(res.mean - truth) < 0.05 * truth
  if sampler == "mala":
    assert 0.3 < res.diagnostics.mala_accept.mean() <= 1.0


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_sharded_run_matches_single_device():
  script = (
    "import jax, jax.numpy as jnp, numpy as np\n"
    "from slt_jax.llc import SGLDConfig, estimate_llc\n"
    "loss = lambda w, b: 0.5 * jnp.sum(w ** 2) + 0.0 * jnp.sum(b)\n"
    "cfg = SGLDConfig(step_size=2e-4, nbeta=100.0, localization=10.0,"
    " num_chains=2, num_draws=100, num_burnin=10, batch_size=None, chunk_size=4)\n"
    "r = estimate_llc(jax.random.key(0), loss, jnp.zeros((8, 3)),"
    " jnp.zeros((4, 1)), cfg, batch_ndim=1, progress=False, warn=False)\n"
    "import json\n"
    "print(len(jax.devices()), json.dumps(r.per_chain.ravel().tolist()))\n"
  )
  outs = []
  for count in (1, 4):
    env = dict(
      os.environ,
      XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
      JAX_PLATFORMS="cpu",
    )
    proc = subprocess.run(
      [sys.executable, "-c", script],
      env=env,
      capture_output=True,
      text=True,
      check=True,
    )
    devices, values = proc.stdout.strip().split(" ", 1)
    assert int(devices) == count
    outs.append(np.array(json.loads(values)))
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5)


def test_calibrate_picks_largest_stable_step():
  case = known_cases.isotropic_quadratic(d=5)
  cfg = SGLDConfig(
    nbeta=100.0,
    localization=10.0,
    num_chains=2,
    num_draws=200,
    num_burnin=20,
    batch_size=None,
  )
  chosen, table = sj.llc.calibrate(
    jax.random.key(0),
    case.loss_fn,
    case.params,
    case.data,
    cfg,
    step_sizes=(1e-4, 1e-3, 1.0),
  )
  assert len(table) == 3
  by_step = {r["step_size"]: r for r in table}
  assert not by_step[1.0]["ok"] and by_step[1.0]["diverged_chains"] == 2
  assert by_step[1e-3]["ok"]
  assert chosen.step_size == 1e-3


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_memory_budget_sets_chunk_size_on_accelerators():
  """The accelerator path sizes chunks from XLA's memory analysis."""
  case = known_cases.isotropic_quadratic(d=50)
  anchors = jnp.zeros((8, 50))
  tiny = SGLDConfig(
    step_size=2e-4,
    nbeta=100.0,
    localization=10.0,
    num_chains=2,
    num_draws=20,
    num_burnin=0,
    batch_size=None,
    memory_budget_bytes=1,
  )
  roomy = dataclasses.replace(tiny, memory_budget_bytes=2**30)
  device = jax.devices()[0]

  class Accelerator:  # the CPU device, presented as a GPU to the sizing rule.
    platform = "gpu"

    def __getattr__(self, name):
      return getattr(device, name)

  chunks = []
  for cfg in (tiny, roomy):
    sweep = compile_sweep(case.loss_fn, cfg, case.data, anchors, 1)
    sweep.devices = [Accelerator()]
    chunks.append(sweep.chunk_size)
    if cfg is roomy:
      res = sweep.run(jax.random.key(0), anchors, 1, **QUIET)
      chex.assert_shape(res.per_chain, (8, 2))
  assert chunks == [1, 8]


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_resume_folder_saves_each_chunk_once_and_refuses_a_corrupt_part(
  tmp_path,
):
  case = known_cases.isotropic_quadratic(d=3)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=10.0,
    localization=1.0,
    num_chains=2,
    num_draws=20,
    num_burnin=0,
    batch_size=None,
    chunk_size=2,
  )
  anchors = jnp.zeros((5, 3))
  folder = str(tmp_path / "chains")
  run = lambda out_path: estimate_llc(
    jax.random.key(0),
    case.loss_fn,
    anchors,
    case.data,
    cfg,
    1,
    out_path=out_path,
    **QUIET,
  )
  first = run(folder)
  parts = sorted(p for p in os.listdir(folder) if p.startswith("part_"))
  assert parts == [f"part_{i:05d}.npz" for i in range(3)]
  assert sorted(os.listdir(folder)) == ["owner.json"] + parts
  stamps = {p: os.stat(os.path.join(folder, p)).st_mtime_ns for p in parts}
  # A rerun loads every part and rewrites none.
  np.testing.assert_array_equal(run(folder).per_chain, first.per_chain)
  for p in parts:
    assert os.stat(os.path.join(folder, p)).st_mtime_ns == stamps[p]
  # A corrupt part is an error naming it, and is left for the user to delete.
  with open(os.path.join(folder, parts[1]), "wb") as f:
    f.write(b"not an npz")
  with pytest.raises(ValueError, match=f"{parts[1]} is unreadable"):
    run(folder)
  assert open(os.path.join(folder, parts[1]), "rb").read() == b"not an npz"
  os.remove(os.path.join(folder, parts[1]))
  again = run(folder)
  np.testing.assert_array_equal(first.per_chain, again.per_chain)
  for p in (parts[0], parts[2]):  # loaded, not rewritten.
    assert os.stat(os.path.join(folder, p)).st_mtime_ns == stamps[p]
  a_file = tmp_path / "old.npz"
  a_file.write_bytes(b"x")
  with pytest.raises(ValueError, match="is a file"):
    run(str(a_file))
  assert a_file.read_bytes() == b"x"


def test_resume_folder_of_another_sweep_is_refused(tmp_path):
  case = known_cases.isotropic_quadratic(d=3)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=10.0,
    localization=1.0,
    num_chains=2,
    num_draws=20,
    num_burnin=0,
    batch_size=None,
    chunk_size=2,
  )
  folder = str(tmp_path / "chains")
  run = lambda cfg, **kw: estimate_llc(
    jax.random.key(0),
    case.loss_fn,
    jnp.zeros((3, 3)),
    case.data,
    cfg,
    1,
    out_path=folder,
    **kw,
    **QUIET,
  )
  run(cfg)
  files = sorted(os.listdir(folder))
  saved = {p: open(os.path.join(folder, p), "rb").read() for p in files}
  for other in (
    dict(cfg=dataclasses.replace(cfg, num_draws=40)),
    dict(cfg=cfg, settings=SGLDSettings(step_size=[2e-3])),
    dict(cfg=dataclasses.replace(cfg, sampler="sghmc")),
  ):
    with pytest.raises(ValueError, match="holds the parts of another"):
      run(**other)
  assert sorted(os.listdir(folder)) == files  # the first sweep's, untouched.
  for p in files:
    assert open(os.path.join(folder, p), "rb").read() == saved[p]
  # Host-side options do not change the saved numbers: the folder resumes.
  run(
    dataclasses.replace(cfg, divergence_factor=3.0, memory_budget_bytes=10**6)
  )
  for p in files:
    assert open(os.path.join(folder, p), "rb").read() == saved[p]


def test_zero_noise_ablation_is_gradient_descent():
  # With no noise and gamma = 0 a chain on 0.5 |w|^2 is w <- (1 - eps nbeta / 2) w.
  loss = lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)
  cfg = SGLDConfig(
    step_size=0.1,
    nbeta=1.0,
    localization=0.0,
    num_chains=1,
    num_draws=5,
    num_burnin=0,
    batch_size=None,
    noise="zeros",
  )
  res = estimate_llc(
    jax.random.key(0), loss, jnp.ones(2), jnp.zeros((3, 1)), cfg, **QUIET
  )
  np.testing.assert_allclose(
    res.loss_trace[0], 0.95 ** (2 * np.arange(5)), rtol=1e-6
  )


def test_warn_flag_controls_warnings_not_diagnostics():
  case = known_cases.isotropic_quadratic(d=5)
  cfg = SGLDConfig(
    step_size=1.0,
    nbeta=100.0,
    localization=10.0,
    num_chains=2,
    num_draws=50,
    num_burnin=0,
    batch_size=None,
  )
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    quiet = estimate_llc(
      jax.random.key(0), case.loss_fn, case.params, case.data, cfg, **QUIET
    )
  assert quiet.diagnostics.diverged.all()


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_efficiency_diagnostics(tmp_path):
  case = known_cases.isotropic_quadratic(d=3)
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=10.0,
    localization=1.0,
    num_chains=2,
    num_draws=40,
    num_burnin=10,
    batch_size=None,
    chunk_size=2,
  )
  folder = str(tmp_path / "chains")
  res = estimate_llc(
    jax.random.key(0),
    case.loss_fn,
    jnp.zeros((3, 3)),
    case.data,
    cfg,
    1,
    out_path=folder,
    **QUIET,
  )
  d = res.diagnostics
  chex.assert_shape([d.seconds, d.ess_per_second, d.ess_per_gradient], (3,))
  assert (d.seconds > 0).all()
  np.testing.assert_allclose(d.ess_per_second, d.ess / d.seconds)
  np.testing.assert_allclose(d.ess_per_gradient, d.ess / (2 * 50))
  # Points 0 and 1 share a chunk, hence its time; a part saved without
  # timings or covariance blocks (an older layout) resumes with the time and
  # the slope in ln γ unknown.
  assert d.seconds[0] == d.seconds[1]
  assert np.isfinite(d.localization_slope).all()
  path = os.path.join(folder, "part_00001.npz")
  saved = sj.persist.load_npz(path)
  assert np.isnan(d.step_scale).all()  # SGLD scales no coordinate.
  for name in ("item_seconds", "loss_distance/cov", "step_scale"):
    del saved[name]
  del saved["loss_distance/xy"]
  sj.persist.save_npz(path, saved)
  again = estimate_llc(
    jax.random.key(0),
    case.loss_fn,
    jnp.zeros((3, 3)),
    case.data,
    cfg,
    1,
    out_path=folder,
    **QUIET,
  )
  np.testing.assert_array_equal(again.diagnostics.seconds[:2], d.seconds[:2])
  assert np.isnan(again.diagnostics.seconds[2])
  assert np.isnan(again.diagnostics.localization_slope).all()
  assert np.isnan(again.diagnostics.step_scale).all()
  np.testing.assert_array_equal(again.per_chain, res.per_chain)


def test_rmsprop_step_scale_is_its_smallest_preconditioner():
  # At w* = 0 the gradient of |w|^2 / 2 is 0; at eps = 1e-10 the chains stay
  # within ~1e-4 of it, so V ~ 0 and G = 1 / (delta + sqrt(V)) ~ 1 / delta.
  # A larger step spreads them (E[w^2] = 1 / (nβ + γ)): G falls below that.
  loss = lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)
  cfg = SGLDConfig(
    sampler="rmsprop_sgld",
    nbeta=100.0,
    localization=10.0,
    num_chains=3,
    num_draws=200,
    num_burnin=100,
    batch_size=None,
  )
  still, moving = (
    estimate_llc(
      jax.random.key(0),
      loss,
      jnp.zeros(5),
      jnp.zeros((4, 1)),
      dataclasses.replace(cfg, step_size=eps),
      **QUIET,
    ).diagnostics.step_scale
    for eps in (1e-10, 1e-3)
  )
  chex.assert_shape([still, moving], (3,))
  np.testing.assert_allclose(still, 1 / cfg.rmsprop_eps, rtol=1e-2)
  assert np.all((1.0 < moving) & (moving < 0.9 / cfg.rmsprop_eps))
