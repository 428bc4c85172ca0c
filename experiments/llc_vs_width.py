"""Fig. 2: the final LLC of trained networks grows linearly with the width K.

The Fig. 1 pipeline (``experiments.llc_vs_p.compute_scan``) with the roles
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

import dataclasses

from experiments import common, llc_vs_p, protocols

NAME = "llc_vs_width"
paper_rows = llc_vs_p.paper_rows
WIDTHS = (200, 400, 600, 800, 1000, 1200, 1400, 1600)
PAPER_SLOPES = {53: 2.65, 61: 3.28, 71: 4.02}
CONFIGS = {
  "smoke": dataclasses.replace(
    llc_vs_p.CONFIGS["smoke"], series=(7,), xs=(16, 32)
  ),
  # 10k steps: at 6000 the K=600 run had not grokked (val acc 0.56).
  "quick": llc_vs_p.ScanConfig(series=(53,), xs=(200, 600, 1000, 1400)),
  "default": llc_vs_p.ScanConfig(series=(53, 61, 71), xs=WIDTHS),
  "paper": llc_vs_p.ScanConfig(
    series=(53, 61, 71), xs=WIDTHS, settled_series=(53,)
  ),
}


def main(argv=None) -> dict:
  args, mode = common.parse_mode(__doc__, llc_vs_p.add_flags, argv)
  cfg = CONFIGS[mode]
  names = protocols.parse(args.protocol)
  extra, committed = (), []
  if mode == "paper" and "authors" in names:
    widths = tuple(protocols.AUTHORS_WIDTH_SWEEP_P53)
    extra = ((protocols.width_sweep_b128_protocol(), 53, widths),)
    committed = [("authors_b128", 53, protocols.AUTHORS_WIDTH_SWEEP_P53)]
  results = common.compute_then_plot(
    NAME,
    args,
    lambda: llc_vs_p.compute_scan(
      NAME,
      "width",
      cfg,
      names,
      PAPER_SLOPES,
      args.seed,
      common.output_dir(NAME, args.out),
      args.runs,
      committed,
      extra,
    ),
    llc_vs_p.plot_scan,
  )
  llc_vs_p.print_summary(results)
  return results


if __name__ == "__main__":
  main()
