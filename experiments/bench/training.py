"""Part 4: training throughput, vmapped runs against a PyTorch loop.

``slt_jax.grokking.train.train`` on the reproduction recipe (p=53, K=1024, batch 128,
centered MSE, Adam) for each number of vmapped runs in
``BenchConfig.train_seeds``, in 3 chunks of ``train_chunk_steps`` steps;
``TrainResult.steps_per_second`` times the chunks after the first, so
compilation is excluded, and metrics are logged once per chunk, so the
numbers are close to pure optimisation. A step executes 14·B·K·p matmul
FLOPs (the model forms its first layer as a one-hot matmul; see
``slt_jax.grokking.model``), reported as GFLOP/s. The PyTorch baseline is a plain
Adam loop (coupled L2) on the same model. (This part replaces the former
``experiments.train_speed``.)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np

from experiments.bench import workload
from slt_jax.grokking import data, model, train
from slt_jax.grokking.config import ModelConfig, TrainConfig


def training(
  cfg: workload.BenchConfig,
  dataset: data.ModularData,
  key,
  bt,
  torch_threads: Optional[int] = None,
) -> dict:
  """Part 4: training steps/s, vmapped runs against a PyTorch loop.

  The PyTorch loop's thread count is chosen as for the LLC baselines (from
  a short timing at 1 and ``cfg.torch_threads`` threads; ``torch_threads``
  fixes it).
  """
  chunk = cfg.train_chunk_steps
  train_cfg = TrainConfig(
    batch_size=cfg.sgld.batch_size,
    num_steps=3 * chunk,
    log_every=chunk,
    ckpt_every=chunk,
    chunk_steps=chunk,
  )
  model_cfg = ModelConfig(p=cfg.p, width=cfg.width)
  flops_per_step = 14 * train_cfg.batch_size * cfg.width * cfg.p
  runs = {}
  for seeds in cfg.train_seeds:
    start = time.perf_counter()
    result = train.train(
      key, dataset, model_cfg, train_cfg, seeds=seeds, progress=False
    )
    total = result.steps_per_second
    runs[str(seeds)] = {
      "seeds": seeds,
      "steps_per_second": total,
      "steps_per_second_per_run": total / seeds,
      "model_gflops_per_second": total * flops_per_step / 1e9,
      "wall_seconds_with_compile": time.perf_counter() - start,
    }
    print(
      f"training, {seeds} vmapped runs: {total:.0f} steps/s in all, "
      f"{total * flops_per_step / 1e9:.1f} GFLOP/s of model math"
    )
  first, last = min(cfg.train_seeds), max(cfg.train_seeds)
  out = {
    "config": dataclasses.asdict(train_cfg),
    "flops_per_step": flops_per_step,
    "slt_jax": runs,
    "vmap_speedup": (
      runs[str(last)]["steps_per_second"] / runs[str(first)]["steps_per_second"]
    ),
  }
  if bt is not None:
    init = model.init(key, model_cfg)
    x_NxD, y_NxP = bt.one_hot_data(
      dataset.train.pairs, dataset.train.labels, cfg.p
    )
    run = lambda num_steps: bt.train_steps_per_second(
      np.asarray(init["W"]),
      np.asarray(init["V"]),
      x_NxD,
      y_NxP,
      lr=train_cfg.lr,
      weight_decay=train_cfg.weight_decay,
      batch_size=train_cfg.batch_size,
      num_steps=num_steps,
    )
    rates = {}
    for count in sorted({1, cfg.torch_threads}):
      bt.torch.set_num_threads(count)
      rates[str(count)] = run(max(1, cfg.torch_train_steps // 10))
    threads = torch_threads or cfg.torch_threads
    if (
      torch_threads is None
      and rates["1"] > workload.OVERSUBSCRIBED * rates[str(threads)]
    ):
      threads = 1
    bt.torch.set_num_threads(threads)
    torch_sps = run(cfg.torch_train_steps)
    out["torch_loop"] = {
      "steps_per_second": torch_sps,
      "threads": threads,
      "steps_per_second_by_threads": rates,
    }
    out["ratio_vs_torch_loop"] = {
      k: {
        "total": v["steps_per_second"] / torch_sps,
        "per_run": v["steps_per_second_per_run"] / torch_sps,
      }
      for k, v in runs.items()
    }
    print(
      f"training, PyTorch loop ({threads} threads): {torch_sps:.0f} steps/s"
    )
  return out
