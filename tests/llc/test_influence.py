"""Observables recorded in the chains, Bayesian influence functions and
susceptibilities (slt_jax.llc.influence), against a linear-Gaussian model where
both are known in closed form (slt_jax.known_cases.LinearGaussian)."""

import types
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import known_cases
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import losses, model
from slt_jax.grokking.config import LOSSES, ModelConfig
from slt_jax.llc import SGLDConfig, compile_sweep, estimate_llc, influence

QUIET = dict(progress=False, warn=False)
NBETA, GAMMA, EPS = 24.0, 2.0, 0.03
MASK = np.array([1, 1, 0, 0], np.float32)  # the restriction A: w0, w1 move.


@pytest.fixture(scope="module")
def gaussian():
  """The linear-Gaussian case and full / restricted runs at its 2 anchors
  (8 chains × 4000 draws, observed every 4th: 8000 draws per estimate)."""
  lg = known_cases.linear_gaussian(jax.random.key(0))
  train, probe = (lg.x_train, lg.y_train), (lg.x_probe, lg.y_probe)
  cfg = SGLDConfig(
    step_size=EPS,
    nbeta=NBETA,
    localization=GAMMA,
    num_chains=8,
    num_draws=4000,
    num_burnin=200,
    batch_size=None,
  )
  obs = dict(
    observables={"train": train, "probe": probe},
    observe_every=4,
    per_example_loss_fn=lg.per_example_loss_fn,
  )
  full = estimate_llc(
    jax.random.key(1), lg.loss_fn, lg.anchors, train, cfg, 1, **obs, **QUIET
  )
  restricted = estimate_llc(
    jax.random.key(2),
    lg.loss_fn,
    lg.anchors,
    train,
    cfg,
    1,
    mask=MASK,
    **obs,
    **QUIET,
  )
  return lg, full, restricted


def _chain(res, c):
  """Chain ``c`` of ``res`` alone, as influence's functions read a result."""
  return types.SimpleNamespace(
    observables={k: v[:, c : c + 1] for k, v in res.observables.items()},
    init_observables=res.init_observables,
    diagnostics=types.SimpleNamespace(
      diverged=res.diagnostics.diverged[:, c : c + 1]
    ),
  )


@pytest.mark.slow
def test_observable_shapes_and_losses_at_the_anchor(gaussian):
  lg, full, _ = gaussian
  chex.assert_shape(full.observables["train"], (2, 8, 1000, 24))
  chex.assert_shape(full.observables["probe"], (2, 8, 1000, 6))
  chex.assert_shape(full.init_observables["probe"], (2, 6))
  assert full.observe_every == 4
  # Full batch: the mean recorded training loss is the loss trace at draws
  # 0, 4, 8, ..., and the one at w* is L_n(w*).
  np.testing.assert_allclose(
    full.observables["train"].mean(-1), full.loss_trace[..., ::4], rtol=2e-5
  )
  np.testing.assert_allclose(
    full.init_observables["train"].mean(-1), full.init_loss, rtol=1e-5
  )
  chex.assert_shape(influence.bif(full, "train", "probe"), (2, 24, 6))
  chex.assert_shape(
    influence.bif(full, "train", "probe", per_chain=True), (2, 8, 24, 6)
  )
  chex.assert_shape(influence.susceptibility(full, full, "probe"), (2, 6))
  chex.assert_shape(influence.effective_sample_size(full, "probe"), (2, 6))
  assert np.all(influence.split_rhat(full, "probe") < 1.05)


def test_bif_matches_the_isserlis_closed_form(gaussian):
  """Cov(l_i, l_j) of train × probe losses within Monte Carlo error.

  The closed form is the chains' own stationary law (full-batch SGLD keeps
  the Gaussian's mean and has covariance (P - eps P^2/4)^-1), 15% away from
  the eps -> 0 posterior here, so the test sees MC error only. Measured:
  relative Frobenius error 3.0% / 7.2% at the two anchors against a relative
  MC standard error of 5.5% / 5.0% (from the spread over the 8 chains).
  """
  lg, full, _ = gaussian
  est = influence.bif(full, "train", "probe")
  per_chain = influence.bif(full, "train", "probe", per_chain=True)
  corr = influence.bif(full, "train", "probe", kind="correlation")
  for p in range(2):
    exact = lg.bif(lg.anchors[p], NBETA, GAMMA, EPS)
    se = per_chain[p].std(0, ddof=1) / np.sqrt(per_chain.shape[1])
    err = np.linalg.norm(est[p] - exact)
    assert err <= 3 * np.sqrt(np.sum(se**2)), (p, err, np.sum(se**2) ** 0.5)
    assert err <= 0.15 * np.linalg.norm(exact)
    # eps matters: the eps -> 0 posterior is further away than the error.
    assert np.linalg.norm(lg.bif(lg.anchors[p], NBETA, GAMMA) - exact) > err
    exact_corr = lg.bif(lg.anchors[p], NBETA, GAMMA, EPS, kind="correlation")
    assert np.abs(corr[p] - exact_corr).max() < 0.1
  # Pooling equals the per-chain covariances plus the spread of chain means.
  within = influence.bif(full, "probe", "probe", per_chain=True).mean(1)
  np.testing.assert_allclose(
    influence.bif(full, "probe", "probe"), within, rtol=0.2, atol=1e-4
  )


