"""Validate the LLC estimator on models whose learning coefficient is known.

Runs every case of ``slt_jax.known_cases`` (isotropic quadratic,
normal crossings, reduced-rank regression, lazy random features) through the
public ``estimate_llc`` with ``scale`` times the test-suite's draws, and writes
``DIR/results.json`` as ``{"cases": [{"name", "true", "mean", "std",
"rel_err", "passed", "ess", "rhat", ...}]}`` plus ``DIR/validation.png``
(estimate ± chain std against the truth; ``--replot`` redraws it from the
former). No paper figure: ``--paper`` runs the default.

    python -m experiments.llc_validation [--quick] [--out DIR]

Runtimes (2 CPU cores) are in ``figures/README.md``, measured.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from experiments import cli
from slt_jax import known_cases
from slt_jax.grokking import plotting
from slt_jax.llc import estimate_llc

NAME = "llc_validation"


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
  """How long the chains of every known case run.

  Attributes:
    scale: multiple of the test-suite's draws (and burn-in).
  """

  scale: float


CONFIGS = {
  "smoke": ValidationConfig(scale=0.02),  # seconds; not accurate
  "quick": ValidationConfig(scale=1.0),
  "default": ValidationConfig(scale=3.0),
  "paper": ValidationConfig(scale=3.0),
}


def run_case(key, case) -> dict:
  """Estimates one known case and compares it with the truth."""
  start = time.perf_counter()
  res = estimate_llc(
    key,
    case.loss_fn,
    case.params,
    case.data,
    case.cfg,
    mask=case.mask,
    progress=False,
    warn=False,
  )
  mean, std, d = float(res.mean), float(res.std), res.diagnostics
  return {
    "name": case.name,
    "true": case.true_llc,
    "mean": mean,
    "std": std,
    "rel_err": (mean - case.true_llc) / case.true_llc,
    "passed": case.passed(mean, std),
    "rel_tol": case.rel_tol,
    "std_tol": case.std_tol,
    "finite_temp": case.finite_temp,
    "ess": float(d.ess),
    "rhat": float(d.rhat),
    "stationary": bool(d.stationary),
    "diverged_chains": int(np.sum(d.diverged)),
    "mala_accept": float(np.nanmean(d.mala_accept)),
    "step_size": case.cfg.step_size,
    "nbeta": res.nbeta,
    "localization": case.cfg.localization,
    "num_chains": case.cfg.num_chains,
    "num_draws": case.cfg.num_draws,
    "seconds": time.perf_counter() - start,
  }


def compute(mode: str, seed: int) -> dict:
  """Every case at ``CONFIGS[mode]``; the results payload."""
  cfg = CONFIGS[mode]
  key_cases, key_llc = jax.random.split(jax.random.key(seed))
  cases = known_cases.all_cases(key_cases, cfg.scale)
  rows = []
  for key, case in zip(jax.random.split(key_llc, len(cases)), cases):
    rows.append(run_case(key, case))
    r = rows[-1]
    print(
      f"{case.name:28s} true {case.true_llc:8.4f}  est {r['mean']:8.4f}"
      f" ± {r['std']:.4f}  {'ok' if r['passed'] else 'FAIL'}",
      flush=True,
    )
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(cfg),
    "scale": cfg.scale,
    "cases": rows,
    "all_passed": all(r["passed"] for r in rows),
  }


def plot(results: dict, out_dir: str) -> None:
  """Estimates ± chain std against the true values."""
  rows = results["cases"]
  get = lambda key: np.array([r[key] for r in rows], float)
  fig = plotting.plot_estimates_vs_truth(
    [r["name"] for r in rows], get("true"), get("mean"), get("std")
  )
  plotting.save_figure(fig, os.path.join(out_dir, "validation.png"))


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, argv=argv)
  return cli.compute_then_plot(
    NAME, args, lambda: compute(mode, args.seed), plot
  )


if __name__ == "__main__":
  main()
