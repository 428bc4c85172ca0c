"""Figs. 7-10: is the Fig. 3 LLC curve robust to seeds and SGLD settings?

Trains the Fig. 3 run (``llc_over_training.get_config``) once and re-estimates
its LLC curve with one knob of the paper's SGLD settings changed at a time,
one panel per knob:

* seeds: every training seed x ``sgld_seeds`` sampling keys;
* step size eps: 2.5e-4, 5e-4 (paper), 1e-3;
* localization gamma: 2.5, 5 (paper), 10;
* nβ: 0.5x, 1x (paper: B / ln B = 26.4 for B = 128), 2x;
* chain length: 100 burn-in + 500 draws (paper) vs 1000 + 1000.

The paper's picture holds for a curve when it peaks at or after memorisation
and ends below its peak (``metrics.llc_curve_summary``: peak_step >=
memorisation step and final_over_peak < 1). Writes ``DIR/results.json`` and
``DIR/robustness.png``.

    python -m experiments.robustness --quick   # 6 checkpoints, 2 SGLD keys
    python -m experiments.robustness           # 3 training seeds, all 40
    python -m experiments.robustness --paper   # Fig. 3 caption settings

Expected runtime on 2 CPU cores: ``--quick`` (p=53, K=1024, one training
seed, 8000 steps, LLC at steps 500, 1000, 2000, 4000, 6000, 8000: 9 sweeps,
~110k SGLD chain-steps) about 2.5 minutes; default (3 seeds x 40
checkpoints) about 45 minutes; ``--paper`` about 1.5 hours, minutes on one GPU. Training and sweeps resume from
``DIR/*.npz``.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from experiments import common, llc_over_training
from slt_jax import data as data_lib
from slt_jax import metrics, plotting, train

NAME = "robustness"


def get_config(mode: str) -> dict:
  """``llc_over_training``'s config plus the variants of each panel.

  ``llc_steps`` picks checkpoints (None: all); ``panels`` maps a knob to
  (label, SGLDConfig) variants, the paper's settings among them.
  """
  cfg = llc_over_training.get_config(mode)
  base = cfg["sgld"]
  nbeta = base.resolve_nbeta(base.batch_size)  # B / ln B; needs B <= n.
  if mode == "smoke":
    factors, chains = (1.0, 2.0), ((5, 20), (10, 40))
  else:
    factors, chains = (0.5, 1.0, 2.0), ((100, 500), (1000, 1000))
  variant = lambda **kw: dataclasses.replace(base, **kw)
  panels = {
      "step size ε": {f"ε = {f * base.step_size:g}": variant(
          step_size=f * base.step_size) for f in factors},
      "localization γ": {f"γ = {f * base.localization:g}": variant(
          localization=f * base.localization) for f in factors},
      "nβ": {f"nβ = {f * nbeta:.3g}": (base if f == 1.0 else variant(
          nbeta=f * nbeta)) for f in factors},
      "chain length": {f"{b} burn-in + {d} draws": variant(
          num_burnin=b, num_draws=d) for b, d in chains},
  }
  llc_steps = {"quick": (500, 1000, 2000, 4000, 6000, 8000)}.get(mode)
  return {**cfg, "panels": panels, "llc_steps": llc_steps,
          "sgld_seeds": 2 if mode in ("quick", "smoke") else 1}


def holds(summary: dict, memorisation: int) -> bool:
  """Peak at or after memorisation, then a drop (the paper's picture)."""
  return bool(summary["final_over_peak"] < 1.0
              and summary["peak_step"] >= memorisation)


def main(argv=None) -> dict:
  args, mode = common.parse_mode(__doc__, argv=argv)
  cfg = get_config(mode)
  out_dir = common.output_dir(NAME, args.out)
  key_data, key_train, key_llc = jax.random.split(jax.random.key(args.seed), 3)
  start = time.perf_counter()
  data = data_lib.modular_arithmetic(key_data, cfg["data"])
  run = train.train(key_train, data, cfg["model"], cfg["train"],
                    seeds=cfg["seeds"], out_dir=out_dir,
                    progress=mode != "smoke")
  idx = (np.arange(len(run.ckpt_steps)) if cfg["llc_steps"] is None else
         np.searchsorted(run.ckpt_steps, cfg["llc_steps"]))
  steps = run.ckpt_steps[idx]
  ckpts = jax.tree.map(lambda x: x[:, idx], run.checkpoints)
  loss_fn = common.loss_fn(cfg["train"].loss)
  mem = metrics.memorisation_step(run.log_steps, run.metrics["train_acc"])
  gen = metrics.generalisation_step(run.log_steps, run.metrics["val_acc"])
  # panel -> label -> list of (training seed, sweep, sgld seed).
  curves = {"seed": {f"train seed {s}, SGLD key {k}": (s, cfg["sgld"], k)
                     for s in range(cfg["seeds"])
                     for k in range(cfg["sgld_seeds"])}}
  for panel, variants in cfg["panels"].items():
    curves[panel] = {f"{label}, train seed {s}": (s, sgld_cfg, 0)
                     for label, sgld_cfg in variants.items()
                     for s in range(cfg["seeds"])}
  # Per SGLD key, every distinct config in one llc_grid call: the eps, gamma
  # and nbeta variants share one compiled program (one per chain length).
  needed: dict = {}
  for entries in curves.values():
    for _, sgld_cfg, k in entries.values():
      if sgld_cfg not in needed.setdefault(k, []):
        needed[k].append(sgld_cfg)
  cache = {}
  for k, cfgs in needed.items():
    for c, res in zip(cfgs, common.llc_grid(
        jax.random.fold_in(key_llc, k), loss_fn, ckpts, data.train, cfgs,
        os.path.join(out_dir, f"chains_key{k}"))):
      cache[(c, k)] = res
      print(f"key {k}, eps {c.step_size:g}, gamma {c.localization:g}, nbeta "
            f"{c.nbeta}, {c.num_burnin}+{c.num_draws}: "
            f"{np.round(res['mean'][0]).tolist()}", flush=True)
  results, plots = {}, {}
  for panel, entries in curves.items():
    results[panel], plots[panel] = {}, {}
    for label, (s, sgld_cfg, k) in entries.items():
      res = cache[(sgld_cfg, k)]
      summary = metrics.llc_curve_summary(
          steps, res["mean"][s], run.log_steps, run.metrics["val_loss"][s],
          int(mem[s]))
      results[panel][label] = {
          "train_seed": s, "sgld_seed": k, "sgld": dataclasses.asdict(sgld_cfg),
          "llc_mean": res["mean"][s], "llc_std": res["std"][s],
          "fraction_stationary": float(np.mean(res["stationary"][s])),
          "summary": summary, "holds": holds(summary, int(mem[s]))}
      plots[panel][label] = (steps, res["mean"][s], res["std"][s])
  verdicts = {panel: all(c["holds"] for c in entries.values())
              for panel, entries in results.items()}

  fig = plotting.plot_curve_panels(
      plots, {"memorisation": float(np.median(mem)),
              "generalisation": float(np.median(gen))}, ncols=3)
  fig.suptitle(f"robustness of the Fig. 3 LLC curve: p={cfg['data'].p}, "
               f"K={cfg['model'].width}, lr={cfg['train'].lr}", y=1.02)
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)

  payload = {
      "mode": mode, "config": common.config_dict(
          cfg["data"], cfg["model"], cfg["train"], cfg["sgld"]),
      "seeds": cfg["seeds"], "sgld_seeds": cfg["sgld_seeds"],
      "log_steps": run.log_steps, "metrics": run.metrics, "llc_steps": steps,
      "memorisation_step": mem, "generalisation_step": gen,
      "panels": results, "panel_holds": verdicts,
      "all_hold": all(verdicts.values()),
      "sweep_seconds": sum(r["group_seconds_share"] for r in cache.values()),
      "paper_reference": "Figs. 7-10: same qualitative shape (peak at "
                         "memorisation, drop through grokking) for every "
                         "seed, eps, gamma and beta",
      "wall_seconds": time.perf_counter() - start}
  common.write_results(out_dir, payload)
  for panel, entries in results.items():
    for label, c in entries.items():
      s = c["summary"]
      print(f"{panel:15s} {label:40s}: peak {s['peak_llc']:.0f} at "
            f"{s['peak_step']}, final/peak {s['final_over_peak']:.3f}, "
            f"holds {c['holds']}")
  return payload


if __name__ == "__main__":
  main()
