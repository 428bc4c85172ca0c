"""Which layer carries the LLC drop at grokking, and the LLC on held-out pairs.

Trains the Fig. 3 run (``llc_over_training.get_config``: same data, model,
recipe and seeds) and estimates, at its checkpoints with the paper's SGLD
settings, four LLC curves:

* W and V moving, on the training pairs (the Fig. 3 curve);
* W alone (V frozen at w*; ``mask=lambda path, _: "W" in path``);
* V alone (W frozen);
* W and V moving, on the validation pairs: ``data.val`` is passed as the
  data, so the chains' minibatches, L_n(w*) and n all refer to the
  validation set (n enters only through nβ, and nβ = B / ln B ignores it).
  Before grokking w* is not a minimum of the validation loss, so this is not
  an LLC in the strict sense: it mixes the local volume with the descent
  the chains can make (at p=53 it stays within ~5% of the training-pair
  curve and drops with it).

The restricted LLCs are LLCs of the restricted models (one layer moving);
they need not add up to the joint one. The drop of each curve (peak minus
final value, after memorisation) is reported with its share of the joint
drop. Writes ``DIR/results.json`` and ``DIR/llc_by_layer.png``.

    python -m experiments.llc_by_layer --quick   # every 2nd checkpoint
    python -m experiments.llc_by_layer           # 3 seeds, all checkpoints
    python -m experiments.llc_by_layer --paper   # Fig. 3 caption settings

Expected runtime on 2 CPU cores: ``--quick`` (p=53, K=1024, one seed,
8000 steps, 16 checkpoints x 4 curves) about 2 minutes; default (3 seeds,
10k steps, 40 checkpoints) about 12 minutes; ``--paper`` about 20 minutes,
a few minutes on one GPU. Training and sweeps resume from ``DIR/*.npz``.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from experiments import common, llc_over_training
from slt_jax import data as data_lib
from slt_jax import metrics, plotting, train

NAME = "llc_by_layer"
# name -> (mask, split the chains see).
CURVES = {
    "W and V, train pairs": (None, "train"),
    "W only, train pairs": (lambda path, _: "W" in path, "train"),
    "V only, train pairs": (lambda path, _: "V" in path, "train"),
    "W and V, validation pairs": (None, "val"),
}


def get_config(mode: str) -> dict:
  """``llc_over_training``'s config plus ``llc_every`` (checkpoint stride)."""
  return {**llc_over_training.get_config(mode),
          "llc_every": 2 if mode == "quick" else 1}


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
  every = cfg["llc_every"]
  idx = np.arange(every - 1, len(run.ckpt_steps), every)
  steps = run.ckpt_steps[idx]
  ckpts = jax.tree.map(lambda x: x[:, idx], run.checkpoints)
  loss_fn = common.loss_fn(cfg["train"].loss)
  mem = metrics.memorisation_step(run.log_steps, run.metrics["train_acc"])
  gen = metrics.generalisation_step(run.log_steps, run.metrics["val_acc"])
  sweeps, summaries = {}, {}
  for i, (name, (mask, split)) in enumerate(CURVES.items()):
    sweeps[name] = common.llc_sweep(
        jax.random.fold_in(key_llc, i), loss_fn, ckpts,
        data.train if split == "train" else data.val, cfg["sgld"],
        os.path.join(out_dir, f"llc_{i}.npz"), mask=mask)
    summaries[name] = [metrics.llc_curve_summary(
        steps, sweeps[name]["mean"][s], run.log_steps,
        run.metrics["val_loss"][s], int(mem[s])) for s in range(cfg["seeds"])]
    print(f"{name}: {np.round(sweeps[name]['mean'][0]).tolist()}", flush=True)

  def drop(name: str, s: int) -> float:
    return summaries[name][s]["peak_llc"] - summaries[name][s]["final_llc"]

  joint = list(CURVES)[0]
  drops = {name: {"drop": [drop(name, s) for s in range(cfg["seeds"])],
                  "share_of_joint_drop": [drop(name, s) / drop(joint, s)
                                          if drop(joint, s) else None
                                          for s in range(cfg["seeds"])]}
           for name in CURVES}
  mean_drop = {name: float(np.mean(d["drop"])) for name, d in drops.items()}
  carrier = ("W" if mean_drop["W only, train pairs"]
             > mean_drop["V only, train pairs"] else "V")

  band = lambda name: (steps, sweeps[name]["mean"].mean(0),
                       sweeps[name]["std"].mean(0))
  panels = {"training pairs": {name: band(name) for name in list(CURVES)[:3]},
            "validation pairs": {list(CURVES)[3]: band(list(CURVES)[3])}}
  fig = plotting.plot_curve_panels(
      panels, {"memorisation": float(np.median(mem)),
               "generalisation": float(np.median(gen))}, ncols=2)
  fig.suptitle(f"p={cfg['data'].p}, K={cfg['model'].width}, "
               f"{cfg['seeds']} seed(s): LLC by layer and by data split",
               y=1.02)
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)

  payload = {
      "mode": mode, "config": common.config_dict(
          cfg["data"], cfg["model"], cfg["train"], cfg["sgld"]),
      "seeds": cfg["seeds"], "llc_every": every, "log_steps": run.log_steps,
      "metrics": run.metrics, "llc_steps": steps,
      "memorisation_step": mem, "generalisation_step": gen,
      "num_train": data.num_train, "num_val": int(data.val.labels.shape[0]),
      "curves": sweeps, "summary": summaries, "drops": drops,
      "drop_carried_by": carrier,
      "paper_reference": {"joint_peak_llc": 4900, "joint_final_llc": 4300},
      "wall_seconds": time.perf_counter() - start}
  common.write_results(out_dir, payload)
  for name in CURVES:
    s = summaries[name][0]
    print(f"{name:28s}: peak {s['peak_llc']:.0f} at {s['peak_step']}, final "
          f"{s['final_llc']:.0f}, drop {mean_drop[name]:.0f}")
  print(f"the drop is carried mostly by {carrier}")
  return payload


if __name__ == "__main__":
  main()
