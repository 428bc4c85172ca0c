"""Speed of the LLC engine and the trainer, side by side with PyTorch.

Command::

  python -m experiments.bench [--quick] [--out DIR] [--seed N]
                              [--device-report] [--no-torch]
                              [--torch-threads N]

(``make bench`` runs the quick version in ``.venv-bench``, which has the
``bench`` extra: torch 2.13.0 CPU and devinterp 1.3.2.)

All parts run in one process, on one machine, in one run, so the ratios are
measured side by side (SPEC §6):

1. **LLC.** The reference workload (p=53, K=1024, train frac 0.4, centered
   MSE, SGLD eps 5e-4, gamma 5, nbeta = 128/ln 128, minibatch 128, 3 chains x
   (100 burn-in + 500 draws)) at C checkpoints of one slt_jax training run
   (3000 steps of the recipe): (a) ``slt_jax.llc.estimate_llc`` warm (the
   engine's program is run once on one chunk first, so compilation is
   excluded; backend compile time inside the timed call is recorded), (b)
   devinterp's ``estimate_learning_coeff_with_summary`` on the same weights
   copied into a PyTorch model (one-hot inputs, ``nn.Linear`` without bias),
   (c) a plain eager PyTorch loop over chains. Reports wall time, SGLD steps/s
   (chains x steps x C / time), the ratios, and whether (a) and (b) agree.
2. **Roofline.** float32 matmul FLOP/s (square and the model's shapes, one
   chain and a CPU chunk's chains batched), the cost of one standard normal
   per PRNG implementation (drawn as the kernel draws it, with
   ``sgld.gaussian_noise`` over the parameter pytree), and the time of one
   chain-step split into matmul at the measured peak, noise (its in-situ
   cost: the same chunk timed with the draws replaced by zeros) and the rest.
   One SGLD step executes 14·B·K·p matmul FLOPs (``slt_jax.model.apply``
   forms the first layer as a one-hot matmul: forward ``x Wᵀ`` and ``h² Vᵀ``,
   backward ``dV``, ``dh`` and ``dW``; elementwise work not counted), of which
   the 6·B·K·p of the gather form are necessary; both are reported.
3. **Scaling.** Throughput against the number of points batched in one
   program (chunk = all points), time and XLA peak memory against
   ``SGLDConfig.chunk_size``, and time against the number of forced host
   devices (subprocesses with ``--xla_force_host_platform_device_count``).
4. **Training.** Steps/s of ``slt_jax.train.train`` for 1, 8 and 64 vmapped
   runs against a plain PyTorch Adam loop (coupled L2) on the same model.

PyTorch runs single-process with ``torch.set_num_threads(2)``, or 1 thread
when a first check finds 2 threads much slower (busy cores; see
``BenchConfig.torch_threads``, ``--torch-threads``). Without torch
(or with ``--no-torch``) the PyTorch parts are skipped with a message, as is
(b) without devinterp. ``--device-report`` prints one compact JSON line of
the headline numbers. Writes ``DIR/results.json``, ``DIR/llc_speed.png`` and
``DIR/scaling.png`` (default ``figures/bench/``).

Expected runtime on 2 idle CPU cores: about 17 minutes (``--quick``: about
4); busy cores can double it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from experiments import common
from slt_jax import data, io, llc, losses, model, plotting, sgld, train
from slt_jax.config import (NOISE_IMPLS, DataConfig, ModelConfig, SGLDConfig,
                            TrainConfig)

NAME = "bench"
# nbeta = B / ln B at B = 128, passed as a number so that every implementation
# uses the same value.
REFERENCE_NBETA = 128 / math.log(128)
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# Plain-loop speed ratio (1 thread / ``torch_threads``) above which the
# PyTorch baselines fall back to one thread.
OVERSUBSCRIBED = 1.5


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  """What the benchmark measures.

  Attributes:
    p, width, train_frac: the reference model and data set.
    num_train: training pairs; overrides ``train_frac`` (SPEC §6 uses 1123
      at p=53, where ``round(0.4 * 53^2)`` would give 1124).
    train_steps: recipe steps of the run whose checkpoints are w*; must be a
      multiple of ``max(checkpoints)``.
    checkpoints: numbers of checkpoints C of the side-by-side LLC runs,
      spread evenly over training (C = 1 is the final weights).
    sgld: the reference SGLD settings.
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
      step_size=5e-4, nbeta=REFERENCE_NBETA, localization=5.0, num_chains=3,
      num_draws=500, num_burnin=100, batch_size=128)
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
    if self.train_steps % max(self.checkpoints):
      raise ValueError(f"train_steps={self.train_steps} is invalid: must be a "
                       f"multiple of max(checkpoints)={max(self.checkpoints)}")


def get_config(quick: bool) -> BenchConfig:
  """The full benchmark, or its quick version (fewer C, smaller sweeps)."""
  if not quick:
    return BenchConfig()
  return BenchConfig(checkpoints=(1, 10), scaling_points=(1, 2, 4, 10),
                     chunk_points=8, chunk_sizes=(1, 2, 4, 8), device_points=8,
                     train_seeds=(1, 8), train_chunk_steps=100,
                     torch_train_steps=200, repeats=5)


# ---------------------------------------------------------------- helpers


