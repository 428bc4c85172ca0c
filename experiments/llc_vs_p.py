"""Fig. 1: the final LLC of trained networks grows linearly with the prime p.

For every width K and prime p, trains the quadratic network under each
protocol (``experiments.protocols``: ``recipe``, the SPEC §1 recipe at batch
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

import dataclasses
import os
import time
from typing import Optional, Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import common, protocols
from slt_jax import theory
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import grokking_metrics, plotting
from slt_jax.grokking.config import DataConfig, ModelConfig

NAME = "llc_vs_p"
PRIMES = (53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
PAPER_SLOPES = {600: 51.06, 1000: 80.57, 1400: 108.61}
SLOPE_TOLERANCE = 0.3  # SPEC §2: slopes match within ±30% ...
MIN_R2 = 0.95  # ... and trends hold with R² >= 0.95.


@dataclasses.dataclass(frozen=True)
class ScanConfig:
  """A scan of the final LLC along one axis (Figs. 1 and 2).

  Attributes:
    series: fixed values, one line each (widths for Fig. 1, primes for Fig. 2).
    xs: scanned values (primes for Fig. 1, widths for Fig. 2).
    seeds: training seeds per point.
    num_steps: recipe training steps; the authors' protocol's step cap.
    train_frac: training fraction of the p² pairs.
    smoke: shrink the protocols to a seconds-long test configuration.
    settled_series: series values that also get settled chains (None: all);
      settled chains cost 5x the paper's window.
  """

  series: tuple[int, ...]
  xs: tuple[int, ...]
  seeds: int = 1
  num_steps: int = 10000
  train_frac: float = 0.4
  smoke: bool = False
  settled_series: Optional[tuple[int, ...]] = None


CONFIGS = {
  "smoke": ScanConfig(
    series=(32,), xs=(7, 11), seeds=2, num_steps=200, train_frac=0.5, smoke=True
  ),
  "quick": ScanConfig(series=(1000,), xs=(53, 67, 79, 97), num_steps=6000),
  "default": ScanConfig(series=(600, 1000, 1400), xs=PRIMES),
  "paper": ScanConfig(
    series=(600, 1000, 1400), xs=PRIMES, settled_series=(1000,)
  ),
}


def protocol_for(name: str, cfg: ScanConfig) -> protocols.Protocol:
  """The protocol ``name`` at this scan's length (tiny for ``smoke``)."""
  if not cfg.smoke:
    return protocols.scaling_protocol(name, cfg.num_steps)
  proto = protocols.scaling_protocol(name)
  small = lambda s: dataclasses.replace(
    s, num_draws=20, num_burnin=5, batch_size=16
  )
  return dataclasses.replace(
    proto,
    train=dataclasses.replace(
      proto.train,
      batch_size=16,
      num_steps=cfg.num_steps,
      log_every=20,
      ckpt_every=100,
      chunk_steps=100,
      stop_check_every=None,
    ),
    sgld=small(proto.sgld),
    settled=small(proto.settled),
  )


