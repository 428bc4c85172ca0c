"""``slt_jax.llc.autotune``: the curvature bound, the tuned estimate on cases
with an exact answer (no step size written here), batches and bad input.

The isotropic quadratic checks the choice itself: on ``L = |w|^2 / 2`` SGLD's
stationary variance at step eps is exactly ``1 / (k (1 - eps k / 4))`` (k = nβ
+ γ), so the bias of the estimate at the chosen step is known in closed form.
"""

import dataclasses
import math
import re
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import known_cases, theory
from slt_jax.llc import SGLDConfig, estimate_llc
from slt_jax.llc.autotune import (
  autotune,
  hessian_top_eigenvalue,
  relaxation_steps,
)
from slt_jax.llc.autotune.ladders import BURNIN_RELAXATIONS
from slt_jax.llc.autotune.reading import Bias, decay_note
from slt_jax.llc.autotune.tuner import _gamma_note


def _quadratic_cfg(**overrides):
  fields = dict(nbeta=100.0, localization=10.0, batch_size=None, num_chains=4)
  return SGLDConfig(**{**fields, **overrides})


def _sgld_bias(step_size: float, curvature: float) -> float:
  """Exact relative bias of the SGLD estimate on an isotropic quadratic."""
  return 1.0 / (1.0 - step_size * curvature / 4.0) - 1.0


def test_hessian_top_eigenvalue_matches_closed_forms(key):
  # Least squares: the Hessian of L is X'X / n at every point, so the top
  # eigenvalue of nβ L + γ/2 |w - w*|^2 is nβ eig_max(X'X / n) + γ.
  x = np.asarray(jax.random.normal(key, (64, 6)), np.float64)
  x[:, 0] *= 3.0  # a separated top eigenvalue
  loss = lambda w, batch: 0.5 * jnp.mean(jnp.square(batch @ w))
  h = hessian_top_eigenvalue(
    key, loss, jnp.ones(6), jnp.asarray(x, jnp.float32), 50.0, 2.0
  )
  expected = 50.0 * np.linalg.eigvalsh(x.T @ x / 64).max() + 2.0
  np.testing.assert_allclose(h, expected, rtol=1e-3)
  # A quartic with a point-dependent diagonal Hessian a + 3 w^2, two points
  # (batch_ndim=1) and the stiffest coordinate masked out.
  a = jnp.array([1.0, 2.0, 30.0])
  quartic = lambda p, batch: jnp.sum(0.5 * a * p["w"] ** 2 + 0.25 * p["w"] ** 4)
  points = {"w": jnp.array([[0.0, 0.0, 0.0], [2.0, 0.5, 0.0]])}
  mask = {"w": jnp.array([True, True, False])}
  h = hessian_top_eigenvalue(
    key, quartic, points, jnp.zeros((4, 1)), 1.0, 0.0, batch_ndim=1, mask=mask
  )
  np.testing.assert_allclose(h, [2.0, 1.0 + 3 * 4.0], rtol=1e-4)


@pytest.mark.slow
def test_isotropic_quadratic_recovers_finite_temperature(key):
  case = known_cases.isotropic_quadratic(10)
  tolerance = 0.03
  cfg, report = autotune(
    key, case.loss_fn, case.params, case.data, case.cfg, tolerance=tolerance
  )
  curvature = case.cfg.nbeta + case.cfg.localization
  assert report.settled, report.summary()
  assert float(report.h_max) == pytest.approx(curvature, rel=1e-4)
  # The chosen step's exact bias is within the tolerance.
  assert _sgld_bias(cfg.step_size, curvature) <= tolerance
  mean = float(report.result.mean)
  assert abs(mean / case.finite_temp - 1) < 0.05
  # ... and the estimate is the exact expectation at that step, within MCSE.
  exact = case.finite_temp * (1 + _sgld_bias(cfg.step_size, curvature))
  assert abs(mean - exact) < 4 * float(report.final_row.mcse)
  # estimate_llc with the tuned config and the same key is the same estimate.
  res = estimate_llc(
    key, case.loss_fn, case.params, case.data, cfg, progress=False
  )
  np.testing.assert_allclose(res.mean, report.result.mean, rtol=1e-6)
  text = report.summary()
  assert "ladder 1" in text and "reason:" in text and "settled" in text
  # How much γ sets the number: d log(estimate) / d ln γ = -γ / (nβ + γ).
  gamma = case.cfg.localization
  rel_slope = report.result.diagnostics.localization_slope / mean
  assert float(rel_slope) == pytest.approx(-gamma / curvature, rel=0.15)
  assert f"{float(rel_slope):+.1%} ± " in report.reason
  assert "γ sets much" not in report.reason  # -9%: below the 10% flag
  assert report.gradient_evaluations == sum(
    r.gradient_evaluations for r in report.rows
  )


