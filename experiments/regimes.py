"""Fig. 14: no generalisation / grokking / immediate generalisation against
N / (M ln M).

For every modulus M, trains all train fractions in ONE vmapped ``train`` call
(``num_trains=`` grid; SPEC §1 recipe, K=1024) and classifies each run:

* ``none``: validation accuracy never reaches 0.95 within the run;
* ``immediate``: it does by step ``max(2 x memorisation step, 500)``
  (``IMMEDIATE_FACTOR``, ``IMMEDIATE_STEPS``), i.e. there is no plateau of
  memorisation without generalisation (memorisation = train accuracy 0.99;
  a run that generalises without memorising counts as immediate);
* ``grokking``: it does, later.

Each boundary (none | generalising, and grokking | immediate) is fitted as
the threshold on x = N / (M ln M) with the fewest misclassified runs; the
result is the interval between the neighbouring runs (and its geometric
midpoint), to compare with the paper's ≈ 2.5-3 and the SPEC's measured
(2.7, 4.0); the lower boundary is consistent with the paper when its interval
overlaps [2.5, 3]. Writes ``DIR/results.json`` and ``DIR/regimes.png``.

    python -m experiments.regimes --quick   # M = 53, 79; 10k steps
    python -m experiments.regimes           # M = 53..103; 20k steps
    python -m experiments.regimes --paper   # M = 53..103; 30k steps, 3 seeds

Expected runtime on 2 CPU cores: ``--quick`` about 3 minutes; default about
30 minutes; ``--paper`` about 2 hours, a few minutes on one GPU. Each modulus
resumes from ``DIR/M{M}/train_state.npz``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Sequence

import jax
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from experiments import common, llc_over_training
from slt_jax import data as data_lib
from slt_jax import metrics, plotting, train
from slt_jax.config import DataConfig, ModelConfig, TrainConfig

NAME = "regimes"
MODULI = (53, 67, 79, 83, 101, 103)
FRACTIONS = (0.1, 0.15, 0.3, 0.4, 0.9, 0.95)
REGIMES = ("none", "grokking", "immediate")
IMMEDIATE_FACTOR = 2
IMMEDIATE_STEPS = 500
PAPER_BOUNDARY = (2.5, 3.0)
SPEC_BOUNDARY = (2.7, 4.0)


def get_config(mode: str) -> dict:
  """Configs for ``smoke`` (tests), ``quick``, ``default`` and ``paper``."""
  if mode == "smoke":
    smoke = llc_over_training.get_config("smoke")
    return {"moduli": (7, 11), "fractions": (0.4, 0.9), "width": 32,
            "train": smoke["train"], "seeds": 1}
  recipe = TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=20000,
                       log_every=250, ckpt_every=5000, chunk_steps=5000)
  if mode == "quick":
    return {"moduli": (53, 79), "fractions": FRACTIONS, "width": 1024,
            "train": TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=10000,
                                 log_every=250, ckpt_every=5000,
                                 chunk_steps=5000), "seeds": 1}
  if mode == "default":
    return {"moduli": MODULI, "fractions": FRACTIONS, "width": 1024,
            "train": recipe, "seeds": 1}
  return {"moduli": MODULI, "fractions": FRACTIONS, "width": 1024,
          "train": TrainConfig(lr=1e-3, weight_decay=1e-5, num_steps=30000,
                               log_every=250, ckpt_every=5000,
                               chunk_steps=5000), "seeds": 3}


def classify(memorisation: np.ndarray, generalisation: np.ndarray
             ) -> np.ndarray:
  """Regime index per run (0 none, 1 grokking, 2 immediate; see module doc).

  Args:
    memorisation: (...) first step with train accuracy >= 0.99, or -1.
    generalisation: (...) first step with validation accuracy >= 0.95, or -1.

  Returns:
    (...) int array indexing ``REGIMES``.
  """
  mem = np.where(memorisation >= 0, memorisation, generalisation)
  limit = np.maximum(IMMEDIATE_FACTOR * mem, IMMEDIATE_STEPS)
  return np.where(generalisation < 0, 0,
                  np.where(generalisation <= limit, 2, 1))


def fit_threshold(x: Sequence[float], above: Sequence[bool]) -> dict:
  """Threshold on ``x`` separating ``above`` runs from the rest.

  Among thresholds between consecutive distinct x values (and beyond both
  ends) takes the one with the fewest misclassified runs (first if tied).

  Args:
    x: (R,) positions.
    above: (R,) whether each run should lie above the threshold.

  Returns:
    dict with low and high (the neighbouring x values; None beyond the data),
    midpoint (geometric mean of low and high) and errors.
  """
  x, above = np.asarray(x, dtype=float), np.asarray(above, dtype=bool)
  values = np.unique(x)
  cuts = np.concatenate([[-np.inf], values])  # Runs with x > cut are above.
  errors = [int(np.sum((x > c) != above)) for c in cuts]
  best = int(np.argmin(errors))
  low = None if best == 0 else float(values[best - 1])
  high = float(values[best]) if best < len(values) else None
  mid = math.sqrt(low * high) if low is not None and high is not None else None
  return {"low": low, "high": high, "midpoint": mid, "errors": errors[best]}


def main(argv=None) -> dict:
  args, mode = common.parse_mode(__doc__, argv=argv)
  cfg = get_config(mode)
  out_dir = common.output_dir(NAME, args.out)
  key_data, key_train = jax.random.split(jax.random.key(args.seed))
  start = time.perf_counter()
  rows = []
  for m in cfg["moduli"]:
    data = data_lib.modular_arithmetic(jax.random.fold_in(key_data, m),
                                       DataConfig(p=m))
    num_trains = [int(round(f * m * m)) for f in cfg["fractions"]]
    run = train.train(jax.random.fold_in(key_train, m), data,
                      ModelConfig(p=m, width=cfg["width"]), cfg["train"],
                      seeds=cfg["seeds"], num_trains=num_trains,
                      out_dir=os.path.join(out_dir, f"M{m}"),
                      progress=mode != "smoke")
    mem = metrics.memorisation_step(run.log_steps, run.metrics["train_acc"])
    gen = metrics.generalisation_step(run.log_steps, run.metrics["val_acc"])
    regime = classify(mem, gen)
    for r in range(len(regime)):
      n = int(run.hparams["num_train"][r])
      rows.append({
          "modulus": m, "seed": int(run.hparams["seed"][r]), "num_train": n,
          "train_frac": n / m ** 2, "x": n / (m * math.log(m)),
          "memorisation_step": int(mem[r]), "generalisation_step": int(gen[r]),
          "final_train_acc": float(run.metrics["train_acc"][r, -1]),
          "final_val_acc": float(run.metrics["val_acc"][r, -1]),
          "regime": REGIMES[regime[r]]})
      print(f"M={m} N={n} x={rows[-1]['x']:.2f}: {rows[-1]['regime']} "
            f"(mem {mem[r]}, gen {gen[r]})", flush=True)
  x = np.array([r["x"] for r in rows])
  regime = np.array([REGIMES.index(r["regime"]) for r in rows])
  boundaries = {"none_vs_generalising": fit_threshold(x, regime > 0),
                "grokking_vs_immediate": fit_threshold(x, regime == 2)}
  lower = boundaries["none_vs_generalising"]
  consistent = ((lower["low"] is None or lower["low"] < PAPER_BOUNDARY[1])
                and (lower["high"] is None
                     or lower["high"] > PAPER_BOUNDARY[0]))

  fig, (ax_reg, ax_gen) = plt.subplots(1, 2, figsize=(11, 4.2))
  markers = {"none": ("x", "tab:red"), "grokking": ("o", "tab:orange"),
             "immediate": ("s", "tab:green")}
  for name, (marker, color) in markers.items():
    pick = [r for r in rows if r["regime"] == name]
    ax_reg.scatter([r["x"] for r in pick], [r["modulus"] for r in pick],
                   marker=marker, color=color, label=name)
  ax_reg.axvspan(*PAPER_BOUNDARY, color="gray", alpha=0.2,
                 label="paper boundary 2.5-3")
  for (name, b), ls in zip(boundaries.items(), ("--", ":")):
    if b["midpoint"] is not None:
      ax_reg.axvline(b["midpoint"], color="k", ls=ls, lw=1,
                     label=f"fit {name}: {b['midpoint']:.2f}")
  ax_reg.set(xscale="log", xlabel="N / (M ln M)", ylabel="modulus M",
             title=f"regimes (K={cfg['width']}, "
                   f"{cfg['train'].num_steps} steps)")
  ax_reg.legend(fontsize=7)
  for m in cfg["moduli"]:
    pick = [r for r in rows
            if r["modulus"] == m and r["generalisation_step"] > 0]
    ax_gen.plot([r["x"] for r in pick],
                [r["generalisation_step"] for r in pick], "o-", label=f"M={m}")
  ax_gen.set(xscale="log", xlabel="N / (M ln M)",
             ylabel="generalisation step (val acc 0.95)",
             yscale="log" if any(r["generalisation_step"] > 0 for r in rows)
             else "linear")
  ax_gen.grid(True, which="both", alpha=0.3)
  ax_gen.legend(fontsize=7)
  for ax in (ax_reg, ax_gen):
    ax.set_xticks([1, 2, 3, 5, 10, 20, 50])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)

  payload = {
      "mode": mode, "config": {**common.config_dict(cfg["train"]),
                               "moduli": cfg["moduli"],
                               "fractions": cfg["fractions"],
                               "width": cfg["width"], "seeds": cfg["seeds"]},
      "rule": {"generalisation_acc": metrics.GENERALISATION_ACC,
               "memorisation_acc": metrics.MEMORISATION_ACC,
               "immediate_factor": IMMEDIATE_FACTOR,
               "immediate_steps": IMMEDIATE_STEPS},
      "runs": rows, "boundaries": boundaries,
      "paper_reference": {"boundary": PAPER_BOUNDARY,
                          "spec_measured_boundary": SPEC_BOUNDARY},
      "lower_boundary_consistent_with_paper": consistent,
      "wall_seconds": time.perf_counter() - start}
  common.write_results(out_dir, payload)
  for name, b in boundaries.items():
    print(f"{name}: between {b['low']} and {b['high']} (midpoint "
          f"{b['midpoint']}, {b['errors']} misclassified)")
  return payload


if __name__ == "__main__":
  main()
