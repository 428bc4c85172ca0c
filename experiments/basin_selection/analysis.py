"""The records of each cell and the study's tests, from numbers alone.

Per cell the memorising basin of the comparison is the final point of a run
that never generalises, else the memorisation checkpoint (pairing
``final_point``), or the memorisation checkpoint in every cell (pairing
``memorisation_checkpoint``: the final point has trained 100 times longer);
the generalising basin is the grokked checkpoint, else the fine-tuned
superset solution (``PREFERENCE``). With ``Δλ = λ_gen - λ_mem`` and ``ΔF = N (L_gen - L_mem) +
Δλ ln N`` per nβ convention, the posterior prefers the generalising basin
when ``ΔF < 0``. The tests:

* in how many cells ``λ_gen < λ_mem`` (and in how many the difference
  exceeds twice its MCSE);
* whether the sign of ΔF predicts the observed regime (none | generalising
  at each step budget), and where along x = N / (M ln M) it flips, against
  the observed boundary (``regimes.fit_threshold``);
* in each cell that does not generalise but has a generalising basin:
  ``optimisation`` (ΔF < 0: the posterior prefers the basin training did not
  find) or ``llc_prefers_memorising`` (ΔF >= 0);
* the closed forms (``slt_jax.theory``): the lazy random-feature λ = M
  min(K, N - 1) / 2 (centred MSE) for the memorising basin, the
  feature-learning (generic rank of the whole network) λ for the
  generalising one; and the regime they predict: generalising where the
  lazy basin cannot interpolate (K < N - 1) or its λ exceeds the
  feature-learning one.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional

import numpy as np

from experiments import regimes
from experiments.basin_selection import basins, config
from experiments.basin_selection.estimates import free_energy
from slt_jax import theory

PREFERENCE = {
  basins.MEMORISING: ("final_point", "memorisation_checkpoint"),
  basins.GENERALISING: ("grokked_checkpoint", "superset_finetune"),
}
# The memorising basin each comparison takes, first found: ``final_point``
# (the pair above) or the memorisation checkpoint in every cell (the same
# kind of point, the first that interpolates, whatever the run does later).
PAIRINGS = {
  "final_point": PREFERENCE[basins.MEMORISING],
  "memorisation_checkpoint": ("memorisation_checkpoint",),
}


def closed_forms(cell: basins.Cell, width: int) -> dict:
  """The lazy and feature-learning λ of the cell under the centred MSE and
  the regime they predict.

  The centred loss fits an output bias, so of the N training rows it sees
  N - 1: the lazy λ is ``M min(K, N - 1) / 2`` and the lazy basin
  interpolates when K >= N - 1. The prediction is ``generalising`` where it
  cannot, or where the feature-learning λ is the smaller; else ``none``
  (where both interpolate the two λ are equal, ``M (N - 1) / 2``, and
  nothing favours the generalising basin).
  """
  m, n = cell.modulus, cell.num_train
  lazy = theory.lazy_random_features_llc(m, width, n - 1)
  feature = theory.modular_llc(
    m, width, np.asarray(cell.data.train.pairs), "centered_mse"
  )
  lazy_interpolates = width >= n - 1
  generalising = not lazy_interpolates or feature < lazy
  return {
    "lazy_llc": lazy,
    "feature_learning_llc": feature,
    "lazy_interpolates": lazy_interpolates,
    "predicted_regime": "generalising" if generalising else "none",
  }


def basin_record(
  cell: basins.Cell, index: int, estimates: dict, theory_llc: dict
) -> dict:
  """One basin's numbers: how it was found, its metrics, each estimate (with
  F per tuned convention) and its closed-form λ."""
  basin = cell.basins[index]
  record = {
    "source": basin.source,
    "kind": basin.kind,
    "step": basin.step,
    **basin.metrics,
    "kept": basin.kept,
    "note": basin.note,
  }
  for name, est in estimates.items():
    entry = dict(est["per_basin"][index])
    if name != "paper_window":
      entry["free_energy"] = free_energy(
        cell.num_train, basin.metrics["train_loss"], entry["llc"]
      )
    record[name] = entry
  key = (
    "lazy_llc" if basin.kind == basins.MEMORISING else "feature_learning_llc"
  )
  record["closed_form_llc"] = theory_llc[key]
  return record


def compare(mem: dict, gen: dict, n: int, conventions) -> dict:
  """Δλ, its MCSE, ΔF (and its MCSE, ln N times Δλ's: the energy term is
  exact) and the preferred basin per convention; ``resolved`` when |Δλ|
  exceeds twice its MCSE."""
  out = {}
  for c in conventions:
    d_llc = gen[c]["llc"] - mem[c]["llc"]
    mcse = math.hypot(gen[c]["mcse"], mem[c]["mcse"])
    d_f = free_energy(n, gen["train_loss"] - mem["train_loss"], d_llc)
    out[c] = {
      "delta_llc": d_llc,
      "delta_llc_mcse": mcse,
      "relative_delta_llc": d_llc / mem[c]["llc"],
      "delta_free_energy": d_f,
      "delta_free_energy_mcse": mcse * math.log(n),
      "delta_energy": n * (gen["train_loss"] - mem["train_loss"]),
      "gen_lower_llc": d_llc < 0,
      "resolved": abs(d_llc) > 2 * mcse,
      "posterior_prefers": basins.GENERALISING
      if d_f < 0
      else basins.MEMORISING,
    }
  return out


def _pick(records: list[dict], kind: str) -> Optional[dict]:
  """The kept basin of ``kind`` first in ``PREFERENCE`` order."""
  for source in PREFERENCE[kind]:
    for r in records:
      if r["source"] == source and r["kept"]:
        return r
  return None


def cell_record(
  cell: basins.Cell, estimates: dict, width: int, extra: dict
) -> dict:
  """The cell's record: sizes, observed regimes, basins, comparisons."""
  theory_llc = closed_forms(cell, width)
  records = [
    basin_record(cell, i, estimates, theory_llc)
    for i in range(len(cell.basins))
  ]
  conventions = [c for c in config.CONVENTIONS if c in estimates]
  mem = _pick(records, basins.MEMORISING)
  gen = _pick(records, basins.GENERALISING)
  comparisons = {}
  if gen is not None:
    for r in records:
      if r["kind"] == basins.MEMORISING and r["kept"]:
        comparisons[r["source"]] = compare(r, gen, cell.num_train, conventions)
  return {
    "modulus": cell.modulus,
    "num_train": cell.num_train,
    "train_frac": cell.num_train / cell.modulus**2,
    "x": config.x_of(cell.modulus, cell.num_train),
    "regimes": cell.regimes,
    "generalised": cell.generalised,
    "stop_step": int(cell.run.stop_step[0]),
    "memorisation_step": basins.memorisation_step(cell),
    "dense_rerun_max_loss_difference": basins.dense_mismatch(cell),
    "conventions": conventions,
    "closed_forms": theory_llc,
    "basins": records,
    "pair": None
    if mem is None or gen is None
    else {"memorising": mem["source"], "generalising": gen["source"]},
    "comparisons": comparisons,
    **extra,
  }


