"""Fig. 14: no generalisation / grokking / immediate generalisation against
N / (M ln M), under two protocols (``--protocol recipe|authors|both``).

Both train M ∈ {53, 67, 79, 83, 101, 103} × train fractions {0.1, 0.15, 0.3,
0.4, 0.9, 0.95} (at paper size) through the run store (``runs/``, ``--runs
DIR``), K = 1024, centred MSE, Adam with coupled L2 1e-5, and place each run
at x = N / (M ln M).

``recipe`` (the reproduction recipe: lr 1e-3, batch 128, one seed, a fixed
number of steps, every fraction of a modulus in ONE vmapped grid), classified
from the first steps at train accuracy 0.99 (memorisation) and validation
accuracy 0.95 (generalisation):

* ``none``: validation accuracy never reaches 0.95 within the run;
* ``immediate``: it does by step ``max(2 x memorisation step, 500)``
  (``IMMEDIATE_FACTOR``, ``IMMEDIATE_STEPS``: no plateau of memorisation
  without generalisation; a run that generalises without memorising counts
  as immediate);
* ``grokking``: it does, later.

``authors`` (the authors' own sweep: lr 0.01, batch 64, accuracies every
100 steps, a run stops after 3 consecutive validation accuracies >= 0.95;
``AUTHORS_PROTOCOL``), classified by the authors' rule at each step budget T
of ``RegimesConfig.budgets`` (a run's state at min(T, its stop step)):

* ``none``: final validation accuracy < 0.90 (``FINAL_ACC_NONE``);
* ``immediate``: otherwise, the largest train - validation accuracy gap over
  the logged steps is < 0.15 (``GAP_IMMEDIATE``);
* ``grokking``: otherwise.

It trains every (M, fraction) cell as its own program with the seeds
vmapped, so a cell whose runs all stop early ends early; budgets are
prefixes of one run to the largest budget (a stopped run is frozen, so the
prefix is exactly the run that budget would have trained). The authors ran
one seed per cell and at most 5,000 steps; ``--paper`` runs 3 seeds to
15,000 steps, so the boundary carries a spread over seeds.

Each boundary (none | generalising, and grokking | immediate) is fitted as
the threshold on x with the fewest misclassified runs; the result is the
interval between the neighbouring runs (and its geometric midpoint), to
compare with the paper's ≈ 2.5-3 (``PAPER_BOUNDARY``); under the authors'
protocol it is also fitted per seed. Writes ``DIR/results.json``,
``DIR/regimes.png`` (recipe) and ``DIR/regimes_authors.png`` (final
validation accuracy against x, one line per M, the regime as the marker: the
authors' form, ours beside theirs); ``--replot`` redraws them. A protocol not
run this time is kept from an existing ``DIR/results.json`` of the same mode.

    python -m experiments.regimes --quick                     # recipe
    python -m experiments.regimes --quick --protocol authors
    python -m experiments.regimes --paper --protocol both     # make paper

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Optional, Sequence

import jax
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, protocols, store
from slt_jax import persist
from slt_jax.grokking import grokking_metrics, plotting
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig

NAME = "regimes"
MODULI = (53, 67, 79, 83, 101, 103)
FRACTIONS = (0.1, 0.15, 0.3, 0.4, 0.9, 0.95)
REGIMES = ("none", "grokking", "immediate")
IMMEDIATE_FACTOR = 2
IMMEDIATE_STEPS = 500
FINAL_ACC_NONE = 0.90
GAP_IMMEDIATE = 0.15
PAPER_BOUNDARY = (2.5, 3.0)
MEASURED_BOUNDARY = (2.7, 4.0)
RECIPE_PROTOCOL = {
  "name": "recipe",
  "authors_settings_known": False,
  "source": "Fig. 14 caption (K=1024) with the reproduction recipe "
  "(Adam lr 1e-3, coupled L2 1e-5, batch 128)",
}
AUTHORS_PROTOCOL = {
  "name": "authors",
  "authors_settings_known": True,
  "source": "the authors' sweep (sweeps/sweep.yaml, sweeps/sweep_main.py, "
  "training.py, phase_diagram.py of their public code at commit 392fcaf7): "
  "Adam lr 0.01, coupled L2 1e-5, batch 64, accuracies every 100 steps, "
  "stop after 3 validation accuracies >= 0.95, at most 5,000 steps, one "
  "seed; regime: final val acc < 0.90 none, else max(train - val acc) < "
  "0.15 immediate, else grokking",
  "differences": "batches are drawn from an epoch-wise shuffle (theirs: "
  "a fresh shuffle per step); 3 seeds per cell and step budgets beyond "
  "5,000 are ours",
}


@dataclasses.dataclass(frozen=True)
class RegimesConfig:
  """A sweep of moduli x train fractions under one protocol.

  Attributes:
    moduli: primes M.
    fractions: train fractions of the M² pairs (N = round(frac M²)).
    protocol: ``recipe`` (one vmapped grid per M, fixed steps) or
      ``authors`` (one program per cell, early stopping, budgets).
    width: hidden width K.
    seeds: training seeds per (M, fraction).
    num_steps: training steps T (the authors' protocol: the step cap).
    log_every: steps between accuracy evaluations.
    chunk_steps: steps per compiled chunk (also the checkpoint interval:
      classification needs no checkpoints); a stopped cell ends at the end
      of the chunk in which its last run stopped.
    batch_size: minibatch size.
    lr: learning rate.
    stop_acc: early stopping at 3 checks >= ``stop_acc`` (None: none).
    budgets: step budgets the authors' rule classifies at (each at most
      ``num_steps``; the recipe uses none).
  """

  moduli: tuple[int, ...]
  fractions: tuple[float, ...]
  protocol: str = "recipe"
  width: int = 1024
  seeds: int = 1
  num_steps: int = 10000
  log_every: int = 250
  chunk_steps: int = 5000
  batch_size: int = 128
  lr: float = 1e-3
  stop_acc: Optional[float] = None
  budgets: tuple[int, ...] = ()

  def __post_init__(self):
    if self.protocol not in protocols.NAMES:
      raise ValueError(
        f"protocol={self.protocol!r} is invalid: must be one of "
        f"{protocols.NAMES}"
      )
    bad = [b for b in self.budgets if not 0 < b <= self.num_steps]
    if bad:
      raise ValueError(
        f"budgets={self.budgets} is invalid: {bad} not in (0, num_steps="
        f"{self.num_steps}]"
      )

  def train_config(self) -> TrainConfig:
    """The protocol's training configuration at this sweep's length."""
    return TrainConfig(
      lr=self.lr,
      weight_decay=1e-5,
      batch_size=self.batch_size,
      num_steps=self.num_steps,
      log_every=self.log_every,
      ckpt_every=self.chunk_steps,
      chunk_steps=self.chunk_steps,
      stop_acc=self.stop_acc,
      stop_patience=3,
    )


def _authors(**overrides) -> RegimesConfig:
  """The authors' sweep settings (3 seeds per cell), with ``overrides``."""
  settings = dict(
    moduli=MODULI,
    fractions=FRACTIONS,
    protocol="authors",
    seeds=3,
    log_every=100,
    chunk_steps=500,
    batch_size=64,
    lr=1e-2,
    stop_acc=0.95,
  )
  return RegimesConfig(**(settings | overrides))


