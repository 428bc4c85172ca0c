"""Fig. 1: the final LLC of trained networks grows linearly with the prime p.

For every width K and prime p, trains the quadratic network with the SPEC §1
recipe (centered MSE, Adam lr 1e-3 + coupled L2 1e-5, batch 128, train
fraction 0.4; all seeds of one (p, K) vmapped in one program), then estimates
the LLC at the final parameters twice: with the paper's SGLD settings
(``llc_over_training.PAPER_SGLD``: eps 5e-4, gamma 5, nbeta = B/ln B,
3 chains x (100 burn-in + 500 draws)) and with settled chains (2000 burn-in +
1000 draws; SPEC §3: the paper's chains are still rising when they stop).
Fits a line per K (slope, intercept, R², and a bootstrap CI of the slope over
seeds when there are several) and sets it beside the paper's slopes 51.06,
80.57, 108.61 (K = 600, 1000, 1400) and beside the slopes of the closed forms
of ``slt_jax.theory`` (generic rank / 2 for centered MSE, and the lazy
random-features value), which bound the LLC from above but do not match it.
Writes ``DIR/results.json`` and ``DIR/llc_vs_p.png``.

    python -m experiments.llc_vs_p --quick   # p = 53, 67, 79, 97; K = 1000
    python -m experiments.llc_vs_p           # p = 53..97; K = 600, 1000, 1400
    python -m experiments.llc_vs_p --paper   # as default, 3 seeds

Expected runtime on 2 CPU cores: ``--quick`` (one seed, 6000 steps) about
2 minutes; default (one seed, 10k steps, 30 points) about 20 minutes;
``--paper`` (3 seeds) about 1 hour, a few minutes on one GPU. Each point
resumes from ``DIR/points/p{p}_K{K}/`` after an interruption.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import common, llc_over_training
from experiments.llc_over_training import PAPER_SGLD
from slt_jax import data as data_lib
from slt_jax import metrics, plotting, theory, train
from slt_jax.config import DataConfig, ModelConfig, TrainConfig

NAME = "llc_vs_p"
PRIMES = (53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
PAPER_SLOPES = {600: 51.06, 1000: 80.57, 1400: 108.61}
SLOPE_TOLERANCE = 0.3  # SPEC §2: slopes match within ±30% ...
MIN_R2 = 0.95  # ... and trends hold with R² >= 0.95.


def base_config(mode: str) -> dict:
  """Training and SGLD settings shared by Figs. 1 and 2."""
  if mode == "smoke":  # Shares compiled programs with the other smoke runs.
    smoke = llc_over_training.get_config("smoke")
    return {"data": smoke["data"], "train": smoke["train"], "seeds": 2,
            "sgld": smoke["sgld"], "settled": smoke["sgld"]}
  steps = 6000 if mode == "quick" else 10000
  return {"data": DataConfig(p=53, train_frac=0.4),
          "train": TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=steps,
                               log_every=100, ckpt_every=2000,
                               chunk_steps=2000),
          "seeds": 3 if mode == "paper" else 1,
          "sgld": PAPER_SGLD,
          "settled": dataclasses.replace(PAPER_SGLD, num_burnin=2000,
                                         num_draws=1000)}


def get_config(mode: str) -> dict:
  """Configs for ``smoke`` (tests), ``quick``, ``default`` and ``paper``.

  ``series`` are the fixed widths (one line each), ``xs`` the scanned primes.
  """
  cfg = base_config(mode)
  if mode == "smoke":
    return {**cfg, "series": (32,), "xs": (7, 11)}
  if mode == "quick":
    return {**cfg, "series": (1000,), "xs": (53, 67, 79, 97)}
  return {**cfg, "series": (600, 1000, 1400), "xs": PRIMES}


def measure_point(key_data, key_point, p: int, width: int, cfg: dict,
                  out_dir: str) -> dict:
  """Trains ``cfg['seeds']`` runs at (p, K) and estimates their final LLC.

  Args:
    key_data: key of the train/validation split (folded with p, so every
      width at one p sees the same split).
    key_point: key of this point's training and chains.
    p: prime.
    width: hidden width K.
    cfg: experiment config.
    out_dir: folder for the point's resumable state.

  Returns:
    dict of per-seed training outcomes, both LLC sweeps and the theory values.
  """
  data = data_lib.modular_arithmetic(jax.random.fold_in(key_data, p),
                                     dataclasses.replace(cfg["data"], p=p))
  key_train, key_llc, key_settled = jax.random.split(key_point, 3)
  point_dir = os.path.join(out_dir, "points", f"p{p}_K{width}")
  start = time.perf_counter()
  run = train.train(key_train, data, ModelConfig(p=p, width=width),
                    cfg["train"], seeds=cfg["seeds"], out_dir=point_dir,
                    progress=False)
  train_seconds = time.perf_counter() - start
  final = jax.tree.map(lambda x: x[:, -1], run.checkpoints)
  loss_fn = common.loss_fn(cfg["train"].loss)
  sweeps = {name: common.llc_sweep(
      key, loss_fn, final, data.train, cfg[name],
      os.path.join(point_dir, f"llc_{name}.npz"), batch_ndim=1)
            for name, key in (("sgld", key_llc), ("settled", key_settled))}
  pairs = np.asarray(data.train.pairs)
  return {
      "p": p, "width": width, "num_train": data.num_train,
      "memorisation_step": metrics.memorisation_step(
          run.log_steps, run.metrics["train_acc"]),
      "generalisation_step": metrics.generalisation_step(
          run.log_steps, run.metrics["val_acc"]),
      "final_train_acc": run.metrics["train_acc"][:, -1],
      "final_val_acc": run.metrics["val_acc"][:, -1],
      "final_train_loss": run.metrics["train_loss"][:, -1],
      "train_seconds": train_seconds,
      "train_steps_per_second": run.steps_per_second,
      "llc_paper_settings": sweeps["sgld"], "llc_settled": sweeps["settled"],
      "theory_generic_llc": theory.modular_llc(p, width, pairs,
                                               cfg["train"].loss),
      "theory_lazy_llc": theory.lazy_random_features_llc(p, width,
                                                         data.num_train)}


def fit_series(x: Sequence[float], y_SxX: np.ndarray,
               paper_slope: Optional[float]) -> dict:
  """Line through the seed means, its bootstrap CI and the paper comparison.

  Args:
    x: (X,) abscissae.
    y_SxX: (S, X) values per seed.
    paper_slope: the paper's slope, or None.

  Returns:
    dict with slope, intercept, r2, slope_ci95 (None for one seed),
    linear (r2 >= 0.95), paper_slope, slope_over_paper and slope_matches
    (within ±30%).
  """
  y_SxX = np.atleast_2d(y_SxX)
  fit = metrics.linear_fit(x, y_SxX.mean(0))
  ci = metrics.bootstrap_slope_ci(x, y_SxX) if y_SxX.shape[0] > 1 else None
  ratio = fit["slope"] / paper_slope if paper_slope else None
  return {**fit, "slope_ci95": ci, "linear": fit["r2"] >= MIN_R2,
          "paper_slope": paper_slope, "slope_over_paper": ratio,
          "slope_matches": (abs(ratio - 1) <= SLOPE_TOLERANCE
                            if ratio is not None else None)}


def run_scan(name: str, axis: str, doc: str,
             get_config_fn: Callable[[str], dict],
             paper_slopes: dict, argv=None) -> dict:
  """Shared driver of Figs. 1 and 2: scan ``axis`` for every series value.

  Args:
    name: experiment name (output folder and figure file).
    axis: ``p`` (series are widths) or ``width`` (series are primes).
    doc: module docstring (help text).
    get_config_fn: mode -> config with ``series`` and ``xs``.
    paper_slopes: series value -> the paper's slope.
    argv: command-line arguments.

  Returns:
    The results payload.
  """
  args, mode = common.parse_mode(doc, argv=argv)
  cfg = get_config_fn(mode)
  out_dir = common.output_dir(name, args.out)
  key_data, key_points = jax.random.split(jax.random.key(args.seed))
  series_name = "width" if axis == "p" else "p"
  start = time.perf_counter()
  points, fits = [], {}
  for fixed in cfg["series"]:
    row = []
    for x in cfg["xs"]:
      p, width = (x, fixed) if axis == "p" else (fixed, x)
      key = jax.random.fold_in(jax.random.fold_in(key_points, p), width)
      row.append(measure_point(key_data, key, p, width, cfg, out_dir))
      print(f"p={p} K={width}: LLC {row[-1]['llc_paper_settings']['mean']} "
            f"(settled {row[-1]['llc_settled']['mean']}), generalised at "
            f"{row[-1]['generalisation_step']}", flush=True)
    points += row
    xs = np.asarray(cfg["xs"], dtype=float)
    fits[str(fixed)] = {
        "paper_settings": fit_series(
            xs, np.stack([r["llc_paper_settings"]["mean"] for r in row], 1),
            paper_slopes.get(fixed)),
        "settled": fit_series(
            xs, np.stack([r["llc_settled"]["mean"] for r in row], 1),
            paper_slopes.get(fixed)),
        "theory_generic": metrics.linear_fit(
            xs, [r["theory_generic_llc"] for r in row]),
        "theory_lazy": metrics.linear_fit(
            xs, [r["theory_lazy_llc"] for r in row])}

  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, sweep, fit_name, title in (
      (axes[0], "llc_paper_settings", "paper_settings",
       "paper SGLD (100 + 500 steps)"),
      (axes[1], "llc_settled", "settled", "settled chains (2000 + 1000)")):
    for i, fixed in enumerate(cfg["series"]):
      row = [r for r in points if r[series_name] == fixed]
      plotting.plot_linear_scaling(
          ax, cfg["xs"], np.stack([r[sweep]["mean"] for r in row], 1),
          fits[str(fixed)][fit_name], f"{series_name}={fixed}",
          colors[i % len(colors)], paper_slopes.get(fixed))
    ax.set(title=title, xlabel="p" if axis == "p" else "width K",
           ylabel="final LLC")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(f"{name}: {cfg['seeds']} seed(s), "
               f"{cfg['train'].num_steps} training steps")
  plotting.save_figure(fig, os.path.join(out_dir, f"{name}.png"), dpi=100)

  payload = {
      "mode": mode, "axis": axis, "series_name": series_name,
      "series": cfg["series"], "xs": cfg["xs"], "seeds": cfg["seeds"],
      "config": common.config_dict(cfg["data"], cfg["train"]),
      "sgld_paper_settings": dataclasses.asdict(cfg["sgld"]),
      "sgld_settled": dataclasses.asdict(cfg["settled"]),
      "points": points, "fits": fits,
      "paper_reference": {
          "slopes": {str(k): v for k, v in paper_slopes.items()},
          "slope_tolerance": SLOPE_TOLERANCE, "min_r2": MIN_R2},
      "linearity_survives_settled": {k: f["settled"]["linear"]
                                     for k, f in fits.items()},
      "wall_seconds": time.perf_counter() - start}
  common.write_results(out_dir, payload)
  for fixed, f in fits.items():
    for kind in ("paper_settings", "settled"):
      s = f[kind]
      print(f"{series_name}={fixed} {kind:14s}: slope {s['slope']:.3f} "
            f"(paper {s['paper_slope']}), R² {s['r2']:.4f}, "
            f"CI {s['slope_ci95']}")
    print(f"{series_name}={fixed} theory slopes: generic "
          f"{f['theory_generic']['slope']:.1f}, "
          f"lazy {f['theory_lazy']['slope']:.1f}")
  return payload


def main(argv=None) -> dict:
  return run_scan(NAME, "p", __doc__, get_config, PAPER_SLOPES, argv)


if __name__ == "__main__":
  main()