def primary(cell: dict, pairing: str = "final_point") -> Optional[dict]:
  """The comparisons (per convention) of the cell's generalising basin with
  its memorising basin chosen by ``pairing`` (``PAIRINGS``; None if either
  basin is missing)."""
  for source in PAIRINGS[pairing]:
    if source in cell["comparisons"]:
      return cell["comparisons"][source]
  return None


def paired(cells: list[dict], convention: str, pairing: str) -> list[dict]:
  """The cells with a comparison under ``convention`` and ``pairing``."""
  return [
    c
    for c in cells
    if primary(c, pairing) and convention in primary(c, pairing)
  ]


def llc_counts(
  cells: list[dict], convention: str, pairing: str = "final_point"
) -> dict:
  """How many paired cells have λ_gen < λ_mem, and how many of each sign
  are resolved (|Δλ| > 2 MCSE)."""
  rows = [
    primary(c, pairing)[convention] for c in paired(cells, convention, pairing)
  ]
  return {
    "cells_with_both_basins": len(rows),
    "gen_lower_llc": sum(r["gen_lower_llc"] for r in rows),
    "gen_lower_llc_resolved": sum(
      r["gen_lower_llc"] and r["resolved"] for r in rows
    ),
    "mem_lower_llc_resolved": sum(
      not r["gen_lower_llc"] and r["resolved"] for r in rows
    ),
    "largest_relative_delta_llc": max(
      (abs(r["relative_delta_llc"]) for r in rows), default=None
    ),
  }


