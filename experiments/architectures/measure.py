"""Training, tuning and the LLC curves of one architecture, and their
summaries."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings

import jax
import numpy as np
from tqdm.auto import tqdm

from experiments import sweeps, tuning
from experiments.architectures.config import ArchitecturesConfig, Setup
from slt_jax.grokking import architectures as arch_lib
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import grokking_metrics
from slt_jax.llc import SGLDConfig
from slt_jax.training import train_models


def llc_indices(num_ckpts: int, num_points: int) -> np.ndarray:
  """Indices of at most ``num_points`` checkpoints: half log-spaced (dense
  early, where the ReLU network memorises), half evenly spaced (where the
  others memorise and grok), the last always included.

  >>> llc_indices(32, 6).tolist()
  [0, 5, 10, 20, 31]
  """
  geometric = np.geomspace(1, num_ckpts, num_points // 2)
  even = np.linspace(
    num_ckpts / (num_points - num_points // 2),
    num_ckpts,
    num_points - num_points // 2,
  )
  picks = np.round(np.concatenate([geometric, even])).astype(int)
  return np.unique(picks) - 1


def _train(setup: Setup, seeds: int, seed: int, out_dir: str):
  """The setup's seeds trained as one program (resumed from
  ``out_dir/train/KIND``); returns (TrainResult, ModularData)."""
  key = jax.random.key(seed)
  data = data_lib.modular_addition(
    setup.arch.p, setup.training.train_frac, key=jax.random.fold_in(key, 0)
  )
  task = arch_lib.ArchitectureTask(setup.arch, setup.training.loss)
  run = train_models(
    jax.random.fold_in(key, 1),
    task,
    data.all,
    setup.training.loop(),
    num_train=data.num_train,
    seeds=seeds,
    out_dir=os.path.join(out_dir, "train", setup.arch.kind),
    spec={
      "kind": setup.arch.kind,
      "arch": dataclasses.asdict(setup.arch),
      "training": dataclasses.asdict(setup.training),
    },
  )
  return run, data


def curve_masks(setup: Setup, ckpts) -> dict:
  """Curve name -> mask: the whole model (None), each layer
  (``layer_patterns``) and, for a transformer, each attention head
  (``head_mask`` over the (seeds, checkpoints) batch)."""
  masks = {"whole": None, **setup.arch.layer_patterns()}
  if isinstance(setup.arch, arch_lib.TransformerConfig):
    for layer in range(setup.arch.num_layers):
      for head in range(setup.arch.num_heads):
        masks[f"layer {layer} head {head}"] = arch_lib.head_mask(
          ckpts, layer, head, batch_ndim=2
        )
  return masks


def _base_sgld(setup: Setup, cfg: ArchitecturesConfig) -> SGLDConfig:
  """The chains' modelling choices: nβ = B / ln B, γ, chains, B."""
  return SGLDConfig(
    nbeta="default",
    localization=setup.localization,
    num_chains=cfg.num_chains,
    batch_size=setup.training.batch_size,
  )


def tune(setup, cfg, task, points, data, key, path: str) -> dict:
  """``tuning.cached_tune`` on ``points`` (2, ...) of one architecture at
  the setup's modelling choices (``_base_sgld``), saved at ``path``."""
  return tuning.cached_tune(
    key,
    task.loss,
    points,
    data,
    _base_sgld(setup, cfg),
    path,
    {"setup": dataclasses.asdict(setup)},
    batch_ndim=1,
    budget_grads=cfg.tune_budget_grads,
    tolerance=cfg.tune_tolerance,
  )


def curve_summary(steps, sweep: dict, run, mem: np.ndarray) -> dict:
  """``llc_curve_summary`` of the seed-mean curve, with the drop (peak -
  final), its standard error (of the seed mean: over seeds, or over chains
  for one seed) and whether it exceeds two of them.

  Points whose chains all diverged are nan and left out of the seed mean.
  """
  mean_SxC = np.asarray(sweep["mean"], float)
  num_seeds = mean_SxC.shape[0]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns.
    curve_C = np.nanmean(mean_SxC, axis=0)
    if num_seeds > 1:
      se_C = np.nanstd(mean_SxC, axis=0, ddof=1) / np.sqrt(num_seeds)
    else:
      chains = np.asarray(sweep["per_chain"]).shape[-1]
      se_C = np.asarray(sweep["std"], float)[0] / np.sqrt(chains)
  val_loss = np.asarray(run.metrics["val_loss"], float).mean(0)
  found = grokking_metrics.llc_curve_summary(
    steps, curve_C, run.log_steps, val_loss, int(np.median(mem))
  )
  peak = int(np.flatnonzero(np.asarray(steps) == found["peak_step"])[0])
  drop = found["peak_llc"] - found["final_llc"]
  drop_se = float(np.hypot(se_C[peak], se_C[-1]))
  return {
    **found,
    "seed_mean": curve_C,
    "seed_se": se_C,
    "drop": drop,
    "drop_se": drop_se,
    "drop_significant": bool(drop > 2 * drop_se),
    "num_moving_params": sweep["num_moving_params"],
    "final_llc_over_half_d": 2
    * found["final_llc"]
    / sweep["num_moving_params"],
  }


