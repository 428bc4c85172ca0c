"""Fig. 4: the Grokking Severity Metric falls as the learning rate grows.

Trains every learning rate x seed of a log grid in ONE vmapped ``train`` call
(SPEC §1 recipe otherwise), logs accuracy every 250 steps and computes
``metrics.grokking_severity`` (GSM: area between the train and validation
accuracy curves over the final step T, 0 if the run has not generalised by T)
per run. Reports GSM mean ± std over seeds per lr, the Spearman rank
correlation of GSM with lr (``metrics.spearman_rho``, over all runs and over
the seed means), and the SPEC's measured values (30k steps, p=53, K=1024:
lr 1e-4 -> 0.39, 3e-4 -> 0.21, 1e-3 -> 0.10, 3e-3 -> 0.048, 1e-2 -> 0.013).
GSM is normalised by T, so only runs of the same length compare directly.
Writes ``DIR/results.json`` and ``DIR/gsm_vs_lr.png``.

    python -m experiments.gsm_vs_lr --quick   # p=53, K=256, 6 lrs 5.6e-4..1e-2
    python -m experiments.gsm_vs_lr           # p=53, K=1024, the SPEC's 5 lrs
    python -m experiments.gsm_vs_lr --paper   # 9 lrs 1e-4..1e-2, 5 seeds

Expected runtime on 2 CPU cores: ``--quick`` (K=256 trains ~4x faster than
1024; 2 seeds, 20k steps) about 1 minute. At 15k steps one seed at lr
3.2e-4 had not generalised (GSM 0 by definition), which breaks the trend at
the slow end: T must exceed the slowest run's generalisation step (the
SPEC's lr 1e-4 run generalised at 14,250 of 30k). Default (2 seeds, 30k
steps) about 15 minutes; ``--paper`` (45 runs x 30k steps) about 40
minutes, a few minutes on one GPU. Training resumes from
``DIR/train_state.npz``.
"""

from __future__ import annotations

import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import common, llc_over_training
from slt_jax import data as data_lib
from slt_jax import metrics, plotting, train
from slt_jax.config import DataConfig, ModelConfig, TrainConfig

NAME = "gsm_vs_lr"
SPEC_GSM = {1e-4: 0.39, 3e-4: 0.21, 1e-3: 0.10, 3e-3: 0.048, 1e-2: 0.013}


def get_config(mode: str) -> dict:
  """Configs for ``smoke`` (tests), ``quick``, ``default`` and ``paper``."""
  if mode == "smoke":
    smoke = llc_over_training.get_config("smoke")
    return {"data": DataConfig(p=7, train_frac=0.5),
            "model": ModelConfig(p=7, width=32), "train": smoke["train"],
            "lrs": (1e-2, 3e-2), "seeds": 1}
  recipe = TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=30000,
                       log_every=250, ckpt_every=5000, chunk_steps=5000)
  if mode == "quick":
    return {"data": DataConfig(p=53), "model": ModelConfig(p=53, width=256),
            "train": TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=20000,
                                 log_every=250, ckpt_every=5000,
                                 chunk_steps=5000),
            "lrs": tuple(np.logspace(-3.25, -2, 6).round(7)), "seeds": 2}
  if mode == "default":
    return {"data": DataConfig(p=53), "model": ModelConfig(p=53, width=1024),
            "train": recipe, "lrs": tuple(SPEC_GSM), "seeds": 2}
  return {"data": DataConfig(p=53), "model": ModelConfig(p=53, width=1024),
          "train": recipe, "lrs": tuple(np.logspace(-4, -2, 9).round(7)),
          "seeds": 5}


