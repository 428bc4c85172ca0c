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

from slt_jax import io


def save_figure(fig: matplotlib.figure.Figure, path: str, dpi: int = 120
                ) -> None:
  """Atomically writes ``fig`` to ``path`` and closes it.

  Args:
    fig: the figure.
    path: destination; the format follows its extension (``.png``, ``.pdf``).
    dpi: resolution for raster formats.
  """
  fmt = os.path.splitext(path)[1].lstrip(".") or None
  try:
    io.atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, bbox_inches="tight",
                                                format=fmt))
  finally:
    plt.close(fig)


def plot_training_curves(log_steps: np.ndarray,
                         metrics: Mapping[str, np.ndarray], path: str,
                         title: Optional[str] = None) -> None:
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
        ax.plot(steps[keep], curve[keep], color=color, alpha=0.8, lw=1.2,
                label=split if i == 0 else None)
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


def plot_estimates_vs_truth(names: list[str], truth: np.ndarray,
                            mean: np.ndarray, std: np.ndarray
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
  for name, x, y in zip(names, truth, mean):
    ax.annotate(name, (x, y), fontsize=7, xytext=(4, -10),
                textcoords="offset points")
  lo = min(np.min(truth), np.min(mean - std)) * 0.8
  hi = max(np.max(truth), np.max(mean + std)) * 1.2
  ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="estimate = truth")
  ax.set(xscale="log", yscale="log", xlabel="true learning coefficient",
         ylabel="estimated LLC (mean ± chain std)")
  ax.legend(loc="upper left")
  return fig


def plot_llc_over_training(
    log_steps: np.ndarray, train_loss: np.ndarray, val_loss: np.ndarray,
    llc_curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    marks: Mapping[str, float], title: Optional[str] = None
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
  fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(8, 2.6 * rows),
                           squeeze=False)
  axes = axes[:, 0]
  keep = log_steps > 0
  axes[0].plot(log_steps[keep], train_loss[keep], label="train loss")
  axes[0].plot(log_steps[keep], val_loss[keep], label="val loss")
  axes[0].set(yscale="log", ylabel="loss")
  colors = ["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:olive"]
  for ax, (label, (steps, mean, std)), color in zip(axes[1:], llc_curves.items(),
                                                     colors):
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