# p=11 at fraction 0.9 generalises within 400 steps at lr 3e-2.
_SMOKE = dict(
  moduli=(7, 11),
  fractions=(0.4, 0.9),
  width=128,
  num_steps=400,
  log_every=20,
  chunk_steps=100,
  batch_size=16,
  lr=3e-2,
)
CONFIGS = {
  "recipe": {
    "smoke": RegimesConfig(**_SMOKE),
    "quick": RegimesConfig(moduli=(53, 79), fractions=FRACTIONS),
    "default": RegimesConfig(moduli=MODULI, fractions=FRACTIONS),
    "paper": RegimesConfig(moduli=MODULI, fractions=FRACTIONS, num_steps=15000),
  },
  "authors": {
    "smoke": _authors(**_SMOKE, seeds=2, budgets=(200, 400)),
    "quick": _authors(moduli=(53, 79), num_steps=5000, budgets=(5000,)),
    "default": _authors(num_steps=5000, budgets=(5000,)),
    "paper": _authors(num_steps=15000, budgets=(5000, 15000)),
  },
}


def classify(
  memorisation: np.ndarray, generalisation: np.ndarray
) -> np.ndarray:
  """Regime index per run under the recipe's rule (see module doc).

  Args:
    memorisation: (...) first step with train accuracy >= 0.99, or -1.
    generalisation: (...) first step with validation accuracy >= 0.95, or -1.

  Returns:
    (...) int array indexing ``REGIMES`` (0 none, 1 grokking, 2 immediate).
  """
  mem = np.where(memorisation >= 0, memorisation, generalisation)
  limit = np.maximum(IMMEDIATE_FACTOR * mem, IMMEDIATE_STEPS)
  return np.where(
    generalisation < 0, 0, np.where(generalisation <= limit, 2, 1)
  )