def diverged_points(name: str, steps, sweep: dict) -> list[dict]:
  """Every (seed, checkpoint) of a curve with a diverged chain."""
  counts_SxC = np.asarray(sweep["diverged_chains"])
  return [
    {
      "curve": name,
      "seed": int(s),
      "step": int(steps[c]),
      "diverged_chains": int(counts_SxC[s, c]),
    }
    for s, c in zip(*np.nonzero(counts_SxC))
  ]


def verdict(summaries: dict, layer_names, mem, gen, num_params: int) -> dict:
  """The answers for one architecture (see the module docstring)."""
  whole = summaries["whole"]
  mem_step, gen_step = int(np.median(mem)), int(np.median(gen))
  grokked = bool(np.all(gen >= 0))
  drops = {name: summaries[name]["drop"] for name in layer_names}
  return {
    "memorisation_step": mem_step,
    "generalisation_step": gen_step,
    "grokked": grokked,
    "peak_step": whole["peak_step"],
    "peak_minus_memorisation": whole["peak_step"] - mem_step,
    "peak_before_generalisation": grokked and whole["peak_step"] < gen_step,
    "drop_ratio": whole["final_over_peak"],
    "falls_through_grokking": grokked and whole["drop_significant"],
    "layer_drops": drops,
    "drop_carried_by": max(drops, key=drops.get),
    "settled_llc": whole["final_llc"],
    "num_params": num_params,
    "settled_llc_over_half_d": 2 * whole["final_llc"] / num_params,
  }


def measure(setup: Setup, cfg: ArchitecturesConfig, seed: int, out_dir: str):
  """Training, tuning and every LLC curve of one architecture."""
  start = time.perf_counter()
  kind = setup.arch.kind
  run, data = _train(setup, cfg.seeds, seed, out_dir)
  task = arch_lib.ArchitectureTask(setup.arch, setup.training.loss)
  mem = grokking_metrics.memorisation_step(
    run.log_steps, run.metrics["train_acc"]
  )
  gen = grokking_metrics.generalisation_step(
    run.log_steps, run.metrics["val_acc"]
  )
  idx = llc_indices(len(run.ckpt_steps), setup.num_llc_points)
  steps = run.ckpt_steps[idx]
  ckpts = jax.tree.map(lambda x: x[:, idx], run.checkpoints)
  key = jax.random.fold_in(jax.random.key(seed), 2)
  points, tune_steps = tuning.memorised_and_last(run, idx, int(mem[0]))
  chains_dir = os.path.join(out_dir, "chains")
  tuned = tune(
    setup,
    cfg,
    task,
    points,
    data.train,
    key,
    os.path.join(chains_dir, f"tune_{kind}.json"),
  )
  sweep_cfg = dataclasses.replace(
    SGLDConfig(**tuned["config"]),
    num_draws=min(tuned["config"]["num_draws"], cfg.max_draws),
  )
  curves, summaries, diverged = {}, {}, []
  masks = curve_masks(setup, ckpts)
  for i, (name, mask) in enumerate(tqdm(masks.items(), desc=f"{kind} curves")):
    curves[name] = sweeps.llc_sweep(
      jax.random.fold_in(key, 10 + i),
      task.loss,
      ckpts,
      data.train,
      sweep_cfg,
      os.path.join(chains_dir, kind, f"curve_{i}"),
      mask=mask,
    )
    summaries[name] = curve_summary(steps, curves[name], run, mem)
    diverged += diverged_points(name, steps, curves[name])
  d = arch_lib.num_params(jax.tree.map(lambda x: x[0, 0], ckpts))
  return {
    "kind": kind,
    "arch": dataclasses.asdict(setup.arch),
    "training": dataclasses.asdict(setup.training),
    "localization": setup.localization,
    "num_params": d,
    "num_train": data.num_train,
    "log_steps": run.log_steps,
    "metrics": run.metrics,
    "train_steps_per_second": run.steps_per_second,
    "llc_steps": steps,
    "memorisation_step": mem,
    "generalisation_step": gen,
    "tune": {**tuned, "point_steps": tune_steps},
    "sweep_config": dataclasses.asdict(sweep_cfg),
    "curves": curves,
    "summaries": summaries,
    "layer_names": list(setup.arch.layer_patterns()),
    "diverged": diverged,
    "verdict": verdict(
      summaries, list(setup.arch.layer_patterns()), mem, gen, d
    ),
    "seconds": time.perf_counter() - start,
  }


def compute(
  cfg: ArchitecturesConfig, seed: int, out_dir: str, kinds=None
) -> dict:
  """The architectures ``kinds`` (default: all) of ``cfg`` (see the module
  docstring)."""
  start = time.perf_counter()
  setups = [s for s in cfg.setups if kinds is None or s.arch.kind in kinds]
  found = {s.arch.kind: measure(s, cfg, seed, out_dir) for s in setups}
  return {
    "config": {
      **dataclasses.asdict(cfg),
      "setups": [
        {"kind": s.arch.kind, **dataclasses.asdict(s)} for s in setups
      ],
    },
    "seeds": cfg.seeds,
    "architectures": found,
    "wall_seconds": time.perf_counter() - start,
  }