class _CompileClock:
  """Sums XLA backend compile seconds while active (a monitoring listener)."""

  def __init__(self):
    self.seconds = 0.0

  def _listen(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event == _COMPILE_EVENT:
      self.seconds += duration

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)


def _median_seconds(fn: Callable, *args, repeats: int) -> float:
  """Median wall time of ``fn(*args)`` (blocked on), after two warm calls."""
  for _ in range(2):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _spread(total: int, count: int) -> np.ndarray:
  """``count`` indices spread evenly over ``range(total)``, ending last."""
  return np.round(np.linspace(total / count - 1, total - 1, count)).astype(int)


def _take(tree, idx) -> dict:
  return jax.tree.map(lambda x: np.asarray(x)[idx], tree)


def _load() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def _steps_per_chain(cfg: SGLDConfig) -> int:
  return cfg.num_burnin + cfg.num_draws


class _Engine:
  """``estimate_llc`` on one data set and loss, with its compiled programs."""

  def __init__(self, loss_fn: Callable, train_batch: data.Batch):
    self.loss_fn = loss_fn
    self.data = jax.tree.map(jnp.asarray, train_batch)
    self.n = int(train_batch.labels.shape[0])
    self.mesh = Mesh(np.array(jax.devices()), ("points",))

  def program(self, cfg: SGLDConfig):
    """The engine's cached jitted program for ``cfg`` (slt_jax.llc._program)."""
    return llc._program(self.loss_fn, cfg, cfg.resolve_nbeta(self.n), self.n,
                        None, self.mesh)

  def chunk(self, cfg: SGLDConfig, num_points: int, params) -> int:
    """Points per chunk that ``estimate_llc`` picks for ``num_points``."""
    keys = jax.random.split(jax.random.key(0), num_points)
    return llc._auto_chunk_size(self.program(cfg), keys, params, self.data,
                                cfg, num_points, len(jax.devices()))

  def memory(self, cfg: SGLDConfig, params, chunk: int) -> dict:
    """XLA's memory analysis of the program compiled for one chunk."""
    keys = jax.random.split(jax.random.key(0), chunk)
    num_points = jax.tree.leaves(params)[0].shape[0]
    stats = self.program(cfg).lower(
        keys, _take(params, np.arange(chunk) % num_points), self.data
    ).compile().memory_analysis()
    sizes = {"temp_bytes": stats.temp_size_in_bytes,
             "argument_bytes": stats.argument_size_in_bytes,
             "output_bytes": stats.output_size_in_bytes,
             "alias_bytes": stats.alias_size_in_bytes}
    sizes["peak_bytes"] = (sizes["temp_bytes"] + sizes["argument_bytes"]
                           + sizes["output_bytes"] - sizes["alias_bytes"])
    return sizes

  def run(self, key, cfg: SGLDConfig, params) -> llc.LLCResult:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      return llc.estimate_llc(key, self.loss_fn, params, self.data, cfg,
                              batch_ndim=1, progress=False)

  def timed(self, key, cfg: SGLDConfig, params, warm: str = "chunk"
            ) -> tuple[llc.LLCResult, dict]:
    """Runs warm and times ``estimate_llc`` over ``params`` (points first).

    Args:
      key: PRNG key.
      cfg: SGLD config.
      params: pytree with one leading point axis.
      warm: ``chunk`` runs the engine once on one chunk first; ``compile``
        only compiles the chunk program ahead of time (for sweeps where one
        chunk is the whole run).

    Returns:
      (result, timing dict with seconds, steps_per_second, chunk, and the
      backend compile seconds that fell inside the timed call).
    """
    num_points = jax.tree.leaves(params)[0].shape[0]
    chunk = self.chunk(cfg, num_points, params)
    start = time.perf_counter()
    memory = None
    if warm == "chunk":
      self.run(key, cfg, _take(params, slice(0, chunk)))
    else:
      memory = self.memory(cfg, params, chunk)
    warm_seconds = time.perf_counter() - start
    with _CompileClock() as clock:
      start = time.perf_counter()
      result = self.run(key, cfg, params)
      seconds = time.perf_counter() - start
    steps = num_points * cfg.num_chains * _steps_per_chain(cfg)
    timing = {"seconds": seconds, "steps_per_second": steps / seconds,
              "chain_steps": steps, "chunk": chunk,
              "warm_seconds": warm_seconds,
              "compile_seconds_in_timed_call": clock.seconds}
    if memory is not None:
      timing["memory"] = memory
    return result, timing


def _import_torch(no_torch: bool) -> tuple[Optional[object], dict]:
  """The ``bench_torch`` module (or None) and a status record."""
  if no_torch:
    return None, {"available": False, "message": "skipped: --no-torch"}
  try:
    import torch
    from experiments import bench_torch
  except ImportError as err:
    message = (f"PyTorch parts skipped: torch is not importable ({err}); "
               "install the bench extra (make bench)")
    print(message)
    return None, {"available": False, "message": message}
  status = {"available": True, "torch": torch.__version__}
  try:
    import devinterp  # noqa: F401
    from importlib.metadata import version
    status["devinterp"] = version("devinterp")
  except ImportError as err:
    status["devinterp"] = None
    status["devinterp_message"] = (
        f"devinterp parts skipped: devinterp is not importable ({err})")
    print(status["devinterp_message"])
  return bench_torch, status