def classify_authors(
  steps: np.ndarray, train_acc: np.ndarray, val_acc: np.ndarray, budget: int
) -> tuple[int, float, float]:
  """One run's regime under the authors' rule after ``budget`` steps.

  Args:
    steps: (L,) logged steps, increasing (a stopped run's log may end early).
    train_acc, val_acc: (L,) accuracies at ``steps``.
    budget: step budget; the logs at steps <= ``budget`` count.

  Returns:
    (regime index into ``REGIMES``, final validation accuracy, largest
    train - validation accuracy gap).

  >>> acc = np.array([0.0, 1.0, 1.0])
  >>> classify_authors(np.array([0, 100, 200]), acc, np.array([0, .5, .95]), 200)
  (1, 0.95, 0.5)
  """
  seen = np.asarray(steps) <= budget
  train, val = np.asarray(train_acc)[seen], np.asarray(val_acc)[seen]
  final, gap = float(val[-1]), float(np.max(train - val))
  regime = 0 if final < FINAL_ACC_NONE else 2 if gap < GAP_IMMEDIATE else 1
  return regime, final, gap


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


def boundaries_of(x: Sequence[float], regimes: Sequence[str]) -> dict:
  """Both boundaries fitted to runs at ``x`` with regime names ``regimes``."""
  regime = np.array([REGIMES.index(r) for r in regimes])
  return {
    "none_vs_generalising": fit_threshold(x, regime > 0),
    "grokking_vs_immediate": fit_threshold(x, regime == 2),
  }


def _run_row(m: int, run, r: int) -> dict:
  """The sizes and curves of run ``r`` of a trained run at modulus ``m``."""
  n = int(run.hparams["num_train"][r])
  return {
    "modulus": m,
    "seed": int(run.hparams["seed"][r]),
    "num_train": n,
    "train_frac": n / m**2,
    "x": n / (m * math.log(m)),
    "train_acc": run.metrics["train_acc"][r],
    "val_acc": run.metrics["val_acc"][r],
  }


def _trained(
  key_data, key_train, m, cfg, runs_dir, label, num_trains, progress
):
  """A trained run at modulus ``m`` from the run store."""
  return store.trained_run(
    jax.random.fold_in(key_train, m),
    DataConfig(p=m),
    ModelConfig(p=m, width=cfg.width),
    cfg.train_config(),
    data_key=jax.random.fold_in(key_data, m),
    seeds=cfg.seeds,
    num_trains=num_trains,
    store=runs_dir,
    label=label,
    progress=progress,
  )


def measure_recipe(
  key_data, key_train, m, cfg, runs_dir, progress
) -> list[dict]:
  """Every fraction x seed at modulus ``m`` in one grid, classified by the
  recipe's rule; one row per run (sizes, x, steps, final accuracies,
  regime and curves)."""
  num_trains = [int(round(f * m * m)) for f in cfg.fractions]
  run = _trained(
    key_data,
    key_train,
    m,
    cfg,
    runs_dir,
    f"regimes_M{m}_K{cfg.width}",
    num_trains,
    progress,
  )
  acc = run.metrics
  mem = grokking_metrics.memorisation_step(run.log_steps, acc["train_acc"])
  gen = grokking_metrics.generalisation_step(run.log_steps, acc["val_acc"])
  regime = classify(mem, gen)
  rows = []
  for r in range(len(regime)):
    row = _run_row(m, run, r)
    rows.append(
      row
      | {
        "memorisation_step": int(mem[r]),
        "generalisation_step": int(gen[r]),
        "final_train_acc": float(acc["train_acc"][r, -1]),
        "final_val_acc": float(acc["val_acc"][r, -1]),
        "regime": REGIMES[regime[r]],
      }
    )
    print(
      f"M={m} N={row['num_train']} x={row['x']:.2f}: {REGIMES[regime[r]]} "
      f"(mem {mem[r]}, gen {gen[r]})",
      flush=True,
    )
  return rows


