"""The benchmark's configuration, reference weights and timed LLC engine.

``Engine`` holds the reference loss and training set and times
``slt_jax.llc`` through its public API only: ``compile_sweep`` builds a
``Sweep`` (compiled once), ``Sweep.run`` is what is timed, the chunk comes
from ``Sweep.chunk_size`` and the memory from ``Sweep.memory_analysis()``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax import llc
from slt_jax.grokking import data, model, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig
from slt_jax.llc.config import SGLDConfig

# nbeta = B / ln B at B = 128, passed as a number so that every implementation
# uses the same value.
REFERENCE_NBETA = 128 / math.log(128)
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# Plain-loop speed ratio (1 thread / ``torch_threads``) above which the
# PyTorch baselines fall back to one thread.
OVERSUBSCRIBED = 1.5


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """What the benchmark measures.

  Attributes:
    p, width, train_frac: the reference model and data set.
    num_train: training pairs; overrides ``train_frac`` (the reference workload uses 1123
      at p=53, where ``round(0.4 * 53^2)`` would give 1124).
    train_steps: recipe steps of the run whose checkpoints are w*; must be a
      multiple of ``max(checkpoints)``.
    checkpoints: numbers of checkpoints C of the side-by-side LLC runs,
      spread evenly over training (C = 1 is the final weights).
    sgld: the reference SGLD settings.
    grid_checkpoints: checkpoints C of the settings-grid measurement.
    grid_step_sizes, grid_localizations: its grid (their product, nbeta
      from ``sgld``).
    scaling_burnin, scaling_draws: shorter chains for the scaling sweeps.
    scaling_points: points batched in one program (x chains = batch width).
    chunk_points: points of the chunk-size sweep.
    chunk_sizes: ``SGLDConfig.chunk_size`` values of that sweep.
    device_counts: forced host device counts (each one a subprocess).
    device_points: points of the device sweep.
    train_seeds: vmapped training runs to time.
    train_chunk_steps: steps per compiled training chunk (3 chunks; the
      first, with compilation, is not timed).
    torch_train_steps: timed steps of the PyTorch training loop.
    matmul_sizes: square matmul sizes n of the roofline.
    repeats: timed repetitions of each roofline kernel (the median is kept).
    torch_threads: ``torch.set_num_threads`` for the PyTorch baselines (the
      machine's 2 cores). On a shared machine, OpenMP threads that wait for
      a busy core can make 2 threads many times slower than 1; the run
      measures both first and, when 1 thread is more than
      ``OVERSUBSCRIBED`` times faster, uses 1 (recorded as
      ``baselines.torch_threads_used``) unless ``--torch-threads`` fixes it.
  """

  p: int = 53
  width: int = 1024
  train_frac: float = 0.4
  num_train: Optional[int] = 1123
  train_steps: int = 3000
  checkpoints: tuple[int, ...] = (1, 10, 50)
  sgld: SGLDConfig = SGLDConfig(
    step_size=5e-4,
    nbeta=REFERENCE_NBETA,
    localization=5.0,
    num_chains=3,
    num_draws=500,
    num_burnin=100,
    batch_size=128,
  )
  grid_checkpoints: int = 10
  grid_step_sizes: tuple[float, ...] = (2.5e-4, 5e-4, 1e-3)
  grid_localizations: tuple[float, ...] = (2.5, 5.0, 10.0)
  scaling_burnin: int = 20
  scaling_draws: int = 80
  scaling_points: tuple[int, ...] = (1, 2, 4, 10, 20, 50, 100, 334)
  chunk_points: int = 24
  chunk_sizes: tuple[int, ...] = (1, 2, 4, 8, 24)
  device_counts: tuple[int, ...] = (1, 2, 4)
  device_points: int = 16
  train_seeds: tuple[int, ...] = (1, 8, 64)
  train_chunk_steps: int = 200
  torch_train_steps: int = 300
  matmul_sizes: tuple[int, ...] = (1024, 2048)
  repeats: int = 10
  torch_threads: int = 2

  def __post_init__(self):
    if self.train_steps % max(self.checkpoints + (self.grid_checkpoints,)):
      raise ValueError(
        f"train_steps={self.train_steps} is invalid: must be a "
        "multiple of max(checkpoints, grid_checkpoints)="
        f"{max(self.checkpoints + (self.grid_checkpoints,))}"
      )


def get_config(quick: bool) -> BenchConfig:
  """The full benchmark, or its quick version (fewer C, smaller sweeps)."""
  if not quick:
    return BenchConfig()
  return BenchConfig(
    checkpoints=(1, 10),
    grid_checkpoints=1,
    scaling_points=(1, 2, 4, 10),
    chunk_points=8,
    chunk_sizes=(1, 2, 4, 8),
    device_points=8,
    train_seeds=(1, 8),
    train_chunk_steps=100,
    torch_train_steps=200,
    repeats=5,
  )


def config_json(cfg: BenchConfig) -> dict:
  return dataclasses.asdict(cfg)


def config_from_json(spec: dict) -> BenchConfig:
  fields = dict(spec)
  fields["sgld"] = SGLDConfig(**fields["sgld"])
  fields = {
    k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()
  }
  return BenchConfig(**fields)


def data_config(cfg: BenchConfig) -> DataConfig:
  return DataConfig(p=cfg.p, train_frac=cfg.train_frac, num_train=cfg.num_train)


# ---------------------------------------------------------------- helpers


class CompileClock:
  """XLA backend compiles while active (a ``jax.monitoring`` listener).

  Attributes:
    seconds: compile seconds in all.
    by_function: ``{function name: {"count", "seconds"}}``.
  """

  def __init__(self):
    self.seconds = 0.0
    self.by_function: dict[str, dict] = {}

  def _listen(self, event: str, duration: float, **kwargs) -> None:
    if event == COMPILE_EVENT:
      self.seconds += duration
      row = self.by_function.setdefault(
        str(kwargs.get("fun_name", "?")), {"count": 0, "seconds": 0.0}
      )
      row["count"] += 1
      row["seconds"] += duration

  def summary(self) -> dict:
    """Compile count and seconds, and the count of the costliest program
    (``program``: the function whose compiles took longest in all)."""
    rows = self.by_function
    name = max(rows, key=lambda k: rows[k]["seconds"]) if rows else None
    return {
      "compiles": sum(r["count"] for r in rows.values()),
      "compile_seconds": self.seconds,
      "program": name,
      "program_compiles": rows[name]["count"] if name else 0,
      "compiles_by_function": rows,
    }

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)


def median_seconds(fn: Callable, *args, repeats: int) -> float:
  """Median wall time of ``fn(*args)`` (blocked on), after two warm calls."""
  for _ in range(2):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def spread(total: int, count: int) -> np.ndarray:
  """``count`` indices spread evenly over ``range(total)``, ending last."""
  return np.round(np.linspace(total / count - 1, total - 1, count)).astype(int)


def take(tree, idx) -> dict:
  return jax.tree.map(lambda x: np.asarray(x)[idx], tree)


def load() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def steps_per_chain(cfg: SGLDConfig) -> int:
  return cfg.num_burnin + cfg.num_draws


def short(cfg: BenchConfig, **changes) -> SGLDConfig:
  """The reference SGLD config with the scaling sweeps' shorter chains."""
  return dataclasses.replace(
    cfg.sgld,
    num_burnin=cfg.scaling_burnin,
    num_draws=cfg.scaling_draws,
    **changes,
  )


def points(ref: dict, count: int) -> dict:
  """``count`` points cycling through the reference checkpoints."""
  total = jax.tree.leaves(ref["checkpoints"])[0].shape[0]
  return take(ref["checkpoints"], np.arange(count) % total)


def num_points(params) -> int:
  return jax.tree.leaves(params)[0].shape[0]


def memory(stats) -> dict:
  """Byte counts of an XLA memory analysis, with the peak they add up to."""
  sizes = {
    "temp_bytes": stats.temp_size_in_bytes,
    "argument_bytes": stats.argument_size_in_bytes,
    "output_bytes": stats.output_size_in_bytes,
    "alias_bytes": stats.alias_size_in_bytes,
  }
  sizes["peak_bytes"] = (
    sizes["temp_bytes"]
    + sizes["argument_bytes"]
    + sizes["output_bytes"]
    - sizes["alias_bytes"]
  )
  return sizes


def chunk_used(sweep: llc.Sweep, num_items: int) -> int:
  """Items per chunk of a run of ``num_items``: ``sweep.chunk_size``, or all
  the items (padded to a multiple of the device count) when fewer."""
  devices = len(sweep.devices)
  return min(sweep.chunk_size, devices * math.ceil(num_items / devices))


def reference_weights(cfg: BenchConfig, key) -> dict:
  """Trains the recipe once; returns data, checkpoints and a summary."""
  every = cfg.train_steps // max(cfg.checkpoints + (cfg.grid_checkpoints,))
  train_cfg = TrainConfig(
    batch_size=cfg.sgld.batch_size,
    num_steps=cfg.train_steps,
    log_every=every,
    ckpt_every=every,
    chunk_steps=cfg.train_steps,
  )
  key_data, key_train = jax.random.split(key)
  dataset = data.modular_arithmetic(key_data, data_config(cfg))
  start = time.perf_counter()
  result = train.train(
    key_train,
    dataset,
    ModelConfig(p=cfg.p, width=cfg.width),
    train_cfg,
    progress=False,
  )
  ckpts = jax.tree.map(lambda x: np.asarray(x[0]), result.checkpoints)
  return {
    "dataset": dataset,
    "checkpoints": ckpts,
    "ckpt_steps": result.ckpt_steps,
    "summary": {
      "num_train": dataset.num_train,
      "num_params": model.num_params(jax.tree.map(lambda x: x[0], ckpts)),
      "train_steps": cfg.train_steps,
      "seconds_with_compile": time.perf_counter() - start,
      "final_train_acc": float(result.metrics["train_acc"][0, -1]),
      "final_val_acc": float(result.metrics["val_acc"][0, -1]),
    },
  }


class Engine:
  """The reference loss and training set, with LLC sweeps compiled for them.

  Attributes:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    data: the training set (device arrays).
    n: its size.
  """

  def __init__(self, loss_fn: Callable, train_batch: data.Batch):
    self.loss_fn = loss_fn
    self.data = jax.tree.map(jnp.asarray, train_batch)
    self.n = int(train_batch.labels.shape[0])

  def sweep(self, cfg: SGLDConfig, params, num_settings: int = 1) -> llc.Sweep:
    """``llc.compile_sweep`` for points shaped like ``params`` (points
    first); it compiles on first use."""
    return llc.compile_sweep(
      self.loss_fn, cfg, self.data, params, 1, num_settings=num_settings
    )

  def run(self, key, cfg: SGLDConfig, params, settings=None) -> llc.LLCResult:
    """One ``llc.estimate_llc`` call (it compiles its own program)."""
    return llc.estimate_llc(
      key,
      self.loss_fn,
      params,
      self.data,
      cfg,
      1,
      settings=settings,
      progress=False,
      warn=False,
    )

  def timed(
    self, key, cfg: SGLDConfig, params, warm: str = "chunk", repeats: int = 1
  ) -> tuple[llc.LLCResult, dict]:
    """Compiles a sweep for ``params`` (points first) and times its run.

    Args:
      key: PRNG key.
      cfg: SGLD config.
      params: pytree with one leading point axis.
      warm: ``chunk`` runs the sweep once on one chunk first; ``compile``
        only compiles it (``Sweep.memory_analysis``, recorded), for sweeps
        where one chunk is the whole run.
      repeats: timed runs; the fastest is kept.

    Returns:
      (result, timing dict with seconds, steps_per_second, chunk (items per
      chunk of this run), and the backend compile seconds that fell inside
      the timed runs).
    """
    count = num_points(params)
    start = time.perf_counter()
    sweep = self.sweep(cfg, params)
    chunk = chunk_used(sweep, count)
    stats = None
    if warm == "chunk":
      sweep.run(
        key, take(params, slice(0, chunk)), 1, progress=False, warn=False
      )
    else:
      stats = memory(sweep.memory_analysis())
    warm_seconds = time.perf_counter() - start
    times = []
    with CompileClock() as clock:
      for _ in range(repeats):
        start = time.perf_counter()
        result = sweep.run(key, params, 1, progress=False, warn=False)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    steps = count * cfg.num_chains * steps_per_chain(cfg)
    timing = {
      "seconds": seconds,
      "steps_per_second": steps / seconds,
      "chain_steps": steps,
      "chunk": chunk,
      "warm_seconds": warm_seconds,
      "compile_seconds_in_timed_call": clock.seconds,
    }
    if stats is not None:
      timing["memory"] = stats
    return result, timing