def observed_boundary(cells: list[dict], budget: str) -> dict:
  """The none | generalising boundary in x fitted to the cells (seed 0)."""
  return regimes.fit_threshold(
    [c["x"] for c in cells], [c["regimes"][budget] != "none" for c in cells]
  )


def prefers_generalising(
  cell: dict, convention: str, pairing: str = "final_point"
) -> bool:
  """Whether ΔF < 0 in a paired cell."""
  return primary(cell, pairing)[convention]["delta_free_energy"] < 0


def free_energy_test(
  cells: list[dict], convention: str, budgets, pairing: str = "final_point"
) -> dict:
  """Whether the sign of ΔF predicts the observed regime: per budget the
  matching cells, and the flip of ΔF along x per modulus and pooled,
  beside the observed boundary."""
  found = paired(cells, convention, pairing)
  prefers_gen = [prefers_generalising(c, convention, pairing) for c in found]
  out = {
    "cells": len(found),
    "resolved_cells": sum(
      primary(c, pairing)[convention]["resolved"] for c in found
    ),
    "budgets": {},
    "flip": {},
  }
  for b in budgets:
    observed = [c["regimes"][b] != "none" for c in found]
    out["budgets"][b] = {
      "matches": int(np.sum(np.equal(prefers_gen, observed))),
      "observed_boundary": observed_boundary(cells, b),
    }
  groups = {"all": found} | {
    str(m): [c for c in found if c["modulus"] == m]
    for m in sorted({c["modulus"] for c in found})
  }
  for name, group in groups.items():
    if group:
      out["flip"][name] = regimes.fit_threshold(
        [c["x"] for c in group],
        [prefers_generalising(c, convention, pairing) for c in group],
      )
  return out


def optimisation_cells(
  cells: list[dict], pairing: str = "final_point"
) -> list[dict]:
  """Cells that do not generalise but have a kept generalising basin: per
  convention whether the posterior prefers it (``optimisation``: training
  misses a preferred basin), not (``llc_prefers_memorising``), or
  ``unresolved`` (|Δλ| within twice its MCSE)."""
  out = []
  for c in cells:
    if c["generalised"] or primary(c, pairing) is None:
      continue
    verdict = {
      conv: "unresolved"
      if not cmp["resolved"]
      else "optimisation"
      if cmp["delta_free_energy"] < 0
      else "llc_prefers_memorising"
      for conv, cmp in primary(c, pairing).items()
    }
    out.append(
      {
        "modulus": c["modulus"],
        "num_train": c["num_train"],
        "x": c["x"],
        "verdict": verdict,
      }
    )
  return out


def closed_form_test(cells: list[dict], budgets, width: int) -> dict:
  """Measured over closed-form λ per basin kind (default convention), the
  regime the closed forms predict against the observed one, and their
  boundary x = (K + 1) / (M ln M) per modulus (N = K + 1)."""
  ratios = {basins.MEMORISING: [], basins.GENERALISING: []}
  for c in cells:
    for b in c["basins"]:
      if b["kept"] and "default" in b:
        ratios[b["kind"]].append(b["default"]["llc"] / b["closed_form_llc"])
  matches = {
    b: sum(
      (c["closed_forms"]["predicted_regime"] == "generalising")
      == (c["regimes"][b] != "none")
      for c in cells
    )
    for b in budgets
  }
  return {
    "measured_over_closed_form": {
      k: {
        "median": float(np.median(v)) if v else None,
        "min": float(np.min(v)) if v else None,
        "max": float(np.max(v)) if v else None,
      }
      for k, v in ratios.items()
    },
    "regime_matches": matches,
    "cells": len(cells),
    "predicted_boundary_x": {
      str(m): config.x_of(m, width + 1)
      for m in sorted({c["modulus"] for c in cells})
    },
  }


def norm_ordering(cells: list[dict], convention: str = "default") -> dict:
  """Within each cell, over every two kept basins: in how many does the
  one with the larger parameter norm have the larger λ (a confound of the
  comparison: the basins come from different stages of training)."""
  pairs = agree = 0
  for c in cells:
    kept = [b for b in c["basins"] if b["kept"] and convention in b]
    for a, b in itertools.combinations(kept, 2):
      pairs += 1
      agree += (a["param_norm"] > b["param_norm"]) == (
        a[convention]["llc"] > b[convention]["llc"]
      )
  return {"pairs": pairs, "larger_norm_larger_llc": int(agree)}


