"""Fig. 4: the Grokking Severity Metric falls as the learning rate grows.

Under each protocol (``--protocol recipe|authors|both``) trains every
learning rate x seed of a log grid in ONE vmapped ``train`` call through the
run store (``runs/``, ``--runs DIR``):

* ``recipe``: the reproduction recipe (Adam, coupled L2 1e-5, batch 128, a fixed number of
  steps, accuracy logged every 100 steps); T is the last step.
* ``authors``: batch 64, wd 1e-5, validation accuracy checked every 100
  steps, stop after 3 consecutive checks >= 0.95, capped at the recipe's
  length; a run's curves end at its stop step (T), as the authors' training
  loop ends there. These are the settings of the authors' p-sweep code
  (``sweep.yaml``, whose commented-out lr grid spans 1e-4..1e-2); their
  Fig. 4 settings are inferred from it, not known
  (``authors_settings_known`` is False).

For every run both GSM definitions are computed on its curves up to T:
``gsm`` (``grokking_metrics.grokking_severity``: the area between the train
and validation accuracy curves over T, 0 unless val acc(T) >= 0.95) and
``gsm_authors`` (their ``grokking_test3``, ``metrics.
grokking_severity_authors``: the mean signed gap, 0 unless both final
accuracies exceed 0.9). Per protocol and definition: mean ± std over seeds
per lr and the Spearman rank correlation with lr (over all runs and over the
seed means), beside the previously measured recipe values (30k steps, p=53,
K=1024: lr 1e-4 -> 0.39, 3e-4 -> 0.21, 1e-3 -> 0.10, 3e-3 -> 0.048, 1e-2 ->
0.013). ``gsm`` is normalised by T, so only runs of one length compare
directly; T must exceed the slowest run's generalisation step (the
1e-4 run generalised at step 14,250 of 30k). Writes ``DIR/results.json``
and ``DIR/gsm_vs_lr.png`` (``--replot`` redraws it from the former).

    python -m experiments.gsm_vs_lr --quick   # K=256, 6 lrs 5.6e-4..1e-2
    python -m experiments.gsm_vs_lr           # K=1024, five lrs
    python -m experiments.gsm_vs_lr --paper --protocol both  # 9 lrs

Runtimes (2 CPU cores) are in ``figures/paper/README.md``, measured. Sizing,
measured on 2 CPU cores shared with three other jobs (load average 5): the
9-lr grid at K=1024 trains at 469 run-steps/s under the recipe (batch 128)
and 668 under the authors' protocol (batch 64), so ``--paper --protocol
both`` takes at most 9.6 + 6.7 min there (the authors' grid ends early once
its slowest lr has stopped).
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np

from experiments import cli, protocols, store
from slt_jax.grokking import grokking_metrics, plotting
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig

NAME = "gsm_vs_lr"
MEASURED_GSM = {1e-4: 0.39, 3e-4: 0.21, 1e-3: 0.10, 3e-3: 0.048, 1e-2: 0.013}
DEFINITIONS = {
  "gsm": "area between the accuracy curves (|gap| area / T)",
  "gsm_authors": "authors' grokking_test3 (mean signed gap)",
}
SOURCES = {
  "recipe": "reproduction recipe: batch 128, wd 1e-5, fixed length",
  "authors": "authors' p-sweep code (sweep.yaml): batch 64, wd 1e-5, stop "
  "3 x val acc >= 0.95 checked every 100 steps",
}


@dataclasses.dataclass(frozen=True)
class GSMConfig:
  """A learning-rate sweep of the GSM.

  Attributes:
    p: prime modulus.
    width: hidden width K.
    lrs: learning rates (one vmapped grid per protocol).
    seeds: training seeds per lr.
    num_steps: recipe training steps; the authors' protocol's step cap.
    chunk_steps: steps per compiled chunk (also the checkpoint interval:
      GSM needs no checkpoints, so they are kept sparse).
    train_frac: training fraction of the p² pairs.
    smoke: shrink the protocols to a seconds-long test configuration.
  """

  p: int
  width: int
  lrs: tuple[float, ...]
  seeds: int = 1
  num_steps: int = 30000
  chunk_steps: int = 5000
  train_frac: float = 0.4
  smoke: bool = False


CONFIGS = {
  # p=11 at train fraction 0.9 generalises within 400 steps at lr 3e-2.
  "smoke": GSMConfig(
    p=11,
    width=128,
    lrs=(1e-2, 3e-2),
    num_steps=400,
    chunk_steps=100,
    train_frac=0.9,
    smoke=True,
  ),
  # K=256 trains ~4x faster than 1024. At 15k steps one seed at lr 3.2e-4
  # had not generalised (GSM 0 by definition): T must stay long.
  "quick": GSMConfig(
    p=53,
    width=256,
    lrs=tuple(np.logspace(-3.25, -2, 6).round(7)),
    seeds=2,
    num_steps=20000,
  ),
  "default": GSMConfig(p=53, width=1024, lrs=tuple(MEASURED_GSM), seeds=2),
  # The paper's grid (half-decades from 1e-4 to 1e-2).
  "paper": GSMConfig(
    p=53, width=1024, lrs=tuple(np.logspace(-4, -2, 5).round(7))
  ),
}


def train_config(name: str, cfg: GSMConfig) -> TrainConfig:
  """The protocol's training configuration at this sweep's length."""
  train = dataclasses.replace(
    protocols.scaling_protocol(name).train,
    num_steps=cfg.num_steps,
    ckpt_every=cfg.chunk_steps,
    chunk_steps=cfg.chunk_steps,
  )
  if cfg.smoke:
    train = dataclasses.replace(train, batch_size=16, log_every=20)
  return train


def severities(log_steps, train_acc, val_acc, final_step) -> dict:
  """Both GSM definitions per run, on its curves up to its final step.

  Args:
    log_steps: (T,) logged steps.
    train_acc, val_acc: (R, T) accuracy curves.
    final_step: (R,) each run's last step (its stop step, or the last
      logged one).

  Returns:
    ``{"gsm": (R,), "gsm_authors": (R,)}``.
  """
  log_steps = np.asarray(log_steps)
  out = {name: np.zeros(len(final_step)) for name in DEFINITIONS}
  for r, last in enumerate(final_step):
    upto = log_steps <= last
    curves = np.asarray(train_acc)[r, upto], np.asarray(val_acc)[r, upto]
    out["gsm"][r] = grokking_metrics.grokking_severity(log_steps[upto], *curves)
    out["gsm_authors"][r] = grokking_metrics.grokking_severity_authors(*curves)
  return out


def summarize(lrs, values_SxL: np.ndarray) -> dict:
  """Mean/std over seeds per lr and the Spearman rho of one definition."""
  lrs, seeds = np.asarray(lrs), values_SxL.shape[0]
  means = values_SxL.mean(0)
  rho_means = grokking_metrics.spearman_rho(lrs, means)
  return {
    "values": values_SxL,
    "mean": means,
    "std": values_SxL.std(0),
    "spearman_rho_runs": grokking_metrics.spearman_rho(
      np.tile(lrs, seeds), values_SxL.ravel()
    ),
    "spearman_rho_means": rho_means,
    "decreasing": bool(rho_means < 0),
    "monotone_means": bool(np.all(np.diff(means) < 0)),
  }


def measure_protocol(name: str, cfg: GSMConfig, seed: int, runs_dir) -> dict:
  """Trains (or loads) the lr x seed grid under protocol ``name``.

  Returns:
    dict of the protocol's settings, the runs' curves, stop/final steps,
    memorisation and generalisation steps and ``summarize`` of each GSM
    definition, arrays (seeds, lrs[, logged steps]).
  """
  train = train_config(name, cfg)
  key_data, key_train = jax.random.split(jax.random.key(seed))
  start = time.perf_counter()
  run = store.trained_run(
    key_train,
    DataConfig(p=cfg.p, train_frac=cfg.train_frac),
    ModelConfig(p=cfg.p, width=cfg.width),
    train,
    data_key=key_data,
    seeds=cfg.seeds,
    lrs=cfg.lrs,
    store=runs_dir,
    label=f"gsm_p{cfg.p}_K{cfg.width}_{name}",
    progress=not cfg.smoke,
  )
  shape = (cfg.seeds, len(cfg.lrs))  # Runs are seed-major.
  steps, acc = run.log_steps, run.metrics
  final = np.where(run.stop_step >= 0, run.stop_step, steps[-1])
  gsm = severities(steps, acc["train_acc"], acc["val_acc"], final)
  return {
    "source": SOURCES[name],
    "train": dataclasses.asdict(train),
    "log_steps": steps,
    "train_acc": acc["train_acc"].reshape(shape + (-1,)),
    "val_acc": acc["val_acc"].reshape(shape + (-1,)),
    "stop_step": run.stop_step.reshape(shape),
    "final_step": final.reshape(shape),
    "memorisation_step": grokking_metrics.memorisation_step(
      steps, acc["train_acc"]
    ).reshape(shape),
    "generalisation_step": grokking_metrics.generalisation_step(
      steps, acc["val_acc"]
    ).reshape(shape),
    **{d: summarize(cfg.lrs, v.reshape(shape)) for d, v in gsm.items()},
    "train_steps_per_second": run.steps_per_second,
    "seconds": time.perf_counter() - start,
  }


def compute(mode: str, names, seed: int, runs_dir) -> dict:
  """Every protocol in ``names`` at ``CONFIGS[mode]``; the results payload."""
  cfg, start = CONFIGS[mode], time.perf_counter()
  return {
    "name": NAME,
    "mode": mode,
    "config": dataclasses.asdict(cfg),
    "lrs": cfg.lrs,
    "definitions": DEFINITIONS,
    "protocols": {
      name: measure_protocol(name, cfg, seed, runs_dir) for name in names
    },
    "authors_settings_known": False,
    "authors_settings_note": (
      "the authors' Fig. 4 settings are not stated; their p-sweep code's "
      "(batch 64, wd 1e-5, stop 3 x val acc >= 0.95) stand in"
    ),
    "spec_reference": {
      "gsm": {str(k): v for k, v in MEASURED_GSM.items()},
      "protocol": "recipe",
      "num_steps": 30000,
      "p": 53,
      "width": 1024,
      "spearman_rho": -1.0,
      "paper": "GSM decreasing in lr (Fig. 4)",
    },
    "wall_seconds": time.perf_counter() - start,
  }


def rho_text(rho) -> str:
  """A Spearman rho for labels (None, i.e. undefined, as ``n/a``)."""
  return "n/a" if rho is None else f"{rho:.2f}"


def plot(results: dict, out_dir: str) -> None:
  """Per protocol: both GSMs against lr, and the validation curves."""
  lrs, names = np.asarray(results["lrs"]), list(results["protocols"])
  cfg = results["config"]
  fig, axes = plt.subplots(
    len(names), 2, figsize=(11, 4.2 * len(names)), squeeze=False
  )
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(lrs)))
  for (ax_gsm, ax_acc), name in zip(axes, names):
    r = results["protocols"][name]
    for definition, marker in zip(DEFINITIONS, "os"):
      s = r[definition]
      ax_gsm.errorbar(
        lrs,
        s["mean"],
        yerr=s["std"],
        fmt=f"{marker}-",
        capsize=3,
        label=f"{definition}: Spearman ρ = "
        f"{rho_text(s['spearman_rho_means'])} (means)",
      )
    if name == "recipe":
      ax_gsm.plot(
        list(MEASURED_GSM),
        list(MEASURED_GSM.values()),
        "k^--",
        ms=5,
        lw=1,
        label="measured gsm (K=1024, 30k steps)",
      )
    ax_gsm.set(
      xscale="log",
      xlabel="learning rate",
      ylabel="GSM",
      title=f"{name}: {cfg['seeds']} seed(s)",
    )
    ax_gsm.grid(True, which="both", alpha=0.3)
    ax_gsm.legend(fontsize=7)
    steps = np.asarray(r["log_steps"])
    for i, lr in enumerate(lrs):
      upto = steps <= r["final_step"][0][i]  # A stopped run ends there.
      ax_acc.plot(
        steps[upto],
        np.asarray(r["val_acc"][0][i])[upto],
        color=colors[i],
        label=f"lr {lr:.2g}",
      )
    ax_acc.set(
      xlabel="training step",
      ylabel="validation accuracy (seed 0)",
      title=f"{name}: p={cfg['p']}, K={cfg['width']}",
    )
    ax_acc.legend(fontsize=7)
    ax_acc.locator_params(axis="x", nbins=5)
  fig.tight_layout()
  plotting.save_figure(fig, os.path.join(out_dir, f"{NAME}.png"), dpi=100)


def print_summary(results: dict) -> None:
  """GSM per lr, protocol and definition, and the Spearman rhos."""
  for name, r in results["protocols"].items():
    for definition in DEFINITIONS:
      s = r[definition]
      values = ", ".join(
        f"{lr:.3g}: {m:.4f}" for lr, m in zip(results["lrs"], s["mean"])
      )
      print(
        f"[{name}] {definition}: {values}; Spearman rho runs "
        f"{rho_text(s['spearman_rho_runs'])}, means "
        f"{rho_text(s['spearman_rho_means'])}"
      )


def add_flags(parser) -> None:
  """``--protocol`` and ``--runs``."""
  parser.add_argument(
    "--protocol",
    default="recipe",
    help="recipe, authors or both (default recipe)",
  )
  store.add_runs_flag(parser)


def paper_rows(results: dict) -> list[dict]:
  """Rows of ``figures/paper/README.md``: both GSM definitions per protocol
  (the paper's claim: GSM decreases with the learning rate)."""
  rows = []
  for name, r in results["protocols"].items():
    for definition in ("gsm", "gsm_authors"):
      d = r[definition]
      means = ", ".join(f"{m:.3g}" for m in d["mean"])
      rho = d["spearman_rho_means"]
      rows.append(
        {
          "protocol": name,
          "quantity": f"{definition} at lr {results['lrs'][0]:g} … "
          f"{results['lrs'][-1]:g}: {means}; Spearman ρ "
          f"{rho_text(rho)}",
          "ours": rho,
          "paper": "decreasing",
          "match": d["decreasing"],
        }
      )
  return rows


def main(argv=None) -> dict:
  args, mode = cli.parse_mode(__doc__, add_flags, argv)
  names = protocols.parse(args.protocol)
  results = cli.compute_then_plot(
    NAME, args, lambda: compute(mode, names, args.seed, args.runs), plot
  )
  print_summary(results)
  return results


if __name__ == "__main__":
  main()
