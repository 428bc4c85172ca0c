"""Which layer carries the LLC drop at grokking, and the LLC on held-out pairs.

Loads the Fig. 3 run from the run store (``experiments.fig3.run``: the
same run, trained once for every experiment that studies it) and estimates,
at its checkpoints with the paper's SGLD settings, four LLC curves:

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
drop. Writes ``DIR/results.json`` and ``DIR/llc_by_layer.png`` (``--replot``
redraws it from ``results.json``).

    python -m experiments.llc_by_layer --quick   # recipe, every 2nd checkpoint
    python -m experiments.llc_by_layer           # recipe, 3 seeds
    python -m experiments.llc_by_layer --paper   # the Fig. 3 caption's run

``--quick`` (recipe, one seed, 16 checkpoints × 4 curves) took 2.1 min on 2
idle CPU cores (figures/README.md, 2026-11-29); ``--paper`` (the caption's
16000 steps, 32 checkpoints × 4 curves, ~230k SGLD chain-steps: ~4 min at
the ~1000 chain-steps/s measured there) is timed in
``figures/paper/README.md``. Chains resume from ``DIR/chains/``.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from experiments import cli, fig3, store, sweeps
from slt_jax.grokking import grokking_metrics, plotting

NAME = "llc_by_layer"
# name -> (mask, split the chains see).
CURVES = {
  "W and V, train pairs": (None, "train"),
  "W only, train pairs": (lambda path, _: "W" in path, "train"),
  "V only, train pairs": (lambda path, _: "V" in path, "train"),
  "W and V, validation pairs": (None, "val"),
}


@dataclasses.dataclass(frozen=True)
class LayerConfig:
  """The run studied and where its LLC is estimated.

  Attributes:
    fig3: the Fig. 3 run and SGLD settings (``fig3.CONFIGS``).
    protocol: the run's protocol, ``recipe`` or ``authors``.
    llc_every: the LLC at every ``llc_every``-th checkpoint.
  """

  fig3: fig3.Fig3Config
  protocol: str
  llc_every: int


CONFIGS = {
  "smoke": LayerConfig(fig3.CONFIGS["smoke"], "recipe", 1),
  "quick": LayerConfig(fig3.CONFIGS["quick"], "recipe", 2),
  "default": LayerConfig(fig3.CONFIGS["default"], "recipe", 1),
  "paper": LayerConfig(fig3.CONFIGS["paper"], "authors", 1),
}


def compute(cfg: LayerConfig, seed: int, out_dir: str, runs_dir) -> dict:
  """The four curves and their drops (see the module docstring)."""
  start = time.perf_counter()
  run, data = fig3.run(cfg.fig3, cfg.protocol, seed, runs_dir)
  key_llc = fig3.keys(seed)[2]
  seeds = cfg.fig3.seeds
  idx = np.arange(cfg.llc_every - 1, len(run.ckpt_steps), cfg.llc_every)
  steps = run.ckpt_steps[idx]
  ckpts = jax.tree.map(lambda x: x[:, idx], run.checkpoints)
  proto = cfg.fig3.protocol(cfg.protocol)
  loss_fn = store.loss_fn(proto.train.loss)
  mem = grokking_metrics.memorisation_step(
    run.log_steps, run.metrics["train_acc"]
  )
  curves, summaries = {}, {}
  for i, (name, (mask, split)) in enumerate(CURVES.items()):
    curves[name] = sweeps.llc_sweep(
      jax.random.fold_in(key_llc, i),
      loss_fn,
      ckpts,
      data.train if split == "train" else data.val,
      cfg.fig3.sgld,
      os.path.join(out_dir, "chains", f"curve_{i}"),
      mask=mask,
    )
    summaries[name] = [
      grokking_metrics.llc_curve_summary(
        steps,
        curves[name]["mean"][s],
        run.log_steps,
        run.metrics["val_loss"][s],
        int(mem[s]),
      )
      for s in range(seeds)
    ]
    print(f"{name}: {np.round(curves[name]['mean'][0]).tolist()}", flush=True)

  def drop(name: str, s: int) -> float:
    return summaries[name][s]["peak_llc"] - summaries[name][s]["final_llc"]

  joint = list(CURVES)[0]
  drops = {
    name: {
      "drop": [drop(name, s) for s in range(seeds)],
      "share_of_joint_drop": [
        drop(name, s) / drop(joint, s) if drop(joint, s) else None
        for s in range(seeds)
      ],
    }
    for name in CURVES
  }
  mean_drop = {name: float(np.mean(d["drop"])) for name, d in drops.items()}
  return {
    "config": dataclasses.asdict(cfg),
    "protocol": cfg.protocol,
    "source": proto.source,
    "seeds": seeds,
    "log_steps": run.log_steps,
    "metrics": run.metrics,
    "llc_steps": steps,
    "memorisation_step": mem,
    "generalisation_step": grokking_metrics.generalisation_step(
      run.log_steps, run.metrics["val_acc"]
    ),
    "num_train": data.num_train,
    "num_val": int(data.val.labels.shape[0]),
    "curves": curves,
    "summary": summaries,
    "drops": drops,
    "mean_drop": mean_drop,
    "drop_carried_by": (
      "W"
      if mean_drop["W only, train pairs"] > mean_drop["V only, train pairs"]
      else "V"
    ),
    "paper_reference": {"joint_peak_llc": 4900, "joint_final_llc": 4300},
    "wall_seconds": time.perf_counter() - start,
  }


def plot(results: dict, out_dir: str) -> None:
  """``llc_by_layer.png`` from ``results``: training-pair curves beside the
  validation-pair curve."""
  steps = np.asarray(results["llc_steps"])
  seed_mean = lambda name, key: np.asarray(
    results["curves"][name][key], float
  ).mean(0)
  band = lambda name: (steps, seed_mean(name, "mean"), seed_mean(name, "std"))
  names = list(results["curves"])
  fig = plotting.plot_curve_panels(
    {
      "training pairs": {name: band(name) for name in names[:3]},
      "validation pairs": {names[3]: band(names[3])},
    },
    {
      "memorisation": float(np.median(results["memorisation_step"])),
      "generalisation": float(np.median(results["generalisation_step"])),
    },
    ncols=2,
  )
  fig3_cfg = results["config"]["fig3"]
  fig.suptitle(
    f"{results['protocol']}: p={fig3_cfg['data']['p']}, "
    f"K={fig3_cfg['model']['width']}, {results['seeds']} seed(s): LLC "
    "by layer and by data split",
    y=1.02,
  )
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: which layer carries the drop."""
  joint = next(iter(results["mean_drop"]))
  return [
    {
      "protocol": results["protocol"],
      "quantity": f"mean LLC drop, {name}",
      "ours": drop,
      "paper": None,
      "match": None,
    }
    for name, drop in results["mean_drop"].items()
  ] + [
    {
      "protocol": results["protocol"],
      "quantity": f"drop carried by (joint: {joint})",
      "ours": results["drop_carried_by"],
      "paper": None,
      "match": None,
    }
  ]


def main(argv=None) -> dict:
  results = cli.run_stored_experiment(
    NAME, __doc__, CONFIGS, compute, plot, argv
  )
  for name, s in results["summary"].items():
    print(
      f"{name:28s}: peak {s[0]['peak_llc']:.0f} at {s[0]['peak_step']}, "
      f"final {s[0]['final_llc']:.0f}, drop "
      f"{results['mean_drop'][name]:.0f}"
    )
  print(f"the drop is carried mostly by {results['drop_carried_by']}")
  return results


if __name__ == "__main__":
  main()
