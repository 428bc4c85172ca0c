"""What separates the paper's LLC (~4,400) from the generic r/2.

On the Fig. 3 grokking run (``experiments.fig3.run`` of the quick
config: p=53, K=1024, the reproduction recipe, one seed, 8000 steps; loaded from
the run store, so after ``llc_over_training --quick`` nothing is trained)
this measures at a few checkpoints:

* ``paper``: SGLD at the paper's settings (``PAPER_SGLD``: eps 5e-4, gamma 5,
  nbeta = 128 / ln 128 = 26.4, B 128, 3 chains x (100 + 500) steps);
* ``settled``: the same sampler run to stationarity (``SETTLED_SGLD``,
  2000 + 1000 steps) with the stationarity check;
* ``laplace_paper``: the finite-temperature (Laplace) prediction at the
  paper's nbeta, gamma, matrix-free (``theory.predict_llc_hat_slq``, error bar
  over probes), and from one SLQ spectrum (``theory.hessian_spectrum_slq``)
  the soft rank ``1/2 tr(nbeta H (nbeta H + gamma)^-1)`` at every (nbeta,
  gamma) used here and counts of Hessian eigenvalues above thresholds;
* ``local``: full-batch SGLD with gamma 1e3, nbeta 1e5, which keeps the chains
  inside the basin (|w - w*|^2 < |w*|^2), against its Laplace prediction;
* ``grid``: settled SGLD over nbeta x gamma (eps 5e-4 throughout: nbeta h_max
  eps <= 0.01 at w*, so the paper's step stays stable; halving it at the
  largest nbeta / smallest gamma is reported as ``step_check``), at the grid
  checkpoints and at ``w = 0`` (an untrained network with zero outputs), the
  control for whether the estimate is local to w*; ``scaling_check`` doubles
  gamma at the paper's nbeta / gamma^3 and at its nbeta / gamma^2 (the network
  is cubic in its weights, so far from w* only nbeta / gamma^3 matters).

The generic rank is ``theory.modular_rank(p, K, train_pairs,
"centered_mse")``; the dense Jacobian (n p x P = 59,519 x 162,816 in float64,
77 GB) does not fit in memory, so it is not checked numerically at this size.
``results.json`` holds every number plus ``findings``: plain sentences that
quote them. ``llc_gap.png``: estimates over training, the grid, and the
Hessian spectrum (``--replot`` redraws it from ``results.json``).

    python -m experiments.llc_gap [--quick] [--out DIR] [--runs DIR]

``--quick``: checkpoints 1000, 4000, 8000, the grid at 8000 only; it took
5.3 min on 2 idle CPU cores (figures/README.md, 2026-11-29). Default: 8
checkpoints, the grid at 1000 and 8000, more probes (about twice the SGLD
work). There is no ``--paper`` mode: the default is paper-sized. Every SGLD
sweep resumes from ``DIR/chains/``.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli, fig3, store, sweeps
from slt_jax import theory
from slt_jax.grokking import plotting
from slt_jax.llc.config import PAPER_SGLD, SGLDConfig

NAME = "llc_gap"

LOCAL = (1e5, 1e3)  # (nbeta, gamma) that keeps the chains inside the basin.
THRESHOLDS = (1e-5, 1e-4, 1e-3, 1e-2)  # Hessian eigenvalue counts above these.
RESOLVED = (1e4, 1.0)  # (nbeta, gamma) whose soft rank counts h >~ 1e-4.
COUNT_GRID = np.logspace(-6, -1, 21)  # thresholds of the plotted counts.
SLOPE_STEP = 0.2  # ln γ half-step of the slope check's finite difference.
SLOPE_CHAINS = 4  # chains of the slope check (its own program).
GRID_SGLD = dataclasses.replace(
  PAPER_SGLD, num_chains=2, num_burnin=3000, num_draws=1000
)
LOCAL_SGLD = dataclasses.replace(
  PAPER_SGLD,
  nbeta=LOCAL[0],
  localization=LOCAL[1],
  num_chains=2,
  num_burnin=300,
  num_draws=700,
  batch_size=None,
)


@dataclasses.dataclass(frozen=True)
class GapConfig:
  """The run studied, its checkpoints and the budgets of each measurement.

  Attributes:
    fig3: the Fig. 3 run (``recipe`` protocol) and its paper and settled
      SGLD settings (``fig3.CONFIGS``).
    ckpt_steps: checkpoint steps measured.
    grid_steps: checkpoint steps of the nbeta x gamma grid (among
      ``ckpt_steps``); the grid also runs at w = 0.
    grid: settled SGLD of the grid (nbeta and gamma are set per point).
    local: full-batch SGLD at ``LOCAL`` (its step size is set from h_max).
    nbetas, gammas: the grid's axes.
    slq_matvecs, slq_probes: budget of ``theory.predict_llc_hat_slq``.
    spectrum_matvecs, spectrum_probes: budget of
      ``theory.hessian_spectrum_slq``.
  """

  fig3: fig3.Fig3Config
  ckpt_steps: tuple[int, ...]
  grid_steps: tuple[int, ...]
  grid: SGLDConfig = GRID_SGLD
  local: SGLDConfig = LOCAL_SGLD
  nbetas: tuple[float, ...] = (26.4, 100.0, 400.0)
  gammas: tuple[float, ...] = (5.0, 1.0)
  slq_matvecs: int = 20
  slq_probes: int = 8
  spectrum_matvecs: int = 30
  spectrum_probes: int = 8


_tiny = lambda c: dataclasses.replace(
  c, num_burnin=10, num_draws=20, batch_size=c.batch_size and 16
)
CONFIGS = {
  "smoke": GapConfig(
    fig3.CONFIGS["smoke"],
    ckpt_steps=(100, 200),
    grid_steps=(200,),
    grid=_tiny(GRID_SGLD),
    local=_tiny(LOCAL_SGLD),
    nbetas=(26.4, 100.0),
    gammas=(5.0,),
    slq_matvecs=4,
    slq_probes=2,
    spectrum_matvecs=4,
    spectrum_probes=2,
  ),
  "quick": GapConfig(
    fig3.CONFIGS["quick"],
    ckpt_steps=(1000, 4000, 8000),
    grid_steps=(8000,),
  ),
  "default": GapConfig(
    fig3.CONFIGS["quick"],
    ckpt_steps=(500, 1000, 2000, 3000, 4000, 5000, 6000, 8000),
    grid_steps=(1000, 8000),
    slq_matvecs=30,
    slq_probes=16,
    spectrum_matvecs=40,
    spectrum_probes=16,
  ),
}


def spectrum_summary(key, loss_fn, params, batch, cfg: GapConfig) -> dict:
  """Laplace predictions and eigenvalue counts at one point (float64, SLQ)."""
  key_slq, key_spec = jax.random.split(key)
  paper = cfg.fig3.sgld
  slq = theory.predict_llc_hat_slq(
    key_slq,
    loss_fn,
    params,
    batch,
    paper.resolve_nbeta(batch.labels.shape[0]),
    paper.localization,
    num_matvecs=cfg.slq_matvecs,
    num_probes=cfg.slq_probes,
  )
  spectrum = theory.hessian_spectrum_slq(
    key_spec,
    loss_fn,
    params,
    batch,
    num_matvecs=cfg.spectrum_matvecs,
    num_probes=cfg.spectrum_probes,
  )

  h_min = float(spectrum.nodes.min())

  def soft_rank(nbeta, gamma):
    # nan where nbeta H + gamma I is not safely positive definite (smallest
    # Ritz value below gamma / 2): there the Laplace target does not exist.
    if nbeta * h_min + gamma <= 0.5 * gamma:
      return float("nan")
    return 0.5 * spectrum.trace(lambda h: nbeta * h / (nbeta * h + gamma))[0]

  settings = [(nb, g) for nb in cfg.nbetas for g in cfg.gammas]
  grad_sq = float(
    sum(
      jnp.sum(jnp.square(g))
      for g in jax.tree.leaves(jax.grad(loss_fn)(params, batch))
    )
  )
  return {
    "laplace_paper": slq.llc_hat,
    "laplace_paper_sem": slq.curvature_sem,
    "laplace_paper_gradient_term": slq.gradient_term,
    "h_max": float(spectrum.nodes.max()),
    "h_min": h_min,
    "counts": {
      f"{t:g}": spectrum.trace(lambda h: h > t)[0] for t in THRESHOLDS
    },
    "count_curve": [spectrum.trace(lambda h: h > t)[0] for t in COUNT_GRID],
    "soft_rank_grid": [soft_rank(*s) for s in settings],
    "soft_rank_local": soft_rank(*LOCAL),
    "soft_rank_resolved": soft_rank(*RESOLVED),
    "grad_norm_sq": grad_sq,
    "local_gradient_term_bound": LOCAL[0] ** 2 * grad_sq / LOCAL[1],
    "param_norm_sq": float(
      sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(params))
    ),
  }


def sweep(key, loss_fn, points, batch, sgld, path: str) -> dict:
  """``sweeps.llc_sweep`` over points stacked along one leading axis."""
  return sweeps.llc_sweep(key, loss_fn, points, batch, sgld, path, batch_ndim=1)


def run_grid(key, loss_fn, points, batch, cfg: GapConfig, path: str) -> dict:
  """Settled SGLD over nbeta x gamma at ``points`` (checkpoints, then w = 0),
  a half-step check and the scaling check: one ``sweeps.llc_grid`` call (one
  compiled program per chain length, common random numbers)."""
  settings = [(nbeta, gamma) for nbeta in cfg.nbetas for gamma in cfg.gammas]
  cfgs = [
    dataclasses.replace(cfg.grid, nbeta=nbeta, localization=gamma)
    for nbeta, gamma in settings
  ]
  nbeta, gamma = max(cfg.nbetas), min(cfg.gammas)
  half = dataclasses.replace(
    cfg.grid,
    nbeta=nbeta,
    localization=gamma,
    step_size=cfg.grid.step_size / 2,
    num_burnin=2 * cfg.grid.num_burnin,
  )
  # f(c w) = c^3 f(w): far from w* the tempered loss depends on nbeta /
  # gamma^3 only. Double gamma keeping nbeta / gamma^3, or nbeta / gamma^2.
  nbeta0, gamma0 = cfg.nbetas[0], cfg.gammas[0]
  powers = (3, 2)
  scaled = [
    dataclasses.replace(
      cfg.grid, nbeta=nbeta0 * 2**power, localization=2 * gamma0
    )
    for power in powers
  ]
  # The slope in ln γ at the paper's setting: read from the draws at γ0 and
  # by a central difference over γ0 e^{±SLOPE_STEP} (one program, common
  # random numbers).
  sloped = [
    dataclasses.replace(
      cfg.grid,
      num_chains=SLOPE_CHAINS,
      nbeta=nbeta0,
      localization=gamma0 * math.exp(sign * SLOPE_STEP),
    )
    for sign in (-1, 0, 1)
  ]
  results = sweeps.llc_grid(
    key,
    loss_fn,
    points,
    batch,
    cfgs + [half] + scaled + sloped,
    path,
    batch_ndim=1,
  )
  rows = [
    {"nbeta": nb, "gamma": g, **_point_stats(res)}
    for (nb, g), res in zip(settings, results)
  ]
  # The scaling check leaves out the last point (w = 0).
  without_last = lambda res: {
    k: (v[:-1] if np.ndim(v) else v) for k, v in _point_stats(res).items()
  }
  scaling = [
    {
      "power": power,
      "nbeta": sgld.nbeta,
      "gamma": 2 * gamma0,
      **without_last(res),
    }
    for power, sgld, res in zip(powers, scaled, results[len(cfgs) + 1 : -3])
  ]
  return {
    "rows": rows,
    "step_check": {
      "nbeta": nbeta,
      "gamma": gamma,
      "step_size": half.step_size,
      **_point_stats(results[len(cfgs)]),
    },
    "scaling_check": scaling,
    "slope_check": {
      "nbeta": nbeta0,
      **slope_check(*results[-3:], gamma0, SLOPE_STEP),
    },
  }


def slope_check(low: dict, mid: dict, high: dict, gamma: float, step: float):
  """The estimate's slope in ln γ at each point, two ways: read from the
  draws at γ (``localization_slope``) and as the central difference of the
  sweeps at γ e^{∓step} (``sweeps.chain_slope``), ± its standard error
  over chains.

  >>> low = {"per_chain": np.array([[12.0, 14.0]])}
  >>> high = {"per_chain": np.array([[8.0, 8.0]])}
  >>> mid = {"mean": np.array([10.0]), "localization_slope": np.array([-11.0]),
  ...        "localization_slope_se": np.array([2.0])}
  >>> check = slope_check(low, mid, high, 5.0, 0.2)
  >>> check["finite_difference"], check["finite_difference_se"]
  ([-12.5], [2.5])
  """
  slope, slope_se = sweeps.chain_slope(
    low["per_chain"], high["per_chain"], 2 * step
  )
  return {
    "gamma": gamma,
    "log_step": step,
    "estimate": np.asarray(mid["mean"]).tolist(),
    "draws": np.asarray(mid["localization_slope"]).tolist(),
    "draws_se": np.asarray(mid["localization_slope_se"]).tolist(),
    "finite_difference": slope.tolist(),
    "finite_difference_se": slope_se.tolist(),
  }


def _point_stats(res: dict) -> dict:
  return {
    k: np.asarray(res[k])
    for k in (
      "mean",
      "std",
      "stationary",
      "distance_sq",
      "diverged_chains",
      "first_half_llc",
      "second_half_llc",
    )
  }


def _drop_config(res: dict) -> dict:
  return {k: v for k, v in res.items() if k != "config"}


def _pct(a, b) -> float:
  return 100.0 * (a - b) / b


def findings(res: dict) -> list[str]:
  """Plain sentences quoting the measured numbers (wording follows them)."""
  steps, r = res["ckpt_steps"], res["generic_rank"]
  naive = res["naive_rank_half"]
  r_half, last, first = r / 2, len(steps) - 1, 0
  paper, settled = res["paper"]["mean"], res["settled"]["mean"]
  spec, local, grid = res["spectra"], res["local"], res["grid"]
  g = len(res["grid_steps"]) - 1  # last grid checkpoint; w = 0 is index -1
  rows, nbeta, gamma = grid["rows"], res["nbeta_paper"], res["gamma_paper"]
  at_w = [row["mean"][g] for row in rows]
  at_0 = [row["mean"][-1] for row in rows]
  origin_dev = max(abs(_pct(a, b)) for a, b in zip(at_0, at_w))
  local_dev = [
    _pct(m, q["soft_rank_local"]) for m, q in zip(local["mean"], spec)
  ]
  resolved = [q["soft_rank_resolved"] for q in spec]
  fmt = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)
  step_list = ", ".join(str(s) for s in steps)
  nonlocal_ = origin_dev < 10
  far = min(row["distance_sq"][g] for row in rows) > spec[last]["param_norm_sq"]
  out = [
    f"Rank: theory.modular_rank(p, K, n = {res['num_train']} training pairs,"
    f" centred MSE) = {r:,}, so r/2 = {r_half:,.0f}. The generic K(3p-2)/2 = "
    f"{naive:,.0f} ignores that n pairs give only (n-1)p = "
    f"{res['centred_outputs']:,} centred output values, which cap the rank:"
    f" a factor {naive / r_half:.2f} of the gap. The dense Jacobian "
    f"({res['num_train'] * res['config']['fig3']['data']['p']:,} x "
    f"{res['num_params']:,} in float64, {res['dense_jacobian_gb']:.0f} GB) "
    "does not fit in memory, so r is the closed form, not a numerical rank.",
    f"Non-stationarity: the paper's 600-step window vs chains run to "
    f"stationarity (steps {step_list}): {fmt(paper)} vs {fmt(settled)} "
    f"(x{settled[last] / paper[last]:.2f} at step {steps[last]}; settled "
    f"chains stationary: {[bool(x) for x in res['settled']['stationary']]}).",
    f"Finite temperature at w*: the largest Hessian eigenvalue (SLQ) is "
    f"{max(q['h_max'] for q in spec):.3g}, so nbeta h_max = "
    f"{nbeta * max(q['h_max'] for q in spec):.2f} "
    + (
      "< gamma = 5: the paper's temperature resolves no Hessian direction."
      if nbeta * max(q["h_max"] for q in spec) < gamma
      else f">= gamma = {gamma:g}."
    )
    + " The Laplace prediction (predict_llc_hat_slq, ± s.e. over probes) is "
    + ", ".join(
      f"{q['laplace_paper']:,.0f} ± {q['laplace_paper_sem']:.0f}" for q in spec
    )
    + f", {settled[last] / spec[last]['laplace_paper']:.0f}x below the "
    f"settled SGLD at step {steps[last]}. The chains leave the basin: "
    f"|w - w*|^2 = {res['settled']['distance_sq'][last]:,.0f} vs |w*|^2 = "
    f"{spec[last]['param_norm_sq']:,.0f}.",
    f"{'Non-locality' if nonlocal_ else 'Locality'}: at w = 0 (zero "
    f"outputs) settled SGLD gives {fmt(at_0)} over the grid vs {fmt(at_w)}"
    f" at step {res['grid_steps'][g]} (at most {origin_dev:.1f}% apart)"
    + (
      ": at these settings the estimate is a property of the landscape on "
      "the scale 1/sqrt(gamma), not of the trained point."
      if nonlocal_
      else "."
    ),
    f"Inside the basin the Laplace prediction "
    f"{'holds' if max(map(abs, local_dev)) < 10 else 'fails'}: with nbeta "
    f"= {LOCAL[0]:g}, gamma = {LOCAL[1]:g} (full batch; |w - w*|^2 = "
    f"{fmt(local['distance_sq'])}) SGLD gives {fmt(local['mean'])} vs "
    f"Laplace {fmt(q['soft_rank_local'] for q in spec)} "
    f"({', '.join(f'{d:+.1f}%' for d in local_dev)}; gradient term at most "
    f"{max(q['local_gradient_term_bound'] for q in spec):.2g}).",
    f"Local LLC of w*: SLQ counts {fmt(q['counts']['0.0001'] for q in spec)}"
    f" Hessian eigenvalues above 1e-4 (r = {r:,}); the resolved Laplace value"
    f" (nbeta = {RESOLVED[0]:g}, gamma = {RESOLVED[1]:g}) is "
    + ", ".join(
      f"undefined (saddle: smallest Ritz value {q['h_min']:.2g})"
      if not np.isfinite(x)
      else f"{x:,.0f}"
      for x, q in zip(resolved, spec)
    )
    + f" = {resolved[first] / r_half:.0%} of r/2 at step {steps[first]} and "
    f"{resolved[last] / r_half:.0%} at step {steps[last]}: the local "
    f"complexity falls x{resolved[first] / resolved[last]:.1f} through "
    f"grokking, the paper-window estimate x{paper[first] / paper[last]:.2f}."
    f" Being local (|w - w*|^2 < |w*|^2) needs gamma >~ P/|w*|^2 = "
    f"{res['num_params'] / spec[last]['param_norm_sq']:.0f}, and resolving "
    f"h ~ 1e-4 then needs nbeta >~ "
    f"{res['num_params'] / spec[last]['param_norm_sq'] / 1e-4:.1g}.",
    f"Grid (settled SGLD at step {res['grid_steps'][g]}, nbeta x gamma = "
    + ", ".join(f"{row['nbeta']:g} x {row['gamma']:g}" for row in rows)
    + f"): {fmt(at_w)}; Laplace {fmt(spec[last]['soft_rank_grid'])}. The "
    f"chains range {'far from' if far else 'near'} w* (|w - w*|^2 "
    f"{fmt(row['distance_sq'][g] for row in rows)} vs |w*|^2 "
    f"{spec[last]['param_norm_sq']:,.0f}) over networks with loss "
    f"(E[L] - L(w*) = estimate / nbeta = "
    f"{fmt(m / row['nbeta'] for m, row in zip(at_w, rows))}), where the "
    f"loss sees the weights only through the r centred outputs. Raising "
    f"nbeta and lowering gamma moves the estimate x{at_w[-1] / at_w[0]:.2f} "
    + (
      "toward"
      if abs(at_w[-1] - r_half) < abs(at_w[0] - r_half)
      else "away from"
    )
    + f" r/2 ({at_w[-1] / r_half:.0%} of it at the last setting)"
    + (
      ", alike at w = 0: it approaches the output-space dimension, not "
      f"w*'s local value ({resolved[last]:,.0f})."
      if nonlocal_
      else "."
    ),
    "Scaling: f is cubic in the weights (f(cw) = c^3 f(w)), so far from w* "
    "the tempered loss depends on (nbeta, gamma) through nbeta/gamma^3. "
    "Doubling gamma at the paper's nbeta/gamma^3 ("
    + " and at its nbeta/gamma^2 (".join(
      f"nbeta {c['nbeta']:g}, gamma {c['gamma']:g}) gives "
      f"{c['mean'][g]:,.0f} ({_pct(c['mean'][g], at_w[0]):+.1f}%)"
      for c in grid["scaling_check"]
    )
    + f" vs {at_w[0]:,.0f} at nbeta {rows[0]['nbeta']:g}, gamma "
    f"{rows[0]['gamma']:g}.",
    slope_sentence(grid, g),
    f"Step size: eps 5e-4 throughout the grid (nbeta h_max eps <= "
    f"{max(res['nbetas']) * max(q['h_max'] for q in spec) * 5e-4:.3f} at w*);"
    f" halving it at nbeta {grid['step_check']['nbeta']:g}, gamma "
    f"{grid['step_check']['gamma']:g} gives "
    f"{grid['step_check']['mean'][g]:,.0f} vs {at_w[-1]:,.0f} "
    f"({_pct(grid['step_check']['mean'][g], at_w[-1]):+.1f}%); diverged "
    f"chains: {sum(int(np.sum(row['diverged_chains'])) for row in rows)}.",
    f"Summary at step {steps[last]}: {naive:,.0f} -> {r_half:,.0f} "
    f"(x{naive / r_half:.2f}, rank cap (n-1)p) -> {settled[last]:,.0f} "
    f"(x{r_half / settled[last]:.2f}, finite temperature and a localization "
    f"wider than the basin: settled SGLD at nbeta {nbeta:.1f}, gamma "
    f"{gamma:g}) -> {paper[last]:,.0f} (x{settled[last] / paper[last]:.2f}, "
    f"non-stationary window); product x{naive / paper[last]:.1f}.",
  ]
  return out


def slope_sentence(grid: dict, g: int) -> str:
  """The slope check at grid checkpoint ``g`` and at w = 0, beside what the
  cubic scaling predicts: if the estimate is a function of nβ/γ³ alone, its
  slope in ln γ is -3 times its slope in ln nβ (the grid's secant at γ0)."""
  check = grid["slope_check"]
  gamma0 = check["gamma"]
  at = {r["nbeta"]: r["mean"] for r in grid["rows"] if r["gamma"] == gamma0}
  (nb0, est0), (nb1, est1) = sorted(at.items())[:2]

  def pair(i: int) -> str:
    est, d, d_se = (check[k][i] for k in ("estimate", "draws", "draws_se"))
    fd, fd_se = check["finite_difference"][i], check["finite_difference_se"][i]
    predicted = -3 * est * math.log(est1[i] / est0[i]) / math.log(nb1 / nb0)
    return (
      f"draws {d:+,.0f} ± {d_se:,.0f} ({d / est:+.0%} of {est:,.0f}), finite"
      f" difference {fd:+,.0f} ± {fd_se:,.0f} "
      f"({abs(d - fd) / math.hypot(d_se, fd_se):.1f} s.e. apart), cubic "
      f"scaling {predicted:+,.0f}"
    )

  return (
    f"Slope in ln gamma (nbeta {check['nbeta']:g}, gamma {gamma0:g}; finite "
    f"difference over gamma e^(±{check['log_step']:g}), {SLOPE_CHAINS} "
    f"chains, common random numbers): at the checkpoint {pair(g)}; at w = 0 "
    f"{pair(-1)}."
  )


def plot(res: dict, out_dir: str) -> None:
  """``llc_gap.png`` from ``res``: estimates over training, the grid, and the
  Hessian spectrum."""
  steps, spec = res["ckpt_steps"], res["spectra"]
  r_half = res["generic_rank"] / 2
  col = lambda key: [s[key] for s in spec]
  g_last = len(res["grid_steps"]) - 1
  lines = {"r/2": r_half, "K(3p-2)/2": res["naive_rank_half"]}
  over_training = {
    "curves": {
      "SGLD, paper window": (steps, res["paper"]["mean"], res["paper"]["std"]),
      "SGLD, settled": (steps, res["settled"]["mean"], res["settled"]["std"]),
      "Laplace, paper settings": (
        steps,
        col("laplace_paper"),
        col("laplace_paper_sem"),
      ),
      f"SGLD, local (nbeta {LOCAL[0]:g}, gamma {LOCAL[1]:g})": (
        steps,
        res["local"]["mean"],
        res["local"]["std"],
      ),
      "Laplace, local": (steps, col("soft_rank_local"), None),
      f"Laplace, resolved (nbeta/gamma {RESOLVED[0] / RESOLVED[1]:g})": (
        steps,
        col("soft_rank_resolved"),
        None,
      ),
    },
    "hlines": lines,
    "xlabel": "training step",
    "ylabel": "LLC",
    "yscale": "log",
  }
  grid = {
    "curves": {},
    "hlines": lines,
    "xlabel": "nbeta",
    "ylabel": "LLC",
    "xscale": "log",
    "yscale": "log",
  }
  rows = res["grid"]["rows"]
  for gamma in sorted({r["gamma"] for r in rows}):
    sel = [(i, r) for i, r in enumerate(rows) if r["gamma"] == gamma]
    nb = [r["nbeta"] for _, r in sel]
    grid["curves"][f"SGLD at w*, gamma {gamma:g}"] = (
      nb,
      [r["mean"][g_last] for _, r in sel],
      [r["std"][g_last] for _, r in sel],
    )
    grid["curves"][f"SGLD at w = 0, gamma {gamma:g}"] = (
      nb,
      [r["mean"][-1] for _, r in sel],
      [r["std"][-1] for _, r in sel],
    )
    grid["curves"][f"Laplace, gamma {gamma:g}"] = (
      nb,
      [spec[-1]["soft_rank_grid"][i] for i, _ in sel],
      None,
    )
  counts = {
    "curves": {
      f"step {s}": (COUNT_GRID, q["count_curve"], None)
      for s, q in zip(steps, spec)
    },
    "hlines": {"r": res["generic_rank"]},
    "vlines": {
      "gamma/nbeta, paper": res["gamma_paper"] / res["nbeta_paper"],
      "gamma/nbeta, local": LOCAL[1] / LOCAL[0],
    },
    "xlabel": "eigenvalue threshold t",
    "ylabel": "#{h > t} (SLQ)",
    "xscale": "log",
    "yscale": "log",
  }
  fig = plotting.plot_xy_panels(
    {
      "LLC over training": over_training,
      f"settled SGLD vs nbeta, step {res['grid_steps'][-1]}": grid,
      "Hessian eigenvalue counts": counts,
    }
  )
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def compute(cfg: GapConfig, seed: int, out_dir: str, runs_dir) -> dict:
  """Every measurement and the findings (see the module docstring)."""
  run, data = fig3.run(cfg.fig3, "recipe", seed, runs_dir)
  key_llc, key_rest = fig3.keys(seed)[2:]
  idx = [int(np.flatnonzero(run.ckpt_steps == s)[0]) for s in cfg.ckpt_steps]
  points = jax.tree.map(lambda x: x[0, idx], run.checkpoints)
  loss_fn = store.loss_fn(cfg.fig3.recipe.loss)
  batch = data.train
  chains = os.path.join(out_dir, "chains")
  key_settled, key_local, key_grid, key_spec = jax.random.split(key_rest, 4)
  paper = sweep(
    key_llc,
    loss_fn,
    points,
    batch,
    cfg.fig3.sgld,
    os.path.join(chains, "paper"),
  )
  settled = sweep(
    key_settled,
    loss_fn,
    points,
    batch,
    cfg.fig3.settled,
    os.path.join(chains, "settled"),
  )
  spectra = []
  for i, key in enumerate(jax.random.split(key_spec, len(idx))):
    point = jax.tree.map(lambda x: x[i], points)
    spectra.append(spectrum_summary(key, loss_fn, point, batch, cfg))
    print(
      f"step {cfg.ckpt_steps[i]}: paper {paper['mean'][i]:.0f}, "
      f"settled {settled['mean'][i]:.0f}, Laplace "
      f"{spectra[-1]['laplace_paper']:.0f}, h_max "
      f"{spectra[-1]['h_max']:.3g}",
      flush=True,
    )
  h_max = max(s["h_max"] for s in spectra)
  local_cfg = dataclasses.replace(
    cfg.local, step_size=0.1 / (LOCAL[0] * h_max + LOCAL[1])
  )
  local = sweep(
    key_local, loss_fn, points, batch, local_cfg, os.path.join(chains, "local")
  )
  grid_idx = [cfg.ckpt_steps.index(s) for s in cfg.grid_steps]
  grid_points = jax.tree.map(
    lambda x: jnp.concatenate([x[np.array(grid_idx)], jnp.zeros_like(x[:1])]),
    points,
  )
  grid = run_grid(
    key_grid, loss_fn, grid_points, batch, cfg, os.path.join(chains, "grid")
  )
  p, width, n = cfg.fig3.data.p, cfg.fig3.model.width, data.num_train
  res = {
    "config": dataclasses.asdict(cfg),
    "sgld_configs": {
      k: dataclasses.asdict(v)
      for k, v in (
        ("paper", cfg.fig3.sgld),
        ("settled", cfg.fig3.settled),
        ("grid", cfg.grid),
        ("local", local_cfg),
      )
    },
    "ckpt_steps": list(cfg.ckpt_steps),
    "grid_steps": list(cfg.grid_steps),
    "grid_origin_index": -1,
    "num_train": n,
    "num_params": p * width * 3,
    "generic_rank": theory.modular_rank(
      p, width, np.asarray(batch.pairs), "centered_mse"
    ),
    "naive_rank_half": width * (3 * p - 2) / 2,
    "centred_outputs": (n - 1) * p,
    "nbeta_paper": cfg.fig3.sgld.resolve_nbeta(n),
    "nbetas": cfg.nbetas,
    "gamma_paper": cfg.fig3.sgld.localization,
    "dense_jacobian_gb": n * p * p * width * 3 * 8 / 1e9,
    "paper": _drop_config(paper),
    "settled": _drop_config(settled),
    "local": _drop_config(local),
    "spectra": spectra,
    "grid": grid,
    "metrics": {k: v[0] for k, v in run.metrics.items()},
    "log_steps": run.log_steps,
  }
  return {**res, "findings": findings(res)}


def main(argv=None) -> dict:
  results = cli.run_stored_experiment(
    NAME, __doc__, CONFIGS, compute, plot, argv
  )
  print("\n".join(results["findings"]))
  return results


if __name__ == "__main__":
  main()
