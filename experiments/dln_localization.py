"""How the localization strength γ sets the LLC estimate of a deep network.

On deep linear networks with the exact λ (``slt_jax.known_cases.deep_linear``,
noiseless labels, n = 10⁴, nβ = n / ln n, minibatch 500), SGLD and SGHMC at
fixed small steps for every γ of ``GAMMAS``, all γ of one sampler in one
compiled settings grid with common random numbers, 4 chains of 20,000
burn-in steps and 10,000 draws. The steps (``STEPS``) are those
``autotune`` chose for the 7-layer network at γ = 2, used on both
networks. Each row records the estimate, its relative error to λ, the
chains that diverged, split R-hat, and the estimate's slope in ln γ read
from the same draws (``ChainDiagnostics.localization_slope``). The slopes
are checked against the finite differences of the estimates between
neighbouring γ (``slope_checks``: the mean of the two draw-read slopes
against the difference quotient). Then ``autotune`` (SGHMC, tolerance 5%)
on the 1e3 network of ``experiments.bench``'s time to accuracy (widths (20,
25, 20), rank 1, n = 2000) at each γ of ``TUNED_GAMMAS``: where γ sets the
number, does the tuned run's slope say so (``tuned`` rows: estimate,
relative error, slope ± s.e., autotune's reason)? Writes
``DIR/results.json`` and
``DIR/dln_localization.png`` (relative error against γ; the slope, both
ways); ``--replot`` redraws.

    python -m experiments.dln_localization [--quick] [--out DIR]

The default took 13 to 25 minutes on 2 CPU cores shared with other jobs;
``--quick`` runs one network and a quarter of the steps.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, sweeps, tuning
from slt_jax import known_cases, theory
from slt_jax.grokking import plotting
from slt_jax.llc.estimate import estimate_llc
from slt_jax.samplers.sgld import SGLDSettings

NAME = "dln_localization"
GAMMAS = (2.0, 20.0, 50.0, 100.0, 200.0, 1000.0)
# (widths, rank, index of the network in experiments.dln_benchmark's
# default draw, whose key it shares).
NETWORKS = (
  ((9, 7, 10, 13, 9, 13, 9, 9), 7, 8),
  ((16, 17, 9), 7, 11),
)
# autotune's tuned steps at γ = 2 on the 7-layer network (GPU rows in
# figures/dln_benchmark/gamma2_default/rows/net08_*.json, rounded).
STEPS = {"sgld": 7.7e-6, "sghmc": 3.86e-6}
NUM_EXAMPLES, BATCH_SIZE, NUM_CHAINS = 10_000, 500, 4
# (widths, rank, n) autotuned at each γ of TUNED_GAMMAS, and the budget.
TUNED_NETWORK = ((20, 25, 20), 1, 2000)
TUNED_GAMMAS = (2.0, 20.0)
TUNE_BUDGET = 2e6


def scan(widths, rank, index: int, sampler: str, steps: int) -> list[dict]:
  """One sampler's rows on one network, every γ of ``GAMMAS`` in one grid."""
  key = jax.random.fold_in(jax.random.key(0), index)
  case = known_cases.deep_linear(key, widths, rank, NUM_EXAMPLES, noise_std=0.0)
  cfg = dataclasses.replace(
    case.cfg,
    sampler=sampler,
    batch_size=BATCH_SIZE,
    step_size=STEPS[sampler],
    num_chains=NUM_CHAINS,
    num_burnin=2 * steps,
    num_draws=steps,
  )
  res = estimate_llc(
    key,
    case.loss_fn,
    case.params,
    case.data,
    cfg,
    settings=SGLDSettings(localization=GAMMAS),
    warn=False,
  )
  true_llc, multiplicity = theory.deep_linear_llc(widths, rank)
  return [
    {
      "widths": list(widths),
      "rank": rank,
      "depth": len(widths) - 1,
      "true_llc": true_llc,
      "multiplicity": multiplicity,
      "sampler": sampler,
      "step_size": STEPS[sampler],
      "localization": gamma,
      "estimate": float(res.mean[k]),
      "rel_err": float(res.mean[k]) / true_llc - 1,
      "per_chain": np.asarray(res.per_chain[k]).tolist(),
      "diverged": int(np.sum(res.diagnostics.diverged[k])),
      "rhat": float(res.diagnostics.rhat[k]),
      "localization_slope": float(res.diagnostics.localization_slope[k]),
      "localization_slope_se": float(res.diagnostics.localization_slope_se[k]),
    }
    for k, gamma in enumerate(GAMMAS)
  ]