@pytest.mark.slow
def test_reduced_rank_regression_without_a_step_size(key):
  # rrr_5_3_5 at the zero map: lambda = 6.5 (multiplicity 2). Its Hessian
  # vanishes there (the loss is quartic), so the ladder starts at 1/gamma and
  # walks down. 200 of its examples keep the test short: any full-rank input
  # covariance gives the same lambda. A bias tolerance of 25% spares the
  # longest ladder (its chains are twice the previous one's); the estimate
  # still lands within 15% (measured +9.2%; +1.1% at tolerance 15%).
  case = known_cases.make_case("rrr_5_3_5", key)
  cfg = dataclasses.replace(case.cfg, num_chains=4)
  tuned, report = autotune(
    key, case.loss_fn, case.params, case.data[:200], cfg, tolerance=0.25
  )
  assert report.settled, report.summary()
  assert abs(float(report.result.mean) / case.true_llc - 1) < 0.15
  assert tuned.nbeta == case.cfg.nbeta
  assert tuned.localization == case.cfg.localization


@pytest.mark.slow
def test_batch_of_two_points_uses_the_stiffer_one(key):
  # Points differ in a frozen stiffness s (masked): L = s |w|^2 / 2, so point
  # i has curvature k_i = nβ s_i + γ, finite-temperature value (d/2) nβ s_i /
  # k_i, and SGLD's exact expectation at step eps is that times 1 / (1 - eps
  # k_i / 4). One step serves both: the stiffer point decides it.
  d, nbeta, gamma, tolerance = 50, 100.0, 10.0, 0.05
  stiffness = np.array([1.0, 4.0])
  params = {"w": jnp.zeros((2, d)), "s": jnp.asarray(stiffness, jnp.float32)}

  def loss(p, batch):
    return 0.5 * p["s"] * jnp.sum(p["w"] ** 2) + 0.0 * jnp.sum(batch)

  cfg, report = autotune(
    key,
    loss,
    params,
    jnp.zeros((8, 1)),
    _quadratic_cfg(),
    batch_ndim=1,
    mask=lambda path, _: "w" in path,
    tolerance=tolerance,
  )
  curvature = nbeta * stiffness + gamma
  np.testing.assert_allclose(report.h_max, curvature, rtol=1e-4)
  assert report.settled, report.summary()
  assert report.result.mean.shape == (2,)
  bias = np.array([_sgld_bias(cfg.step_size, k) for k in curvature])
  assert bias[1] <= tolerance
  assert bias[0] < bias[1] / 3  # the softer point is nearly unbiased.
  exact = d / 2 * nbeta * stiffness / curvature * (1 + bias)
  mcse = report.final_row.mcse
  assert np.all(np.abs(report.result.mean - exact) < 4 * mcse)


def test_budget_too_small_to_settle_is_flagged(key):
  case = known_cases.isotropic_quadratic(10)
  with pytest.warns(RuntimeWarning, match="did not settle"):
    cfg, report = autotune(
      key, case.loss_fn, case.params, case.data, case.cfg, budget_grads=20_000
    )
  assert not report.settled
  assert "gradients" in report.reason and "NOT SETTLED" in report.summary()
  assert "per unit of ln γ" in report.reason
  assert report.gradient_evaluations <= 20_000
  # The extrapolation to eps -> 0 comes from the two smallest steps run.
  rows = [r for r in report.rows if r.phase == report.rows[-1].phase]
  coarse, fine = (float(r.estimate) for r in rows[-2:])
  assert float(report.extrapolated) == pytest.approx(2 * fine - coarse)