def tests(cells: list[dict], budgets, width: int, reference: dict) -> dict:
  """Every test of the module docstring under each pairing, the closed
  forms, and the regimes reference."""
  conventions = [
    c for c in config.CONVENTIONS if any(c in x["conventions"] for x in cells)
  ]
  return {
    "pairings": {
      p: {
        "llc_gen_below_mem": {c: llc_counts(cells, c, p) for c in conventions},
        "free_energy_predicts_regime": {
          c: free_energy_test(cells, c, budgets, p) for c in conventions
        },
        "generalising_basin_not_found": optimisation_cells(cells, p),
      }
      for p in PAIRINGS
    },
    "closed_forms": closed_form_test(cells, budgets, width),
    "llc_follows_param_norm": norm_ordering(cells),
    "regimes_reference": reference,
  }


def _interval(fit: dict) -> str:
  """A fitted threshold's interval as text."""
  if fit["low"] is None or fit["high"] is None:
    return "open"
  return f"{fit['low']:.2f}-{fit['high']:.2f}"


def _pairing_rows(tests: dict, pairing: str, budget: str) -> list[dict]:
  """``paper_rows``' rows of one pairing."""
  rows = []
  for conv, counts in tests["llc_gen_below_mem"].items():
    fe = tests["free_energy_predicts_regime"][conv]
    flip, seen = fe["flip"]["all"], fe["budgets"][budget]
    verdicts = [
      c["verdict"][conv]
      for c in tests["generalising_basin_not_found"]
      if conv in c["verdict"]
    ]
    protocol = f"nβ {conv}, memorising basin: {pairing}"
    rows += [
      {
        "protocol": protocol,
        "quantity": f"cells with λ_gen < λ_mem (resolved at 2 MCSE: "
        f"{counts['gen_lower_llc_resolved']}; the other way: "
        f"{counts['mem_lower_llc_resolved']}; largest |Δλ| / λ_mem "
        f"{counts['largest_relative_delta_llc'] or 0:.3f})",
        "ours": f"{counts['gen_lower_llc']} of "
        f"{counts['cells_with_both_basins']}",
        "paper": None,
        "match": None,
      },
      {
        "protocol": protocol,
        "quantity": f"sign of ΔF predicts the regime at {budget} steps "
        f"(|Δλ| > 2 MCSE in {fe['resolved_cells']}; flip at x "
        f"{_interval(flip)}; observed "
        f"{_interval(seen['observed_boundary'])})",
        "ours": f"{seen['matches']} of {fe['cells']}",
        "paper": True,
        "match": seen["matches"] == fe["cells"],
      },
      {
        "protocol": protocol,
        "quantity": "cells that do not generalise although the posterior "
        "prefers their generalising basin (optimisation; unresolved: "
        f"{verdicts.count('unresolved')})",
        "ours": f"{verdicts.count('optimisation')} of {len(verdicts)}",
        "paper": "all",
        "match": verdicts.count("optimisation") == len(verdicts),
      },
    ]
  return rows


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: per pairing and convention the λ
  ordering, whether the sign of ΔF predicts the regime at the longest
  budget and where it flips, the verdict where training misses a
  generalising basin; then the λ-norm ordering and the closed forms'
  regime."""
  tests, budget = results["tests"], results["budgets"][-1]
  rows = []
  for pairing, found in tests["pairings"].items():
    rows += _pairing_rows(found, pairing, budget)
  norms = tests["llc_follows_param_norm"]
  rows.append(
    {
      "protocol": "nβ default",
      "quantity": "pairs of basins of a cell whose λ order is their "
      "parameter-norm order",
      "ours": f"{norms['larger_norm_larger_llc']} of {norms['pairs']}",
      "paper": None,
      "match": None,
    }
  )
  closed = tests["closed_forms"]
  rows.append(
    {
      "protocol": "closed forms",
      "quantity": "regime predicted by the lazy / feature-learning λ "
      f"matches the observed one at {budget} steps",
      "ours": f"{closed['regime_matches'][budget]} of {closed['cells']}",
      "paper": None,
      "match": None,
    }
  )
  return rows
