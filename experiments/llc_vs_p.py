"""Fig. 1: the final LLC of trained networks grows linearly with the prime p.

For every width K and prime p, trains the quadratic network under each
protocol (``experiments.protocols``: ``recipe``, the reproduction recipe at batch
128; ``authors``, the authors' batch 64, lr 0.01, early stop 3 × >= 0.95),
through the run store (``runs/``; Fig. 2 shares its (p, K) runs), then
estimates the LLC at the protocol's final checkpoint with the paper's SGLD
window (eps 5e-4, γ 5, 3 chains × (100 + 500) steps, nβ = B / ln B with the
protocol's batch B) and with settled chains (2000 + 1000 steps), in one
compiled program per point. Fits a line per K and protocol (slope,
intercept, R², per-point values) and sets it beside the paper's slopes 51.06,
80.57, 108.61 (K = 600, 1000, 1400), the authors' committed K = 1024 values
point by point, and the closed forms of ``slt_jax.theory``. Writes
``DIR/results.json`` and ``DIR/llc_vs_p.png`` (``--replot`` redraws it).

    python -m experiments.llc_vs_p --quick   # p = 53, 67, 79, 97; K = 1000
    python -m experiments.llc_vs_p --paper --protocol both
        # p = 53..97; K = 600, 1000, 1400 (+1024, authors)

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured. Every
point resumes from the run store and ``DIR/points/`` after an interruption.
"""

from __future__ import annotations

from experiments import protocols, scaling

NAME = "llc_vs_p"
PRIMES = (53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
PAPER_SLOPES = {600: 51.06, 1000: 80.57, 1400: 108.61}
paper_rows = scaling.paper_rows

CONFIGS = {
  "smoke": scaling.ScanConfig(
    series=(32,), xs=(7, 11), seeds=2, num_steps=200, train_frac=0.5, smoke=True
  ),
  "quick": scaling.ScanConfig(
    series=(1000,), xs=(53, 67, 79, 97), num_steps=6000
  ),
  "default": scaling.ScanConfig(series=(600, 1000, 1400), xs=PRIMES),
  "paper": scaling.ScanConfig(
    series=(600, 1000, 1400), xs=PRIMES, settled_series=(1000,)
  ),
}


def authors_points(cfg: scaling.ScanConfig) -> tuple:
  """``--paper`` with the authors' protocol also measures K = 1024, the width
  of the authors' committed p-sweep, and compares it point by point.

  Returns:
    (extra_points, committed) for ``scaling.compute_scan``.
  """
  extra = ((scaling.protocol_for("authors", cfg), 1024, cfg.xs),)
  return extra, [("authors", 1024, protocols.AUTHORS_P_SWEEP_K1024)]


def main(argv=None) -> dict:
  return scaling.run_scan(
    NAME, __doc__, CONFIGS, "p", PAPER_SLOPES, authors_points, argv
  )


if __name__ == "__main__":
  main()