def _bad(**overrides):
  """Arguments of an autotune call, with ``overrides``."""
  base = dict(
    loss_fn=lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch),
    params=jnp.zeros(3),
    data=jnp.zeros((8, 1)),
    cfg=_quadratic_cfg(),
  )
  return {**base, **overrides}


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(cfg=_quadratic_cfg(noise="zeros")), "cfg.noise='zeros'"),
    (dict(cfg=_quadratic_cfg(localization=0.0)), "cfg.localization=0.0"),
    (dict(budget_grads=0), "budget_grads=0"),
    (dict(budget_grads=-5), "budget_grads=-5"),
    (dict(budget_grads=None), "budget_grads=None"),
    (dict(budget_grads=100), "budget_grads=100 is invalid: ladder 1"),
    (dict(tolerance=0.0), "tolerance=0.0"),
    (dict(ladder_size=1), "ladder_size=1"),
    (
      dict(loss_fn=lambda w, batch: jnp.sum(w**2) + jnp.nan),
      "loss at point 0=nan",
    ),
    (
      dict(loss_fn=lambda w, batch: jnp.sum(w**2) + jnp.inf),
      "loss at point 0=inf",
    ),
    (
      dict(loss_fn=lambda w, batch: 0.0 * jnp.sum(w) + jnp.mean(batch)),
      "is constant near w*",
    ),
    (dict(params=10.0 * jnp.ones(3)), "descent along the gradient at point 0="),
  ],
)
def test_bad_input_names_the_value(key, overrides, message):
  args = _bad(**overrides)
  with pytest.raises(ValueError, match=re.escape(message)):
    autotune(
      key,
      args.pop("loss_fn"),
      args.pop("params"),
      args.pop("data"),
      args.pop("cfg"),
      **args,
    )


def test_cfg_must_be_a_config(key):
  with pytest.raises(TypeError, match="cfg="):
    autotune(key, **_bad(cfg={"step_size": 1e-3}))


@pytest.mark.slow
def test_deep_linear_network_within_ten_percent(key):
  # widths (5, 4, 3, 4), rank 1: lambda = 6.5 with multiplicity 1 (Aoyagi).
  # Noiseless labels make w* the minimum of L_n: with label noise the chains
  # also descend from w* towards the least-squares fit, which lowers the
  # estimate by about lambda / ln n. n = 500 keeps the test short (nβ = n /
  # ln n = 80, so burn-in is shorter); measured -7.5% here (-1.2%, -7.8% with
  # keys 1, 2), -1.9% at n = 2000. The case's minibatch is all 500 examples:
  # full batch computes the same gradient (the same table of runs) without
  # drawing a permutation of the data every step, 4x faster.
  widths, rank = (5, 4, 3, 4), 1
  true_llc, multiplicity = theory.deep_linear_llc(widths, rank)
  assert multiplicity == 1
  case = known_cases.deep_linear(key, widths, rank, 500, noise_std=0.0)
  assert case.cfg.batch_size == 500
  sgld = dataclasses.replace(case.cfg, batch_size=None)
  cfg, report = autotune(
    key, case.loss_fn, case.params, case.data, sgld, tolerance=0.15
  )
  assert report.settled, report.summary()
  assert abs(float(report.result.mean) / true_llc - 1) < 0.10


def test_out_path_resumes_an_interrupted_tuning(key, tmp_path, monkeypatch):
  from slt_jax.llc import sweep

  computed = []
  compute = sweep.Sweep._compute

  def counting(self, plan, outputs, parts, progress):
    computed.append(sum(out is None for out in outputs))
    return compute(self, plan, outputs, parts, progress)

  monkeypatch.setattr(sweep.Sweep, "_compute", counting)
  loss = lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)
  args = (key, loss, jnp.zeros(20), jnp.zeros((8, 1)), _quadratic_cfg())
  options = dict(tolerance=0.3, min_ess=1000.0, out_path=str(tmp_path))
  tune = lambda: autotune(*args, **options)  # a ladder, then two extensions
  cfg, report = tune()
  assert report.settled
  # Chosen or not, the ladder's two smallest steps extrapolate to eps -> 0.
  coarse, fine = (r.estimate for r in report.rows[1:3])
  assert report.rows[2].phase == "ladder 1"
  assert float(report.extrapolated) == pytest.approx(2 * fine - coarse)
  assert all(np.isnan(r.step_scale).all() for r in report.rows)  # no G.
  runs = {p.name for p in tmp_path.iterdir()}
  assert runs == {f"run_{i}" for i in range(1, len(computed) + 1)}
  assert len(runs) >= 2
  assert all(n > 0 for n in computed)
  # Interrupted before its last run: the others load, the last reruns.
  last = tmp_path / f"run_{len(runs)}"
  for part in last.iterdir():
    part.unlink()
  last.rmdir()
  computed.clear()
  cfg_again, report_again = tune()
  assert computed[:-1] == [0] * (len(runs) - 1) and computed[-1] > 0
  assert cfg_again == cfg
  assert [r.estimate for r in report_again.rows] == [
    r.estimate for r in report.rows
  ]
  np.testing.assert_array_equal(report_again.result.mean, report.result.mean)
  # Another computation's folder is refused, not overwritten.
  with pytest.raises(ValueError, match="run_1"):
    autotune(jax.random.key(1), *args[1:], **options)


