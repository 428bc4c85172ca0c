"""Fig. 5: the LLC at the minimum of toy 2-D landscapes (after Hoogland et al.).

Five potentials with known learning coefficients (``slt_jax.theory``):
w1² + w2² -> 1, w1² -> 1/2, w1² w2² -> 1/2 (normal crossing), w1⁴ + w2⁴ -> 1/2,
w1⁴ -> 1/4. All are linear combinations of the features (w1², w2², w1⁴, w2⁴,
w1² w2²), so one loss ``coefficients · features(w)`` with the coefficients as
its data serves every potential with one compiled LLC program. At w* = 0,
``estimate_llc`` runs full-batch localized SGLD at large nβ (1e4, γ = 1) and
the estimate is set beside the exact λ and the exact finite-temperature
expectation ``E[nβ K]`` of the same localized Gibbs measure, by quadrature
(``theory.gibbs_expectation``); the latter isolates the sampler's error
from the finite-nβ bias. The step size is 2e-6 rather than the 1e-4 of
``validation.normal_crossing``: with K = w1² + w2² the Langevin contraction
per step is eps·nβ = 1 at 1e-4 (the chain jumps to a fresh N(0, eps) draw
each step and doubles the variance), and on w1² w2² it is unstable once
|w2| > 1.4.
Nothing is trained, so the recipe and authors' protocols coincide here (the
results say so); ``--paper`` only runs more chains and draws. Writes
``DIR/results.json`` and ``DIR/toy_landscapes.png`` (``--replot`` redraws it
from the former).

    python -m experiments.toy_landscapes --quick   # same as default
    python -m experiments.toy_landscapes           # 16 chains x 1M draws
    python -m experiments.toy_landscapes --paper   # 32 chains x 3M draws

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, sweeps
from slt_jax import theory
from slt_jax.grokking import plotting
from slt_jax.llc.config import SGLDConfig

NAME = "toy_landscapes"
QUADRATURE_GRID = 500  # Per half-axis; 300 agree with 3000 to 1e-12.
FEATURES = ("w1^2", "w2^2", "w1^4", "w2^4", "w1^2 w2^2")
# name -> (coefficients of FEATURES, exact learning coefficient).
POTENTIALS = {
  "w1² + w2²": ((1, 1, 0, 0, 0), theory.polynomial_potential_llc([1, 1])),
  "w1²": ((1, 0, 0, 0, 0), theory.polynomial_potential_llc([1])),
  "w1² w2²": ((0, 0, 0, 0, 1), theory.normal_crossing_llc([1, 1])),
  "w1⁴ + w2⁴": ((0, 0, 1, 1, 0), theory.polynomial_potential_llc([2, 2])),
  "w1⁴": ((0, 0, 1, 0, 0), theory.polynomial_potential_llc([2])),
}


def features(w1, w2) -> list:
  """The five monomials of ``FEATURES`` (NumPy or JAX arrays alike)."""
  return [w1**2, w2**2, w1**4, w2**4, w1**2 * w2**2]


def potential_loss(w_2: jax.Array, coeffs_1x5: jax.Array) -> jax.Array:
  """``K(w) = coefficients · features(w)``; the "data" is the coefficients.

  Args:
    w_2: (2,) parameters.
    coeffs_1x5: (1, 5) coefficients (one "example", so n = 1).

  Returns:
    Scalar potential.
  """
  feats_5 = jnp.stack(features(w_2[0], w_2[1]))
  return jnp.mean(coeffs_1x5 @ feats_5)


def numpy_potential(coeffs):
  """``K(w1, w2)`` on NumPy grids for quadrature and contours."""
  return lambda w1, w2: sum(c * f for c, f in zip(coeffs, features(w1, w2)))


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  """Full-batch localized SGLD at w* = 0 for every potential.

  Attributes:
    num_chains: chains per potential.
    num_draws: draws per chain.
    num_burnin: burn-in steps per chain.
    step_size: eps (see the module docstring for why 2e-6).
    nbeta: n·beta (n = 1: the "data" is one row of coefficients).
    localization: gamma.
  """

  num_chains: int
  num_draws: int
  num_burnin: int = 50000
  step_size: float = 2e-6
  nbeta: float = 1e4
  localization: float = 1.0

  def sgld(self) -> SGLDConfig:
    """The SGLDConfig of these settings."""
    return SGLDConfig(
      step_size=self.step_size,
      nbeta=self.nbeta,
      localization=self.localization,
      num_chains=self.num_chains,
      num_burnin=self.num_burnin,
      num_draws=self.num_draws,
      batch_size=None,
    )


CONFIGS = {
  "smoke": ToyConfig(num_chains=2, num_draws=200, num_burnin=50),
  "quick": ToyConfig(num_chains=16, num_draws=1000000),
  "default": ToyConfig(num_chains=16, num_draws=1000000),
  "paper": ToyConfig(num_chains=32, num_draws=3000000),
}


def compute(mode: str, seed: int) -> dict:
  """Every potential at ``CONFIGS[mode]``; the results payload."""
  toy, start = CONFIGS[mode], time.perf_counter()
  cfg = toy.sgld()
  rows = {}
  for i, (name, (coeffs, exact)) in enumerate(POTENTIALS.items()):
    data = jnp.asarray(coeffs, jnp.float32)[None]
    sweep = sweeps.llc_sweep(
      jax.random.fold_in(jax.random.key(seed), i),
      potential_loss,
      jnp.zeros(2),
      data,
      cfg,
      None,
      batch_ndim=0,
    )
    finite_temp = theory.gibbs_expectation(
      numpy_potential(coeffs),
      cfg.resolve_nbeta(1),
      cfg.localization,
      QUADRATURE_GRID,
    )
    mean, std = float(sweep["mean"]), float(sweep["std"])
    rows[name] = {
      "coefficients": dict(zip(FEATURES, coeffs)),
      "exact_llc": exact,
      "finite_temperature_expectation": finite_temp,
      "llc_mean": mean,
      "llc_std": std,
      "llc_stderr": std / np.sqrt(cfg.num_chains),
      "rel_error_vs_exact": mean / exact - 1,
      "rel_error_vs_finite_temperature": mean / finite_temp - 1,
      "per_chain": sweep["per_chain"],
      "ess": sweep["ess"],
      "rhat": sweep["rhat"],
      "stationary": sweep["stationary"],
      "diverged_chains": sweep["diverged_chains"],
      "seconds": sweep["seconds"],
    }
    print(
      f"{name:10s}: {mean:.4f} ± {std:.4f} (exact {exact:.4f}, finite-T "
      f"{finite_temp:.4f})",
      flush=True,
    )
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(toy),
    "sgld": dataclasses.asdict(cfg),
    "protocol": "none: nothing is trained, the recipe and authors' "
    "protocols coincide",
    "features": FEATURES,
    "quadrature_grid": QUADRATURE_GRID,
    "potentials": rows,
    "paper_reference": {name: exact for name, (_, exact) in POTENTIALS.items()},
    "wall_seconds": time.perf_counter() - start,
  }


def plot(results: dict, out_dir: str) -> None:
  """One panel per potential: contours, estimate and exact values."""
  rows, cfg = results["potentials"], results["config"]
  fig, axes = plt.subplots(1, len(rows), figsize=(3.3 * len(rows), 3.6))
  for ax, (name, r) in zip(axes, rows.items()):
    plotting.plot_potential(
      ax,
      numpy_potential(POTENTIALS[name][0]),
      f"K = {name}",
      f"λ̂ = {r['llc_mean']:.3f} ± {r['llc_std']:.3f}\n"
      f"exact λ = {r['exact_llc']:.3g}\n"
      f"E[nβK] (quadrature) = {r['finite_temperature_expectation']:.3f}",
    )
  fig.suptitle(
    f"toy landscapes: nβ = {cfg['nbeta']:g}, "
    f"γ = {cfg['localization']:g}, ε = {cfg['step_size']:g}, "
    f"{cfg['num_chains']} chains × {cfg['num_draws']} draws"
  )
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: each potential's estimate against
  its exact learning coefficient (and exact finite-nβ value)."""
  return [
    {
      "protocol": "none (nothing trained)",
      "quantity": f"{name} (finite-nβ exact "
      f"{r['finite_temperature_expectation']:.3f})",
      "ours": r["llc_mean"],
      "paper": r["exact_llc"],
      "match": abs(r["llc_mean"] / r["finite_temperature_expectation"] - 1)
      <= 0.05,
    }
    for name, r in results["potentials"].items()
  ]


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, argv=argv)
  return cli.compute_then_plot(
    NAME, args, lambda: compute(mode, args.seed), plot
  )


if __name__ == "__main__":
  main()