def main(argv=None) -> dict:
  args, mode = common.parse_mode(__doc__, argv=argv)
  cfg = get_config(mode)
  out_dir = common.output_dir(NAME, args.out)
  key_data, key_train = jax.random.split(jax.random.key(args.seed))
  start = time.perf_counter()
  data = data_lib.modular_arithmetic(key_data, cfg["data"])
  run = train.train(key_train, data, cfg["model"], cfg["train"],
                    seeds=cfg["seeds"], lrs=cfg["lrs"], out_dir=out_dir,
                    progress=mode != "smoke")
  shape = (cfg["seeds"], len(cfg["lrs"]))  # Runs are seed-major.
  acc = {k: run.metrics[k] for k in ("train_acc", "val_acc")}
  gsm_SxL = metrics.grokking_severity(
      run.log_steps, acc["train_acc"], acc["val_acc"]).reshape(shape)
  mem_SxL = metrics.memorisation_step(run.log_steps,
                                      acc["train_acc"]).reshape(shape)
  gen_SxL = metrics.generalisation_step(run.log_steps,
                                        acc["val_acc"]).reshape(shape)
  lrs = np.asarray(cfg["lrs"])
  rho_runs = metrics.spearman_rho(np.tile(lrs, cfg["seeds"]), gsm_SxL.ravel())
  rho_means = metrics.spearman_rho(lrs, gsm_SxL.mean(0))
  spec = {lr: (SPEC_GSM[lr], float(gsm_SxL[:, i].mean()))
          for i, lr in enumerate(lrs) if lr in SPEC_GSM}

  fig, (ax_gsm, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
  ax_gsm.errorbar(lrs, gsm_SxL.mean(0), yerr=gsm_SxL.std(0), fmt="o-",
                  capsize=3, label=f"measured ({cfg['seeds']} seeds)")
  ax_gsm.plot(list(SPEC_GSM), list(SPEC_GSM.values()), "k^--", ms=5, lw=1,
              label="SPEC measured (p=53, K=1024, 30k steps)")
  ax_gsm.set(xscale="log", xlabel="learning rate", ylabel="GSM",
             title=f"GSM vs lr: Spearman ρ = {rho_runs:.2f} (runs), "
                   f"{rho_means:.2f} (means)")
  ax_gsm.grid(True, which="both", alpha=0.3)
  ax_gsm.legend(fontsize=8)
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(lrs)))
  for i, lr in enumerate(lrs):
    ax_acc.plot(run.log_steps, acc["val_acc"].reshape(shape + (-1,))[0, i],
                color=colors[i], label=f"lr {lr:.2g}")
  ax_acc.set(xlabel="training step", ylabel="validation accuracy (seed 0)",
             title=f"p={cfg['data'].p}, K={cfg['model'].width}")
  ax_acc.legend(fontsize=7)
  ax_acc.locator_params(axis="x", nbins=5)
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)

  payload = {
      "mode": mode, "config": common.config_dict(cfg["data"], cfg["model"],
                                                 cfg["train"]),
      "lrs": lrs, "seeds": cfg["seeds"], "log_steps": run.log_steps,
      "train_acc": acc["train_acc"].reshape(shape + (-1,)),
      "val_acc": acc["val_acc"].reshape(shape + (-1,)),
      "gsm": gsm_SxL, "gsm_mean": gsm_SxL.mean(0), "gsm_std": gsm_SxL.std(0),
      "memorisation_step": mem_SxL, "generalisation_step": gen_SxL,
      "spearman_rho_runs": rho_runs, "spearman_rho_means": rho_means,
      "decreasing": bool(rho_means < 0),
      "monotone_means": bool(np.all(np.diff(gsm_SxL.mean(0)) < 0)),
      "spec_reference": {"gsm": {str(k): v for k, v in SPEC_GSM.items()},
                         "num_steps": 30000, "p": 53, "width": 1024,
                         "spearman_rho": -1.0,
                         "paper": "GSM decreasing in lr (Fig. 4)"},
      "spec_vs_measured": {str(k): v for k, v in spec.items()},
      "train_steps_per_second": run.steps_per_second,
      "wall_seconds": time.perf_counter() - start}
  common.write_results(out_dir, payload)
  for i, lr in enumerate(lrs):
    print(f"lr {lr:.3g}: GSM {gsm_SxL[:, i].mean():.4f} ± "
          f"{gsm_SxL[:, i].std():.4f}, generalised at {gen_SxL[:, i]}")
  print(f"Spearman rho: runs {rho_runs:.3f}, means {rho_means:.3f}")
  return payload


if __name__ == "__main__":
  main()