@pytest.mark.parametrize(
  "slope, se, flagged",
  [(-30.0, 5.0, True), (-30.0, 12.0, False), (-8.0, 0.1, False)],
)
def test_reason_says_when_gamma_sets_the_number(slope, se, flagged):
  # Estimate 100: flagged when |slope| / 100 exceeds 10% by two s.e.
  diagnostics = SimpleNamespace(
    localization_slope=np.array(slope), localization_slope_se=np.array(se)
  )
  note = _gamma_note(
    SimpleNamespace(mean=np.array(100.0), diagnostics=diagnostics)
  )
  assert note.startswith(f"γ moves the estimate by {slope / 100:+.1%} ± ")
  assert ("γ sets much of this number" in note) == flagged


@pytest.mark.parametrize(
  "gaps, margins, k, expected",
  [
    # rho = 0.025 / 0.04: top rung's bound 4.5% becomes 4.5% * 0.5 / 0.375.
    ([0.04, 0.025], [0.005, 0.005], 0, "bias bound is 6.0%, above"),
    # The same ladder, rung 1 chosen: 3.0% * 0.5 / 0.375 = 4.0% passes.
    ([0.04, 0.025], [0.005, 0.005], 1, "shrinks to 0.62"),
    ([0.04, 0.018], [0.005, 0.005], 0, "shrinks to 0.45"),  # faster.
    ([0.03, 0.036], [0.005, 0.005], 0, "bias bound is unbounded"),
    ([0.004, 0.003], [0.005, 0.005], 0, ""),  # gap within its margin.
    ([0.04], [0.005], 0, ""),  # one pair: no shrink to read.
  ],
)
def test_reason_says_when_the_bias_falls_slower_than_linear(
  gaps, margins, k, expected
):
  biases = [Bias(np.array([g]), np.array([m])) for g, m in zip(gaps, margins)]
  note = decay_note(biases, k, 0.05, 2.0)
  assert expected in note if expected else note == ""
  assert ("may exceed the tolerance" in note) == ("bias bound is" in expected)


def test_decay_note_reads_the_slowest_point():
  # Two points: the second shrinks by 0.8, and its bound decides.
  biases = [
    Bias(np.array([0.04, 0.02]), np.array([0.002, 0.002])),
    Bias(np.array([0.01, 0.016]), np.array([0.002, 0.002])),
  ]
  note = decay_note(biases, 0, 0.05, 2.0)
  assert "shrinks to 0.80" in note
  assert "bias bound is 10.5%" in note  # 0.042 * 0.5 / 0.2


def test_rmsprop_ladders_are_sized_by_the_measured_preconditioner(key):
  # Isotropic quadratic, loss curvature 1: at stationarity E[w_i^2] = 1 /
  # (nβ + γ), so RMSprop's second moment V_i ~ 1/110 and G_i = 1 / (delta +
  # sqrt(V_i)) ~ 5.1 (delta = 0.1); the smallest over 10 coordinates and
  # the chains lies below that, and far above 1.
  case = known_cases.isotropic_quadratic(10)
  cfg = dataclasses.replace(case.cfg, sampler="rmsprop_sgld")
  _, report = autotune(
    key, case.loss_fn, case.params, case.data, cfg, tolerance=0.05
  )
  typical = 1 / (cfg.rmsprop_eps + (cfg.nbeta + cfg.localization) ** -0.5)
  scales = np.array([float(r.step_scale) for r in report.rows])
  assert np.all((3.0 < scales) & (scales < typical)), report.summary()
  # The pilot runs two relaxation times at the largest G = 1 / delta, at
  # ladder 1's smallest step; ladder i's burn-in is a whole multiple of two
  # relaxation times 2 / (eps_min G γ), G the smallest of the run before
  # (ladder 0: the pilot).
  pilot = report.rows[0]
  assert pilot.phase == "pilot", report.summary()
  fastest = relaxation_steps(pilot.step_size, cfg, 1 / cfg.rmsprop_eps)
  assert pilot.num_burnin == math.ceil(BURNIN_RELAXATIONS * fastest)
  ladders = {0: [pilot]}
  for r in report.rows:
    if r.phase.startswith("ladder"):
      ladders.setdefault(int(r.phase.split()[1]), []).append(r)
  assert len(ladders) >= 3, report.summary()
  assert ladders[1][-1].step_size == pilot.step_size
  for i in range(1, len(ladders)):
    scale = min(float(r.step_scale) for r in ladders[i - 1])
    eps_min = ladders[i][-1].step_size
    unit = math.ceil(BURNIN_RELAXATIONS * relaxation_steps(eps_min, cfg, scale))
    assert ladders[i][-1].num_burnin % unit == 0, (i, unit)
  assert "of 2 / (eps G γ) with G = " in report.reason