def slope_checks(rows: list[dict]) -> list[dict]:
  """Each neighbouring pair of γ of one scan: the finite difference of the
  estimates in ln γ against the mean of the two slopes read from the draws,
  each with its standard error (the finite difference's from the chains'
  own differences, ``sweeps.chain_slope``: the γ of a scan share their
  random numbers), all
  relative to λ.

  >>> rows = [{"localization": g, "estimate": e, "localization_slope": s,
  ...          "localization_slope_se": 0.4, "true_llc": 10.0,
  ...          "per_chain": [e - 1, e + 1]}
  ...         for g, e, s in ((1.0, 10.0, -1.0), (math.e, 9.0, -1.0))]
  >>> check = slope_checks(rows)[0]
  >>> check["finite_difference"], check["finite_difference_se"]
  (-0.1, 0.0)
  >>> check["from_draws"], round(check["from_draws_se"], 4)
  (-0.1, 0.0283)
  """
  checks = []
  for a, b in zip(rows, rows[1:]):
    span = math.log(b["localization"] / a["localization"])
    _, by_chain_se = sweeps.chain_slope(a["per_chain"], b["per_chain"], span)
    checks.append(
      {
        "localization": [a["localization"], b["localization"]],
        "finite_difference": (b["estimate"] - a["estimate"])
        / span
        / a["true_llc"],
        "finite_difference_se": float(by_chain_se / a["true_llc"]),
        "from_draws": 0.5
        * (a["localization_slope"] + b["localization_slope"])
        / a["true_llc"],
        "from_draws_se": 0.5
        * math.hypot(a["localization_slope_se"], b["localization_slope_se"])
        / a["true_llc"],
      }
    )
  return checks


def tuned_rows(budget_grads: float = TUNE_BUDGET) -> list[dict]:
  """``autotune`` (SGHMC) on ``TUNED_NETWORK`` at each γ of
  ``TUNED_GAMMAS``: the tuned estimate, its slope in ln γ and why."""
  widths, rank, num_examples = TUNED_NETWORK
  key = jax.random.key(0)
  case = known_cases.deep_linear(key, widths, rank, num_examples, noise_std=0.0)
  true_llc = theory.deep_linear_llc(widths, rank)[0]
  rows = []
  for gamma in TUNED_GAMMAS:
    cfg = dataclasses.replace(
      case.cfg,
      sampler="sghmc",
      batch_size=BATCH_SIZE,
      num_chains=NUM_CHAINS,
      localization=gamma,
    )
    _, report, reason = tuning.autotune_or_reason(
      key, case.loss_fn, case.params, case.data, cfg, budget_grads=budget_grads
    )
    result = None if report is None else report.result
    estimate = np.nan if result is None else float(result.mean)
    rows.append(
      {
        "widths": list(widths),
        "rank": rank,
        "num_examples": num_examples,
        "true_llc": true_llc,
        "localization": gamma,
        "estimate": estimate,
        "rel_err": estimate / true_llc - 1,
        **tuning.slope_fields(result),
        "settled": bool(report is not None and report.settled),
        "gradient_evaluations": 0
        if report is None
        else report.gradient_evaluations,
        "reason": reason,
      }
    )
    print(_tuned_text(rows[-1]), flush=True)
  return rows


def _tuned_text(row: dict) -> str:
  return (
    f"autotuned γ={row['localization']:<4g} est={row['estimate']:<8.4g}"
    f" ({row['rel_err']:+.1%} of λ={row['true_llc']:g}), slope"
    f" {row['localization_slope'] / row['estimate']:+.1%}"
    f" ± {row['localization_slope_se'] / row['estimate']:.1%} per ln γ"
  )


