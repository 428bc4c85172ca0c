"""Shared matplotlib helpers (Agg backend: files only, no display).

Figures are written atomically: to a temporary file in the target directory,
then renamed into place, so a crash never leaves a half-written image.
"""

from __future__ import annotations

import os
import tempfile
from typing import Mapping, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np


def save_figure(fig: matplotlib.figure.Figure, path: str, dpi: int = 120
                ) -> None:
  """Atomically writes ``fig`` to ``path`` and closes it.

  Args:
    fig: the figure.
    path: destination; the format follows its extension (``.png``, ``.pdf``).
    dpi: resolution for raster formats.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
  try:
    with os.fdopen(fd, "wb") as f:
      fig.savefig(f, dpi=dpi, bbox_inches="tight",
                  format=suffix.lstrip(".") or None)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
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


def plot_llc_over_training(log_steps: np.ndarray, train_loss: np.ndarray,
                           val_loss: np.ndarray, ckpt_steps: np.ndarray,
                           llc_curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                           marks: Mapping[str, float],
                           title: Optional[str] = None
                           ) -> matplotlib.figure.Figure:
  """Train/validation loss (log y, left) and LLC curves (right) over training.

  Args:
    log_steps: (L,) logged steps.
    train_loss: (L,) training loss.
    val_loss: (L,) validation loss.
    ckpt_steps: (C,) checkpoint steps.
    llc_curves: label -> ((C,) mean, (C,) std) LLC curves with std bands.
    marks: label -> step, drawn as vertical lines (skipped when < 0).
    title: optional title.

  Returns:
    The figure.
  """
  fig, ax = plt.subplots(figsize=(8, 4.5))
  keep = log_steps > 0
  ax.plot(log_steps[keep], train_loss[keep], color="tab:blue", label="train loss")
  ax.plot(log_steps[keep], val_loss[keep], color="tab:orange", label="val loss")
  ax.set(yscale="log", xlabel="training step", ylabel="loss")
  twin = ax.twinx()
  colors = iter(["tab:green", "tab:purple", "tab:brown", "tab:olive"])
  for label, (mean, std) in llc_curves.items():
    color = next(colors)
    twin.plot(ckpt_steps, mean, "o-", ms=3, color=color, label=label)
    twin.fill_between(ckpt_steps, mean - std, mean + std, color=color,
                      alpha=0.2)
  twin.set_ylabel("LLC")
  styles = iter([":", "--", "-."])
  for label, step in marks.items():
    if step is not None and step >= 0:
      ax.axvline(step, color="gray", ls=next(styles, ":"), lw=1, label=label)
  lines = ax.get_legend_handles_labels()
  twin_lines = twin.get_legend_handles_labels()
  ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], fontsize=8,
            loc="center right")
  if title:
    ax.set_title(title)
  return fig
