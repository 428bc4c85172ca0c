"""Fig. 2: the final LLC of trained networks grows linearly with the width K.

The Fig. 1 pipeline (``experiments.scaling.compute_scan``) with the roles
swapped: for each prime p, trains K = 200..1600 under each protocol (the run
store shares the (p, K) runs of Fig. 1), estimates the final LLC with the
paper's SGLD window and with settled chains, fits a line per p and protocol
and compares its slope with the paper's 2.65, 3.28, 4.02 (p = 53, 61, 71) and
with the closed forms of ``slt_jax.theory`` (generic rank / 2 saturates at
(n - 1) p / 2 once K (3p - 2) exceeds it; the lazy value p min(K, n) / 2 has
slope p / 2 until K = n). ``--paper`` also reruns the authors' committed
width sweep (p = 53, K = 500..2000, batch 128, lr 1e-3, stop 3 × >= 0.95) and
compares it point by point. Writes ``DIR/results.json`` and
``DIR/llc_vs_width.png`` (``--replot`` redraws it).

    python -m experiments.llc_vs_width --quick                 # p=53; K=200, 600, 1000, 1400
    python -m experiments.llc_vs_width --paper --protocol both # p = 53, 61, 71; K = 200..1600

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured.
"""

from __future__ import annotations

from experiments import protocols, scaling

NAME = "llc_vs_width"
paper_rows = scaling.paper_rows
WIDTHS = (200, 400, 600, 800, 1000, 1200, 1400, 1600)
PAPER_SLOPES = {53: 2.65, 61: 3.28, 71: 4.02}
CONFIGS = {
  "smoke": scaling.ScanConfig(
    series=(7,), xs=(16, 32), seeds=2, num_steps=200, train_frac=0.5, smoke=True
  ),
  # 10k steps: at 6000 the K=600 run had not grokked (val acc 0.56).
  "quick": scaling.ScanConfig(series=(53,), xs=(200, 600, 1000, 1400)),
  "default": scaling.ScanConfig(series=(53, 61, 71), xs=WIDTHS),
  "paper": scaling.ScanConfig(
    series=(53, 61, 71), xs=WIDTHS, settled_series=(53,)
  ),
}


def authors_points(cfg: scaling.ScanConfig) -> tuple:
  """``--paper`` with the authors' protocol also reruns the authors'
  committed width sweep (p = 53, batch 128, lr 1e-3) and compares it point by
  point.

  Returns:
    (extra_points, committed) for ``scaling.compute_scan``.
  """
  widths = tuple(protocols.AUTHORS_WIDTH_SWEEP_P53)
  extra = ((protocols.width_sweep_b128_protocol(), 53, widths),)
  return extra, [("authors_b128", 53, protocols.AUTHORS_WIDTH_SWEEP_P53)]


def main(argv=None) -> dict:
  return scaling.run_scan(
    NAME, __doc__, CONFIGS, "width", PAPER_SLOPES, authors_points, argv
  )


if __name__ == "__main__":
  main()
