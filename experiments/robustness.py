"""Figs. 7-10: is the Fig. 3 LLC curve robust to seeds and SGLD settings?

Loads the Fig. 3 run from the run store (``experiments.fig3.run``) and
re-estimates its LLC curve with one knob of the paper's SGLD settings changed
at a time, one panel per knob:

* seeds: every training seed x ``sgld_seeds`` sampling keys;
* step size eps: 2.5e-4, 5e-4 (paper), 1e-3;
* localization gamma: 2.5, 5 (paper), 10;
* nβ: 0.5x, 1x (paper: B / ln B = 26.4 for B = 128), 2x;
* chain length: 100 burn-in + 500 draws (paper) vs 1000 + 1000.

The paper does not say how the networks of Figs. 7-10 were trained: ``--paper``
uses the Fig. 3 caption's settings (the ``authors`` protocol of
``protocols.fig3_protocol``: lr 1e-4, wd 1e-4, batch 128) and says so in
``results.json`` (``authors_settings_known``: false). The paper's picture
holds for a curve when it peaks at or after memorisation and ends below its
peak (``grokking_metrics.llc_curve_summary``: peak_step >= memorisation step and
final_over_peak < 1). Writes ``DIR/results.json`` and ``DIR/robustness.png``
(``--replot`` redraws it from ``results.json``).

    python -m experiments.robustness --quick   # recipe, 6 checkpoints
    python -m experiments.robustness           # recipe, 3 seeds, all 40
    python -m experiments.robustness --paper   # caption's run, 8 checkpoints

``--quick`` (recipe, one seed, LLC at steps 500 … 8000, ~122k SGLD
chain-steps) took 2.4 min on 2 idle CPU cores (figures/README.md,
2026-11-29: ~900 chain-steps/s). ``--paper`` (~178k chain-steps at 8
checkpoints of the caption's run, about 3.5 min at that rate) is timed in
``figures/paper/README.md``; the default (3 seeds × 40 checkpoints, ~2.3M
chain-steps) about 40 min. Chains resume from ``DIR/chains/``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional

import jax
import numpy as np

from experiments import cli, fig3, store, sweeps
from slt_jax.grokking import grokking_metrics, plotting

NAME = "robustness"


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
  """The run studied and the variants of each panel.

  Attributes:
    fig3: the Fig. 3 run and SGLD settings (``fig3.CONFIGS``).
    protocol: the run's protocol, ``recipe`` or ``authors``.
    llc_steps: checkpoint steps to estimate at (None: all).
    factors: multiples of the paper's eps, gamma and nβ (1.0 among them).
    chain_lengths: (burn-in, draws) of the chain-length panel.
    sgld_seeds: sampling keys of the seed panel.
  """

  fig3: fig3.Fig3Config
  protocol: str
  llc_steps: Optional[tuple[int, ...]]
  factors: tuple[float, ...] = (0.5, 1.0, 2.0)
  chain_lengths: tuple[tuple[int, int], ...] = ((100, 500), (1000, 1000))
  sgld_seeds: int = 1

  def panels(self) -> dict:
    """knob -> {label: SGLDConfig}, the paper's settings among them."""
    base = self.fig3.sgld
    nbeta = base.resolve_nbeta(base.batch_size)  # B / ln B; needs B <= n.
    variant = lambda **kw: dataclasses.replace(base, **kw)
    return {
      "step size ε": {
        f"ε = {f * base.step_size:g}": variant(step_size=f * base.step_size)
        for f in self.factors
      },
      "localization γ": {
        f"γ = {f * base.localization:g}": variant(
          localization=f * base.localization
        )
        for f in self.factors
      },
      "nβ": {
        f"nβ = {f * nbeta:.3g}": (
          base if f == 1.0 else variant(nbeta=f * nbeta)
        )
        for f in self.factors
      },
      "chain length": {
        f"{b} burn-in + {d} draws": variant(num_burnin=b, num_draws=d)
        for b, d in self.chain_lengths
      },
    }


CONFIGS = {
  "smoke": RobustnessConfig(
    fig3.CONFIGS["smoke"],
    "recipe",
    None,
    factors=(1.0, 2.0),
    chain_lengths=((5, 20), (10, 40)),
    sgld_seeds=2,
  ),
  "quick": RobustnessConfig(
    fig3.CONFIGS["quick"],
    "recipe",
    (500, 1000, 2000, 4000, 6000, 8000),
    sgld_seeds=2,
  ),
  "default": RobustnessConfig(fig3.CONFIGS["default"], "recipe", None),
  "paper": RobustnessConfig(
    fig3.CONFIGS["paper"],
    "authors",
    (500, 1000, 2000, 4000, 6000, 8000, 12000, 16000),
    sgld_seeds=3,
  ),
}


def holds(summary: dict, memorisation: int) -> bool:
  """Peak at or after memorisation, then a drop (the paper's picture)."""
  return bool(
    summary["final_over_peak"] < 1.0 and summary["peak_step"] >= memorisation
  )


