"""Validate the LLC estimator on models whose learning coefficient is known.

Runs every case of ``slt_jax.validation`` (SPEC §5: isotropic quadratic,
normal crossings, reduced-rank regression, lazy random features) through the
public ``estimate_llc`` with ``scale`` times the test-suite's draws, and writes
``DIR/results.json`` as ``{"cases": [{"name", "true", "mean", "std",
"rel_err", "passed", "ess", "rhat", ...}]}`` plus ``DIR/validation.png``
(estimate ± chain std against the truth).

    python -m experiments.llc_validation [--quick] [--out DIR]

About 1 minute with ``--quick`` (scale 1) and 3 minutes by default (scale 3)
on 2 CPU cores.
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np

from experiments import common
from slt_jax import plotting, validation
from slt_jax.llc import estimate_llc


def run_case(key, case) -> dict:
  """Estimates one known case and compares it with the truth."""
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    res = estimate_llc(key, case.loss_fn, case.params, case.data, case.cfg,
                       mask=case.mask, progress=False)
  mean, std = float(res.mean), float(res.std)
  return {"name": case.name, "true": case.true_llc, "mean": mean, "std": std,
          "rel_err": (mean - case.true_llc) / case.true_llc,
          "passed": case.passed(mean, std), "rel_tol": case.rel_tol,
          "std_tol": case.std_tol, "finite_temp": case.finite_temp,
          "ess": float(res.diagnostics.ess), "rhat": float(res.diagnostics.rhat),
          "stationary": bool(res.diagnostics.stationary),
          "mala_accept": float(np.nanmean(res.diagnostics.mala_accept)),
          "step_size": case.cfg.step_size, "nbeta": res.nbeta,
          "localization": case.cfg.localization,
          "num_chains": case.cfg.num_chains, "num_draws": case.cfg.num_draws,
          "seconds": time.perf_counter() - start}


def main(argv=None) -> dict:
  args = common.parse_args(__doc__, argv=argv, extra=lambda p: p.add_argument(
      "--smoke", action="store_true",
      help="tiny budget for the test-suite (seconds; estimates not accurate)"))
  out_dir = common.output_dir("llc_validation", args.out)
  scale = 0.02 if args.smoke else 1 if args.quick else 3
  key_cases, key_llc = jax.random.split(jax.random.key(args.seed))
  cases = validation.all_cases(key_cases, scale)
  keys = jax.random.split(key_llc, len(cases))
  rows = []
  for key, case in zip(keys, cases):
    rows.append(run_case(key, case))
    print(f"{case.name:28s} true {case.true_llc:8.4f}  est {rows[-1]['mean']:8.4f}"
          f" ± {rows[-1]['std']:.4f}  {'ok' if rows[-1]['passed'] else 'FAIL'}",
          flush=True)
  fig = plotting.plot_estimates_vs_truth(
      [r["name"] for r in rows], np.array([r["true"] for r in rows]),
      np.array([r["mean"] for r in rows]), np.array([r["std"] for r in rows]))
  plotting.save_figure(fig, f"{out_dir}/validation.png")
  payload = {"scale": scale, "cases": rows,
             "all_passed": all(r["passed"] for r in rows)}
  common.write_results(out_dir, payload)
  return payload


if __name__ == "__main__":
  main()