def _chain_stats(per_chain) -> tuple[float, float]:
  x = np.asarray(per_chain, np.float64)
  return float(np.mean(x)), float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def _agreement(rows: list[dict], other: str, num_chains: int) -> dict:
  """Whether ``other``'s estimates match slt_jax's (same w*, equal work).

  Per checkpoint (every C's rows): ``within_chain_std`` when |difference of
  means| <= the larger chain std; ``within_2se`` when it is <= 2 standard
  errors of the difference, ``se = sqrt((s_a^2 + s_b^2) / chains)`` (with 3
  chains the std is itself noisy, so about 85% is the rate to expect for two
  identical samplers). Pooled: the mean difference over all compared
  checkpoints in units of its standard error (``bias_z``); the two agree when
  |bias_z| < 3, i.e. no systematic difference is detectable.
  """
  diffs, ses, within_std, within_se = [], [], [], []
  for row in rows:
    if row.get(other) is None:
      continue
    for a, b in zip(row["slt_jax"]["per_checkpoint"],
                    row[other]["per_checkpoint"]):
      diff = b["mean"] - a["mean"]
      se = math.sqrt((a["std"] ** 2 + b["std"] ** 2) / num_chains)
      diffs.append(diff)
      ses.append(se)
      within_std.append(abs(diff) <= max(a["std"], b["std"]))
      within_se.append(abs(diff) <= 2 * se)
  if not diffs:
    return {}
  bias_se = math.sqrt(sum(se ** 2 for se in ses)) / len(ses)
  bias_z = float(np.mean(diffs)) / bias_se if bias_se > 0 else 0.0
  return {"num_compared": len(diffs), "mean_difference": float(np.mean(diffs)),
          "mean_difference_se": bias_se, "bias_z": bias_z,
          "mean_abs_z": float(np.mean(np.abs(np.asarray(diffs)
                                             / np.maximum(ses, 1e-12)))),
          "fraction_within_chain_std": float(np.mean(within_std)),
          "fraction_within_2se": float(np.mean(within_se)),
          "agree": bool(abs(bias_z) < 3)}


# ---------------------------------------------------------------- parts


def _data_config(cfg: BenchConfig) -> DataConfig:
  return DataConfig(p=cfg.p, train_frac=cfg.train_frac,
                    num_train=cfg.num_train)


def reference_weights(cfg: BenchConfig, key) -> dict:
  """Trains the recipe once; returns data, checkpoints and a summary."""
  every = cfg.train_steps // max(cfg.checkpoints)
  train_cfg = TrainConfig(batch_size=cfg.sgld.batch_size,
                          num_steps=cfg.train_steps, log_every=every,
                          ckpt_every=every, chunk_steps=cfg.train_steps)
  key_data, key_train = jax.random.split(key)
  dataset = data.modular_arithmetic(key_data, _data_config(cfg))
  start = time.perf_counter()
  result = train.train(key_train, dataset,
                       ModelConfig(p=cfg.p, width=cfg.width), train_cfg,
                       progress=False)
  ckpts = jax.tree.map(lambda x: np.asarray(x[0]), result.checkpoints)
  return {"dataset": dataset, "checkpoints": ckpts,
          "ckpt_steps": result.ckpt_steps,
          "summary": {"num_train": dataset.num_train,
                      "num_params": model.num_params(
                          jax.tree.map(lambda x: x[0], ckpts)),
                      "train_steps": cfg.train_steps,
                      "seconds_with_compile": time.perf_counter() - start,
                      "final_train_acc": float(
                          result.metrics["train_acc"][0, -1]),
                      "final_val_acc": float(
                          result.metrics["val_acc"][0, -1])}}


def _pick_torch_threads(bt, cfg: BenchConfig, net, x_NxD, y_NxP, nbeta: float,
                        fixed: Optional[int]) -> dict:
  """Measures the plain loop at 1 and ``cfg.torch_threads`` threads, sets
  the thread count (``fixed``, else the configured one unless 1 thread is
  ``OVERSUBSCRIBED`` times faster) and returns the record."""
  sgld = cfg.sgld
  rates = bt.thread_check(
      net, x_NxD, y_NxP, tuple(sorted({1, cfg.torch_threads})),
      min(100, _steps_per_chain(sgld)), step_size=sgld.step_size, nbeta=nbeta,
      localization=sgld.localization, batch_size=sgld.batch_size)
  threads = fixed or cfg.torch_threads
  if fixed is None and rates["1"] > OVERSUBSCRIBED * rates[str(threads)]:
    print(f"warning: 1 torch thread is {rates['1'] / rates[str(threads)]:.1f}x "
          f"faster than {threads} (the cores are busy); the PyTorch baselines "
          "use 1 thread")
    threads = 1
  bt.torch.set_num_threads(threads)
  return {"plain_loop_steps_per_second_by_threads": rates,
          "torch_threads_used": threads}