def measure_point(
  key_data,
  key_point,
  p: int,
  width: int,
  cfg: ScanConfig,
  proto: protocols.Protocol,
  out_dir: str,
  store: Optional[str],
  settled: bool = True,
) -> dict:
  """Trains (or loads) ``cfg.seeds`` runs at (p, K) and estimates their final
  LLC under ``proto``.

  Args:
    key_data: key of the train/validation split (folded with p, so every
      width at one p sees the same split).
    key_point: key of this point's training and chains (shared by protocols).
    p: prime.
    width: hidden width K.
    cfg: scan config.
    proto: the protocol.
    out_dir: folder for the point's resumable chains.
    store: run store folder (None: the default ``runs/``).
    settled: also run settled chains (else ``llc_settled`` is None).

  Returns:
    dict of per-seed training outcomes, the LLC estimates and the theory
    values.
  """
  data_key = jax.random.fold_in(key_data, p)
  data = data_lib.modular_arithmetic(
    data_key, DataConfig(p=p, train_frac=cfg.train_frac)
  )
  key_train, key_llc = jax.random.split(key_point)
  start = time.perf_counter()
  run = common.trained_run(
    key_train,
    data,
    ModelConfig(p=p, width=width),
    proto.train,
    data_key=data_key,
    seeds=cfg.seeds,
    store=store,
    label=f"p{p}_K{width}_{proto.name}",
    progress=False,
  )
  train_seconds = time.perf_counter() - start
  final = proto.final_params(run)
  paper, *rest = common.llc_grid(
    key_llc,
    common.loss_fn(proto.train.loss),
    final,
    data.train,
    [proto.sgld] + ([proto.settled] if settled else []),
    os.path.join(out_dir, "points", f"p{p}_K{width}_{proto.name}"),
    batch_ndim=1,
  )
  final_train_acc = run.metrics["train_acc"][:, -1]
  final_val_acc = run.metrics["val_acc"][:, -1]
  pairs = np.asarray(data.train.pairs)
  return {
    "p": p,
    "width": width,
    "protocol": proto.name,
    "num_train": data.num_train,
    "memorisation_step": grokking_metrics.memorisation_step(
      run.log_steps, run.metrics["train_acc"]
    ),
    "generalisation_step": grokking_metrics.generalisation_step(
      run.log_steps, run.metrics["val_acc"]
    ),
    "stop_step": run.stop_step,
    "final_train_acc": final_train_acc,
    "final_val_acc": final_val_acc,
    "final_train_loss": run.metrics["train_loss"][:, -1],
    "kept": proto.kept(final_train_acc, final_val_acc),
    "train_seconds": train_seconds,
    "llc_paper_settings": paper,
    "llc_settled": rest[0] if rest else None,
    "theory_generic_llc": theory.modular_llc(p, width, pairs, proto.train.loss),
    "theory_lazy_llc": theory.lazy_random_features_llc(
      p, width, data.num_train
    ),
  }


def fit_series(
  x: Sequence[float], y_SxX: np.ndarray, paper_slope: Optional[float]
) -> dict:
  """Line through the seed means and the paper comparison.

  Args:
    x: (X,) abscissae.
    y_SxX: (S, X) values per seed (nan where a run was dropped; a column
      with no value is left out of the fit).
    paper_slope: the paper's slope, or None.

  Returns:
    dict with slope, intercept, r2, slope_ci95 (None for one seed), linear
    (r2 >= 0.95), paper_slope, slope_over_paper, slope_matches (within
    ±30%), and the fitted ``xs`` and ``llc`` (seed means).
  """
  x = np.asarray(x, dtype=float)
  y_SxX = np.atleast_2d(np.asarray(y_SxX, dtype=float))
  with np.errstate(invalid="ignore"):
    y_X = np.nanmean(y_SxX, axis=0) if y_SxX.size else y_SxX
  ok = np.isfinite(y_X)
  if ok.sum() < 2:
    return {
      "slope": None,
      "intercept": None,
      "r2": None,
      "slope_ci95": None,
      "linear": False,
      "paper_slope": paper_slope,
      "slope_over_paper": None,
      "slope_matches": False,
      "xs": x[ok],
      "llc": y_X[ok],
    }
  fit = grokking_metrics.linear_fit(x[ok], y_X[ok])
  ci = (
    grokking_metrics.bootstrap_slope_ci(x[ok], y_SxX[:, ok])
    if y_SxX.shape[0] > 1 and np.isfinite(y_SxX[:, ok]).all()
    else None
  )
  ratio = fit["slope"] / paper_slope if paper_slope else None
  return {
    **fit,
    "slope_ci95": ci,
    "linear": fit["r2"] >= MIN_R2,
    "paper_slope": paper_slope,
    "slope_over_paper": ratio,
    "slope_matches": (
      abs(ratio - 1) <= SLOPE_TOLERANCE if ratio is not None else None
    ),
    "xs": x[ok],
    "llc": y_X[ok],
  }


