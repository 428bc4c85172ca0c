"""What the study shows: the figure, the summary and the paper table's rows,
from ``results.json`` alone."""

from __future__ import annotations

import os
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np

from experiments import cli
from experiments.architectures.config import NAME
from slt_jax.grokking import plotting


def _marks(ax, r: dict) -> None:
  """Median memorisation and generalisation steps as vertical lines."""
  for key, style in (("memorisation_step", ":"), ("generalisation_step", "--")):
    step = r["verdict"][key]
    if step >= 0:
      ax.axvline(step, color="gray", ls=style, lw=1, label=key[:-5])


def _draw_curve(ax, r: dict, name: str, style: str = "o-") -> None:
  """A curve's seed mean ± its standard error, crosses at points with a
  diverged chain."""
  steps = np.asarray(r["llc_steps"])
  s = r["summaries"][name]
  mean = np.asarray(s["seed_mean"], float)
  se = np.asarray(s["seed_se"], float)
  (line,) = ax.plot(steps, mean, style, ms=3, lw=1.2, label=name)
  ax.fill_between(
    steps, mean - se, mean + se, alpha=0.2, color=line.get_color()
  )
  bad = [d["step"] for d in r["diverged"] if d["curve"] == name]
  if bad:
    at = np.isin(steps, bad)
    ax.plot(steps[at], np.nan_to_num(mean[at]), "x", color="red", ms=7)


def _draw_column(axes, r: dict, seeds: int) -> None:
  """One architecture: losses, accuracies, whole-model LLC, restricted."""
  log_steps = np.asarray(r["log_steps"])
  keep = log_steps > 0
  metric = lambda name: np.asarray(r["metrics"][name], float).mean(0)[keep]
  for split in ("train", "val"):
    axes[0].plot(log_steps[keep], metric(f"{split}_loss"), label=split)
    axes[1].plot(log_steps[keep], metric(f"{split}_acc"), label=split)
  axes[0].set(yscale="log", ylabel=f"loss ({r['training']['loss']})")
  axes[1].set(ylabel="accuracy", ylim=(-0.02, 1.02))
  _draw_curve(axes[2], r, "whole")
  axes[2].set_ylabel("LLC, whole model")
  for name in r["summaries"]:
    if name != "whole":
      _draw_curve(axes[3], r, name, "s--" if "head" in name else "o-")
  axes[3].set_ylabel("LLC, one layer moving")
  axes[3].set_xlabel("training step")
  axes[0].set_title(
    f"{r['kind']} (d={r['num_params']:,}, p={r['arch']['p']}, {seeds} seeds)",
    fontsize=9,
  )
  for ax in axes:
    _marks(ax, r)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)


def plot(results: dict, out_dir: str) -> None:
  """``architectures.png``: a column per architecture (``_draw_column``)."""
  archs = results["architectures"]
  fig, axes = plt.subplots(
    4, len(archs), figsize=(4.6 * len(archs), 10), squeeze=False
  )
  for column, r in enumerate(archs.values()):
    _draw_column(axes[:, column], r, results["seeds"])
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def summary(results: dict, out_dir: Optional[str] = None) -> str:
  """What a person reads at the end of a run, from ``results`` alone."""
  out_dir = out_dir or cli.output_dir(NAME)
  lines = [
    f"Architectures: LLC over training ({results.get('mode', '?')} mode, "
    f"{results['seeds']} seeds)",
    f"results: {os.path.join(out_dir, 'results.json')}",
    f"figure: {os.path.join(out_dir, NAME + '.png')}",
  ]
  for kind, r in results["architectures"].items():
    v, t = r["verdict"], r["tune"]
    lines += [
      f"[{kind}] d={v['num_params']:,}; memorised at {v['memorisation_step']}"
      f", generalised at {v['generalisation_step']}; tuned step "
      f"{r['sweep_config']['step_size']:.3g} ({r['sweep_config']['num_burnin']}"
      f" + {r['sweep_config']['num_draws']} steps, autotune "
      f"{'settled' if t['settled'] else 'NOT settled'})",
      f"  LLC peak {r['summaries']['whole']['peak_llc']:.1f} at step "
      f"{v['peak_step']}, final {v['settled_llc']:.1f} (final/peak "
      f"{v['drop_ratio']:.2f}, falls through grokking: "
      f"{v['falls_through_grokking']}); 2λ/d = "
      f"{v['settled_llc_over_half_d']:.3f}",
      "  drop by layer: "
      + ", ".join(f"{n} {x:.1f}" for n, x in v["layer_drops"].items())
      + f"; carried by {v['drop_carried_by']}",
    ]
    if r["diverged"]:
      lines.append(
        f"  DIVERGED chains at {len(r['diverged'])} (curve, seed, step) "
        "points: left out of their estimates (results.json 'diverged')"
      )
  return "\n".join(lines)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md`` (an extension: no paper values)."""
  rows = []
  for kind, r in results["architectures"].items():
    v = r["verdict"]
    for quantity, value in (
      (
        f"LLC peak step (memorised {v['memorisation_step']}, generalised "
        f"{v['generalisation_step']})",
        v["peak_step"],
      ),
      ("LLC final / peak", v["drop_ratio"]),
      ("LLC falls through grokking", v["falls_through_grokking"]),
      ("drop carried by", v["drop_carried_by"]),
      (f"settled LLC (d = {v['num_params']:,})", v["settled_llc"]),
      ("points with a diverged chain", len(r["diverged"])),
      ("chains tuned and settled by autotune", r["tune"]["settled"]),
    ):
      rows.append(
        {
          "protocol": f"{kind} (extension)",
          "quantity": quantity,
          "ours": value,
          "paper": None,
          "match": None,
        }
      )
  return rows
