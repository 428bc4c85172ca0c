"""Shared matplotlib helpers (Agg backend: files only, no display).

Figures are written atomically: to a temporary file in the target directory,
then renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np

from slt_jax import persist

__all__ = [
  "save_figure",
  "plot_training_curves",
  "plot_estimates_vs_truth",
  "plot_llc_over_training",
  "plot_linear_scaling",
  "plot_curve_panels",
  "plot_potential",
  "plot_xy_panels",
]


def save_figure(
  fig: matplotlib.figure.Figure, path: str, dpi: int = 120
) -> None:
  """Atomically writes ``fig`` to ``path`` and closes it.

  Args:
    fig: the figure.
    path: destination; the format follows its extension (``.png``, ``.pdf``).
    dpi: resolution for raster formats.
  """
  fmt = os.path.splitext(path)[1].lstrip(".") or None
  try:
    persist.atomic_write(
      path, lambda f: fig.savefig(f, dpi=dpi, bbox_inches="tight", format=fmt)
    )
  finally:
    plt.close(fig)


def plot_training_curves(
  log_steps: np.ndarray,
  metrics: Mapping[str, np.ndarray],
  path: str,
  title: Optional[str] = None,
) -> None:
  """Loss (log y) and accuracy against step (log x), one line per run.

  Step 0 cannot sit on a log axis and is left out.

  Args:
    log_steps: (L,) logged steps.
    metrics: ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc`` ->
      (R, L) or (L,) curves.
    path: output image path.
    title: optional figure title.
  """
  steps = np.asarray(log_steps)
  keep = steps > 0
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  for ax, kind in ((ax_loss, "loss"), (ax_acc, "acc")):
    for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
      curves = np.atleast_2d(np.asarray(metrics[f"{split}_{kind}"]))
      for i, curve in enumerate(curves):
        ax.plot(
          steps[keep],
          curve[keep],
          color=color,
          alpha=0.8,
          lw=1.2,
          label=split if i == 0 else None,
        )
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
  ax_loss.set_yscale("log")
  ax_loss.set_ylabel("loss")
  ax_acc.set_ylabel("accuracy")
  ax_acc.set_ylim(-0.02, 1.02)
  if title:
    fig.suptitle(title)
  save_figure(fig, path)


def plot_estimates_vs_truth(
  names: list[str], truth: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> matplotlib.figure.Figure:
  """Estimated against true values with error bars and the identity line.

  Args:
    names: (N,) labels.
    truth: (N,) true values.
    mean: (N,) estimates.
    std: (N,) error bars.

  Returns:
    The figure.
  """
  fig, ax = plt.subplots(figsize=(5.5, 5))
  ax.errorbar(truth, mean, yerr=std, fmt="o", capsize=3)
  for i, (name, x, y) in enumerate(zip(names, truth, mean)):
    ax.annotate(
      name,
      (x, y),
      fontsize=7,
      xytext=(6, -12 if i % 2 else 6),
      textcoords="offset points",
    )
  lo = min(np.min(truth), np.min(mean - std)) * 0.8
  hi = max(np.max(truth), np.max(mean + std)) * 1.2
  ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="estimate = truth")
  ax.set(
    xscale="log",
    yscale="log",
    xlabel="true learning coefficient",
    ylabel="estimated LLC (mean ± chain std)",
  )
  ax.legend(loc="upper left")
  return fig


def plot_llc_over_training(
  log_steps: np.ndarray,
  train_loss: np.ndarray,
  val_loss: np.ndarray,
  llc_curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
  marks: Mapping[str, float],
  title: Optional[str] = None,
) -> matplotlib.figure.Figure:
  """Train/validation loss (log y) above one panel per LLC curve, shared x.

  Args:
    log_steps: (L,) logged steps.
    train_loss: (L,) training loss.
    val_loss: (L,) validation loss.
    llc_curves: label -> ((C,) steps, (C,) mean, (C,) std) LLC curves, drawn
      with a ±std band.
    marks: label -> step, vertical lines on every panel (skipped when < 0).
    title: optional title.

  Returns:
    The figure.
  """
  rows = 1 + len(llc_curves)
  fig, axes = plt.subplots(
    rows, 1, sharex=True, figsize=(8, 2.6 * rows), squeeze=False
  )
  axes = axes[:, 0]
  keep = log_steps > 0
  axes[0].plot(log_steps[keep], train_loss[keep], label="train loss")
  axes[0].plot(log_steps[keep], val_loss[keep], label="val loss")
  axes[0].set(yscale="log", ylabel="loss")
  colors = ["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:olive"]
  for ax, (label, (steps, mean, std)), color in zip(
    axes[1:], llc_curves.items(), colors
  ):
    ax.plot(steps, mean, "o-", ms=3, color=color, label=label)
    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.25)
    ax.set_ylabel("LLC")
  for ax in axes:
    for (label, step), style in zip(marks.items(), [":", "--", "-.", ":"]):
      if step is not None and step >= 0:
        ax.axvline(step, color="gray", ls=style, lw=1, label=label)
    ax.legend(fontsize=7, loc="best")
  axes[-1].set_xlabel("training step")
  if title:
    axes[0].set_title(title)
  fig.tight_layout()
  return fig


def plot_linear_scaling(
  ax: matplotlib.axes.Axes,
  x: np.ndarray,
  y_SxX: np.ndarray,
  fit: Mapping[str, float],
  label: str,
  color: str,
  reference_slope: Optional[float] = None,
) -> None:
  """Seed-mean points with seed-std bars, their fitted line, and optionally
  a dashed line of a reference slope through the points' centroid.

  Args:
    ax: axes to draw on.
    x: (X,) abscissae.
    y_SxX: (S, X) values per seed.
    fit: ``slope``, ``intercept`` and ``r2`` of the seed-mean line.
    label: series label.
    color: series colour.
    reference_slope: e.g. the paper's slope (None: not drawn).
  """
  x, y_SxX = np.asarray(x, dtype=float), np.atleast_2d(y_SxX)
  mean_X = y_SxX.mean(0)
  ax.errorbar(
    x, mean_X, yerr=y_SxX.std(0), fmt="o", color=color, ms=4, capsize=2
  )
  span = np.array([x.min(), x.max()])
  ax.plot(
    span,
    fit["slope"] * span + fit["intercept"],
    color=color,
    label=f"{label}: slope {fit['slope']:.3g}, R² {fit['r2']:.3f}",
  )
  if reference_slope is not None:
    ax.plot(
      span,
      mean_X.mean() + reference_slope * (span - x.mean()),
      color=color,
      ls="--",
      lw=1,
      label=f"paper slope {reference_slope}",
    )


def plot_curve_panels(
  panels: Mapping[str, Mapping[str, tuple]],
  marks: Mapping[str, float],
  ylabel: str = "LLC",
  ncols: int = 3,
) -> matplotlib.figure.Figure:
  """One panel per entry, each with labelled curves and std bands.

  Args:
    panels: title -> {label -> ((C,) steps, (C,) mean, (C,) std)}.
    marks: label -> step, drawn as vertical lines in every panel (skipped
      when < 0).
    ylabel: y-axis label.
    ncols: panels per row.

  Returns:
    The figure.
  """
  nrows = -(-len(panels) // ncols)
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False
  )
  for ax, (title, curves) in zip(axes.flat, panels.items()):
    for label, (steps, mean, std) in curves.items():
      (line,) = ax.plot(steps, mean, "o-", ms=2.5, lw=1.2, label=label)
      ax.fill_between(
        steps, mean - std, mean + std, alpha=0.2, color=line.get_color()
      )
    for (label, step), ls in zip(marks.items(), (":", "--", "-.")):
      if step is not None and step >= 0:
        ax.axvline(step, color="gray", ls=ls, lw=1, label=label)
    ax.set(title=title, xlabel="training step", ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis("off")
  fig.tight_layout()
  return fig


def plot_potential(
  ax: matplotlib.axes.Axes,
  potential,
  title: str,
  note: str,
  extent: float = 1.0,
  num: int = 201,
) -> None:
  """Log-spaced contours of a 2-D potential with its minimum at 0 marked.

  Args:
    ax: axes to draw on.
    potential: NumPy-vectorised ``K(w1, w2) >= 0``.
    title: panel title.
    note: text printed in the panel (e.g. estimate and exact value).
    extent: half-width of the square drawn.
    num: grid points per axis.
  """
  grid = np.linspace(-extent, extent, num)
  w1, w2 = np.meshgrid(grid, grid, indexing="ij")
  energy = potential(w1, w2)
  levels = np.logspace(-4, np.log10(max(energy.max(), 1e-3)), 12)
  ax.contourf(
    w1,
    w2,
    np.maximum(energy, 1e-6),
    levels=levels,
    norm=matplotlib.colors.LogNorm(),
    cmap="viridis",
    extend="min",
  )
  ax.plot([0], [0], "r*", ms=10, label="w* = 0")
  ax.set(title=title, xlabel="w1", ylabel="w2", aspect="equal")
  ax.text(
    0.03,
    0.03,
    note,
    transform=ax.transAxes,
    fontsize=7,
    va="bottom",
    bbox={"facecolor": "white", "alpha": 0.85, "lw": 0},
  )


def plot_xy_panels(
  panels: Mapping[str, Mapping], ncols: int = 3
) -> matplotlib.figure.Figure:
  """One panel per entry: labelled curves with optional error bars.

  Args:
    panels: title -> ``{"curves": {label: (x, y, yerr or None)}, "xlabel",
      "ylabel", "xscale", "yscale" (optional), "hlines": {label: y},
      "vlines": {label: x} (optional)}``; non-finite points are skipped.
    ncols: panels per row.

  Returns:
    The figure.
  """
  nrows = -(-len(panels) // ncols)
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False
  )
  for ax, (title, spec) in zip(axes.flat, panels.items()):
    for label, (x, y, yerr) in spec["curves"].items():
      x, y = np.asarray(x, float), np.asarray(y, float)
      keep = np.isfinite(x) & np.isfinite(y)
      err = None if yerr is None else np.asarray(yerr, float)[keep]
      ax.errorbar(
        x[keep],
        y[keep],
        yerr=err,
        fmt="o-",
        ms=3,
        lw=1.2,
        capsize=2,
        label=label,
      )
    styles = ("--", ":", "-.")
    for (label, y), ls in zip(spec.get("hlines", {}).items(), styles):
      ax.axhline(y, color="k", ls=ls, lw=1, label=label)
    for (label, x), ls in zip(spec.get("vlines", {}).items(), styles[::-1]):
      ax.axvline(x, color="gray", ls=ls, lw=1, label=label)
    ax.set(
      title=title,
      xlabel=spec.get("xlabel", ""),
      ylabel=spec.get("ylabel", ""),
      xscale=spec.get("xscale", "linear"),
      yscale=spec.get("yscale", "linear"),
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=6)
  for ax in list(axes.flat)[len(panels) :]:
    ax.axis("off")
  fig.tight_layout()
  return fig