def compare_with_authors(
  points: list[dict], committed: dict, fixed: int, series_name: str, axis: str
) -> Optional[dict]:
  """Our authors-protocol values against the authors' committed ones.

  Returns:
    None when no point matches, else ``{"points": [{x, ours, authors,
    rel_diff}], "max_abs_rel_diff", "fit_ours", "fit_authors"}``.
  """
  rows = []
  for r in points:
    x = r[axis]
    if r[series_name] == fixed and x in committed:
      ours = float(
        np.nanmean(np.where(r["kept"], r["llc_paper_settings"]["mean"], np.nan))
      )
      rows.append(
        {
          axis: x,
          "ours": ours,
          "authors": committed[x],
          "rel_diff": ours / committed[x] - 1,
        }
      )
  if not rows:
    return None
  xs = [row[axis] for row in rows]
  return {
    "points": rows,
    "max_abs_rel_diff": float(max(abs(row["rel_diff"]) for row in rows)),
    "fit_ours": grokking_metrics.linear_fit(xs, [row["ours"] for row in rows])
    if len(rows) > 1
    else None,
    "fit_authors": grokking_metrics.linear_fit(
      xs, [row["authors"] for row in rows]
    )
    if len(rows) > 1
    else None,
  }


def compute_scan(
  name: str,
  axis: str,
  cfg: ScanConfig,
  names: Sequence[str],
  paper_slopes: dict,
  seed: int,
  out_dir: str,
  store: Optional[str],
  committed: Optional[dict] = None,
  extra_points: Sequence[tuple] = (),
) -> dict:
  """Shared compute of Figs. 1 and 2: scan ``axis`` for every series value
  under every protocol in ``names``.

  Args:
    name: experiment name.
    axis: ``p`` (series are widths) or ``width`` (series are primes).
    cfg: scan config.
    names: protocol names.
    paper_slopes: series value -> the paper's slope.
    seed: root PRNG seed.
    out_dir: output folder (resumable chains go below it).
    store: run store (None: default).
    committed: ``(protocol, series value, {x: value})`` of the authors'
      committed results to compare with, or None.
    extra_points: ``(Protocol, series value, xs)`` measured in addition (e.g.
      the authors' batch-128 width sweep), reported under ``extra``.

  Returns:
    The results payload (JSON-able).
  """
  key_data, key_points = jax.random.split(jax.random.key(seed))
  series_name = "width" if axis == "p" else "p"
  start = time.perf_counter()

  def measure(proto, fixed, x, settled=False):
    p, width = (x, fixed) if axis == "p" else (fixed, x)
    key = jax.random.fold_in(jax.random.fold_in(key_points, p), width)
    row = measure_point(
      key_data, key, p, width, cfg, proto, out_dir, store, settled
    )
    settled_llc = (
      np.round(row["llc_settled"]["mean"]).tolist() if settled else None
    )
    print(
      f"[{proto.name}] p={p} K={width}: LLC "
      f"{np.round(row['llc_paper_settings']['mean']).tolist()} (settled "
      f"{settled_llc}), stop step "
      f"{row['stop_step'].tolist()}, val acc "
      f"{np.round(row['final_val_acc'], 3).tolist()}",
      flush=True,
    )
    return row

  points, fits, fits_settled, seconds, sources = [], {}, {}, {}, {}
  for proto_name in names:
    proto = protocol_for(proto_name, cfg)
    sources[proto_name] = {
      "source": proto.source,
      "known": proto.known,
      "train": dataclasses.asdict(proto.train),
      "sgld": dataclasses.asdict(proto.sgld),
      "settled": dataclasses.asdict(proto.settled),
      "final": proto.final,
      "min_final_acc": proto.min_final_acc,
    }
    proto_start = time.perf_counter()
    fits[proto_name], fits_settled[proto_name] = {}, {}
    for fixed in cfg.series:
      with_settled = cfg.settled_series is None or fixed in cfg.settled_series
      row = [measure(proto, fixed, x, with_settled) for x in cfg.xs]
      points += row
      kept = lambda key: np.stack(
        [np.where(r["kept"], r[key]["mean"], np.nan) for r in row], 1
      )
      xs = np.asarray(cfg.xs, dtype=float)
      fits[proto_name][str(fixed)] = {
        **fit_series(xs, kept("llc_paper_settings"), paper_slopes.get(fixed)),
        "theory_generic_slope": grokking_metrics.linear_fit(
          xs, [r["theory_generic_llc"] for r in row]
        )["slope"],
        "theory_lazy_slope": grokking_metrics.linear_fit(
          xs, [r["theory_lazy_llc"] for r in row]
        )["slope"],
        "dropped": [r[axis] for r in row if not np.all(r["kept"])],
      }
      if with_settled:
        fits_settled[proto_name][str(fixed)] = fit_series(
          xs, kept("llc_settled"), paper_slopes.get(fixed)
        )
    seconds[proto_name] = time.perf_counter() - proto_start
  extra = []
  for proto, fixed, xs in extra_points:
    row = [measure(proto, fixed, x) for x in xs]
    points += row
    extra.append(
      {
        "protocol": proto.name,
        "source": proto.source,
        series_name: fixed,
        "xs": xs,
        "fit": fit_series(
          xs,
          np.stack(
            [
              np.where(r["kept"], r["llc_paper_settings"]["mean"], np.nan)
              for r in row
            ],
            1,
          ),
          None,
        ),
      }
    )
  comparisons = []
  for proto_name, fixed, values in committed or ():
    found = compare_with_authors(
      [r for r in points if r["protocol"] == proto_name],
      values,
      fixed,
      series_name,
      axis,
    )
    if found is not None:
      comparisons.append({"protocol": proto_name, series_name: fixed, **found})
  return {
    "name": name,
    "axis": axis,
    "series_name": series_name,
    "config": dataclasses.asdict(cfg),
    "protocols": sources,
    "points": points,
    "fits": fits,
    "fits_settled": fits_settled,
    "extra": extra,
    "authors_committed": comparisons,
    "paper_reference": {
      "slopes": {str(k): v for k, v in paper_slopes.items()},
      "slope_tolerance": SLOPE_TOLERANCE,
      "min_r2": MIN_R2,
    },
    "protocol_seconds": seconds,
    "wall_seconds": time.perf_counter() - start,
  }