@pytest.mark.parametrize("center", ["full", "restricted"])
def test_susceptibility_matches_the_closed_form(gaussian, center):
  lg, full, restricted = gaussian
  for res, mask in ((restricted, MASK), (full, None)):
    est = influence.susceptibility(res, full, "probe", center=center)
    per_chain = np.stack(
      [
        influence.susceptibility(_chain(res, c), full, "probe", center=center)
        for c in range(8)
      ]
    )
    var = per_chain.var(0, ddof=1) / 8
    if center == "full" and res is restricted:
      # chi also holds E_A[phi] E_full[L_n - l_j]: add that term's MC error.
      shift = (
        full.observables["train"].mean(-1)[..., None]
        - full.observables["probe"]
      )
      se_shift = shift.mean(2).std(1, ddof=1) / np.sqrt(8)
      phi = (
        res.observables["train"].mean(-1)
        - res.init_observables["train"].mean(-1)[:, None, None]
      )
      var = var + (phi.mean((1, 2))[:, None] * se_shift) ** 2
    for p in range(2):
      exact = lg.susceptibility(lg.anchors[p], NBETA, GAMMA, EPS, mask, center)
      err = np.linalg.norm(est[p] - exact)
      assert err <= 3 * np.sqrt(var[p].sum()), (p, est[p], exact)


def test_closed_form_susceptibility_is_the_response_to_shifting_the_data():
  """chi_A(q) = (1/nβ) d E_h[phi] / dh for L_n -> (1 - h) L_n + h L_q (the
  restricted posterior's own covariance, ``center="restricted"``), checked
  by a finite difference of the exact Gaussian posterior."""
  lg = known_cases.linear_gaussian(jax.random.key(0))
  n = len(lg.y_train)
  for mask in (MASK, None):

    def expected_phi(h):
      mean, cov = lg.posterior(
        lg.anchors[0], NBETA, GAMMA, mask=mask, probe_weight=h
      )
      return lg.loss_moments(mean, cov)[0][:n].mean()

    fd = (expected_phi(1e-4) - expected_phi(-1e-4)) / 2e-4 / NBETA
    chi = lg.susceptibility(
      lg.anchors[0], NBETA, GAMMA, mask=mask, center="restricted"
    ).mean()
    np.testing.assert_allclose(fd, chi, rtol=1e-6)


# Golden numbers: the first case below without observables, run before
# observables existed (commit 7238a39); bitwise on the machine that recorded
# them, 1e-6 allows for another CPU's vector width. (The program itself was
# checked to lower to the same StableHLO text as that commit's.)
GOLDEN_PER_CHAIN = [
  [2.6706501692533493, -1.4895175725221632],
  [-5.022869610786438, -5.387277942895889],
]
GOLDEN_TRACE_SUM = 25.168214932084084