def llc_side_by_side(cfg: BenchConfig, engine: _Engine, ref: dict, key,
                     bt, torch_status: dict, seed: int,
                     torch_threads: Optional[int] = None) -> list[dict]:
  """Part 1: the reference workload at each C with (a), (b) and (c).

  The PyTorch baselines alternate checkpoint by checkpoint, so that a change
  of load on a shared machine hits both alike; before each checkpoint their
  thread count is checked (``_pick_torch_threads``; ``torch_threads`` fixes
  it). Each row records the load average around it.
  """
  sgld = cfg.sgld
  nbeta = sgld.resolve_nbeta(engine.n)
  steps = _steps_per_chain(sgld)
  total = jax.tree.leaves(ref["checkpoints"])[0].shape[0]
  methods = []
  if bt is not None:
    x_NxD, y_NxP = bt.one_hot_data(ref["dataset"].train.pairs,
                                   ref["dataset"].train.labels, cfg.p)
    if torch_status.get("devinterp"):
      methods.append(("devinterp", bt.devinterp_llc))
    methods.append(("torch_loop", bt.plain_llc))
  rows = []
  for count in cfg.checkpoints:
    load_start = _load()
    idx = _spread(total, count)
    params = _take(ref["checkpoints"], idx)
    result, timing = engine.timed(key, sgld, params)
    row = {"C": count, "checkpoint_steps": ref["ckpt_steps"][idx].tolist(),
           "slt_jax": {**timing, "per_checkpoint": [
               dict(zip(("mean", "std"), _chain_stats(result.per_chain[i])),
                    per_chain=result.per_chain[i].tolist())
               for i in range(count)]}}
    print(f"C={count}: slt_jax {timing['seconds']:.1f} s, "
          f"{timing['steps_per_second']:.0f} SGLD steps/s")
    seconds = {name: 0.0 for name, _ in methods}
    per_point = {name: [] for name, _ in methods}
    threads = []
    for j, i in enumerate(idx):
      if methods:
        threads.append(_pick_torch_threads(
            bt, cfg, bt.make_model(ref["checkpoints"]["W"][i],
                                   ref["checkpoints"]["V"][i]),
            x_NxD, y_NxP, nbeta, torch_threads))
      for name, fn in methods:
        net = bt.make_model(ref["checkpoints"]["W"][i],
                            ref["checkpoints"]["V"][i])
        out = fn(net, x_NxD, y_NxP, step_size=sgld.step_size, nbeta=nbeta,
                 localization=sgld.localization, num_chains=sgld.num_chains,
                 num_draws=sgld.num_draws, num_burnin=sgld.num_burnin,
                 batch_size=sgld.batch_size, seed=seed + 1000 * j + 1)
        seconds[name] += out["seconds"]
        per_point[name].append(dict(zip(("mean", "std"),
                                        _chain_stats(out["per_chain"])),
                                    per_chain=out["per_chain"]))
    for name, _ in methods:
      chain_steps = count * sgld.num_chains * steps
      row[name] = {"seconds": seconds[name], "chain_steps": chain_steps,
                   "steps_per_second": chain_steps / seconds[name],
                   "per_checkpoint": per_point[name]}
      row[f"ratio_vs_{name}"] = (timing["steps_per_second"]
                                 / row[name]["steps_per_second"])
      print(f"C={count}: {name} {seconds[name]:.1f} s, "
            f"{row[name]['steps_per_second']:.0f} SGLD steps/s; slt_jax is "
            f"{row[f'ratio_vs_{name}']:.2f}x")
    if threads:
      row["torch_threads"] = threads
      torch_status.update(threads[-1])
    row["load_average"] = {"start": load_start, "end": _load()}
    rows.append(row)
  return rows