def measure_authors(
  key_data, key_train, m, cfg, runs_dir, progress
) -> list[dict]:
  """Every fraction at modulus ``m``, one program per fraction (its seeds
  vmapped), classified by the authors' rule at each budget; one row per
  run with its stop step (-1: never) and, per budget, its final validation
  accuracy, largest gap and regime."""
  rows = []
  for frac in cfg.fractions:
    n = int(round(frac * m * m))
    run = _trained(
      key_data,
      key_train,
      m,
      cfg,
      runs_dir,
      f"regimes_authors_M{m}_N{n}_K{cfg.width}",
      [n],
      progress,
    )
    for r in range(len(run.stop_step)):
      row = _run_row(m, run, r) | {"stop_step": int(run.stop_step[r])}
      row["budgets"] = {}
      for budget in cfg.budgets:
        regime, final, gap = classify_authors(
          run.log_steps, row["train_acc"], row["val_acc"], budget
        )
        row["budgets"][str(budget)] = {
          "regime": REGIMES[regime],
          "final_val_acc": final,
          "max_gap": gap,
        }
      rows.append(row)
      print(
        f"M={m} N={n} x={row['x']:.2f} seed {row['seed']}: stop "
        f"{row['stop_step']}, "
        + ", ".join(f"{b}: {v['regime']}" for b, v in row["budgets"].items()),
        flush=True,
      )
  return rows


def summarize_budget(rows: list[dict], budget: str) -> dict:
  """The authors' protocol at one budget: regime counts, both boundaries
  pooled over seeds and per seed, runs still training at the budget."""
  x = [r["x"] for r in rows]
  regimes = [r["budgets"][budget]["regime"] for r in rows]
  boundaries = boundaries_of(x, regimes)
  seeds = sorted({r["seed"] for r in rows})
  per_seed = {
    str(s): boundaries_of(
      [r["x"] for r in rows if r["seed"] == s],
      [r["budgets"][budget]["regime"] for r in rows if r["seed"] == s],
    )["none_vs_generalising"]
    for s in seeds
  }
  unstopped = [r for r in rows if not 0 <= r["stop_step"] <= int(budget)]
  return {
    "counts": {name: regimes.count(name) for name in REGIMES},
    "boundaries": boundaries,
    "lower_boundary_per_seed": per_seed,
    "runs_still_training": len(unstopped),
    "lower_boundary_consistent_with_paper": overlaps(
      boundaries["none_vs_generalising"], PAPER_BOUNDARY
    ),
  }


