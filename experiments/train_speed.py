"""Training throughput: optimisation steps per second, 1 run vs 8 vmapped.

Command::

  python -m experiments.train_speed [--quick] [--out DIR] [--seed N]

Trains the SPEC §1 recipe (p=53, K=1024, batch 128, centered MSE, Adam) with
``train.train`` for ``seeds`` = 1 and 8, in 3 chunks of 500 steps (100 with
``--quick``); ``TrainResult.steps_per_second`` times the chunks after the
first, so compilation is excluded. Metrics are logged once per chunk, so the
numbers are close to pure optimisation. Writes ``DIR/results.json`` (default
``figures/train_speed/``). A step executes 14·B·K·p matmul FLOPs (the model
forms its first layer as a one-hot matmul; see ``slt_jax.model``), reported
as GFLOP/s.

Expected runtime on 2 CPU cores: about 15 s (``--quick``: about 10 s).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import jax

from experiments import common
from slt_jax import data, train
from slt_jax.config import DataConfig, ModelConfig, TrainConfig

NAME = "train_speed"
SEEDS = (1, 8)


def get_config(quick: bool) -> tuple[DataConfig, ModelConfig, TrainConfig]:
  """Recipe configs with 3 chunks and one evaluation per chunk."""
  chunk = 100 if quick else 500
  return (DataConfig(p=53, train_frac=0.4), ModelConfig(p=53, width=1024),
          TrainConfig(batch_size=128, num_steps=3 * chunk, log_every=chunk,
                      ckpt_every=chunk, chunk_steps=chunk))


def main(argv: Optional[Sequence[str]] = None) -> dict:
  """Measures and writes the throughput; returns the results payload."""
  args = common.parse_args(__doc__, argv=argv)
  data_cfg, model_cfg, train_cfg = get_config(args.quick)
  out_dir = common.output_dir(NAME, args.out)
  key_data, key_train = jax.random.split(jax.random.key(args.seed))
  dataset = data.modular_arithmetic(key_data, data_cfg)
  flops_per_step = 14 * train_cfg.batch_size * model_cfg.width * model_cfg.p
  runs = {}
  for seeds in SEEDS:
    start = time.perf_counter()
    result = train.train(key_train, dataset, model_cfg, train_cfg, seeds=seeds,
                         progress=False)
    total = result.steps_per_second
    runs[str(seeds)] = {
        "seeds": seeds,
        "steps_per_second": total,
        "steps_per_second_per_run": total / seeds,
        "model_gflops_per_second": total * flops_per_step / 1e9,
        "wall_seconds_with_compile": time.perf_counter() - start,
    }
    print(f"seeds={seeds}: {total:.0f} steps/s in all, "
          f"{total / seeds:.0f} per run, "
          f"{total * flops_per_step / 1e9:.1f} GFLOP/s of model math")
  payload = {
      "config": {**common.config_dict(data_cfg, model_cfg, train_cfg),
                 "seed": args.seed, "quick": args.quick},
      "flops_per_step": flops_per_step,
      "runs": runs,
      "vmap_speedup": (runs[str(SEEDS[-1])]["steps_per_second"]
                       / runs[str(SEEDS[0])]["steps_per_second"]),
  }
  common.write_results(out_dir, payload)
  return payload


if __name__ == "__main__":
  main()
