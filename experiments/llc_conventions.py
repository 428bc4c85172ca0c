"""Conventions figure: how much of the paper's LLC magnitudes is convention?

At the Fig. 3 run's memorised and grokked checkpoints, runs long SGLD chains
(eps 5e-4, γ 5, every step recorded) and reads off

* the minibatch size B (32 … 256), with devinterp's nβ = B / ln B: the
  authors' Fig. 1 used B = 64 (nβ 15.4), the reproduction B = 128 (26.4);
* nβ at fixed B = 128 (a settings grid in the B = 128 program);
* the chain length: the running estimate over draws [100, T) and fixed
  windows, among them the paper's (steps 100-600) and settled ones.

Each batch size is one compiled program (the minibatch shape is static); the
nβ values at B = 128 share one. States how much of the paper's Fig. 1/2
magnitudes the nβ convention and the 600-step window account for, and whether
the drop through grokking (memorised > grokked) holds under every setting; if
``figures/paper/llc_vs_p`` and ``llc_vs_width`` results exist, whether
linearity in p and K holds under every protocol and window. Writes
``DIR/results.json`` and ``DIR/llc_conventions.png`` (``--replot`` redraws).

    python -m experiments.llc_conventions --quick
    python -m experiments.llc_conventions --paper

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, fig3, store
from slt_jax import persist
from slt_jax.grokking import plotting
from slt_jax.llc import SGLDSettings, estimate_llc
from slt_jax.llc.config import PAPER_SGLD

NAME = "llc_conventions"


@dataclasses.dataclass(frozen=True)
class ConventionsConfig:
  """Settings of the conventions study.

  Attributes:
    fig3_mode: the ``fig3.CONFIGS`` mode whose run is studied.
    checkpoints: label -> training step of the checkpoint.
    batch_sizes: SGLD minibatch sizes (nβ = B / ln B each).
    nbetas: nβ values at batch ``nbeta_batch``.
    nbeta_batch: the batch size of the nβ grid (one of ``batch_sizes``).
    num_steps: chain length; every step's loss is recorded.
    windows: (start, stop) step windows of the windowed estimates; the first
      is the paper's.
    chain_lengths: T of the running estimate over steps [burn-in, T).
    burnin: burn-in of the running estimate.
  """

  fig3_mode: str
  checkpoints: tuple[tuple[str, int], ...]
  batch_sizes: tuple[int, ...] = (32, 64, 128, 256)
  nbetas: tuple[float, ...] = (8.0, 15.39, 26.38, 50.0, 100.0)
  nbeta_batch: int = 128
  num_steps: int = 3000
  windows: tuple[tuple[int, int], ...] = (
    (100, 600),
    (1000, 2000),
    (2000, 3000),
  )
  chain_lengths: tuple[int, ...] = (300, 600, 1000, 1500, 2000, 3000)
  burnin: int = 100


CONFIGS = {
  "smoke": ConventionsConfig(
    fig3_mode="smoke",
    checkpoints=(("memorised", 100), ("grokked", 200)),
    batch_sizes=(8, 16),
    nbetas=(4.0, 8.0),
    nbeta_batch=16,
    num_steps=40,
    windows=((5, 20), (20, 40)),
    chain_lengths=(20, 40),
    burnin=5,
  ),
  "quick": ConventionsConfig(
    fig3_mode="quick",
    checkpoints=(("memorised", 1000), ("grokked", 8000)),
    batch_sizes=(64, 128),
    nbetas=(15.39, 26.38, 50.0),
    num_steps=2000,
    windows=((100, 600), (1000, 2000)),
    chain_lengths=(600, 1000, 2000),
  ),
  "default": ConventionsConfig(
    fig3_mode="quick", checkpoints=(("memorised", 1000), ("grokked", 8000))
  ),
  "paper": ConventionsConfig(
    fig3_mode="quick", checkpoints=(("memorised", 1000), ("grokked", 8000))
  ),
}


def windowed(
  trace_CxT: np.ndarray, init_loss: float, nbeta: float, start: int, stop: int
) -> dict:
  """The estimate ``nβ (mean L - L0)`` over steps [start, stop) per chain.

  Args:
    trace_CxT: (chains, steps) losses.
    init_loss: L_n(w*).
    nbeta: n·β.
    start, stop: the window.

  Returns:
    dict of mean and std over chains.
  """
  per_chain = nbeta * (trace_CxT[:, start:stop].mean(axis=1) - init_loss)
  return {"mean": float(per_chain.mean()), "std": float(per_chain.std())}


def study(res, cfg: ConventionsConfig, setting: int, point: int) -> dict:
  """Windowed and running estimates of one (setting, checkpoint)."""
  trace = res.loss_trace[setting, point]
  init, nbeta = float(res.init_loss[setting, point]), float(res.nbeta[setting])
  return {
    "nbeta": nbeta,
    "windows": {
      f"{a}-{b}": windowed(trace, init, nbeta, a, b) for a, b in cfg.windows
    },
    "running": [
      windowed(trace, init, nbeta, cfg.burnin, t)["mean"]
      for t in cfg.chain_lengths
    ],
  }


def linearity_elsewhere(paper_dir: str) -> dict:
  """R² of every fitted line of the paper-size Figs. 1-2, if they ran."""
  found = {}
  for name in ("llc_vs_p", "llc_vs_width"):
    path = os.path.join(paper_dir, name, "results.json")
    if not os.path.exists(path):
      continue
    results = persist.load_json(path)
    found[name] = {
      f"{kind}/{proto}/{fixed}": fit["r2"]
      for kind in ("fits", "fits_settled")
      for proto, fits in results[kind].items()
      for fixed, fit in fits.items()
    }
  return found


def compute(cfg: ConventionsConfig, seed: int, out_dir: str, runs_dir) -> dict:
  """The study (see the module docstring)."""
  start = time.perf_counter()
  fig3_cfg = fig3.CONFIGS[cfg.fig3_mode]
  run, data = fig3.run(fig3_cfg, "recipe", seed, runs_dir)
  idx = [
    int(np.flatnonzero(run.ckpt_steps == step)[0])
    for _, step in cfg.checkpoints
  ]
  points = jax.tree.map(lambda x: x[0, idx], run.checkpoints)
  loss_fn = store.loss_fn(fig3_cfg.recipe.loss)
  key = jax.random.fold_in(jax.random.key(seed), 7)
  base = dataclasses.replace(PAPER_SGLD, num_burnin=0, num_draws=cfg.num_steps)
  by_batch, by_nbeta, seconds = {}, {}, {}
  for b in cfg.batch_sizes:
    nbetas = [b / math.log(b)] + (
      list(cfg.nbetas) if b == cfg.nbeta_batch else []
    )
    t0 = time.perf_counter()
    res = estimate_llc(
      key,
      loss_fn,
      points,
      data.train,
      dataclasses.replace(base, batch_size=b),
      batch_ndim=1,
      settings=SGLDSettings(nbeta=nbetas),
      out_path=os.path.join(out_dir, "chains", f"batch_{b}"),
      progress=False,
      warn=False,
    )
    seconds[str(b)] = time.perf_counter() - t0
    by_batch[str(b)] = {
      label: study(res, cfg, 0, i)
      for i, (label, _) in enumerate(cfg.checkpoints)
    }
    if b == cfg.nbeta_batch:
      by_nbeta = {
        f"{nb:g}": {
          label: study(res, cfg, 1 + j, i)
          for i, (label, _) in enumerate(cfg.checkpoints)
        }
        for j, nb in enumerate(cfg.nbetas)
      }
  paper_window = "{}-{}".format(*cfg.windows[0])
  settled_window = "{}-{}".format(*cfg.windows[-1])
  drops = {}
  for axis, table in (("batch", by_batch), ("nbeta", by_nbeta)):
    for value, row in table.items():
      for window in row[cfg.checkpoints[0][0]]["windows"]:
        first, last = (
          row[label]["windows"][window]["mean"]
          for label, _ in (cfg.checkpoints[0], cfg.checkpoints[-1])
        )
        drops[f"{axis}={value}, steps {window}"] = last < first
  ratios = {}
  if "64" in by_batch and "128" in by_batch:
    for label, _ in cfg.checkpoints:
      w64 = by_batch["64"][label]["windows"][paper_window]["mean"]
      w128 = by_batch["128"][label]["windows"][paper_window]["mean"]
      s128 = by_batch["128"][label]["windows"][settled_window]["mean"]
      ratios[label] = {
        "batch64_over_batch128_paper_window": w64 / w128,
        "settled_over_paper_window_batch128": s128 / w128,
      }
  return {
    "mode_config": dataclasses.asdict(cfg),
    "fig3_config": dataclasses.asdict(fig3_cfg),
    "checkpoint_steps": dict(cfg.checkpoints),
    "sgld": dataclasses.asdict(base),
    "by_batch": by_batch,
    "by_nbeta": by_nbeta,
    "paper_window": paper_window,
    "settled_window": settled_window,
    "magnitude_ratios": ratios,
    "drop_through_grokking": drops,
    "drop_holds_everywhere": bool(all(drops.values())),
    "linearity_r2_paper_size": linearity_elsewhere(
      os.path.join(cli.FIGURES_DIR, "paper")
    ),
    "program_seconds": seconds,
    "wall_seconds": time.perf_counter() - start,
  }


def plot(results: dict, out_dir: str) -> None:
  """Three panels: LLC vs B, vs nβ (B = 128), and vs chain length."""
  cfg = results["mode_config"]
  labels = list(results["checkpoint_steps"])
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  for label, marker in zip(labels, "os"):
    for window, style in zip(
      results["by_batch"][next(iter(results["by_batch"]))][label]["windows"],
      ("-", "--", ":"),
    ):
      xs = [int(b) for b in results["by_batch"]]
      axes[0].plot(
        xs,
        [
          results["by_batch"][b][label]["windows"][window]["mean"]
          for b in results["by_batch"]
        ],
        style,
        marker=marker,
        label=f"{label}, steps {window}",
      )
      if results["by_nbeta"]:
        nbs = [float(v) for v in results["by_nbeta"]]
        axes[1].plot(
          nbs,
          [
            results["by_nbeta"][v][label]["windows"][window]["mean"]
            for v in results["by_nbeta"]
          ],
          style,
          marker=marker,
          label=f"{label}, steps {window}",
        )
    for b, row in results["by_batch"].items():
      axes[2].plot(
        cfg["chain_lengths"],
        row[label]["running"],
        marker=marker,
        label=f"{label}, B={b}",
      )
  axes[0].set(
    xscale="log",
    xlabel="SGLD minibatch B (nβ = B / ln B)",
    ylabel="LLC estimate",
    title="batch-size convention",
  )
  axes[1].set(
    xscale="log",
    xlabel=f"nβ (B = {cfg['nbeta_batch']})",
    title="nβ at fixed batch",
  )
  axes[2].set(
    xlabel=f"chain length T (estimate over [{cfg['burnin']}, T))",
    title="chain length",
  )
  for ax in axes:
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=6)
  fig.suptitle(
    "LLC conventions at the Fig. 3 memorised and grokked checkpoints"
  )
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: how much the conventions move the
  magnitudes, and whether the drop through grokking survives them all."""
  rows = []
  for label, r in results["magnitude_ratios"].items():
    rows += [
      {
        "protocol": "recipe run",
        "quantity": f"{label}: LLC(B=64) / LLC(B=128), paper window",
        "ours": r["batch64_over_batch128_paper_window"],
        "paper": None,
        "match": None,
      },
      {
        "protocol": "recipe run",
        "quantity": f"{label}: settled / paper window (B=128)",
        "ours": r["settled_over_paper_window_batch128"],
        "paper": None,
        "match": None,
      },
    ]
  rows.append(
    {
      "protocol": "every B, nβ and window",
      "quantity": "LLC drops from memorised to grokked",
      "ours": results["drop_holds_everywhere"],
      "paper": True,
      "match": results["drop_holds_everywhere"],
    }
  )
  for name, fits in results["linearity_r2_paper_size"].items():
    worst = min(fits.values())
    rows.append(
      {
        "protocol": "both protocols, both windows",
        "quantity": f"{name}: lowest R² of its {len(fits)} lines",
        "ours": worst,
        "paper": ">= 0.95",
        "match": worst >= 0.95,
      }
    )
  return rows


def main(argv=None) -> dict:
  results = cli.run_stored_experiment(
    NAME, __doc__, CONFIGS, compute, plot, argv
  )
  for label, r in results["magnitude_ratios"].items():
    print(
      f"{label}: B=64 / B=128 (paper window) "
      f"{r['batch64_over_batch128_paper_window']:.3f}; settled / paper "
      f"window (B=128) {r['settled_over_paper_window_batch128']:.3f}"
    )
  print(
    "drop through grokking under every setting:",
    results["drop_holds_everywhere"],
  )
  return results


if __name__ == "__main__":
  main()