def _noise_ablation(cfg: BenchConfig, engine: _Engine, ref: dict, key
                    ) -> dict:
  """Seconds per chain-step of one CPU chunk with and without its noise.

  The noise-free run patches ``sgld.gaussian_noise`` to return zeros in this
  process (and clears the engine's program cache around it), so the same
  compiled program minus the draws is timed: the in-situ cost of the noise,
  which XLA fuses into the update and which is lower than drawing the
  normals alone. Best of three timings each.
  """
  sgld_cfg = dataclasses.replace(_short(cfg), num_draws=4 * cfg.scaling_draws)
  params = _points(ref, max(1, llc.CPU_CHAINS_PER_CHUNK // sgld_cfg.num_chains))
  draw = sgld.gaussian_noise
  seconds = {}
  try:
    for name in ("with_noise", "without_noise"):
      llc._PROGRAMS.clear()
      if name == "without_noise":
        sgld.gaussian_noise = lambda k, like, impl: jax.tree.map(
            jnp.zeros_like, like)
      seconds[name] = min(
          1.0 / engine.timed(key, sgld_cfg, params)[1]["steps_per_second"]
          for _ in range(3))
  finally:
    sgld.gaussian_noise = draw
    llc._PROGRAMS.clear()
  seconds["noise_in_situ"] = seconds["with_noise"] - seconds["without_noise"]
  return seconds


def roofline(cfg: BenchConfig, llc_rows: list[dict], bt, engine: _Engine,
             ref: dict, llc_key) -> dict:
  """Part 2: matmul FLOP/s, normal cost, and the split of one chain-step."""
  batch, width, p = cfg.sgld.batch_size, cfg.width, cfg.p
  num_params = 3 * p * width
  chains = max(1, llc.CPU_CHAINS_PER_CHUNK // cfg.sgld.num_chains
               ) * cfg.sgld.num_chains
  matmul = jax.jit(jnp.matmul)
  key = jax.random.key(0)
  out = {"flops_per_step": 14 * batch * width * p,
         "gather_form_flops_per_step": 6 * batch * width * p,
         "flops_note": "14*B*K*p executed by the one-hot form: forward x W^T "
                       "and h^2 V^T, backward dV, dh and dW (elementwise work "
                       "not counted); the gather form would need 6*B*K*p",
         "num_normals_per_step": num_params, "square": {}, "model_shapes": {}}
  for n in cfg.matmul_sizes:
    a, b = (jax.random.normal(k, (n, n)) for k in jax.random.split(key))
    seconds = _median_seconds(matmul, a, b, repeats=cfg.repeats)
    out["square"][str(n)] = {"seconds": seconds,
                             "gflops": 2 * n ** 3 / seconds / 1e9}
  shapes = {"forward (B,2p)@(2p,K)": ((batch, 2 * p), (2 * p, width)),
            "forward (B,K)@(K,p)": ((batch, width), (width, p)),
            "backward dV (p,B)@(B,K)": ((p, batch), (batch, width)),
            "backward dh (B,p)@(p,K)": ((batch, p), (p, width)),
            "backward dW (2p,B)@(B,K)": ((2 * p, batch), (batch, width))}
  step_matmul_seconds = {"single": 0.0, "batched": 0.0}
  for name, (sa, sb) in shapes.items():
    for mode, lead in (("single", ()), ("batched", (chains,))):
      a = jax.random.normal(key, lead + sa)
      b = jax.random.normal(jax.random.fold_in(key, 1), lead + sb)
      seconds = _median_seconds(matmul, a, b, repeats=cfg.repeats)
      flops = 2 * math.prod(sa) * sb[-1] * (chains if lead else 1)
      out["model_shapes"][f"{name} x{lead[0] if lead else 1}"] = {
          "seconds": seconds, "gflops": flops / seconds / 1e9}
      step_matmul_seconds[mode] += seconds / (chains if lead else 1)
  square_peak = max(v["gflops"] for v in out["square"].values()) * 1e9
  model_peak = out["flops_per_step"] / step_matmul_seconds["batched"]
  out["square_peak_gflops"] = square_peak / 1e9
  out["model_shapes_gflops"] = {
      mode: out["flops_per_step"] / s / 1e9
      for mode, s in step_matmul_seconds.items()}
  # Noise drawn as the kernel draws it: sgld.gaussian_noise over the
  # parameter pytree, one chain or vmapped over a chunk's chains; and, for
  # comparison, one flat vector per chain.
  like = {"W": jnp.zeros((width, 2 * p)), "V": jnp.zeros((p, width))}
  flat = jnp.zeros((num_params,))
  keys = jax.random.split(jax.random.key(0), chains)
  normals = {}
  for impl in NOISE_IMPLS:
    per_normal = {}
    for name, tree, batched in (("ns_per_normal", like, False),
                                ("ns_per_normal_batched", like, True),
                                ("ns_per_normal_flat_batched", flat, True)):
      draw = lambda k, tree=tree, impl=impl: sgld.gaussian_noise(k, tree, impl)
      fn, arg = (jax.vmap(draw), keys) if batched else (draw, keys[0])
      seconds = _median_seconds(jax.jit(fn), arg, repeats=cfg.repeats)
      per_normal[name] = seconds / ((chains if batched else 1)
                                    * num_params) * 1e9
    normals[impl] = per_normal
  if bt is not None:
    normals["torch.randn"] = {"ns_per_normal": bt.normal_seconds(
        num_params, cfg.repeats) / num_params * 1e9}
  out["normals"] = normals
  ablation = _noise_ablation(cfg, engine, ref, llc_key)
  measured = ablation["with_noise"]
  noise = ablation["noise_in_situ"]
  matmul_at_model = out["flops_per_step"] / model_peak
  matmul_at_square = out["flops_per_step"] / square_peak
  out["step"] = {
      "measured_seconds": measured,
      "measured_note": "one CPU chunk, timed as is and without its noise "
                       "(_noise_ablation)",
      "without_noise_seconds": ablation["without_noise"],
      "sweep_seconds_per_step": 1.0 / llc_rows[-1]["slt_jax"]["steps_per_second"],
      "sweep_C": llc_rows[-1]["C"],
      "matmul_seconds_at_square_peak": matmul_at_square,
      "matmul_seconds_at_model_shape_peak": matmul_at_model,
      "noise_seconds": noise,
      "noise_seconds_drawn_alone": (
          normals[cfg.sgld.noise]["ns_per_normal_batched"] * 1e-9 * num_params),
      "other_seconds": measured - matmul_at_model - noise,
      "achieved_model_gflops": out["flops_per_step"] / measured / 1e9,
      "achieved_gather_form_gflops": (out["gather_form_flops_per_step"]
                                      / measured / 1e9),
      "fraction_of_roofline": (matmul_at_model + noise) / measured,
      "fraction_of_square_peak_roofline": (matmul_at_square + noise) / measured,
      "matmul_only_fraction_of_square_peak": matmul_at_square / measured}
  s = out["step"]
  print(f"roofline: square peak {out['square_peak_gflops']:.0f} GFLOP/s, model "
        f"shapes {model_peak / 1e9:.0f}; {cfg.sgld.noise} "
        f"{normals[cfg.sgld.noise]['ns_per_normal_batched']:.1f} ns/normal "
        f"alone; step {1e3 * measured:.2f} ms = matmul "
        f"{1e3 * matmul_at_model:.2f} + noise in situ {1e3 * noise:.2f} + "
        f"other {1e3 * s['other_seconds']:.2f}; "
        f"{100 * s['fraction_of_roofline']:.0f}% of the roofline")
  return out


def _short(cfg: BenchConfig, **changes) -> SGLDConfig:
  return dataclasses.replace(cfg.sgld, num_burnin=cfg.scaling_burnin,
                             num_draws=cfg.scaling_draws, **changes)


def _points(ref: dict, count: int) -> dict:
  total = jax.tree.leaves(ref["checkpoints"])[0].shape[0]
  return _take(ref["checkpoints"], np.arange(count) % total)


def scaling(cfg: BenchConfig, engine: _Engine, ref: dict, key,
            w_star_path: str, seed: int) -> dict:
  """Part 3: batch width, chunk size and forced device count."""
  width_rows = []
  for count in cfg.scaling_points:
    sgld = _short(cfg, chunk_size=count)
    params = _points(ref, count)
    _, timing = engine.timed(key, sgld, params, warm="compile")
    width_rows.append({"points": count,
                       "batched_chains": count * sgld.num_chains, **timing})
    print(f"batched chains {count * sgld.num_chains}: "
          f"{timing['steps_per_second']:.0f} SGLD steps/s")
  chunk_rows = []
  params = _points(ref, cfg.chunk_points)
  for size in (None,) + tuple(cfg.chunk_sizes):
    sgld = _short(cfg, chunk_size=size)
    _, timing = engine.timed(key, sgld, params, warm="compile")
    chunk_rows.append({"chunk_size": size if size else "auto", **timing})
    print(f"chunk_size {size or 'auto'} ({timing['chunk']} points): "
          f"{timing['seconds']:.2f} s, peak "
          f"{chunk_rows[-1]['memory']['peak_bytes'] / 2 ** 20:.0f} MiB")
  device_rows = []
  for count in cfg.device_counts:
    spec = {"cfg": _config_json(cfg), "w_star": w_star_path,
            "points": cfg.device_points, "seed": seed}
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform"
                        f"_device_count={count}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; from experiments import bench; "
         "bench.device_worker(sys.argv[1])", json.dumps(spec)],
        env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
      raise RuntimeError(f"device worker ({count} devices) failed:\n"
                         f"{proc.stderr[-3000:]}")
    device_rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{count} host devices: "
          f"{device_rows[-1]['steps_per_second']:.0f} SGLD steps/s")
  return {"batch_width": width_rows, "chunk_size": chunk_rows,
          "devices": device_rows}


