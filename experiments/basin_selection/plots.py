"""The study's figures, drawn from ``results.json`` alone.

* ``basin_selection.png``: per modulus (columns) the tuned λ of every kept
  basin against x = N / (M ln M) (a line per source, memorising red,
  generalising green; nβ = B / ln B filled, n / ln n open; 2 MCSE bars;
  the paper window as crosses), their free energy F, and ΔF = F_gen -
  F_mem of each pair with 2 MCSE bars (memorising basin: the final point
  where the run never generalises, circles, or the memorisation
  checkpoint, triangles), beside the observed none | generalising
  boundary.
* ``basin_selection_regimes.png``: per modulus, the regime observed at each
  step budget against the one predicted by the sign of ΔF (each convention)
  and by the closed forms, along x.
"""

from __future__ import annotations

import itertools
import os

import matplotlib.pyplot as plt

from experiments import regimes
from experiments.basin_selection import analysis
from slt_jax.grokking import plotting

NAME = "basin_selection"
SOURCES = {
  "memorisation_checkpoint": ("tab:red", "o"),
  "final_point": ("darkred", "s"),
  "grokked_checkpoint": ("tab:green", "o"),
  "superset_finetune": ("darkgreen", "^"),
}
CONVENTIONS = {"default": "-", "wbic": ":"}
LABELS = {"default": "nβ = B / ln B", "wbic": "nβ = n / ln n"}
PAIRING_MARKERS = {"final_point": "o", "memorisation_checkpoint": "v"}


def _kept(cells: list[dict], m: int, source: str, estimate: str):
  """(x, basin record) of the kept basins from ``source`` at modulus ``m``
  with an ``estimate`` (a convention or ``paper_window``), by x."""
  found = [
    (c["x"], b)
    for c in cells
    if c["modulus"] == m
    for b in c["basins"]
    if b["kept"] and b["source"] == source and estimate in b
  ]
  return sorted(found, key=lambda p: p[0])


def _basin_panels(ax_llc, ax_f, cells: list[dict], m: int) -> None:
  """λ (2 MCSE bars) and F of every kept basin at modulus ``m``: a line
  per source and convention (B / ln B filled, n / ln n open), the paper
  window as crosses."""
  for source, (color, marker) in SOURCES.items():
    for conv, ls in CONVENTIONS.items():
      pts = _kept(cells, m, source, conv)
      if not pts:
        continue
      xs = [p[0] for p in pts]
      style = dict(
        color=color,
        marker=marker,
        mfc=color if conv == "default" else "none",
        ls=ls,
        label=f"{source}, {LABELS[conv]}",
      )
      ax_llc.errorbar(
        xs,
        [p[1][conv]["llc"] for p in pts],
        yerr=[2 * p[1][conv]["mcse"] for p in pts],
        capsize=2,
        **style,
      )
      ax_f.plot(xs, [p[1][conv]["free_energy"] for p in pts], **style)
    window = _kept(cells, m, source, "paper_window")
    ax_llc.plot(
      [p[0] for p in window],
      [p[1]["paper_window"]["llc"] for p in window],
      "x",
      color=color,
      alpha=0.6,
      label=f"{source}, paper window",
    )


def _delta_panel(ax, cells: list[dict], m: int, budgets) -> None:
  """ΔF of each pair at modulus ``m`` (per pairing and convention) and the
  observed boundaries."""
  mine = [c for c in cells if c["modulus"] == m]
  for (conv, ls), (pairing, marker) in itertools.product(
    CONVENTIONS.items(), PAIRING_MARKERS.items()
  ):
    found = sorted(
      [
        (c["x"], analysis.primary(c, pairing)[conv])
        for c in analysis.paired(mine, conv, pairing)
      ],
      key=lambda pair: pair[0],
    )
    if found:
      ax.errorbar(
        [x for x, _ in found],
        [cmp["delta_free_energy"] for _, cmp in found],
        yerr=[2 * cmp["delta_free_energy_mcse"] for _, cmp in found],
        capsize=2,
        marker=marker,
        ls=ls,
        label=f"{LABELS[conv]}, mem: {pairing}",
      )
  ax.axhline(0, color="k", lw=0.8)
  for b, ls in zip(budgets, ("--", ":", "-.")):
    fit = analysis.observed_boundary(mine, b)
    if fit["midpoint"] is not None:
      ax.axvline(
        fit["midpoint"], color="gray", ls=ls, label=f"observed, {b} steps"
      )
  ax.set(xlabel="N / (M ln M)", ylabel="ΔF = F_gen - F_mem")


