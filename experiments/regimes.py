"""Fig. 14: no generalisation / grokking / immediate generalisation against
N / (M ln M).

For every modulus M, trains all train fractions in ONE vmapped ``train`` call
(``num_trains=`` grid) through the run store (``runs/``, ``--runs DIR``) and
classifies each run:

* ``none``: validation accuracy never reaches 0.95 within the run;
* ``immediate``: it does by step ``max(2 x memorisation step, 500)``
  (``IMMEDIATE_FACTOR``, ``IMMEDIATE_STEPS``), i.e. there is no plateau of
  memorisation without generalisation (memorisation = train accuracy 0.99;
  a run that generalises without memorising counts as immediate);
* ``grokking``: it does, later.

Each boundary (none | generalising, and grokking | immediate) is fitted as
the threshold on x = N / (M ln M) with the fewest misclassified runs; the
result is the interval between the neighbouring runs (and its geometric
midpoint), to compare with the paper's ≈ 2.5-3 and the previously measured
(2.7, 4.0); the lower boundary is consistent with either when its interval
overlaps it. Writes ``DIR/results.json`` and ``DIR/regimes.png``
(``--replot`` redraws it from the former).

Protocol: the authors' Fig. 14 settings are not known (``protocol`` in the
results says so), so the caption's K=1024 and the reproduction recipe (Adam lr
1e-3, coupled L2 1e-5, batch 128) stand in; ``--protocol`` does not apply.
Paper size: M ∈ {53, 67, 79, 83, 101, 103} × train fractions {0.1, 0.15,
0.3, 0.4, 0.9, 0.95}, one seed, 15,000 steps (an earlier spot check ran 30k;
its slowest grokking run generalised at step 8,500; a run near the boundary
that groks later is counted ``none``, so longer training can only move the
lower boundary down). Early stopping (3 checks >= 0.95) is not used: it
could not change a classification (a run stops only after its generalisation
step, and a run stopped before memorising is immediate either way), and it
cannot shorten a modulus's vmapped grid, whose low fractions never generalise
and run to the end.

    python -m experiments.regimes --quick   # M = 53, 79; 10k steps
    python -m experiments.regimes           # M = 53..103; 10k steps
    python -m experiments.regimes --paper   # M = 53..103; 15k steps

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured. Sizing:
a step costs ∝ M (measured 415 run-steps/s at M=53, 194 at M=103, 6 fractions
vmapped, 2 cores at load average 5); ``--quick`` took 2.9 min on idle cores
(``figures/README.md``), which scales to about 16 min for ``--paper``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Sequence

import jax
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, store
from slt_jax.grokking import grokking_metrics, plotting
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig

NAME = "regimes"
MODULI = (53, 67, 79, 83, 101, 103)
FRACTIONS = (0.1, 0.15, 0.3, 0.4, 0.9, 0.95)
REGIMES = ("none", "grokking", "immediate")
IMMEDIATE_FACTOR = 2
IMMEDIATE_STEPS = 500
PAPER_BOUNDARY = (2.5, 3.0)
MEASURED_BOUNDARY = (2.7, 4.0)
PROTOCOL = {
  "name": "recipe",
  "authors_settings_known": False,
  "source": "Fig. 14 caption (K=1024) with the reproduction recipe "
  "(Adam lr 1e-3, coupled L2 1e-5, batch 128); the "
  "authors' own settings for Fig. 14 are not known",
}


@dataclasses.dataclass(frozen=True)
class RegimesConfig:
  """A sweep of moduli x train fractions.

  Attributes:
    moduli: primes M.
    fractions: train fractions of the M² pairs (one vmapped grid per M).
    width: hidden width K.
    seeds: training seeds per (M, fraction).
    num_steps: training steps T.
    log_every: steps between accuracy evaluations.
    chunk_steps: steps per compiled chunk (also the checkpoint interval:
      classification needs no checkpoints).
    batch_size: minibatch size.
    lr: learning rate (the recipe's 1e-3; only the smoke test changes it).
  """

  moduli: tuple[int, ...]
  fractions: tuple[float, ...]
  width: int = 1024
  seeds: int = 1
  num_steps: int = 10000
  log_every: int = 250
  chunk_steps: int = 5000
  batch_size: int = 128
  lr: float = 1e-3

  def train_config(self) -> TrainConfig:
    """The reproduction recipe at this sweep's length."""
    return TrainConfig(
      lr=self.lr,
      weight_decay=1e-5,
      batch_size=self.batch_size,
      num_steps=self.num_steps,
      log_every=self.log_every,
      ckpt_every=self.chunk_steps,
      chunk_steps=self.chunk_steps,
    )


CONFIGS = {
  # p=11 at fraction 0.9 generalises within 400 steps at lr 3e-2.
  "smoke": RegimesConfig(
    moduli=(7, 11),
    fractions=(0.4, 0.9),
    width=128,
    num_steps=400,
    log_every=20,
    chunk_steps=100,
    batch_size=16,
    lr=3e-2,
  ),
  "quick": RegimesConfig(moduli=(53, 79), fractions=FRACTIONS),
  "default": RegimesConfig(moduli=MODULI, fractions=FRACTIONS),
  "paper": RegimesConfig(moduli=MODULI, fractions=FRACTIONS, num_steps=15000),
}


def classify(
  memorisation: np.ndarray, generalisation: np.ndarray
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
  return np.where(
    generalisation < 0, 0, np.where(generalisation <= limit, 2, 1)
  )


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


def overlaps(boundary: dict, interval: Sequence[float]) -> bool:
  """Whether a fitted boundary's (low, high) interval overlaps ``interval``."""
  return (boundary["low"] is None or boundary["low"] < interval[1]) and (
    boundary["high"] is None or boundary["high"] > interval[0]
  )


def boundaries_of(rows: list[dict]) -> dict:
  """Both boundaries fitted to the runs' x and regimes."""
  x = np.array([r["x"] for r in rows])
  regime = np.array([REGIMES.index(r["regime"]) for r in rows])
  return {
    "none_vs_generalising": fit_threshold(x, regime > 0),
    "grokking_vs_immediate": fit_threshold(x, regime == 2),
  }


def measure_modulus(
  key_data, key_train, m: int, cfg: RegimesConfig, runs_dir, progress: bool
) -> tuple[np.ndarray, list[dict]]:
  """Trains (or loads) every fraction x seed at modulus ``m``.

  Returns:
    (log steps, one row per run: sizes, x, memorisation and generalisation
    steps, final accuracies, regime and the accuracy curves).
  """
  data_key = jax.random.fold_in(key_data, m)
  run = store.trained_run(
    jax.random.fold_in(key_train, m),
    DataConfig(p=m),
    ModelConfig(p=m, width=cfg.width),
    cfg.train_config(),
    data_key=data_key,
    seeds=cfg.seeds,
    num_trains=[int(round(f * m * m)) for f in cfg.fractions],
    store=runs_dir,
    label=f"regimes_M{m}_K{cfg.width}",
    progress=progress,
  )
  acc = run.metrics
  mem = grokking_metrics.memorisation_step(run.log_steps, acc["train_acc"])
  gen = grokking_metrics.generalisation_step(run.log_steps, acc["val_acc"])
  regime = classify(mem, gen)
  rows = []
  for r in range(len(regime)):
    n = int(run.hparams["num_train"][r])
    rows.append(
      {
        "modulus": m,
        "seed": int(run.hparams["seed"][r]),
        "num_train": n,
        "train_frac": n / m**2,
        "x": n / (m * math.log(m)),
        "memorisation_step": int(mem[r]),
        "generalisation_step": int(gen[r]),
        "final_train_acc": float(acc["train_acc"][r, -1]),
        "final_val_acc": float(acc["val_acc"][r, -1]),
        "regime": REGIMES[regime[r]],
        "train_acc": acc["train_acc"][r],
        "val_acc": acc["val_acc"][r],
      }
    )
    print(
      f"M={m} N={n} x={rows[-1]['x']:.2f}: {rows[-1]['regime']} "
      f"(mem {mem[r]}, gen {gen[r]})",
      flush=True,
    )
  return run.log_steps, rows


def compute(mode: str, seed: int, runs_dir) -> dict:
  """Every modulus of ``CONFIGS[mode]``; the results payload."""
  cfg, start = CONFIGS[mode], time.perf_counter()
  key_data, key_train = jax.random.split(jax.random.key(seed))
  rows = []
  for m in cfg.moduli:
    log_steps, found = measure_modulus(
      key_data, key_train, m, cfg, runs_dir, progress=mode != "smoke"
    )
    rows += found
  boundaries = boundaries_of(rows)
  lower = boundaries["none_vs_generalising"]
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(cfg),
    "train": dataclasses.asdict(cfg.train_config()),
    "protocol": PROTOCOL,
    "rule": {
      "generalisation_acc": grokking_metrics.GENERALISATION_ACC,
      "memorisation_acc": grokking_metrics.MEMORISATION_ACC,
      "immediate_factor": IMMEDIATE_FACTOR,
      "immediate_steps": IMMEDIATE_STEPS,
    },
    "log_steps": log_steps,
    "runs": rows,
    "boundaries": boundaries,
    "paper_reference": {
      "boundary": PAPER_BOUNDARY,
      "spec_measured_boundary": MEASURED_BOUNDARY,
    },
    "lower_boundary_consistent_with_paper": overlaps(lower, PAPER_BOUNDARY),
    "lower_boundary_consistent_with_spec": overlaps(lower, MEASURED_BOUNDARY),
    "wall_seconds": time.perf_counter() - start,
  }


def plot(results: dict, out_dir: str) -> None:
  """Regime against x per modulus, and the generalisation steps."""
  rows, boundaries = results["runs"], results["boundaries"]
  fig, (ax_reg, ax_gen) = plt.subplots(1, 2, figsize=(11, 4.2))
  markers = {
    "none": ("x", "tab:red"),
    "grokking": ("o", "tab:orange"),
    "immediate": ("s", "tab:green"),
  }
  for name, (marker, color) in markers.items():
    pick = [r for r in rows if r["regime"] == name]
    ax_reg.scatter(
      [r["x"] for r in pick],
      [r["modulus"] for r in pick],
      marker=marker,
      color=color,
      label=name,
    )
  ax_reg.axvspan(
    *PAPER_BOUNDARY, color="gray", alpha=0.2, label="paper boundary 2.5-3"
  )
  for (name, b), ls in zip(boundaries.items(), ("--", ":")):
    if b["midpoint"] is not None:
      ax_reg.axvline(
        b["midpoint"],
        color="k",
        ls=ls,
        lw=1,
        label=f"fit {name}: {b['midpoint']:.2f}",
      )
  ax_reg.set(
    xscale="log",
    xlabel="N / (M ln M)",
    ylabel="modulus M",
    title=f"regimes (K={results['config']['width']}, "
    f"{results['config']['num_steps']} steps)",
  )
  ax_reg.legend(fontsize=7)
  for m in results["config"]["moduli"]:
    pick = [
      r for r in rows if r["modulus"] == m and r["generalisation_step"] > 0
    ]
    ax_gen.plot(
      [r["x"] for r in pick],
      [r["generalisation_step"] for r in pick],
      "o-",
      label=f"M={m}",
    )
  ax_gen.set(
    xscale="log",
    xlabel="N / (M ln M)",
    ylabel="generalisation step (val acc 0.95)",
    yscale="log"
    if any(r["generalisation_step"] > 0 for r in rows)
    else "linear",
  )
  ax_gen.grid(True, which="both", alpha=0.3)
  ax_gen.legend(fontsize=7)
  for ax in (ax_reg, ax_gen):
    ax.set_xticks([1, 2, 3, 5, 10, 20, 50])
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: the fitted regime boundaries in
  N / (M ln M) (the authors' settings are not known: the caption's)."""
  rows = []
  for name, b in results["boundaries"].items():
    interval = (
      f"between {b['low']:.2f} and {b['high']:.2f}"
      if b["low"] is not None and b["high"] is not None
      else "open"
    )
    rows.append(
      {
        "protocol": "caption (authors' settings unknown)",
        "quantity": f"{name} boundary {interval} ({b['errors']} misclassified)",
        "ours": b["midpoint"],
        "paper": "2.5-3" if name == "none_vs_generalising" else None,
        "match": (
          results["lower_boundary_consistent_with_paper"]
          if name == "none_vs_generalising"
          else None
        ),
      }
    )
  return rows


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, store.add_runs_flag, argv)
  results = cli.compute_then_plot(
    NAME, args, lambda: compute(mode, args.seed, args.runs), plot
  )
  for name, b in results["boundaries"].items():
    print(
      f"{name}: between {b['low']} and {b['high']} (midpoint "
      f"{b['midpoint']}, {b['errors']} misclassified)"
    )
  return results


if __name__ == "__main__":
  main()