# k dividing mala_every (two k-segments per lcm(k, mala_every) super-block),
# and mala_every dividing k with the burn-in off the block grid.
@pytest.mark.parametrize(
  "burnin,draws,every,mala_every,batch",
  [
    pytest.param(10, 30, 5, 10, 8, marks=pytest.mark.slow),
    (7, 24, 12, 4, None),
  ],
)
def test_observables_leave_the_chains_unchanged(
  burnin, draws, every, mala_every, batch
):
  lg = known_cases.linear_gaussian(jax.random.key(0))
  train = (lg.x_train, lg.y_train)
  cfg = SGLDConfig(
    step_size=0.01,
    nbeta=NBETA,
    localization=GAMMA,
    num_chains=2,
    num_draws=draws,
    num_burnin=burnin,
    batch_size=batch,
    mala_every=mala_every,
  )
  run = lambda **kw: estimate_llc(
    jax.random.key(3), lg.loss_fn, lg.anchors, train, cfg, 1, **kw, **QUIET
  )
  plain = run()
  seen = run(
    observables={"train": train, "probe": (lg.x_probe, lg.y_probe)},
    observe_every=every,
    per_example_loss_fn=lg.per_example_loss_fn,
    observe_batch_size=5,
  )
  assert plain.observables is None and plain.init_observables is None
  for field in ("loss_trace", "per_chain", "init_loss", "mean"):
    np.testing.assert_array_equal(getattr(seen, field), getattr(plain, field))
  np.testing.assert_array_equal(
    seen.diagnostics.mala_accept, plain.diagnostics.mala_accept
  )
  np.testing.assert_allclose(
    seen.diagnostics.distance_sq, plain.diagnostics.distance_sq, rtol=1e-6
  )
  chex.assert_shape(seen.observables["probe"], (2, 2, draws // every, 6))
  if batch is None:  # the recorded draws are the traced ones.
    np.testing.assert_allclose(
      seen.observables["train"].mean(-1),
      seen.loss_trace[..., ::every],
      rtol=2e-5,
    )

  if (burnin, draws, every, mala_every, batch) == (10, 30, 5, 10, 8):
    np.testing.assert_allclose(plain.per_chain, GOLDEN_PER_CHAIN, rtol=1e-6)
    np.testing.assert_allclose(
      plain.loss_trace.sum(), GOLDEN_TRACE_SUM, rtol=1e-6
    )


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_chunked_observation_and_resume(tmp_path):
  lg = known_cases.linear_gaussian(jax.random.key(0))
  train = (lg.x_train, lg.y_train)
  cfg = SGLDConfig(
    step_size=0.01,
    nbeta=NBETA,
    localization=GAMMA,
    num_chains=2,
    num_draws=20,
    num_burnin=5,
    batch_size=8,
    chunk_size=1,
  )
  obs = dict(
    observables={"train": train},
    observe_every=5,
    per_example_loss_fn=lg.per_example_loss_fn,
  )
  sweep = lambda **kw: compile_sweep(
    lg.loss_fn, cfg, train, lg.anchors, 1, **{**obs, **kw}
  )
  key = jax.random.key(3)
  chunked_sweep = sweep(observe_batch_size=7)
  chunked = chunked_sweep.run(
    key, lg.anchors, 1, out_path=str(tmp_path), **QUIET
  )
  assert len(list(tmp_path.glob("part_*.npz"))) == 2
  for part in tmp_path.glob("part_*.npz"):  # resumed from the files alone:
    saved = dict(np.load(part))
    saved["observables/train"] = saved["observables/train"] + 1.0
    np.savez(part, **saved)
  resumed = chunked_sweep.run(
    key, lg.anchors, 1, out_path=str(tmp_path), **QUIET
  )
  np.testing.assert_array_equal(
    resumed.observables["train"], chunked.observables["train"] + 1.0
  )
  # Another observation schedule (in one piece) does not match the saved
  # parts: their folder is refused. It sees the same draws where the
  # schedules meet.
  with pytest.raises(ValueError, match="holds the parts of another"):
    sweep(observe_every=10).run(
      key, lg.anchors, 1, out_path=str(tmp_path), **QUIET
    )
  other = sweep(observe_every=10).run(
    key, lg.anchors, 1, out_path=str(tmp_path / "other"), **QUIET
  )
  chex.assert_shape(other.observables["train"], (2, 2, 2, 24))
  np.testing.assert_allclose(
    other.observables["train"],
    chunked.observables["train"][:, :, ::2],
    rtol=1e-5,
    atol=1e-6,
  )


def test_bad_observable_arguments_raise():
  lg = known_cases.linear_gaussian(jax.random.key(0))
  train, probe = (lg.x_train, lg.y_train), (lg.x_probe, lg.y_probe)
  cfg = SGLDConfig(
    step_size=0.01,
    nbeta=NBETA,
    localization=GAMMA,
    num_chains=2,
    num_draws=20,
    num_burnin=0,
    batch_size=None,
  )
  pe = lg.per_example_loss_fn
  build = lambda **kw: compile_sweep(
    lg.loss_fn, cfg, train, lg.anchors, 1, **kw
  )
  with pytest.raises(ValueError, match="per_example_loss_fn"):
    build(observables={"probe": probe})
  for every in (0, -5, 2.5, True, 3):
    with pytest.raises(ValueError, match="observe_every"):
      build(
        observables={"probe": probe},
        per_example_loss_fn=pe,
        observe_every=every,
      )
  for bad in ({}, [probe], {"": probe}):
    with pytest.raises(ValueError, match="observables"):
      build(observables=bad, per_example_loss_fn=pe)
  with pytest.raises(ValueError, match="observe_batch_size"):
    build(
      observables={"probe": probe}, per_example_loss_fn=pe, observe_batch_size=0
    )
  with pytest.raises(ValueError, match="one loss per example"):
    build(observables={"probe": probe}, per_example_loss_fn=lg.loss_fn)
  with pytest.raises(ValueError, match="disagree"):
    build(
      observables={"probe": (lg.x_probe, lg.y_train)}, per_example_loss_fn=pe
    )
  sweep = build(
    observables={"train": train, "probe": probe},
    per_example_loss_fn=pe,
    observe_every=10,
  )
  both = sweep.run(jax.random.key(0), lg.anchors, 1, **QUIET)
  elsewhere = sweep.run(jax.random.key(0), lg.anchors[::-1], 1, **QUIET)
  with pytest.raises(ValueError, match="was not recorded"):
    influence.bif(both, "probe", "val")
  with pytest.raises(ValueError, match="kind"):
    influence.bif(both, "probe", "probe", kind="pearson")
  with pytest.raises(ValueError, match="not recorded"):
    influence.susceptibility(both, both, "probe", sampling="all")
  with pytest.raises(ValueError, match="no observables"):
    influence.bif(both._replace(observables=None), "probe", "probe")
  with pytest.raises(ValueError, match="not the same points"):
    influence.susceptibility(both, elsewhere, "probe")
  with pytest.raises(ValueError, match="center"):
    influence.susceptibility(both, both, "probe", center="mixed")
  with pytest.raises(ValueError, match="leading shapes"):
    influence.susceptibility(
      both, sweep.run(jax.random.key(0), lg.anchors[:1], 1, **QUIET), "probe"
    )


@pytest.mark.parametrize("name", LOSSES)
def test_per_example_losses_average_to_the_batch_loss(name):
  params = model.init(jax.random.key(0), ModelConfig(p=7, width=16))
  d = data_lib.modular_addition(p=7, key=jax.random.key(1))
  batch = d.all._replace(weights=d.all.weights.at[:5].set(0.0))  # 5 padded.
  per_example = losses.make_per_example_loss(name)(params, batch)
  chex.assert_shape(per_example, (49,))
  mean = jnp.sum(batch.weights * per_example) / jnp.sum(batch.weights)
  np.testing.assert_allclose(
    mean, losses.make_loss(name)(params, batch), rtol=1e-5
  )
  if name != "centered_mse":  # each entry depends on its own example only.
    single = losses.make_per_example_loss(name)(
      params, jax.tree.map(lambda x: x[7:8], batch)
    )
    np.testing.assert_allclose(single, per_example[7:8], rtol=1e-5)


def test_exports_to_xarray_and_arviz(gaussian):
  xr = pytest.importorskip("xarray")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # arviz 0.x's refactor note
    az = pytest.importorskip("arviz")
  res = gaussian[1]
  ds = res.to_xarray(dims=("checkpoint",))
  assert isinstance(ds, xr.Dataset)
  assert ds["loss"].dims == ("chain", "draw", "checkpoint")
  assert ds["loss_train"].dims == (
    "chain",
    "observed_draw",
    "checkpoint",
    "train_example",
  )
  assert ds["observed_draw"].values[:3].tolist() == [0, 4, 8]
  np.testing.assert_array_equal(ds["llc"].values, res.per_chain.T)
  assert ds.attrs["observe_every"] == 4 and ds.attrs["nbeta"] == NBETA
  idata = res.to_inference_data(dims=("checkpoint",))
  posterior = idata["posterior"]
  observed = idata["observables"]
  assert posterior["loss"].dims == ("chain", "draw", "checkpoint")
  assert observed["train"].dims == (
    "chain",
    "draw",
    "checkpoint",
    "train_example",
  )
  ess = az.ess(
    posterior if int(az.__version__.split(".")[0]) < 1 else idata,
    var_names=["loss"],
  )
  assert np.shape(ess["loss"]) == (2,)
  assert np.all(np.asarray(ess["loss"]) > 100)
  with pytest.raises(ValueError, match="dims"):
    res.to_xarray(dims=("a", "b"))