def plot_basins(results: dict, out_dir: str) -> None:
  """``basin_selection.png``."""
  cells, budgets = results["cells"], results["budgets"]
  moduli = sorted({c["modulus"] for c in cells})
  fig, axes = plt.subplots(
    3, len(moduli), figsize=(5.2 * len(moduli), 10), squeeze=False
  )
  for j, m in enumerate(moduli):
    _basin_panels(axes[0, j], axes[1, j], cells, m)
    _delta_panel(axes[2, j], cells, m, budgets)
    axes[0, j].set(title=f"M = {m}", ylabel="λ (tuned chains)")
    axes[1, j].set(ylabel="F = N L_N + λ ln N")
    xs = [c["x"] for c in cells if c["modulus"] == m]
    for ax in axes[:, j]:
      regimes._set_x_axis(ax)
      ax.set_xlim(min(xs) / 1.2, max(xs) * 1.2)
      ax.grid(True, alpha=0.3)
  axes[0, 0].legend(fontsize=6)
  axes[2, 0].legend(fontsize=6)
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def _regime_rows(cells: list[dict], budgets) -> list[tuple[str, list]]:
  """(label, [(x, generalising or None)]) rows: observed per budget,
  predicted by ΔF per convention and by the closed forms."""
  rows = [
    (
      f"observed, {b} steps",
      [(c["x"], c["regimes"][b] != "none") for c in cells],
    )
    for b in budgets
  ]
  for (conv, label), pairing in itertools.product(
    LABELS.items(), PAIRING_MARKERS
  ):
    pts = [
      (c["x"], analysis.prefers_generalising(c, conv, pairing))
      for c in analysis.paired(cells, conv, pairing)
    ]
    if pts:
      rows.append((f"ΔF < 0, {label}, mem: {pairing}", pts))
  rows.append(
    (
      "closed forms",
      [
        (c["x"], c["closed_forms"]["predicted_regime"] == "generalising")
        for c in cells
      ],
    )
  )
  return rows


def plot_regimes(results: dict, out_dir: str) -> None:
  """``basin_selection_regimes.png``."""
  cells, budgets = results["cells"], results["budgets"]
  moduli = sorted({c["modulus"] for c in cells})
  fig, axes = plt.subplots(
    len(moduli), 1, figsize=(8, 1.0 + 1.6 * len(moduli)), squeeze=False
  )
  for ax, m in zip(axes[:, 0], moduli):
    rows = _regime_rows([c for c in cells if c["modulus"] == m], budgets)
    for i, (_, pts) in enumerate(rows):
      for x, gen in pts:
        ax.scatter(
          x,
          i,
          marker="s" if gen else "x",
          color="tab:green" if gen else "tab:red",
        )
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
    ax.set(title=f"M = {m}: generalising (green square) or none (red x)")
    regimes._set_x_axis(ax)
    xs = [x for _, pts in rows for x, _ in pts]
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    ax.grid(True, axis="x", alpha=0.3)
  axes[-1, 0].set_xlabel("N / (M ln M)")
  fig.tight_layout()
  plotting.save_figure(
    fig, os.path.join(out_dir, f"{NAME}_regimes.png"), dpi=100
  )


def plot(results: dict, out_dir: str) -> None:
  """Both figures."""
  plot_basins(results, out_dir)
  plot_regimes(results, out_dir)
