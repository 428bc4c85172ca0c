"""What ``autotune`` spends, and how close it lands, on cases of known λ.

Runs ``slt_jax.llc.autotune`` (plain SGLD, its default options, one key) on
the known cases of the test suite: the isotropic quadratic (d = 10,
tolerance 3%), reduced-rank regression ``rrr_5_3_5`` on 200 examples
(tolerances 25% and 15%) and the deep linear network of widths (5, 4, 3, 4)
and rank 1 (λ = 6.5, multiplicity 1; n = 500, tolerance 15%). Each row
records the estimate, its relative error to λ (the finite-temperature value
for the quadratic), whether it settled, the gradient evaluations and
seconds spent, the ladders run and the tuned step, burn-in and draws.
Writes ``DIR/results.json`` with the commit it ran at, so two commits'
files compare the tuner's cost (gradient evaluations do not depend on the
machine). No figure; ``--replot`` only reprints the table.

    python -m experiments.autotune_cost [--quick] [--out DIR]

About 10 minutes on 2 idle CPU cores; ``--quick`` runs only the rrr row at
tolerance 25% (about 30 s).
"""

from __future__ import annotations

import dataclasses
import subprocess
import time

import jax

from experiments import cli, tuning
from slt_jax import known_cases, theory

NAME = "autotune_cost"
DLN_WIDTHS, DLN_RANK, DLN_EXAMPLES = (5, 4, 3, 4), 1, 500


def _cases(key) -> list:
  """(name, case, cfg, data, exact value, tolerance) of every row."""
  iso = known_cases.isotropic_quadratic(10)
  rrr = known_cases.make_case("rrr_5_3_5", key)
  rrr_cfg = dataclasses.replace(rrr.cfg, num_chains=4)
  dln = known_cases.deep_linear(
    key, DLN_WIDTHS, DLN_RANK, DLN_EXAMPLES, noise_std=0.0
  )
  dln_llc = theory.deep_linear_llc(DLN_WIDTHS, DLN_RANK)[0]
  return [
    ("isotropic_d10", iso, iso.cfg, iso.data, iso.finite_temp, 0.03),
    ("rrr_5_3_5", rrr, rrr_cfg, rrr.data[:200], rrr.true_llc, 0.25),
    ("rrr_5_3_5", rrr, rrr_cfg, rrr.data[:200], rrr.true_llc, 0.15),
    ("dln_5_4_3_4", dln, dln.cfg, dln.data, dln_llc, 0.15),
  ]


def _row(key, name, case, cfg, data, exact, tolerance) -> dict:
  """One autotune run's row."""
  start = time.perf_counter()
  tuned, report, _ = tuning.autotune_or_reason(
    key, case.loss_fn, case.params, data, cfg, recorded=(), tolerance=tolerance
  )
  estimate = (
    float("nan") if report.result is None else float(report.result.mean)
  )
  ladders = {r.phase for r in report.rows if r.phase.startswith("ladder")}
  return {
    "case": name,
    "tolerance": tolerance,
    "exact": float(exact),
    "estimate": estimate,
    "rel_err": estimate / float(exact) - 1,
    "settled": bool(report.settled),
    "gradient_evaluations": int(report.gradient_evaluations),
    "seconds": time.perf_counter() - start,
    "ladders": len(ladders),
    "step_size": float(tuned.step_size),
    "num_burnin": tuned.num_burnin,
    "num_draws": tuned.num_draws,
    "reason": report.reason,
  }


def _commit() -> str:
  """The checked-out commit, or ``unknown`` outside a git checkout."""
  try:
    return subprocess.run(
      ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def compute(seed: int, quick: bool) -> dict:
  """Every row (``quick``: the second only), in order, with the commit."""
  key = jax.random.key(seed)
  cases = _cases(key)
  rows = []
  for case in cases[1:2] if quick else cases:
    rows.append(_row(key, *case))
    print(_text(rows[-1]), flush=True)
  return {
    "name": NAME,
    "quick": quick,
    "seed": seed,
    "commit": _commit(),
    "rows": rows,
  }


def _text(row: dict) -> str:
  return (
    f"{row['case']:<14} tol {row['tolerance']:.0%}: {row['estimate']:.4g} vs "
    f"{row['exact']:.4g} ({row['rel_err']:+.1%}), "
    f"{'settled' if row['settled'] else 'NOT SETTLED'}, "
    f"{row['gradient_evaluations']:,} gradients, {row['ladders']} ladders, "
    f"{row['seconds']:.0f} s"
  )


def reprint(results: dict, out_dir: str) -> None:
  """Prints the table of ``results`` (no figure)."""
  del out_dir
  for row in results["rows"]:
    print(_text(row))


def main(argv=None) -> dict:
  args = cli.parse_args(__doc__, None, argv)
  return cli.compute_then_plot(
    NAME, args, lambda: compute(args.seed, args.quick), reprint
  )


if __name__ == "__main__":
  main()
