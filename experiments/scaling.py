"""The final LLC along one scaling axis, shared by Fig. 1 (``llc_vs_p``: the
LLC against the prime p, one line per width K) and Fig. 2 (``llc_vs_width``:
against K, one line per p).

Every point trains ``ScanConfig.seeds`` networks at (p, K) under a protocol
(``experiments.protocols``) through the run store, so the two figures share
the (p, K) runs they have in common, and estimates their final LLC with the
paper's SGLD window and with settled chains (``measure_point``). A line is
fitted per series and protocol (``fit_series``) and set beside the paper's
slope, the authors' committed values (``compare_with_authors``) and the
closed forms of ``slt_jax.theory``. ``run_scan`` is the main of both figures.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Callable, Optional, Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, protocols, store, sweeps
from slt_jax import theory
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import grokking_metrics, plotting
from slt_jax.grokking.config import DataConfig, ModelConfig

SLOPE_TOLERANCE = 0.3  # slopes match within ±30% ...
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
  runs_dir: Optional[str],
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
    runs_dir: run store folder (None: the default ``runs/``).
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
  run = store.trained_run(
    key_train,
    data,
    ModelConfig(p=p, width=width),
    proto.train,
    data_key=data_key,
    seeds=cfg.seeds,
    store=runs_dir,
    label=f"p{p}_K{width}_{proto.name}",
    progress=False,
  )
  train_seconds = time.perf_counter() - start
  final = proto.final_params(run)
  paper, *rest = sweeps.llc_grid(
    key_llc,
    store.loss_fn(proto.train.loss),
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


def _measure(
  key_data,
  key_points,
  axis: str,
  cfg: ScanConfig,
  out_dir: str,
  runs_dir: Optional[str],
  proto: protocols.Protocol,
  fixed: int,
  x: int,
  settled: bool = False,
) -> dict:
  """``measure_point`` at series value ``fixed`` and scanned value ``x``
  (the point's key folds in p, then K), printed as it finishes."""
  p, width = (x, fixed) if axis == "p" else (fixed, x)
  key = jax.random.fold_in(jax.random.fold_in(key_points, p), width)
  row = measure_point(
    key_data, key, p, width, cfg, proto, out_dir, runs_dir, settled
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


def _kept_llc(row: Sequence[dict], key: str) -> np.ndarray:
  """(S, X) LLC means of sweep ``key`` along ``row`` (one point per x), nan
  where the protocol dropped the run."""
  return np.stack([np.where(r["kept"], r[key]["mean"], np.nan) for r in row], 1)


def _protocol_record(proto: protocols.Protocol) -> dict:
  """The settings of ``proto`` as ``results.json`` records them."""
  return {
    "source": proto.source,
    "known": proto.known,
    "train": dataclasses.asdict(proto.train),
    "sgld": dataclasses.asdict(proto.sgld),
    "settled": dataclasses.asdict(proto.settled),
    "final": proto.final,
    "min_final_acc": proto.min_final_acc,
  }


def _scan_protocol(
  measure: Callable,
  proto: protocols.Protocol,
  cfg: ScanConfig,
  axis: str,
  paper_slopes: dict,
) -> tuple[list, dict, dict]:
  """Every series of ``cfg`` under ``proto``.

  Returns:
    (points, fits, fits_settled): the measured points, and per series value
    (as a string) the fit of the paper window's LLC (with the theory slopes
    and the dropped x values) and of the settled chains' LLC.
  """
  points, fits, fits_settled = [], {}, {}
  xs = np.asarray(cfg.xs, dtype=float)
  for fixed in cfg.series:
    with_settled = cfg.settled_series is None or fixed in cfg.settled_series
    row = [measure(proto, fixed, x, with_settled) for x in cfg.xs]
    points += row
    fits[str(fixed)] = {
      **fit_series(
        xs, _kept_llc(row, "llc_paper_settings"), paper_slopes.get(fixed)
      ),
      "theory_generic_slope": grokking_metrics.linear_fit(
        xs, [r["theory_generic_llc"] for r in row]
      )["slope"],
      "theory_lazy_slope": grokking_metrics.linear_fit(
        xs, [r["theory_lazy_llc"] for r in row]
      )["slope"],
      "dropped": [r[axis] for r in row if not np.all(r["kept"])],
    }
    if with_settled:
      fits_settled[str(fixed)] = fit_series(
        xs, _kept_llc(row, "llc_settled"), paper_slopes.get(fixed)
      )
  return points, fits, fits_settled


def compute_scan(
  name: str,
  axis: str,
  cfg: ScanConfig,
  names: Sequence[str],
  paper_slopes: dict,
  seed: int,
  out_dir: str,
  runs_dir: Optional[str],
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
    runs_dir: run store (None: default).
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
  measure = functools.partial(
    _measure, key_data, key_points, axis, cfg, out_dir, runs_dir
  )
  points, fits, fits_settled, seconds, sources = [], {}, {}, {}, {}
  for proto_name in names:
    proto = protocol_for(proto_name, cfg)
    sources[proto_name] = _protocol_record(proto)
    proto_start = time.perf_counter()
    found, fits[proto_name], fits_settled[proto_name] = _scan_protocol(
      measure, proto, cfg, axis, paper_slopes
    )
    points += found
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
        "fit": fit_series(xs, _kept_llc(row, "llc_paper_settings"), None),
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
  store.add_runs_flag(parser)


def run_scan(
  name: str,
  doc: str,
  configs: dict,
  axis: str,
  paper_slopes: dict,
  authors_points: Callable[[ScanConfig], tuple],
  argv: Optional[Sequence[str]] = None,
) -> dict:
  """The ``main`` of Figs. 1 and 2: ``compute_scan`` under the protocols of
  ``--protocol``, then ``plot_scan`` and ``print_summary``.

  Args:
    name: experiment name.
    doc: its help text.
    configs: mode -> ScanConfig.
    axis: ``p`` or ``width`` (see ``compute_scan``).
    paper_slopes: series value -> the paper's slope.
    authors_points: ``authors_points(cfg) -> (extra_points, committed)`` of
      ``compute_scan``, measured with ``--paper`` when the authors' protocol
      runs.
    argv: arguments (default: ``sys.argv[1:]``).

  Returns:
    The results (as read back from ``results.json``).
  """
  args, mode = cli.parse_mode(doc, add_flags, argv)
  cfg = configs[mode]
  names = protocols.parse(args.protocol)
  extra, committed = (), []
  if mode == "paper" and "authors" in names:
    extra, committed = authors_points(cfg)
  results = cli.compute_then_plot(
    name,
    args,
    lambda: compute_scan(
      name,
      axis,
      cfg,
      names,
      paper_slopes,
      args.seed,
      cli.output_dir(name, args.out),
      args.runs,
      committed,
      extra,
    ),
    plot_scan,
  )
  print_summary(results)
  return results
