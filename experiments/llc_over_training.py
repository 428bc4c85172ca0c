"""Fig. 3: train/val loss and the LLC over training through grokking.

Trains the quadratic network on ``(a + b) mod p`` (vmapped seeds), then
estimates the LLC at every checkpoint of every seed in one ``estimate_llc``
sweep, twice: with the paper's SGLD settings (eps 5e-4, gamma 5, nbeta =
B/ln B, 3 chains x (100 burn-in + 500 draws)) and with chains long enough for
the stationarity check (SPEC §3: the paper's chains stop while still rising),
on every ``settled_every``-th checkpoint. Writes ``DIR/results.json`` and
``DIR/llc_over_training.png``.

    python -m experiments.llc_over_training --quick   # make demo
    python -m experiments.llc_over_training           # 3 seeds
    python -m experiments.llc_over_training --paper   # caption settings

``--quick``: p=53, K=1024, the SPEC §1 recipe (lr 1e-3, wd 1e-5), one seed,
8000 steps: about 2.5 minutes on 2 CPU cores. Default: 3 seeds, about 8
minutes. ``--paper``: the Fig. 3 caption (lr 1e-4, wd 1e-4), 3 seeds, 16000
steps: about 20 minutes on 2 CPU cores, a few minutes on one GPU. Runs resume
from ``DIR/train_state.npz`` and ``DIR/llc_*.npz`` after an interruption.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from experiments import common
from slt_jax import data as data_lib
from slt_jax import metrics, plotting, train
from slt_jax.config import (PAPER_SGLD, SETTLED_SGLD, DataConfig, ModelConfig,
                            TrainConfig)


def get_config(mode: str) -> dict:
  """Configs for ``smoke`` (tests), ``quick``, ``default`` and ``paper``."""
  if mode == "smoke":
    return {"data": DataConfig(p=11, train_frac=0.5),
            "model": ModelConfig(p=11, width=32),
            "train": TrainConfig(num_steps=200, log_every=20, ckpt_every=100,
                                 chunk_steps=200, batch_size=16),
            "seeds": 1,
            "sgld": dataclasses.replace(PAPER_SGLD, num_draws=20, num_burnin=5,
                                        batch_size=16),
            "settled": dataclasses.replace(PAPER_SGLD, num_draws=40,
                                           num_burnin=10, batch_size=16),
            "settled_every": 2}
  recipe = TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=8000,
                       log_every=50, ckpt_every=250, chunk_steps=1000)
  settled = SETTLED_SGLD
  if mode == "quick":
    return {"data": DataConfig(p=53), "model": ModelConfig(p=53, width=1024),
            "train": recipe, "seeds": 1, "sgld": PAPER_SGLD,
            "settled": settled, "settled_every": 4}
  if mode == "default":
    return {"data": DataConfig(p=53), "model": ModelConfig(p=53, width=1024),
            "train": dataclasses.replace(recipe, num_steps=10000), "seeds": 3,
            "sgld": PAPER_SGLD, "settled": settled, "settled_every": 4}
  return {"data": DataConfig(p=53), "model": ModelConfig(p=53, width=1024),
          "train": TrainConfig(lr=1e-4, weight_decay=1e-4, num_steps=16000,
                               log_every=50, ckpt_every=250, chunk_steps=1000),
          "seeds": 3, "sgld": PAPER_SGLD, "settled": settled,
          "settled_every": 4}


def main(argv=None) -> dict:
  args = common.parse_args(__doc__, argv=argv, extra=lambda p: (
      p.add_argument("--paper", action="store_true",
                     help="the Fig. 3 caption's lr 1e-4, wd 1e-4"),
      p.add_argument("--smoke", action="store_true",
                     help="tiny configuration for the test-suite (seconds)")))
  mode = ("smoke" if args.smoke else "quick" if args.quick
          else "paper" if args.paper else "default")
  cfg = get_config(mode)
  out_dir = common.output_dir("llc_over_training", args.out)
  key_data, key_train, key_llc, key_settled = jax.random.split(
      jax.random.key(args.seed), 4)
  data = data_lib.modular_arithmetic(key_data, cfg["data"])
  run = train.train(key_train, data, cfg["model"], cfg["train"],
                    seeds=cfg["seeds"], out_dir=out_dir)
  loss_fn = common.loss_fn(cfg["train"].loss)
  paper = common.llc_sweep(key_llc, loss_fn, run.checkpoints, data.train,
                           cfg["sgld"], os.path.join(out_dir, "llc_paper.npz"))
  every = cfg["settled_every"]
  settled_idx = np.arange(every - 1, len(run.ckpt_steps), every)
  settled = common.llc_sweep(
      key_settled, loss_fn,
      jax.tree.map(lambda x: x[:, settled_idx], run.checkpoints), data.train,
      cfg["settled"], os.path.join(out_dir, "llc_settled.npz"))
  mem = metrics.memorisation_step(run.log_steps, run.metrics["train_acc"])
  gen = metrics.generalisation_step(run.log_steps, run.metrics["val_acc"])
  summaries = {name: [metrics.llc_curve_summary(
      steps, sweep["mean"][s], run.log_steps, run.metrics["val_loss"][s],
      int(mem[s])) for s in range(cfg["seeds"])]
               for name, sweep, steps in (
                   ("paper", paper, run.ckpt_steps),
                   ("settled", settled, run.ckpt_steps[settled_idx]))}
  sgld_paper, sgld_settled = cfg["sgld"], cfg["settled"]
  fig = plotting.plot_llc_over_training(
      run.log_steps, run.metrics["train_loss"].mean(0),
      run.metrics["val_loss"].mean(0),
      {f"LLC, paper SGLD ({sgld_paper.num_burnin}+{sgld_paper.num_draws} steps)":
           (run.ckpt_steps, paper["mean"].mean(0), paper["std"].mean(0)),
       f"LLC, settled chains ({sgld_settled.num_burnin}+"
       f"{sgld_settled.num_draws} steps)":
           (run.ckpt_steps[settled_idx], settled["mean"].mean(0),
            settled["std"].mean(0))},
      {"memorisation": float(np.median(mem)),
       "generalisation": float(np.median(gen)),
       "LLC peak (paper SGLD)": summaries["paper"][0]["peak_step"]},
      title=(f"p={cfg['data'].p}, K={cfg['model'].width}, lr={cfg['train'].lr}, "
             f"wd={cfg['train'].weight_decay}, {cfg['seeds']} seed(s)"))
  plotting.save_figure(fig, os.path.join(out_dir, "llc_over_training.png"))
  payload = {
      "mode": mode, "config": common.config_dict(
          cfg["data"], cfg["model"], cfg["train"]),
      "seeds": cfg["seeds"], "log_steps": run.log_steps,
      "metrics": run.metrics, "ckpt_steps": run.ckpt_steps,
      "settled_ckpt_steps": run.ckpt_steps[settled_idx],
      "memorisation_step": mem, "generalisation_step": gen,
      "grokking_delay": metrics.grokking_delay(
          run.log_steps, run.metrics["train_acc"], run.metrics["val_acc"]),
      "train_steps_per_second": run.steps_per_second,
      "llc_paper_settings": paper, "llc_settled": settled,
      "summary": summaries,
      "paper_reference": {"peak_llc": 4900, "final_llc": 4300,
                          "repro_peak": 4976, "repro_final": 4420},
      "drop_survives_settled": [s["final_over_peak"] < 1.0
                                for s in summaries["settled"]]}
  common.write_results(out_dir, payload)
  for name in ("paper", "settled"):
    s = summaries[name][0]
    print(f"{name:8s}: peak {s['peak_llc']:.0f} at step {s['peak_step']}, "
          f"final {s['final_llc']:.0f} (ratio {s['final_over_peak']:.3f}), "
          f"lag {s['lag']}")
  return payload


if __name__ == "__main__":
  main()
