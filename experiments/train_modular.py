"""Train the quadratic network on modular addition and save its checkpoints.

Command::

  python -m experiments.train_modular [--quick] [--out DIR] [--seed N]
      [--runs DIR] [--p P] [--width K] [--lr LR] [--wd WD]
      [--optimizer adam|adamw|sgd] [--loss centered_mse|mse|cross_entropy]
      [--train-frac F] [--batch-size B] [--steps T] [--seeds S]
      [--log-every N] [--ckpt-every N] [--no-progress]

The flags override the mode's config (``CONFIGS``: the reproduction recipe at
p=53, K=1024). Training goes through the run store (``runs/``, ``--runs
DIR``): a run trained before is loaded, an interrupted one resumes from the
store's ``.partial`` folder, which is removed once the run is published, so
nothing of the training state is left in DIR. Writes ``DIR/results.json``
(configs, per-step metrics, memorisation and generalisation steps per seed,
grokking delay, GSM, steps/s), ``DIR/curves.png`` (``--replot`` redraws it
from the former) and ``DIR/checkpoints.npz`` (checkpoints stacked
(seeds, C, ...) with their steps and the data split); DIR defaults to
``figures/train_modular/``. No paper figure: ``--paper`` runs the default.

``--quick`` (one seed, 6000 steps) memorises by step ~100 and reaches
validation accuracy 0.95 at step ~4050; the default has 4 seeds, 8000 steps
and 32 checkpoints (the Fig. 3 window). Measured: ``--quick`` trained in
16 s (469 steps/s, accuracy logged every 50 steps) on 2 CPU cores shared
with three other jobs (load average 5).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Optional, Sequence

import jax
import numpy as np

from experiments import cli, results, store
from slt_jax import persist
from slt_jax.grokking import data, grokking_metrics, model, plotting, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig

NAME = "train_modular"
CHUNK_TARGET = 1000  # Preferred steps per compiled chunk.


@dataclasses.dataclass(frozen=True)
class TrainModularConfig:
  """One training setup.

  Attributes:
    data: the data split.
    model: the network.
    train: the optimisation.
    seeds: seeds trained at once (vmapped).
  """

  data: DataConfig
  model: ModelConfig
  train: TrainConfig
  seeds: int


# The reproduction recipe: centered MSE, Adam + coupled L2, batch 128, frac 0.4.
_RECIPE = TrainModularConfig(
  DataConfig(p=53, op="+", train_frac=0.4),
  ModelConfig(p=53, width=1024, init="kaiming_uniform"),
  TrainConfig(
    loss="centered_mse",
    optimizer="adam",
    lr=1e-3,
    weight_decay=1e-5,
    batch_size=128,
    num_steps=8000,
    log_every=50,
    ckpt_every=250,
    chunk_steps=1000,
  ),
  seeds=4,
)
CONFIGS = {
  "smoke": TrainModularConfig(
    DataConfig(p=7, train_frac=0.6),
    ModelConfig(p=7, width=16),
    TrainConfig(
      lr=1e-2,
      batch_size=8,
      num_steps=200,
      log_every=10,
      ckpt_every=50,
      chunk_steps=50,
    ),
    seeds=2,
  ),
  # One seed, 6000 steps: groks in seconds.
  "quick": dataclasses.replace(
    _RECIPE, train=dataclasses.replace(_RECIPE.train, num_steps=6000), seeds=1
  ),
  "default": _RECIPE,
  "paper": _RECIPE,
}


def chunk_steps_for(
  num_steps: int, ckpt_every: int, target: int = CHUNK_TARGET
) -> int:
  """Steps per chunk: the largest multiple of ``ckpt_every`` dividing
  ``num_steps`` that is at most ``target`` and a quarter of the run (so that
  short runs still have several chunks and a compile-free steps/s).

  Falls back to ``ckpt_every`` (TrainConfig then reports a bad num_steps).
  """
  target = min(target, max(num_steps // 4, ckpt_every))
  best = ckpt_every
  for m in range(1, max(target // ckpt_every, 1) + 1):
    if num_steps % (m * ckpt_every) == 0:
      best = m * ckpt_every
  return best


def add_flags(parser: argparse.ArgumentParser) -> None:
  """The config-overriding flags, ``--no-progress`` and ``--runs``."""
  store.add_runs_flag(parser)
  add = parser.add_argument
  add("--p", type=int, help="prime modulus")
  add("--width", type=int, help="hidden width K")
  add("--lr", type=float, help="learning rate")
  add("--wd", type=float, help="weight decay")
  add("--optimizer", choices=("adam", "adamw", "sgd"))
  add("--loss", choices=("centered_mse", "mse", "cross_entropy"))
  add("--train-frac", type=float, help="fraction of the p^2 pairs to train on")
  add("--batch-size", type=int, help="minibatch size")
  add("--steps", type=int, help="optimisation steps")
  add("--seeds", type=int, help="seeds trained at once (vmapped)")
  add("--log-every", type=int, help="steps between metric evaluations")
  add("--ckpt-every", type=int, help="steps between checkpoints")
  add("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace, mode: str) -> TrainModularConfig:
  """``CONFIGS[mode]`` with the flags that were given applied."""
  cfg = CONFIGS[mode]

  def given(**kwargs):
    return {k: v for k, v in kwargs.items() if v is not None}

  p = args.p if args.p is not None else cfg.data.p
  data_cfg = dataclasses.replace(
    cfg.data, p=p, **given(train_frac=args.train_frac)
  )
  model_cfg = dataclasses.replace(cfg.model, p=p, **given(width=args.width))
  train_cfg = cfg.train
  changes = given(
    lr=args.lr,
    weight_decay=args.wd,
    optimizer=args.optimizer,
    loss=args.loss,
    batch_size=args.batch_size,
    num_steps=args.steps,
    log_every=args.log_every,
    ckpt_every=args.ckpt_every,
  )
  if changes:
    num_steps = changes.get("num_steps", train_cfg.num_steps)
    log_every = changes.get("log_every", train_cfg.log_every)
    ckpt_every = changes.get("ckpt_every", max(train_cfg.ckpt_every, log_every))
    if "log_every" in changes and "ckpt_every" not in changes:
      ckpt_every = log_every * max(ckpt_every // log_every, 1)
    changes["ckpt_every"] = ckpt_every
    changes["chunk_steps"] = chunk_steps_for(num_steps, ckpt_every)
    train_cfg = dataclasses.replace(train_cfg, **changes)
  return TrainModularConfig(
    data_cfg, model_cfg, train_cfg, args.seeds or cfg.seeds
  )


def summarize(result: train.TrainResult) -> dict:
  """Grokking metrics per run (lists over the R runs)."""
  m, steps = result.metrics, result.log_steps
  return {
    "memorisation_step": grokking_metrics.memorisation_step(
      steps, m["train_acc"]
    ),
    "generalisation_step": grokking_metrics.generalisation_step(
      steps, m["val_acc"]
    ),
    "grokking_delay": grokking_metrics.grokking_delay(
      steps, m["train_acc"], m["val_acc"]
    ),
    "gsm": grokking_metrics.grokking_severity(
      steps, m["train_acc"], m["val_acc"]
    ),
    "final": {name: m[name][:, -1] for name in train.METRIC_NAMES},
  }


def save_checkpoints(
  path: str, result: train.TrainResult, dataset: data.ModularData
) -> None:
  """Writes stacked checkpoints, their steps and the data split (.npz).

  Keys: ``ckpt_steps`` (C,), ``checkpoints/W`` (R, C, K, 2p),
  ``checkpoints/V`` (R, C, p, K), ``final/W``, ``final/V`` (R, ...),
  ``seed`` (R,), ``pairs`` (p², 2), ``labels`` (p²,), ``num_train`` ().
  """
  arrays = {
    "ckpt_steps": result.ckpt_steps,
    "seed": result.hparams["seed"],
    "pairs": dataset.all.pairs,
    "labels": dataset.all.labels,
    "num_train": np.int64(dataset.num_train),
  }
  arrays.update({f"checkpoints/{k}": v for k, v in result.checkpoints.items()})
  arrays.update({f"final/{k}": v for k, v in result.final_params.items()})
  persist.save_npz(path, arrays)


def load_checkpoints(path: str) -> tuple[np.ndarray, dict, data.ModularData]:
  """Reads ``save_checkpoints`` output.

  Returns:
    (ckpt_steps (C,), params stacked (R, C, ...), the data split).
  """
  arrays = persist.load_npz(path)
  params = {
    k.split("/", 1)[1]: v
    for k, v in arrays.items()
    if k.startswith("checkpoints/")
  }
  all_data = data.make_batch(arrays["pairs"], arrays["labels"])
  dataset = data.ModularData(
    all_data, int(arrays["num_train"]), int(arrays["checkpoints/V"].shape[2])
  )
  return arrays["ckpt_steps"], params, dataset


def compute(
  cfg: TrainModularConfig,
  mode: str,
  seed: int,
  out_dir: str,
  runs_dir: Optional[str],
  progress: bool,
) -> dict:
  """Trains (or loads) the runs, writes ``checkpoints.npz``; the payload."""
  key_data, key_train = jax.random.split(jax.random.key(seed))
  dataset = data.modular_arithmetic(key_data, cfg.data)
  start = time.perf_counter()
  result = store.trained_run(
    key_train,
    dataset,
    cfg.model,
    cfg.train,
    data_key=key_data,
    seeds=cfg.seeds,
    store=runs_dir,
    label=f"{NAME}_p{cfg.model.p}_K{cfg.model.width}",
    progress=progress,
  )
  wall_seconds = time.perf_counter() - start
  save_checkpoints(os.path.join(out_dir, "checkpoints.npz"), result, dataset)
  return {
    "name": NAME,
    "mode": mode,
    "config": {
      **results.config_dict(cfg.data, cfg.model, cfg.train),
      "seeds": cfg.seeds,
      "seed": seed,
    },
    "num_train": dataset.num_train,
    "num_params": model.num_params(model.init(jax.random.key(0), cfg.model)),
    "log_steps": result.log_steps,
    "ckpt_steps": result.ckpt_steps,
    "metrics": result.metrics,
    **summarize(result),
    "steps_per_second": result.steps_per_second,
    "wall_seconds": wall_seconds,
  }


def plot(results: dict, out_dir: str) -> None:
  """Loss and accuracy curves of every seed."""
  c = results["config"]
  t = c["TrainConfig"]
  plotting.plot_training_curves(
    results["log_steps"],
    results["metrics"],
    os.path.join(out_dir, "curves.png"),
    title=(
      f"(a+b) mod {c['DataConfig']['p']}, "
      f"K={c['ModelConfig']['width']}, {t['optimizer']} "
      f"lr={t['lr']:g} wd={t['weight_decay']:g}, {t['loss']}, "
      f"n={results['num_train']}, {c['seeds']} seed(s)"
    ),
  )


def main(argv: Optional[Sequence[str]] = None) -> dict:
  """Runs the experiment; returns the results."""
  args, mode = cli.parse_mode(__doc__, add_flags, argv)
  cfg = config_from_args(args, mode)
  out_dir = cli.output_dir(NAME, args.out)
  results = cli.compute_then_plot(
    NAME,
    args,
    lambda: compute(
      cfg, mode, args.seed, out_dir, args.runs, not args.no_progress
    ),
    plot,
  )
  print(
    f"wrote {out_dir}: memorisation {results['memorisation_step']}, "
    f"generalisation {results['generalisation_step']}, "
    f"GSM {np.round(results['gsm'], 3).tolist()}, "
    f"{results['steps_per_second']} steps/s (all runs), "
    f"{results['wall_seconds']:.1f} s"
  )
  return results


if __name__ == "__main__":
  main()