def _config_json(cfg: BenchConfig) -> dict:
  return dataclasses.asdict(cfg)


def _config_from_json(spec: dict) -> BenchConfig:
  fields = dict(spec)
  fields["sgld"] = SGLDConfig(**fields["sgld"])
  fields = {k: tuple(v) if isinstance(v, list) else v
            for k, v in fields.items()}
  return BenchConfig(**fields)


def device_worker(spec_json: str) -> None:
  """Times the engine on all visible (forced host) devices; prints JSON.

  Run in a subprocess by ``scaling`` with ``XLA_FLAGS`` set, so that the
  device count is fixed before JAX starts.
  """
  spec = json.loads(spec_json)
  cfg = _config_from_json(spec["cfg"])
  saved = io.load_npz(spec["w_star"])
  ref = {"checkpoints": {"W": saved["W"], "V": saved["V"]}}
  dataset = data.modular_arithmetic(
      jax.random.split(jax.random.key(spec["seed"]))[0], _data_config(cfg))
  engine = _Engine(losses.make_loss("centered_mse"), dataset.train)
  _, timing = engine.timed(jax.random.key(spec["seed"]), _short(cfg),
                           _points(ref, spec["points"]))
  print(json.dumps({"devices": len(jax.devices()), "points": spec["points"],
                    **timing}))