def compute(quick: bool) -> dict:
  """Every (network, sampler) scan, then ``tuned_rows``; ``quick``: the
  first network, 2,500 draws, a tuning budget of 2e5."""
  steps = 2_500 if quick else 10_000
  rows, checks = [], []
  for widths, rank, index in NETWORKS[:1] if quick else NETWORKS:
    for sampler in STEPS:
      rows += scan(widths, rank, index, sampler, steps)
      checks += slope_checks(rows[-len(GAMMAS) :])
      for row in rows[-len(GAMMAS) :]:
        print(_text(row), flush=True)
  return {
    "name": NAME,
    "quick": quick,
    "num_examples": NUM_EXAMPLES,
    "nbeta": NUM_EXAMPLES / math.log(NUM_EXAMPLES),
    "num_burnin": 2 * steps,
    "num_draws": steps,
    "rows": rows,
    "slope_checks": checks,
    "tuned": tuned_rows(2e5 if quick else TUNE_BUDGET),
  }


def _text(row: dict) -> str:
  return (
    f"L={row['depth']} λ={row['true_llc']:<6g} {row['sampler']:<6}"
    f" γ={row['localization']:<6g} est={row['estimate']:<8.4g}"
    f" ({row['rel_err']:+.1%}) diverged {row['diverged']}"
    f" R-hat {row['rhat']:.3f}"
    f" slope {row['localization_slope'] / row['true_llc']:+.1%} of λ per ln γ"
  )


def plot(results: dict, out_dir: str) -> None:
  """Left: relative error against γ, one line per (network, sampler); a
  cross marks a γ with diverged chains. Right (results with slopes): the
  slope in ln γ read from the draws (lines) and the finite differences of
  the estimates (squares, at the pairs' geometric midpoints)."""
  has_slopes = "slope_checks" in results
  fig, axes = plt.subplots(
    1, 2 if has_slopes else 1, figsize=(11 if has_slopes else 6, 4)
  )
  ax = axes[0] if has_slopes else axes
  groups = {}
  for row in results["rows"]:
    label = f"L={row['depth']}, λ={row['true_llc']:g}: {row['sampler']}"
    groups.setdefault(label, []).append(row)
  for i, (label, rows) in enumerate(groups.items()):
    gamma = [r["localization"] for r in rows]
    err = [100 * r["rel_err"] for r in rows]
    ax.plot(gamma, err, "o-", color=f"C{i}", label=label)
    for r in rows:
      if r["diverged"]:
        ax.plot(r["localization"], 100 * r["rel_err"], "kx", ms=10)
  if has_slopes:
    _plot_slopes(axes[1], list(groups.values()))
  for y in (-5, 5):
    ax.axhline(y, color="grey", lw=0.8, ls="--")
  ax.axhline(0, color="k", lw=0.8)
  ax.axvline(results["nbeta"], color="grey", lw=0.8, ls=":", label="nβ")
  ax.set(xscale="log", xlabel="localization γ", ylabel="relative error (%)")
  ax.legend(fontsize=7)
  fig.suptitle("Deep linear networks: the estimate against γ (fixed steps)")
  fig.tight_layout()
  plotting.save_figure(fig, f"{out_dir}/{NAME}.png")


def _plot_slopes(ax, groups: list[list[dict]]) -> None:
  """The slope in ln γ, % of λ: from the draws and by finite differences."""
  for i, rows in enumerate(groups):
    gamma = [r["localization"] for r in rows]
    read = [100 * r["localization_slope"] / r["true_llc"] for r in rows]
    se = [100 * r["localization_slope_se"] / r["true_llc"] for r in rows]
    ax.errorbar(gamma, read, yerr=se, fmt="o-", color=f"C{i}", capsize=2)
    for check in slope_checks(rows):
      mid = math.sqrt(check["localization"][0] * check["localization"][1])
      ax.errorbar(
        mid,
        100 * check["finite_difference"],
        yerr=100 * check["finite_difference_se"],
        fmt="s",
        color=f"C{i}",
        mfc="none",
        capsize=2,
      )
  ax.axhline(0, color="k", lw=0.8)
  ax.set(
    xscale="log",
    xlabel="localization γ",
    ylabel="d estimate / d ln γ (% of λ)",
    title="lines: from the draws (± s.e.); squares: finite differences",
  )


def main(argv=None) -> dict:
  args = cli.parse_args(__doc__, None, argv)
  return cli.compute_then_plot(NAME, args, lambda: compute(args.quick), plot)


if __name__ == "__main__":
  main()