def compute(cfg: RobustnessConfig, seed: int, out_dir: str, runs_dir) -> dict:
  """Every panel's curves and verdicts (see the module docstring)."""
  start = time.perf_counter()
  run, data = fig3.run(cfg.fig3, cfg.protocol, seed, runs_dir)
  key_llc = fig3.keys(seed)[2]
  seeds = cfg.fig3.seeds
  idx = (
    np.arange(len(run.ckpt_steps))
    if cfg.llc_steps is None
    else np.searchsorted(run.ckpt_steps, cfg.llc_steps)
  )
  steps = run.ckpt_steps[idx]
  ckpts = jax.tree.map(lambda x: x[:, idx], run.checkpoints)
  proto = cfg.fig3.protocol(cfg.protocol)
  loss_fn = store.loss_fn(proto.train.loss)
  mem = grokking_metrics.memorisation_step(
    run.log_steps, run.metrics["train_acc"]
  )
  # panel -> label -> (training seed, SGLD config, SGLD key).
  curves = {
    "seed": {
      f"train seed {s}, SGLD key {k}": (s, cfg.fig3.sgld, k)
      for s in range(seeds)
      for k in range(cfg.sgld_seeds)
    }
  }
  for panel, variants in cfg.panels().items():
    curves[panel] = {
      f"{label}, train seed {s}": (s, sgld_cfg, 0)
      for label, sgld_cfg in variants.items()
      for s in range(seeds)
    }
  # Per SGLD key, every distinct config in one llc_grid call: the eps, gamma
  # and nbeta variants share one compiled program (one per chain length).
  needed: dict = {}
  for entries in curves.values():
    for _, sgld_cfg, k in entries.values():
      if sgld_cfg not in needed.setdefault(k, []):
        needed[k].append(sgld_cfg)
  cache = {}
  for k, cfgs in needed.items():
    for c, res in zip(
      cfgs,
      sweeps.llc_grid(
        jax.random.fold_in(key_llc, k),
        loss_fn,
        ckpts,
        data.train,
        cfgs,
        os.path.join(out_dir, "chains", f"key{k}"),
      ),
    ):
      cache[(c, k)] = res
      print(
        f"key {k}, eps {c.step_size:g}, gamma {c.localization:g}, nbeta "
        f"{c.nbeta}, {c.num_burnin}+{c.num_draws}: "
        f"{np.round(res['mean'][0]).tolist()}",
        flush=True,
      )
  panels = {}
  for panel, entries in curves.items():
    panels[panel] = {}
    for label, (s, sgld_cfg, k) in entries.items():
      res = cache[(sgld_cfg, k)]
      summary = grokking_metrics.llc_curve_summary(
        steps,
        res["mean"][s],
        run.log_steps,
        run.metrics["val_loss"][s],
        int(mem[s]),
      )
      panels[panel][label] = {
        "train_seed": s,
        "sgld_seed": k,
        "sgld": dataclasses.asdict(sgld_cfg),
        "llc_mean": res["mean"][s],
        "llc_std": res["std"][s],
        "fraction_stationary": float(np.mean(res["stationary"][s])),
        "summary": summary,
        "holds": holds(summary, int(mem[s])),
      }
  verdicts = {
    panel: all(c["holds"] for c in entries.values())
    for panel, entries in panels.items()
  }
  return {
    "config": dataclasses.asdict(cfg),
    "protocol": cfg.protocol,
    "train": dataclasses.asdict(proto.train),
    "settings_source": proto.source,
    # The paper gives no training settings for Figs. 7-10.
    "authors_settings_known": False,
    "seeds": seeds,
    "sgld_seeds": cfg.sgld_seeds,
    "log_steps": run.log_steps,
    "metrics": run.metrics,
    "llc_steps": steps,
    "memorisation_step": mem,
    "generalisation_step": grokking_metrics.generalisation_step(
      run.log_steps, run.metrics["val_acc"]
    ),
    "panels": panels,
    "panel_holds": verdicts,
    "all_hold": all(verdicts.values()),
    "sweep_seconds": sum(r["group_seconds_share"] for r in cache.values()),
    "paper_reference": "Figs. 7-10: same qualitative shape (peak at "
    "memorisation, drop through grokking) for every "
    "seed, eps, gamma and beta",
    "wall_seconds": time.perf_counter() - start,
  }


def plot(results: dict, out_dir: str) -> None:
  """``robustness.png`` from ``results``: one panel per knob."""
  steps = np.asarray(results["llc_steps"])
  curves = {
    panel: {
      label: (
        steps,
        np.asarray(c["llc_mean"], float),
        np.asarray(c["llc_std"], float),
      )
      for label, c in entries.items()
    }
    for panel, entries in results["panels"].items()
  }
  fig = plotting.plot_curve_panels(
    curves,
    {
      "memorisation": float(np.median(results["memorisation_step"])),
      "generalisation": float(np.median(results["generalisation_step"])),
    },
    ncols=3,
  )
  fig3_cfg = results["config"]["fig3"]
  fig.suptitle(
    f"robustness of the Fig. 3 LLC curve ({results['protocol']}):"
    f" p={fig3_cfg['data']['p']}, K={fig3_cfg['model']['width']}, "
    f"lr={results['train']['lr']:g}",
    y=1.02,
  )
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: whether every panel keeps the
  Fig. 3 shape (the authors' settings for Figs. 7-10 are not known)."""
  return [
    {
      "protocol": f"{results['protocol']} (authors' settings unknown)",
      "quantity": f"{panel}: peak then drop in every curve",
      "ours": holds,
      "paper": True,
      "match": holds,
    }
    for panel, holds in results["panel_holds"].items()
  ]


def main(argv=None) -> dict:
  results = cli.run_stored_experiment(
    NAME, __doc__, CONFIGS, compute, plot, argv
  )
  for panel, entries in results["panels"].items():
    for label, c in entries.items():
      s = c["summary"]
      print(
        f"{panel:15s} {label:40s}: peak {s['peak_llc']:.0f} at "
        f"{s['peak_step']}, final/peak {s['final_over_peak']:.3f}, "
        f"holds {c['holds']}"
      )
  return results


if __name__ == "__main__":
  main()
