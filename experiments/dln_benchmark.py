"""Deep linear network benchmark: autotuned LLC estimates against the exact λ.

Draws deep linear networks (``slt_jax.known_cases.deep_linear``: depth L
(layers) uniform in ``[min_depth, max_depth]``, parameter count log-uniform in
``[min_params, max_params]``, widths within a factor of two of each other, the
true map's rank uniform in ``[1, min width]``), noiseless labels on ``n``
standard normal inputs, nβ = n / ln n, γ and the minibatch of the config. For
every network and every sampler, ``slt_jax.llc.autotune`` chooses the step
size, burn-in and chain length (no step size is written here) and its tuned
run is the estimate. Each row records the exact λ and its multiplicity m
(Aoyagi 2024, ``slt_jax.theory.deep_linear_llc``), the estimate ± its MCSE,
the relative error, ESS, split R-hat, the estimate's slope in ln γ read from
the tuned run's draws (``localization_slope``; rows made by earlier
code lack it), the gradient evaluations and wall time autotune spent, and
whether it settled. The summary gives, per sampler, the
median and largest |relative error| on the m = 1 and m > 1 networks and the
fraction within 5% and 10%; the ranking by median error on m = 1 is set
beside the published one (RMSprop-SGLD the most faithful local sampler on
DLNs). Writes ``DIR/results.json``, ``DIR/dln_benchmark.png`` (estimate
against λ, log-log; relative error against the parameter count, per
sampler) and ``DIR/table.md`` (the relative errors, network by sampler);
``--replot`` redraws both.

Each (network, sampler) row is saved to ``DIR/rows/`` when it finishes, and
within a row each of autotune's runs to ``DIR/chains/`` (``autotune``'s
``out_path``), so an interrupted run resumes where it stopped, inside a row
too (rows of another config are refused). Networks run smallest first.

    python -m experiments.dln_benchmark --quick   # 4 networks, 1e2..3e3
    python -m experiments.dln_benchmark           # 20 networks, 1e2..1e6

Cost: autotune's burn-in is two relaxation times of the localization at the
smallest step of a ladder, ``2 / (eps γ)`` steps, and the step falls as the
curvature ``nβ h`` grows, so a row costs about ``nβ h / γ`` steps times the
chains and rungs: 1e5 to 1e7 gradient evaluations. ``--quick`` (16 rows)
takes about an hour on 2 CPU cores; the default, with networks up to 1e6
parameters, is sized for an accelerator (``--samplers``, ``--min-params`` and
``--max-params`` split it into resumable pieces; each row records the
device it ran on).

Noiseless labels: with label noise the loss near w* carries the noise's
sample fluctuation, which biases a finite-n estimate low by about λ / ln n.

γ (``localization``, 20; ``--localization`` overrides it) is a modelling
choice that no single value fits across depths at n = 10⁴. At γ = 2 the
chains of deep networks (6 to 7 layers) leave the neighbourhood of w* (the
localization radius ``1 / sqrt(γ)`` per coordinate exceeds the weights'
scale), read 20–90% high and diverge; a larger γ pulls the estimate down on
shallow networks, most where the rank is low (on widths (8, 8, 8), rank 1:
−2% at γ = 2, −14% at γ = 20). γ = 20 is the default: in quick mode every
row settles there (5 of 16 at γ = 2) and every m = 1 row is within 10%.
``experiments.dln_localization`` measures the estimate against γ at fixed
steps.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

import jax
import matplotlib.pyplot as plt
import numpy as np
import tqdm

from experiments import cli, tuning
from slt_jax import known_cases, persist, theory
from slt_jax.grokking import plotting

NAME = "dln_benchmark"
SAMPLERS = ("sgld", "rmsprop_sgld", "sghmc", "sgnht")
PUBLISHED_RANKING = ("rmsprop_sgld", "sgld", "sgnht", "sghmc")
# Accelerator-sized networks (widths, rank) for a device run, 1e7..1e8
# parameters; listed in the results, not run on a CPU.
ACCELERATOR_CASES = (
  ((2000, 2000, 2000, 500), 100),
  ((3000,) * 4, 300),
  ((4000,) * 6, 1000),
  ((5000,) * 5, 2000),
)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """The networks and the estimator's modelling choices.

  Attributes:
    num_cases: networks drawn.
    min_params: smallest parameter count drawn (log-uniform).
    max_params: largest parameter count drawn.
    min_depth: fewest layers L.
    max_depth: most layers L.
    num_examples: n (nβ = n / ln n).
    batch_size: SGLD minibatch.
    localization: γ.
    samplers: samplers run on every network.
    budget_grads: autotune's budget per (network, sampler), in gradient
      evaluations (chains x steps).
    tolerance: autotune's accepted relative discretisation bias.
  """

  num_cases: int
  min_params: float
  max_params: float
  min_depth: int = 2
  max_depth: int = 8
  num_examples: int = 10_000
  batch_size: int = 500
  localization: float = 20.0
  samplers: tuple = SAMPLERS
  budget_grads: float = 4e6
  tolerance: float = 0.05


CONFIGS = {
  "smoke": BenchmarkConfig(
    2,
    20,
    60,
    max_depth=3,
    samplers=("sgld", "rmsprop_sgld"),
    budget_grads=2e6,
  ),
  "quick": BenchmarkConfig(4, 100, 3000, max_depth=4),
  "default": BenchmarkConfig(20, 100, 1e6),
}
CONFIGS["paper"] = CONFIGS["default"]


def draw_networks(seed: int, cfg: BenchmarkConfig) -> list[dict]:
  """The benchmark's networks, smallest first.

  Args:
    seed: numpy seed of the draw.
    cfg: the benchmark config.

  Returns:
    One dict per network: ``index``, ``widths``, ``rank``, ``num_params``,
    ``true_llc`` and ``multiplicity``.

  >>> nets = draw_networks(0, CONFIGS["quick"])
  >>> [n["num_params"] for n in nets] == sorted(n["num_params"] for n in nets)
  True
  """
  rng = np.random.default_rng(seed)
  networks = []
  for index in range(cfg.num_cases):
    target = 10 ** rng.uniform(
      math.log10(cfg.min_params), math.log10(cfg.max_params)
    )
    depth = int(rng.integers(cfg.min_depth, cfg.max_depth + 1))
    base = math.sqrt(target / depth)
    widths = tuple(
      max(2, round(base * 2 ** rng.uniform(-0.5, 0.5)))
      for _ in range(depth + 1)
    )
    rank = int(rng.integers(1, min(widths) + 1))
    true_llc, multiplicity = theory.deep_linear_llc(widths, rank)
    networks.append(
      {
        "index": index,
        "widths": list(widths),
        "rank": rank,
        "num_params": _num_params(widths),
        "true_llc": true_llc,
        "multiplicity": multiplicity,
      }
    )
  return sorted(networks, key=lambda n: n["num_params"])


def _num_params(widths) -> int:
  """Parameters of the network ``widths``: ``sum_i H_i H_{i-1}``."""
  return sum(a * b for a, b in zip(widths, widths[1:]))


def run_network(
  net: dict,
  sampler: str,
  cfg: BenchmarkConfig,
  seed: int,
  tuning_path: Optional[str] = None,
):
  """Autotunes one sampler on one network; its row of the table.

  Args:
    net, sampler, cfg, seed: the network, the sampler, the config, the seed.
    tuning_path: ``autotune``'s ``out_path``: its runs are saved there, and
      an interrupted row resumes from the runs that finished.

  Returns:
    dict: the network's fields plus ``sampler``, ``estimate``, ``mcse``,
    ``rel_err``, ``ess``, ``rhat``, ``settled``, ``reason``, the tuned
    ``step_size``, ``num_burnin``, ``num_draws``, ``extrapolated`` (the last
    ladder's linear extrapolation to eps -> 0), ``gradient_evaluations``,
    ``seconds`` and ``tuning_resumed`` (saved runs were found: ``seconds``
    then leaves out the time they took).
  """
  resumed = bool(tuning_path) and os.path.exists(tuning_path)
  key = jax.random.fold_in(jax.random.key(seed), net["index"])
  case = known_cases.deep_linear(
    key,
    tuple(net["widths"]),
    net["rank"],
    cfg.num_examples,
    noise_std=0.0,
    localization=cfg.localization,
  )
  sampler_cfg = dataclasses.replace(
    case.cfg, sampler=sampler, batch_size=cfg.batch_size
  )
  tuned, report, reason = tuning.autotune_or_reason(
    key,
    case.loss_fn,
    case.params,
    case.data,
    sampler_cfg,
    budget_grads=cfg.budget_grads,
    tolerance=cfg.tolerance,
    out_path=tuning_path,
  )
  if report is None:
    return _unaffordable_row(net, sampler, reason)
  final = report.final_row
  estimate = np.nan if report.result is None else float(report.result.mean)
  pick = lambda field: np.nan if final is None else float(getattr(final, field))
  extrapolated = report.extrapolated
  return {
    **net,
    "sampler": sampler,
    "estimate": estimate,
    "mcse": pick("mcse"),
    "rel_err": estimate / net["true_llc"] - 1,
    "ess": pick("ess"),
    "rhat": pick("rhat"),
    "settled": bool(report.settled),
    "reason": report.reason,
    "step_size": tuned.step_size,
    "num_burnin": tuned.num_burnin,
    "num_draws": tuned.num_draws,
    "extrapolated": None if extrapolated is None else float(extrapolated),
    **tuning.slope_fields(report.result),
    "gradient_evaluations": int(report.gradient_evaluations),
    "seconds": float(report.seconds),
    "tuning_resumed": resumed,
    "device": jax.devices()[0].device_kind,
  }


def _unaffordable_row(net: dict, sampler: str, reason: str) -> dict:
  """The row of a sampler whose first ladder exceeds the budget: no
  estimate (a miss in the summary), the reason recorded."""
  nan = float("nan")
  return {
    **net,
    "sampler": sampler,
    "estimate": nan,
    "mcse": nan,
    "rel_err": nan,
    "ess": nan,
    "rhat": nan,
    "settled": False,
    "reason": reason,
    "step_size": nan,
    "num_burnin": 0,
    "num_draws": 0,
    "extrapolated": None,
    **tuning.slope_fields(None),
    "gradient_evaluations": 0,
    "seconds": 0.0,
    "device": jax.devices()[0].device_kind,
  }


def _row_path(out_dir: str, net: dict, sampler: str) -> str:
  return os.path.join(out_dir, "rows", f"net{net['index']:02d}_{sampler}.json")


def _cached_row(path: str, spec_hash: str) -> Optional[dict]:
  """The saved row at ``path`` if it belongs to this run, else None.

  Raises:
    ValueError: if ``path`` holds a row of another config or seed.
  """
  if not os.path.exists(path):
    return None
  saved = persist.load_json(path)
  if saved.get("fingerprint") != spec_hash:
    raise ValueError(
      f"{path!r} holds a row of another benchmark config or seed "
      f"(fingerprint {saved.get('fingerprint')}, this run's is {spec_hash}):"
      " pass another --out, or delete that folder"
    )
  return saved["row"]


def compute(
  mode: str,
  seed: int,
  out_dir: str,
  samplers: Optional[tuple] = None,
  max_params: Optional[int] = None,
  min_params: Optional[int] = None,
  localization: Optional[float] = None,
) -> dict:
  """The (network, sampler) rows at ``CONFIGS[mode]``, resuming saved rows;
  the results payload.

  Args:
    mode: key of ``CONFIGS``.
    seed: seed of the networks and the chains.
    out_dir: output folder (rows go to ``out_dir/rows/``).
    samplers: run only these of the config's samplers (their saved rows
      and the others' are all reported).
    max_params: run no network larger than this (saved rows are reported).
    min_params: run no network smaller than this (an accelerator takes the
      large ones; saved rows are reported).
    localization: γ in place of the config's (its rows are another run's).

  Returns:
    The payload; ``missing`` lists the (network index, sampler) pairs with
    no row yet.
  """
  cfg = CONFIGS[mode]
  if localization is not None:
    cfg = dataclasses.replace(cfg, localization=localization)
  unknown = set(samplers or ()) - set(cfg.samplers)
  if unknown:
    raise ValueError(
      f"samplers={sorted(unknown)} are not in the config's {cfg.samplers}"
    )
  networks = draw_networks(seed, cfg)
  spec_hash = persist.fingerprint(
    {"config": dataclasses.asdict(cfg), "seed": seed}
  )
  rows, missing = [], []
  jobs = [(net, s) for net in networks for s in cfg.samplers]
  for net, sampler in tqdm.tqdm(jobs, desc="networks x samplers"):
    path = _row_path(out_dir, net, sampler)
    row = _cached_row(path, spec_hash)
    runs_here = (
      sampler in (samplers or cfg.samplers)
      and net["num_params"] <= (max_params or math.inf)
      and net["num_params"] >= (min_params or 0)
    )
    if row is None and runs_here:
      tuning_path = os.path.join(
        out_dir, "chains", f"net{net['index']:02d}_{sampler}"
      )
      row = run_network(net, sampler, cfg, seed, tuning_path)
      persist.save_json(path, {"fingerprint": spec_hash, "row": row})
    if row is None:
      missing.append([net["index"], sampler])
      continue
    rows.append(row)
    tqdm.tqdm.write(_row_text(row))
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(cfg),
    "seed": seed,
    "networks": networks,
    "rows": rows,
    "missing": missing,
    "summary": summarize(rows, cfg.samplers),
    "published_ranking": list(PUBLISHED_RANKING),
    "accelerator_cases": [
      {
        "widths": list(w),
        "rank": r,
        "num_params": _num_params(w),
        "true_llc": theory.deep_linear_llc(w, r)[0],
      }
      for w, r in ACCELERATOR_CASES
    ],
  }


def _row_text(row: dict) -> str:
  num = lambda key: math.nan if row[key] is None else float(row[key])
  return (
    f"{row['sampler']:<13} d={row['num_params']:>8,} L={len(row['widths']) - 1}"
    f" r={row['rank']:<4} m={row['multiplicity']} λ={row['true_llc']:<10.6g}"
    f" est={num('estimate'):<10.5g} ± {num('mcse'):.2g}"
    f" ({num('rel_err'):+.1%}) {'settled' if row['settled'] else 'NOT SETTLED'}"
    f" {row['gradient_evaluations']:,} grads {row['seconds']:.0f} s"
  )


def summarize(rows: list[dict], samplers) -> dict:
  """Per sampler and multiplicity class (``m1``: m = 1, ``m_gt1``: m > 1):
  median and largest |relative error|, the fraction within 5% and 10%, rows
  settled, gradients and seconds; ``ranking``: samplers by median |relative
  error| on m = 1 (on all rows if none has m = 1).

  >>> rows = [dict(sampler="sgld", multiplicity=1, rel_err=-0.02,
  ...              settled=True, gradient_evaluations=10, seconds=1.0)]
  >>> s = summarize(rows, ["sgld"])
  >>> s["sgld"]["m1"]["within_5pct"], s["ranking"]
  (1.0, ['sgld'])
  """
  out = {}
  for sampler in samplers:
    mine = [r for r in rows if r["sampler"] == sampler]
    out[sampler] = {
      "m1": _error_stats([r for r in mine if r["multiplicity"] == 1]),
      "m_gt1": _error_stats([r for r in mine if r["multiplicity"] > 1]),
    }
  has_m1 = any(out[s]["m1"]["count"] for s in samplers)
  group = "m1" if has_m1 else "all"

  def median_error(sampler: str) -> float:  # no rows: last.
    median = _error_stats(
      [
        r
        for r in rows
        if r["sampler"] == sampler
        and (group == "all" or r["multiplicity"] == 1)
      ]
    )["median_abs_rel_err"]
    return math.inf if median is None else median

  out["ranking"] = sorted(samplers, key=median_error)
  out["ranking_on"] = group
  return out


def _error_stats(rows: list[dict]) -> dict:
  """Error statistics of a group of rows (a NaN estimate counts as a miss)."""
  err = np.abs(np.array([r["rel_err"] for r in rows], float))
  finite = np.where(np.isfinite(err), err, np.inf)
  return {
    "count": len(rows),
    "median_abs_rel_err": float(np.median(finite)) if rows else None,
    "max_abs_rel_err": float(np.max(finite)) if rows else None,
    "within_5pct": float(np.mean(finite <= 0.05)) if rows else None,
    "within_10pct": float(np.mean(finite <= 0.10)) if rows else None,
    "settled": sum(r["settled"] for r in rows),
    "gradient_evaluations": sum(r["gradient_evaluations"] for r in rows),
    "seconds": sum(r["seconds"] for r in rows),
  }


def table(results: dict) -> str:
  """Markdown table: one line per network (smallest first), the relative
  error per sampler, ``*`` where the run did not settle, "not run" where it
  has no row.

  >>> net = dict(index=0, widths=[3, 2], rank=1, num_params=6, true_llc=2.0,
  ...            multiplicity=1)
  >>> row = dict(net, sampler="sgld", rel_err=0.031, settled=False)
  >>> res = dict(networks=[net], rows=[row],
  ...            config=dict(samplers=["sgld", "sghmc"]))
  >>> print(table(res).splitlines()[-1])
  | 6 | 1, 1 | 2 (1) | +3.1%* | not run |
  """
  samplers = results["config"]["samplers"]
  found = {(r["index"], r["sampler"]): r for r in results["rows"]}

  def cell(net: dict, sampler: str) -> str:
    row = found.get((net["index"], sampler))
    if row is None:
      return "not run"
    if not np.isfinite(row["rel_err"]):
      return "no estimate"
    return f"{row['rel_err']:+.1%}" + ("" if row["settled"] else "*")

  lines = [
    "| d | layers, rank | λ (m) | " + " | ".join(samplers) + " |",
    "|---" * (3 + len(samplers)) + "|",
  ]
  for net in sorted(results["networks"], key=lambda n: n["num_params"]):
    lines.append(
      f"| {net['num_params']:,} | {len(net['widths']) - 1}, {net['rank']} | "
      f"{net['true_llc']:g} ({net['multiplicity']}) | "
      + " | ".join(cell(net, s) for s in samplers)
      + " |"
    )
  return "\n".join(lines) + "\n"


def plot(results: dict, out_dir: str) -> None:
  """Estimate against λ (log-log) and relative error against the parameter
  count, one marker per sampler (hollow: not settled); the relative errors
  as ``table.md`` (``table``)."""
  persist.atomic_write(
    os.path.join(out_dir, "table.md"),
    lambda f: f.write(table(results).encode()),
  )
  if not results["rows"]:
    return
  fig, (ax_est, ax_err) = plt.subplots(1, 2, figsize=(11, 4.5))
  for i, (sampler, marker) in enumerate(
    zip(results["config"]["samplers"], "osD^v")
  ):
    rows = [r for r in results["rows"] if r["sampler"] == sampler]
    for settled in (True, False):
      part = [r for r in rows if r["settled"] == settled]
      if not part:
        continue
      get = lambda key: np.array([r[key] for r in part], float)
      style = dict(
        marker=marker,
        color=f"C{i}",
        linestyle="none",
        alpha=0.8,
        label=sampler if settled else f"{sampler} (not settled)",
        fillstyle="full" if settled else "none",
      )
      ax_est.errorbar(get("true_llc"), get("estimate"), get("mcse"), **style)
      ax_err.plot(get("num_params"), 100 * get("rel_err"), **style)
  lims = [min(r["true_llc"] for r in results["rows"]) / 1.5, None]
  lims[1] = max(r["true_llc"] for r in results["rows"]) * 1.5
  ax_est.plot(lims, lims, "k--", lw=1, label="exact λ")
  ax_est.set(xscale="log", yscale="log", xlabel="exact λ", ylabel="estimate")
  for y in (-10, -5, 5, 10):
    ax_err.axhline(y, color="grey", lw=0.8, ls=":" if abs(y) == 10 else "--")
  ax_err.axhline(0, color="k", lw=0.8)
  ax_err.set(xscale="log", xlabel="parameters", ylabel="relative error (%)")
  ax_est.legend(fontsize=7)
  fig.suptitle(
    f"Deep linear networks, n = {results['config']['num_examples']:,}:"
    " autotuned estimates against the exact λ"
  )
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"))


def _add_flags(parser) -> None:
  parser.add_argument(
    "--samplers",
    default=None,
    help="comma-separated samplers to run in this process (default: all;"
    " two processes with disjoint samplers can share --out)",
  )
  parser.add_argument(
    "--max-params",
    type=int,
    default=None,
    help="run no network with more parameters (saved rows still count)",
  )
  parser.add_argument(
    "--min-params",
    type=int,
    default=None,
    help="run no network with fewer parameters (saved rows still count)",
  )
  parser.add_argument(
    "--localization",
    type=float,
    default=None,
    help="γ in place of the config's "
    f"{CONFIGS['default'].localization:g} (use another --out)",
  )


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, _add_flags, argv)
  out_dir = cli.output_dir(NAME, args.out)
  samplers = tuple(args.samplers.split(",")) if args.samplers else None
  return cli.compute_then_plot(
    NAME,
    args,
    lambda: compute(
      mode,
      args.seed,
      out_dir,
      samplers,
      args.max_params,
      args.min_params,
      args.localization,
    ),
    plot,
  )


if __name__ == "__main__":
  main()