def measure_protocol(name: str, mode: str, seed: int, runs_dir) -> dict:
  """One protocol's sweep at ``mode``: its settings, runs and boundaries."""
  cfg, start = CONFIGS[name][mode], time.perf_counter()
  key_data, key_train = jax.random.split(jax.random.key(seed))
  measure = measure_authors if name == "authors" else measure_recipe
  rows = []
  for m in cfg.moduli:
    rows += measure(
      key_data, key_train, m, cfg, runs_dir, progress=mode != "smoke"
    )
  section = {
    "config": dataclasses.asdict(cfg),
    "train": dataclasses.asdict(cfg.train_config()),
    "protocol": AUTHORS_PROTOCOL if name == "authors" else RECIPE_PROTOCOL,
    "log_steps": cfg.log_every * np.arange(cfg.num_steps // cfg.log_every + 1),
    "runs": rows,
  }
  if name == "authors":
    section["rule"] = {
      "final_acc_none": FINAL_ACC_NONE,
      "gap_immediate": GAP_IMMEDIATE,
      "stop": "3 checks >= 0.95",
    }
    section["budgets"] = {
      str(b): summarize_budget(rows, str(b)) for b in cfg.budgets
    }
  else:
    section["rule"] = {
      "generalisation_acc": grokking_metrics.GENERALISATION_ACC,
      "memorisation_acc": grokking_metrics.MEMORISATION_ACC,
      "immediate_factor": IMMEDIATE_FACTOR,
      "immediate_steps": IMMEDIATE_STEPS,
    }
    section["boundaries"] = boundaries_of(
      [r["x"] for r in rows], [r["regime"] for r in rows]
    )
    lower = section["boundaries"]["none_vs_generalising"]
    section["lower_boundary_consistent_with_paper"] = overlaps(
      lower, PAPER_BOUNDARY
    )
    section["lower_boundary_consistent_with_spec"] = overlaps(
      lower, MEASURED_BOUNDARY
    )
  section["wall_seconds"] = time.perf_counter() - start
  return section


def compute(
  mode: str, seed: int, runs_dir, names: Sequence[str], kept: dict
) -> dict:
  """The protocols ``names`` at ``mode`` (plus the ``kept`` sections of
  protocols not run); the results payload."""
  sections = dict(kept)
  for name in names:
    sections[name] = measure_protocol(name, mode, seed, runs_dir)
  return {
    "name": NAME,
    "mode": mode,
    "protocols": {n: sections[n] for n in protocols.NAMES if n in sections},
    "paper_reference": {
      "boundary": PAPER_BOUNDARY,
      "spec_measured_boundary": MEASURED_BOUNDARY,
    },
  }


def kept_sections(path: str, mode: str, names: Sequence[str]) -> dict:
  """Sections of protocols other than ``names`` in the results at ``path``
  if they were computed at ``mode`` (else none)."""
  if not os.path.exists(path):
    return {}
  previous = persist.load_json(path)
  if previous.get("mode") != mode:
    return {}
  return {
    n: s for n, s in previous.get("protocols", {}).items() if n not in names
  }


MARKERS = {
  "none": ("x", "tab:red"),
  "grokking": ("o", "tab:orange"),
  "immediate": ("s", "tab:green"),
}


def _set_x_axis(ax) -> None:
  """Log x axis of N / (M ln M) with plain tick labels."""
  ax.set_xscale("log")
  ax.set_xticks([1, 2, 3, 5, 10, 20, 50])
  ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_recipe(section: dict, out_dir: str) -> None:
  """Regime against x per modulus, and the generalisation steps."""
  rows, boundaries = section["runs"], section["boundaries"]
  fig, (ax_reg, ax_gen) = plt.subplots(1, 2, figsize=(11, 4.2))
  for name, (marker, color) in MARKERS.items():
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
    xlabel="N / (M ln M)",
    ylabel="modulus M",
    title=f"regimes, recipe (K={section['config']['width']}, "
    f"{section['config']['num_steps']} steps)",
  )
  ax_reg.legend(fontsize=7)
  for m in section["config"]["moduli"]:
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
    xlabel="N / (M ln M)",
    ylabel="generalisation step (val acc 0.95)",
    yscale="log"
    if any(r["generalisation_step"] > 0 for r in rows)
    else "linear",
  )
  ax_gen.grid(True, which="both", alpha=0.3)
  ax_gen.legend(fontsize=7)
  for ax in (ax_reg, ax_gen):
    _set_x_axis(ax)
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def _authors_form(ax, points: list[tuple], title: str, boundary) -> None:
  """Final val accuracy against x: per M the seed mean as a line, each run
  as its regime's marker; ``points`` are (M, x, final val acc, regime)."""
  moduli = sorted({p[0] for p in points})
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(moduli)))
  for m, color in zip(moduli, colors):
    mine = [p for p in points if p[0] == m]
    xs = sorted({p[1] for p in mine})
    mean = [np.mean([p[2] for p in mine if p[1] == x]) for x in xs]
    ax.plot(xs, mean, "-", color=color, lw=1, label=f"M={m}")
  for name, (marker, color) in MARKERS.items():
    pick = [p for p in points if p[3] == name]
    ax.scatter(
      [p[1] for p in pick],
      [p[2] for p in pick],
      marker=marker,
      color=color,
      s=18,
      label=name,
      zorder=3,
    )
  ax.axvspan(*PAPER_BOUNDARY, color="gray", alpha=0.2, label="paper 2.5-3")
  if boundary["midpoint"] is not None:
    ax.axvline(boundary["midpoint"], color="k", ls="--", lw=1)
  ax.set(
    xlabel="N / (M ln M)",
    ylabel="final validation accuracy",
    ylim=(-0.03, 1.03),
  )
  ax.set_title(title, fontsize=9)
  _set_x_axis(ax)
  ax.grid(True, alpha=0.3)


