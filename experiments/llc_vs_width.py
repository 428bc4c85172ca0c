"""Fig. 2: the final LLC of trained networks grows linearly with the width K.

The Fig. 1 pipeline (``experiments.llc_vs_p.run_scan``) with the roles swapped:
for each prime p, trains K = 200..1600 with the SPEC §1 recipe, estimates the
final LLC with the paper's SGLD settings and with settled chains (2000 burn-in
+ 1000 draws), fits a line per p and compares its slope with the paper's 2.65,
3.28, 4.02 (p = 53, 61, 71) and with the closed forms of ``slt_jax.theory``
(generic rank / 2 saturates at (n - 1) p / 2 once K (3p - 2) exceeds it, so
its slope in K is ~0 beyond K ≈ 400 at p = 53; the lazy value p min(K, n) / 2
has slope p / 2 until K = n). Writes ``DIR/results.json`` and
``DIR/llc_vs_width.png``.

    python -m experiments.llc_vs_width --quick   # p=53; K=200, 600, 1000, 1400
    python -m experiments.llc_vs_width           # p = 53, 61, 71; K = 200..1600
    python -m experiments.llc_vs_width --paper   # as default, 3 seeds

Expected runtime on 2 CPU cores: ``--quick`` (one seed, 10k steps; at 6000
steps the K=600 run had not generalised, val acc 0.56) about 1.5 minutes;
default (one seed, 10k steps, 24 points) about 15 minutes;
``--paper`` (3 seeds) about 45 minutes, a few minutes on one GPU. Each point
resumes from ``DIR/points/p{p}_K{K}/`` after an interruption.
"""

from __future__ import annotations

import dataclasses

from experiments import llc_vs_p

NAME = "llc_vs_width"
WIDTHS = (200, 400, 600, 800, 1000, 1200, 1400, 1600)
PAPER_SLOPES = {53: 2.65, 61: 3.28, 71: 4.02}


def get_config(mode: str) -> dict:
  """Configs for ``smoke`` (tests), ``quick``, ``default`` and ``paper``.

  ``series`` are the fixed primes (one line each), ``xs`` the scanned widths.
  """
  cfg = llc_vs_p.base_config(mode)
  if mode == "smoke":
    return {**cfg, "series": (7,), "xs": (16, 32)}
  if mode == "quick":  # 10k steps: at 6000 the K=600 run had not grokked.
    return {**cfg, "series": (53,), "xs": (200, 600, 1000, 1400),
            "train": dataclasses.replace(cfg["train"], num_steps=10000)}
  return {**cfg, "series": (53, 61, 71), "xs": WIDTHS}


def main(argv=None) -> dict:
  return llc_vs_p.run_scan(NAME, "width", __doc__, get_config, PAPER_SLOPES,
                           argv)


if __name__ == "__main__":
  main()
