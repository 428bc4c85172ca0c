"""Basin selection, measured: does the posterior prefer the lower-LLC basin?

The paper's thesis: the LLC ranks competing near-zero-loss basins, the
lower-LLC (generalising) basin dominates the posterior, and grokking is the
optimisation-driven move from the memorising basin to it. For cells
(modulus M, train size N) of the Fig. 14 grid under the authors' protocol
(``experiments.regimes``, seed 0), this finds both basins on the same
training set (``basins``), estimates the LLC of each with tuned chains
(``slt_jax.llc.autotune``) and with the paper window (``estimates``), and
tests the thesis (``analysis``):

* the memorising basin: the checkpoint at memorisation (first logged step
  with train accuracy 1, from a re-run with a checkpoint at every logged
  step) and the final point of a run that never generalises;
* the generalising basin: the grokked (early-stop) checkpoint, or, where the
  run does not generalise, the grokked checkpoint of the smallest larger
  cell of the modulus fine-tuned on this set (kept only if it interpolates
  this set with a comparable training loss);
* per basin: the training loss on this set, the tuned λ, its MCSE and the
  settled diagnostics, and ``F = N L_N(w*) + λ ln N`` (N the cell's
  training-set size, L_N its centred MSE, λ at nβ of the convention);
* nβ conventions: B / ln B (B = 64, the SGLD minibatch of the authors'
  sweep: 15.4) in every cell, and n / ln n (WBIC) in the two cells at the
  none | generalising boundary of each modulus of ``wbic_moduli``; γ = 5
  (the paper's) throughout.

Modes (``config.CONFIGS``): ``--smoke`` (tests), ``--quick`` (p = 23, K =
256, three cells: none, grokking, immediate; nβ = B / ln B only), default
(M in {53, 79} x fractions {0.1, 0.15, 0.3, 0.4, 0.9} from the regimes
sweep's 5,000-step runs) and ``--paper`` (the same cells from its
15,000-step runs). Trained runs come from (or go
to) the run store (``--runs``); each estimate is kept in ``DIR/chains/``,
so an interrupted study resumes. Writes ``DIR/results.json``,
``DIR/basin_selection.png`` and ``DIR/basin_selection_regimes.png``
(``--replot`` redraws them).

    python -m experiments.basin_selection --quick
    python -m experiments.basin_selection --paper --out figures/paper/basin_selection
"""

from __future__ import annotations

import dataclasses
import os
import time

from experiments import cli, store
from experiments.basin_selection import analysis, basins, config, estimates
from experiments.basin_selection.plots import NAME, plot
from slt_jax import persist

__all__ = ["NAME", "compute", "main", "paper_rows", "plot", "wbic_cells"]

paper_rows = analysis.paper_rows

# Where ``experiments.regimes`` keeps its results, whose fitted boundaries
# (all moduli, 3 seeds) the study's flip is compared with.
REGIMES_RESULTS = {
  "default": os.path.join(cli.FIGURES_DIR, "regimes", "results.json"),
  "paper": os.path.join(cli.FIGURES_DIR, "paper", "regimes", "results.json"),
}


def wbic_cells(cells: list[basins.Cell], moduli) -> set[tuple[int, int]]:
  """(M, N) of the last cell that does not generalise and the first that
  does, per modulus in ``moduli``."""
  out = set()
  for m in moduli:
    mine = sorted(
      (c for c in cells if c.modulus == m), key=lambda c: c.num_train
    )
    none = [c for c in mine if not c.generalised]
    gen = [c for c in mine if c.generalised]
    out |= {(c.modulus, c.num_train) for c in none[-1:] + gen[:1]}
  return out


def regimes_reference(mode: str) -> dict:
  """The none | generalising boundaries that ``regimes`` fitted (authors'
  protocol, per budget), where its results for ``mode`` exist."""
  path = REGIMES_RESULTS.get(mode)
  if path is None or not os.path.exists(path):
    return {}
  section = persist.load_json(path).get("protocols", {}).get("authors")
  if section is None:
    return {}
  return {
    "path": path,
    "boundaries": {
      b: s["boundaries"]["none_vs_generalising"]
      for b, s in section["budgets"].items()
    },
  }


def _summary_line(record: dict) -> str:
  """One printed line per cell: sizes, regimes, Δλ and ΔF."""
  text = (
    f"M={record['modulus']} N={record['num_train']} x={record['x']:.2f} "
    f"{record['regimes']}: "
  )
  cmp = analysis.primary(record)
  if cmp is None:
    kinds = [b["source"] for b in record["basins"] if b["kept"]]
    return text + f"no pair (kept: {', '.join(kinds) or 'none'})"
  return text + "; ".join(
    f"{c}: dλ={v['delta_llc']:+.1f} ± {v['delta_llc_mcse']:.1f}, "
    f"dF={v['delta_free_energy']:+.1f}"
    for c, v in cmp.items()
  )


def compute(
  cfg: config.BasinConfig, mode: str, seed: int, out_dir: str, runs_dir
) -> dict:
  """Every cell's basins, estimates and record, and the tests."""
  start = time.perf_counter()
  progress = mode != "smoke"
  cells = basins.find_cells(cfg, seed, runs_dir, progress)
  train_seconds = time.perf_counter() - start
  wbic = wbic_cells(cells, cfg.wbic_moduli)
  records = []
  for cell in cells:
    t0 = time.perf_counter()
    conventions = ("default",) + (
      ("wbic",) if (cell.modulus, cell.num_train) in wbic else ()
    )
    found = estimates.measure_cell(
      basins.cell_key(seed, cell, purpose=2),
      cell,
      cfg,
      conventions,
      os.path.join(out_dir, "chains"),
    )
    records.append(
      analysis.cell_record(
        cell,
        found,
        cfg.sweep.width,
        {"estimate_seconds": time.perf_counter() - t0},
      )
    )
    print(_summary_line(records[-1]), flush=True)
  budgets = [str(b) for b in cfg.sweep.budgets]
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(cfg),
    "conventions": {
      "free_energy": "F = N L_N(w*) + λ ln N: N the cell's training-set "
      "size, L_N the centred MSE on it (Gaussian NLL at unit variance less "
      "its constant), λ the tuned estimate at the convention's nβ",
      "nbeta": {
        "default": "B / ln B, B the SGLD minibatch",
        "wbic": "n / ln n, n = N",
      },
      "posterior_prefers_generalising": "ΔF = F_gen - F_mem < 0",
    },
    "budgets": budgets,
    "cells": records,
    "tests": analysis.tests(
      records, budgets, cfg.sweep.width, regimes_reference(mode)
    ),
    "train_seconds": train_seconds,
    "wall_seconds": time.perf_counter() - start,
  }


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, store.add_runs_flag, argv)
  out_dir = cli.output_dir(NAME, args.out)
  results = cli.compute_then_plot(
    NAME,
    args,
    lambda: compute(config.CONFIGS[mode], mode, args.seed, out_dir, args.runs),
    plot,
  )
  for row in paper_rows(results):
    print(f"{row['protocol']}: {row['quantity']}: {row['ours']}")
  return results
