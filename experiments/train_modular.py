"""Train the quadratic network on modular addition and save its checkpoints.

Command::

  python -m experiments.train_modular [--quick] [--out DIR] [--seed N]
      [--p P] [--width K] [--lr LR] [--wd WD] [--optimizer adam|adamw|sgd]
      [--loss centered_mse|mse|cross_entropy] [--train-frac F] [--steps T]
      [--seeds S] [--log-every N] [--ckpt-every N]

Writes ``DIR/results.json`` (configs, per-step metrics, memorisation and
generalisation steps per seed, grokking delay, GSM, steps/s),
``DIR/curves.png`` and ``DIR/checkpoints.npz`` (checkpoints stacked
(seeds, C, ...) with their steps and the data split); DIR defaults to
``figures/train_modular/``. An interrupted run resumes from
``DIR/train_state.npz``, which is removed once the results are written.

Expected runtime on 2 CPU cores: ``--quick`` (SPEC §1 recipe, p=53, K=1024,
one seed, 6000 steps) 15-30 s, memorising by step ~100 and reaching
validation accuracy 0.95 at step ~4050; the full run (4 seeds, 8000 steps,
32 checkpoints) about 1-2 min.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Optional, Sequence

import jax
import numpy as np

from experiments import common
from slt_jax import data, io, metrics, model, plotting, train
from slt_jax.config import DataConfig, ModelConfig, TrainConfig

NAME = "train_modular"
CHUNK_TARGET = 1000  # Preferred steps per compiled chunk.


def get_config(quick: bool
               ) -> tuple[DataConfig, ModelConfig, TrainConfig, int]:
  """The SPEC §1 recipe: centered MSE, Adam + coupled L2, batch 128, frac 0.4.

  Args:
    quick: one seed and 6000 steps (groks in seconds) instead of 4 seeds and
      8000 steps with 32 checkpoints (the Fig. 3 window).

  Returns:
    (data config, model config, train config, number of seeds).
  """
  data_cfg = DataConfig(p=53, op="+", train_frac=0.4)
  model_cfg = ModelConfig(p=53, width=1024, init="kaiming_uniform")
  train_cfg = TrainConfig(
      loss="centered_mse", optimizer="adam", lr=1e-3, weight_decay=1e-5,
      batch_size=128, num_steps=6000 if quick else 8000, log_every=50,
      ckpt_every=250, chunk_steps=1000)
  return data_cfg, model_cfg, train_cfg, 1 if quick else 4


def chunk_steps_for(num_steps: int, ckpt_every: int,
                    target: int = CHUNK_TARGET) -> int:
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


def _add_flags(parser: argparse.ArgumentParser) -> None:
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


def configs_from_args(args: argparse.Namespace
                      ) -> tuple[DataConfig, ModelConfig, TrainConfig, int]:
  """``get_config(args.quick)`` with the flags that were given applied."""
  data_cfg, model_cfg, train_cfg, seeds = get_config(args.quick)

  def given(**kwargs):
    return {k: v for k, v in kwargs.items() if v is not None}

  p = args.p if args.p is not None else data_cfg.p
  data_cfg = dataclasses.replace(data_cfg, p=p,
                                 **given(train_frac=args.train_frac))
  model_cfg = dataclasses.replace(model_cfg, p=p, **given(width=args.width))
  changes = given(lr=args.lr, weight_decay=args.wd, optimizer=args.optimizer,
                  loss=args.loss, batch_size=args.batch_size,
                  num_steps=args.steps, log_every=args.log_every,
                  ckpt_every=args.ckpt_every)
  if changes:
    num_steps = changes.get("num_steps", train_cfg.num_steps)
    log_every = changes.get("log_every", train_cfg.log_every)
    ckpt_every = changes.get("ckpt_every", max(train_cfg.ckpt_every, log_every))
    if "log_every" in changes and "ckpt_every" not in changes:
      ckpt_every = log_every * max(ckpt_every // log_every, 1)
    changes["ckpt_every"] = ckpt_every
    changes["chunk_steps"] = chunk_steps_for(num_steps, ckpt_every)
    train_cfg = dataclasses.replace(train_cfg, **changes)
  return data_cfg, model_cfg, train_cfg, args.seeds or seeds


def summarize(result: train.TrainResult) -> dict:
  """Grokking metrics per run (lists over the R runs)."""
  m, steps = result.metrics, result.log_steps
  return {
      "memorisation_step": metrics.memorisation_step(steps, m["train_acc"]),
      "generalisation_step": metrics.generalisation_step(steps, m["val_acc"]),
      "grokking_delay": metrics.grokking_delay(steps, m["train_acc"],
                                               m["val_acc"]),
      "gsm": metrics.grokking_severity(steps, m["train_acc"], m["val_acc"]),
      "final": {name: m[name][:, -1] for name in train.METRIC_NAMES},
  }


def save_checkpoints(path: str, result: train.TrainResult,
                     dataset: data.ModularData) -> None:
  """Writes stacked checkpoints, their steps and the data split (.npz).

  Keys: ``ckpt_steps`` (C,), ``checkpoints/W`` (R, C, K, 2p),
  ``checkpoints/V`` (R, C, p, K), ``final/W``, ``final/V`` (R, ...),
  ``seed`` (R,), ``pairs`` (p², 2), ``labels`` (p²,), ``num_train`` ().
  """
  arrays = {"ckpt_steps": result.ckpt_steps, "seed": result.hparams["seed"],
            "pairs": dataset.all.pairs, "labels": dataset.all.labels,
            "num_train": np.int64(dataset.num_train)}
  arrays.update({f"checkpoints/{k}": v for k, v in result.checkpoints.items()})
  arrays.update({f"final/{k}": v for k, v in result.final_params.items()})
  io.save_npz(path, arrays)


def load_checkpoints(path: str) -> tuple[np.ndarray, dict, data.ModularData]:
  """Reads ``save_checkpoints`` output.

  Returns:
    (ckpt_steps (C,), params stacked (R, C, ...), the data split).
  """
  arrays = io.load_npz(path)
  params = {k.split("/", 1)[1]: v for k, v in arrays.items()
            if k.startswith("checkpoints/")}
  all_data = data.make_batch(arrays["pairs"], arrays["labels"])
  dataset = data.ModularData(all_data, int(arrays["num_train"]),
                             int(arrays["checkpoints/V"].shape[2]))
  return arrays["ckpt_steps"], params, dataset


def main(argv: Optional[Sequence[str]] = None) -> dict:
  """Runs the experiment; returns the results payload."""
  args = common.parse_args(__doc__, _add_flags, argv)
  data_cfg, model_cfg, train_cfg, seeds = configs_from_args(args)
  out_dir = common.output_dir(NAME, args.out)
  key_data, key_train = jax.random.split(jax.random.key(args.seed))
  dataset = data.modular_arithmetic(key_data, data_cfg)
  start = time.perf_counter()
  result = train.train(key_train, dataset, model_cfg, train_cfg, seeds=seeds,
                       out_dir=out_dir, progress=not args.no_progress)
  wall_seconds = time.perf_counter() - start
  summary = summarize(result)
  payload = {
      "config": {**common.config_dict(data_cfg, model_cfg, train_cfg),
                 "seeds": seeds, "seed": args.seed, "quick": args.quick},
      "num_train": dataset.num_train,
      "num_params": model.num_params(
          model.init(jax.random.key(0), model_cfg)),
      "log_steps": result.log_steps,
      "ckpt_steps": result.ckpt_steps,
      "metrics": result.metrics,
      **summary,
      "steps_per_second": result.steps_per_second,
      "wall_seconds": wall_seconds,
  }
  common.write_results(out_dir, payload)
  save_checkpoints(os.path.join(out_dir, "checkpoints.npz"), result, dataset)
  plotting.plot_training_curves(
      result.log_steps, result.metrics, os.path.join(out_dir, "curves.png"),
      title=(f"(a+b) mod {data_cfg.p}, K={model_cfg.width}, "
             f"{train_cfg.optimizer} lr={train_cfg.lr:g} "
             f"wd={train_cfg.weight_decay:g}, {train_cfg.loss}, "
             f"n={dataset.num_train}, {seeds} seed(s)"))
  state_path = os.path.join(out_dir, "train_state.npz")
  if os.path.exists(state_path):
    os.remove(state_path)
  print(f"wrote {out_dir}: memorisation {summary['memorisation_step']}, "
        f"generalisation {summary['generalisation_step']}, "
        f"GSM {np.round(summary['gsm'], 3)}, "
        f"{result.steps_per_second:.0f} steps/s (all runs), "
        f"{wall_seconds:.1f} s")
  return payload


if __name__ == "__main__":
  main()