def _max_rss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def training(cfg: BenchConfig, dataset: data.ModularData, key, bt,
             torch_threads: Optional[int] = None) -> dict:
  """Part 4: training steps/s, vmapped runs against a PyTorch loop.

  The PyTorch loop's thread count is chosen as in ``_pick_torch_threads``
  (from a short timing at 1 and ``cfg.torch_threads`` threads).
  """
  chunk = cfg.train_chunk_steps
  train_cfg = TrainConfig(batch_size=cfg.sgld.batch_size, num_steps=3 * chunk,
                          log_every=chunk, ckpt_every=chunk, chunk_steps=chunk)
  model_cfg = ModelConfig(p=cfg.p, width=cfg.width)
  runs = {}
  for seeds in cfg.train_seeds:
    result = train.train(key, dataset, model_cfg, train_cfg, seeds=seeds,
                         progress=False)
    total = result.steps_per_second
    runs[str(seeds)] = {"seeds": seeds, "steps_per_second": total,
                        "steps_per_second_per_run": total / seeds}
    print(f"training, {seeds} vmapped runs: {total:.0f} steps/s in all")
  out = {"config": dataclasses.asdict(train_cfg), "slt_jax": runs}
  if bt is not None:
    init = model.init(key, model_cfg)
    x_NxD, y_NxP = bt.one_hot_data(dataset.train.pairs, dataset.train.labels,
                                   cfg.p)
    run = lambda num_steps: bt.train_steps_per_second(
        np.asarray(init["W"]), np.asarray(init["V"]), x_NxD, y_NxP,
        lr=train_cfg.lr, weight_decay=train_cfg.weight_decay,
        batch_size=train_cfg.batch_size, num_steps=num_steps)
    rates = {}
    for count in sorted({1, cfg.torch_threads}):
      bt.torch.set_num_threads(count)
      rates[str(count)] = run(max(1, cfg.torch_train_steps // 10))
    threads = torch_threads or cfg.torch_threads
    if (torch_threads is None
        and rates["1"] > OVERSUBSCRIBED * rates[str(threads)]):
      threads = 1
    bt.torch.set_num_threads(threads)
    torch_sps = run(cfg.torch_train_steps)
    out["torch_loop"] = {"steps_per_second": torch_sps,
                         "threads": threads,
                         "steps_per_second_by_threads": rates}
    out["ratio_vs_torch_loop"] = {
        k: {"total": v["steps_per_second"] / torch_sps,
            "per_run": v["steps_per_second_per_run"] / torch_sps}
        for k, v in runs.items()}
    print(f"training, PyTorch loop ({threads} threads): {torch_sps:.0f} "
          "steps/s")
  return out


# ---------------------------------------------------------------- output


def _plot(payload: dict, out_dir: str) -> None:
  plt = plotting.plt
  rows = payload["llc"]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
  methods = [m for m in ("slt_jax", "devinterp", "torch_loop")
             if any(r.get(m) for r in rows)]
  ax = axes[0]
  xs = np.arange(len(rows))
  for j, name in enumerate(methods):
    vals = [r[name]["steps_per_second"] if r.get(name) else 0 for r in rows]
    ax.bar(xs + (j - (len(methods) - 1) / 2) * 0.25, vals, 0.25, label=name)
  ax.set_xticks(xs, [f"C={r['C']}" for r in rows])
  ax.set_ylabel("SGLD steps / s")
  ax.set_title("reference LLC workload")
  ax.legend()
  ax = axes[1]
  last = rows[-1]
  xs = np.arange(last["C"])
  for j, name in enumerate(methods):
    per = last[name]["per_checkpoint"]
    ax.errorbar(xs + 0.15 * (j - 1), [c["mean"] for c in per],
                [c["std"] for c in per], fmt="o", ms=3, capsize=2, label=name)
  ticks = xs[::max(1, last["C"] // 10)]
  ax.set_xticks(ticks, [str(last["checkpoint_steps"][i]) for i in ticks])
  ax.set_xlabel("training step of w*")
  ax.set_ylabel("LLC (mean ± chain std)")
  ax.set_title(f"estimates at C={last['C']}")
  ax.legend()
  ax = axes[2]
  tr = payload["training"]
  labels = [f"slt_jax x{k}" for k in tr["slt_jax"]]
  vals = [v["steps_per_second"] for v in tr["slt_jax"].values()]
  if "torch_loop" in tr:
    labels.append("torch loop")
    vals.append(tr["torch_loop"]["steps_per_second"])
  ax.bar(labels, vals, color="tab:gray")
  ax.set_ylabel("training steps / s (all runs)")
  ax.set_title("training")
  plotting.save_figure(fig, os.path.join(out_dir, "llc_speed.png"))

  sc = payload["scaling"]
  fig, axes = plt.subplots(1, 4, figsize=(20, 4.2), layout="constrained")
  ax = axes[0]
  ax.plot([r["batched_chains"] for r in sc["batch_width"]],
          [r["steps_per_second"] for r in sc["batch_width"]], "o-")
  ax.set_xscale("log")
  widths = [r["batched_chains"] for r in sc["batch_width"]]
  ax.set_xticks(widths, [str(w) for w in widths])
  ax.minorticks_off()
  ax.set_xlabel("chains batched in one program")
  ax.set_ylabel("SGLD steps / s")
  ax.set_title("batch width")
  ax = axes[1]
  by_chunk = sorted(sc["chunk_size"], key=lambda r: r["chunk"])
  chunks = [r["chunk"] for r in by_chunk]
  ax.plot(chunks, [r["seconds"] for r in by_chunk], "o-", color="C0")
  ax.set_xscale("log")
  ax.set_xticks(chunks, [str(c) for c in chunks])
  ax.minorticks_off()
  ax.set_xlabel(f"chunk size (points; {payload['config']['chunk_points']} "
                "points in all)")
  ax.set_ylabel("seconds", color="C0")
  twin = ax.twinx()
  twin.plot(chunks, [r["memory"]["peak_bytes"] / 2 ** 20 for r in by_chunk],
            "s--", color="C1")
  twin.set_ylabel("XLA peak MiB per chunk", color="C1")
  ax.set_title("chunk size")
  ax = axes[2]
  ax.plot([r["devices"] for r in sc["devices"]],
          [r["steps_per_second"] for r in sc["devices"]], "o-")
  ax.set_xticks([r["devices"] for r in sc["devices"]])
  ax.set_xlabel("forced host devices")
  ax.set_ylabel("SGLD steps / s")
  ax.set_title("devices")
  ax = axes[3]
  st = payload["roofline"]["step"]
  parts = [("matmul at model-shape peak",
            st["matmul_seconds_at_model_shape_peak"]),
           ("noise (in situ)", max(st["noise_seconds"], 0.0)),
           ("other", max(st["other_seconds"], 0.0))]
  bottom = 0.0
  for label, value in parts:
    ax.bar(["measured"], [1e3 * value], bottom=bottom, label=label)
    bottom += 1e3 * value
  ax.set_ylabel("ms per chain-step")
  ax.set_title(f"roofline: {100 * st['fraction_of_roofline']:.0f}% achieved")
  ax.legend(fontsize=8)
  plotting.save_figure(fig, os.path.join(out_dir, "scaling.png"))


def device_report(payload: dict) -> str:
  """One compact JSON line with the headline numbers."""
  rows = payload["llc"]
  report = {
      "backend": payload["environment"]["backend"],
      "devices": payload["environment"]["devices"],
      "llc_steps_per_s": {str(r["C"]): round(r["slt_jax"]["steps_per_second"])
                          for r in rows},
      "ratio_vs_devinterp": {str(r["C"]): r.get("ratio_vs_devinterp")
                             for r in rows},
      "ratio_vs_torch_loop": {str(r["C"]): r.get("ratio_vs_torch_loop")
                              for r in rows},
      "roofline_fraction": payload["roofline"]["step"]["fraction_of_roofline"],
      "square_peak_gflops": payload["roofline"]["square_peak_gflops"],
      "batch_width_steps_per_s": {
          str(r["batched_chains"]): round(r["steps_per_second"])
          for r in payload["scaling"]["batch_width"]},
      "train_steps_per_s": {k: round(v["steps_per_second"]) for k, v in
                            payload["training"]["slt_jax"].items()},
      "load": payload["load_average"],
  }
  return json.dumps(report, separators=(",", ":"), default=float)


def main(argv: Optional[Sequence[str]] = None) -> dict:
  """Runs the benchmark and writes its outputs; returns the payload."""

  def flags(parser):
    parser.add_argument("--device-report", action="store_true",
                        help="print one compact JSON line of the headline "
                             "numbers at the end")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the PyTorch and devinterp baselines")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="PyTorch threads (default: 2, or 1 when the "
                             "cores are busy enough that 1 is faster)")

  args = common.parse_args(__doc__, flags, argv)
  cfg = get_config(args.quick)
  out_dir = common.output_dir(NAME, args.out)
  load_start = _load()
  start = time.perf_counter()
  bt, torch_status = _import_torch(args.no_torch)
  if bt is not None:
    bt.torch.set_num_threads(args.torch_threads or cfg.torch_threads)
    bt.torch.manual_seed(args.seed)
  key_ref, key_llc, key_train = jax.random.split(jax.random.key(args.seed), 3)
  ref = reference_weights(cfg, key_ref)
  print(f"w*: {cfg.train_steps} recipe steps, final train/val acc "
        f"{ref['summary']['final_train_acc']:.2f}/"
        f"{ref['summary']['final_val_acc']:.2f}")
  engine = _Engine(losses.make_loss("centered_mse"), ref["dataset"].train)
  llc_rows = llc_side_by_side(cfg, engine, ref, key_llc, bt, torch_status,
                              args.seed, args.torch_threads)
  roof = roofline(cfg, llc_rows, bt, engine, ref, key_llc)
  with tempfile.TemporaryDirectory() as tmp:
    w_star_path = os.path.join(tmp, "w_star.npz")
    io.save_npz(w_star_path, ref["checkpoints"])
    scale = scaling(cfg, engine, ref, key_llc, w_star_path, args.seed)
  train_part = training(cfg, ref["dataset"], key_train, bt, args.torch_threads)
  payload = {
      "config": {**dataclasses.asdict(cfg), "quick": args.quick,
                 "seed": args.seed},
      "load_average": {"start": load_start, "end": _load()},
      "baselines": torch_status,
      "reference": {**ref["summary"],
                    "nbeta": cfg.sgld.resolve_nbeta(engine.n),
                    "steps_per_chain": _steps_per_chain(cfg.sgld)},
      "llc": llc_rows,
      "agreement": {name: _agreement(llc_rows, name, cfg.sgld.num_chains)
                    for name in ("devinterp", "torch_loop")},
      "roofline": roof,
      "scaling": scale,
      "training": train_part,
      "max_rss_bytes": _max_rss(),
      "wall_seconds": time.perf_counter() - start,
  }
  path = common.write_results(out_dir, payload)
  payload = io.load_json(path)
  _plot(payload, out_dir)
  loads = payload["load_average"]
  print(f"wrote {path} in {payload['wall_seconds']:.0f} s; load average "
        f"{loads['start']} -> {loads['end']}")
  if args.device_report:
    print(device_report(payload))
  return payload


if __name__ == "__main__":
  main()