def plot_scan(results: dict, out_dir: str) -> None:
  """One panel per (protocol, SGLD window) from ``results`` alone."""
  names = list(results["fits"])
  series_name, axis = results["series_name"], results["axis"]
  fig, axes = plt.subplots(
    len(names), 2, figsize=(11, 4.2 * len(names)), squeeze=False
  )
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for row_axes, proto_name in zip(axes, names):
    for ax, key, title in (
      (row_axes[0], "fits", "paper SGLD window (100 + 500 steps)"),
      (row_axes[1], "fits_settled", "settled chains (2000 + 1000)"),
    ):
      for i, (fixed, fit) in enumerate(results[key][proto_name].items()):
        if fit["slope"] is None:
          continue
        plotting.plot_linear_scaling(
          ax,
          fit["xs"],
          np.asarray(fit["llc"])[None],
          fit,
          f"{series_name}={fixed}",
          colors[i % len(colors)],
          fit["paper_slope"],
        )
      ax.set(
        title=f"{proto_name}: {title}",
        xlabel="p" if axis == "p" else "width K",
        ylabel="final LLC",
      )
      ax.grid(True, alpha=0.3)
      ax.legend(fontsize=7)
  for comparison in results["authors_committed"]:
    ax = (
      axes[names.index(comparison["protocol"])][0]
      if (comparison["protocol"] in names)
      else axes[0][0]
    )
    xs = [r[axis] for r in comparison["points"]]
    ax.plot(
      xs,
      [r["authors"] for r in comparison["points"]],
      "kx",
      label=f"authors' committed ({series_name}={comparison[series_name]})",
    )
    ax.legend(fontsize=7)
  fig.suptitle(f"{results['name']}: {results['config']['seeds']} seed(s)")
  plotting.save_figure(
    fig, os.path.join(out_dir, f"{results['name']}.png"), dpi=100
  )