def plot_authors(results: dict, out_dir: str) -> None:
  """The authors' form: ours (recipe) beside the authors' protocol at each
  budget."""
  sections = results["protocols"]
  panels = []
  if "recipe" in sections:
    s = sections["recipe"]
    points = [
      (r["modulus"], r["x"], r["final_val_acc"], r["regime"]) for r in s["runs"]
    ]
    title = f"recipe, {s['config']['num_steps']} steps (our rule)"
    panels.append((points, title, s["boundaries"]["none_vs_generalising"]))
  s = sections["authors"]
  for budget, summary in s["budgets"].items():
    points = [
      (
        r["modulus"],
        r["x"],
        r["budgets"][budget]["final_val_acc"],
        r["budgets"][budget]["regime"],
      )
      for r in s["runs"]
    ]
    title = f"authors' protocol, at most {budget} steps ({s['config']['seeds']} seeds)"
    panels.append(
      (points, title, summary["boundaries"]["none_vs_generalising"])
    )
  fig, axes = plt.subplots(
    1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False
  )
  for ax, (points, title, boundary) in zip(axes[0], panels):
    _authors_form(ax, points, title, boundary)
  axes[0, -1].legend(fontsize=6, loc="lower right")
  fig.tight_layout()
  plotting.save_figure(
    fig, os.path.join(out_dir, f"{NAME}_authors.png"), dpi=100
  )


def plot(results: dict, out_dir: str) -> None:
  """``regimes.png`` (recipe) and ``regimes_authors.png`` (authors' form)."""
  if "recipe" in results["protocols"]:
    plot_recipe(results["protocols"]["recipe"], out_dir)
  if "authors" in results["protocols"]:
    plot_authors(results, out_dir)


def _interval(b: dict) -> str:
  """A fitted boundary's interval as text."""
  if b["low"] is not None and b["high"] is not None:
    return f"between {b['low']:.2f} and {b['high']:.2f}"
  return "open"


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: the fitted regime boundaries in
  N / (M ln M) under each protocol (and each budget of the authors')."""
  rows, sections = [], results["protocols"]
  if "recipe" in sections:
    for name, b in sections["recipe"]["boundaries"].items():
      lower = name == "none_vs_generalising"
      rows.append(
        {
          "protocol": "recipe (caption's K, our rule)",
          "quantity": f"{name} boundary {_interval(b)} "
          f"({b['errors']} misclassified)",
          "ours": b["midpoint"],
          "paper": "2.5-3" if lower else None,
          "match": overlaps(b, PAPER_BOUNDARY) if lower else None,
        }
      )
  if "authors" in sections:
    for budget, summary in sections["authors"]["budgets"].items():
      b = summary["boundaries"]["none_vs_generalising"]
      mids = [
        s["midpoint"] for s in summary["lower_boundary_per_seed"].values()
      ]
      spread = ", ".join("open" if m is None else f"{m:.2f}" for m in mids)
      rows.append(
        {
          "protocol": f"authors' sweep, at most {budget} steps",
          "quantity": f"none_vs_generalising boundary {_interval(b)} "
          f"({b['errors']} misclassified; per seed {spread})",
          "ours": b["midpoint"],
          "paper": "2.5-3",
          "match": overlaps(b, PAPER_BOUNDARY),
        }
      )
  return rows


def add_flags(parser) -> None:
  """``--runs`` and ``--protocol``."""
  store.add_runs_flag(parser)
  parser.add_argument(
    "--protocol",
    default="recipe",
    help="recipe, authors or both (default recipe)",
  )


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, add_flags, argv)
  names = protocols.parse(args.protocol)
  path = os.path.join(cli.output_dir(NAME, args.out), "results.json")
  kept = {} if args.replot else kept_sections(path, mode, names)
  results = cli.compute_then_plot(
    NAME, args, lambda: compute(mode, args.seed, args.runs, names, kept), plot
  )
  for row in paper_rows(results):
    print(f"{row['protocol']}: {row['quantity']}")
  return results


if __name__ == "__main__":
  main()