def print_summary(results: dict) -> None:
  """The fitted slopes against the paper's, one line per series."""
  for kind in ("fits", "fits_settled"):
    for proto_name, fits in results[kind].items():
      for fixed, f in fits.items():
        slope = "n/a" if f["slope"] is None else f"{f['slope']:.3f}"
        r2 = "n/a" if f["r2"] is None else f"{f['r2']:.4f}"
        print(
          f"{kind:12s} [{proto_name}] {results['series_name']}={fixed}: "
          f"slope {slope} (paper {f['paper_slope']}), R² {r2}"
        )
  for c in results["authors_committed"]:
    print(
      f"authors' committed values [{c['protocol']}]: max |rel diff| "
      f"{c['max_abs_rel_diff']:.3f} over {len(c['points'])} points"
    )


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: slopes per protocol and series
  (paper SGLD window), then the authors' committed values point by point."""
  rows = []
  series = results["series_name"]
  for proto_name, fits in results["fits"].items():
    for fixed, fit in fits.items():
      settled = results["fits_settled"][proto_name].get(fixed)
      note = (
        f"; settled chains: {settled['slope']:.3g}, R² {settled['r2']:.3f}"
        if settled and settled["slope"]
        else ""
      )
      rows.append(
        {
          "protocol": proto_name,
          "quantity": f"slope at {series}={fixed} (R² {fit['r2']:.3f}{note})"
          if fit["slope"] is not None
          else f"slope at {series}={fixed}",
          "ours": fit["slope"],
          "paper": fit["paper_slope"],
          "match": fit["slope_matches"],
        }
      )
  for c in results["authors_committed"]:
    for point in c["points"]:
      x = results["axis"]
      rows.append(
        {
          "protocol": c["protocol"],
          "quantity": f"final LLC at {x}={point[x]}, "
          f"{series}={c[series]} (authors' committed)",
          "ours": point["ours"],
          "paper": point["authors"],
          "match": abs(point["rel_diff"]) <= 0.05,
        }
      )
    if c["fit_ours"] is not None:
      rows.append(
        {
          "protocol": c["protocol"],
          "quantity": f"slope through the committed {results['axis']}"
          " values (ours vs authors')",
          "ours": c["fit_ours"]["slope"],
          "paper": c["fit_authors"]["slope"],
          "match": abs(c["fit_ours"]["slope"] / c["fit_authors"]["slope"] - 1)
          <= 0.05,
        }
      )
  return rows


def add_flags(parser) -> None:
  """``--protocol`` and ``--runs``."""
  parser.add_argument(
    "--protocol",
    default="recipe",
    help="recipe, authors or both (default recipe)",
  )
  common.add_runs_flag(parser)


def main(argv=None) -> dict:
  args, mode = common.parse_mode(__doc__, add_flags, argv)
  cfg = CONFIGS[mode]
  names = protocols.parse(args.protocol)
  extra, committed = (), []
  if mode == "paper" and "authors" in names:
    # K = 1024 is the width of the authors' committed p-sweep.
    extra = ((protocol_for("authors", cfg), 1024, cfg.xs),)
    committed = [("authors", 1024, protocols.AUTHORS_P_SWEEP_K1024)]
  results = common.compute_then_plot(
    NAME,
    args,
    lambda: compute_scan(
      NAME,
      "p",
      cfg,
      names,
      PAPER_SLOPES,
      args.seed,
      common.output_dir(NAME, args.out),
      args.runs,
      committed,
      extra,
    ),
    plot_scan,
  )
  print_summary(results)
  return results


if __name__ == "__main__":
  main()
