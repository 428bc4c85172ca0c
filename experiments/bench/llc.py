"""Part 1 (LLC throughput against devinterp and PyTorch) and the settings grid.

``side_by_side`` times the reference workload (p=53, K=1024) at each C with (a)
slt_jax warm, (b) devinterp, (c) a plain PyTorch loop and (d) the blackjax
peer (``blackjax_peer``, where blackjax is installed); ``agreement``
compares their estimates. ``settings_grid`` (issue 11) times a grid of SGLD
settings as one ``estimate_llc`` call against one call per setting.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Optional

import jax
import numpy as np

from experiments.bench import workload
from slt_jax.llc import SGLDSettings

# slt_jax is timed twice: with the configured noise (None; the
# ``ratio_vs_*``) and with the cheap counter-based normals
# (``counter_hash_ratio_vs_*``): (row key, ratio prefix, noise).
OURS = (
  ("slt_jax", "", None),
  ("slt_jax_counter_hash", "counter_hash_", "counter_hash"),
)


def _add_ratios(row: dict, baseline: str) -> None:
  """Sets each of ``OURS``' steps/s ratio to ``row[baseline]``'s."""
  for ours, prefix, _ in OURS:
    row[f"{prefix}ratio_vs_{baseline}"] = (
      row[ours]["steps_per_second"] / row[baseline]["steps_per_second"]
    )


def import_torch(no_torch: bool) -> tuple[Optional[object], dict]:
  """The ``torch_baselines`` module (or None) and a status record.

  Importing it imports torch, so it is imported only here.
  """
  if no_torch:
    return None, {"available": False, "message": "skipped: --no-torch"}
  try:
    import torch

    from experiments.bench import torch_baselines
  except ImportError as err:
    message = (
      f"PyTorch parts skipped: torch is not importable ({err}); "
      "install the bench extra (make bench)"
    )
    print(message)
    return None, {"available": False, "message": message}
  status = {"available": True, "torch": torch.__version__}
  try:
    from importlib.metadata import version

    import devinterp  # noqa: F401

    status["devinterp"] = version("devinterp")
  except ImportError as err:
    status["devinterp"] = None
    status["devinterp_message"] = (
      f"devinterp parts skipped: devinterp is not importable ({err})"
    )
    print(status["devinterp_message"])
  return torch_baselines, status


def import_blackjax(no_blackjax: bool) -> tuple[Optional[object], dict]:
  """The ``blackjax_peer`` module (or None) and a status record.

  Importing it imports blackjax (the ``bench`` extra), so it is imported
  only here.
  """
  if no_blackjax:
    return None, {"available": False, "message": "skipped: --no-blackjax"}
  try:
    from experiments.bench import blackjax_peer
  except ImportError as err:
    message = (
      f"blackjax peer skipped: blackjax is not importable ({err}); "
      "install the bench extra (make bench)"
    )
    print(message)
    return None, {"available": False, "message": message}
  return blackjax_peer, {
    "available": True,
    "blackjax": blackjax_peer.blackjax.__version__,
  }


def _chain_stats(per_chain) -> tuple[float, float]:
  x = np.asarray(per_chain, np.float64)
  return float(np.mean(x)), float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def agreement(rows: list[dict], other: str, num_chains: int) -> dict:
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
    for a, b in zip(
      row["slt_jax"]["per_checkpoint"], row[other]["per_checkpoint"]
    ):
      diff = b["mean"] - a["mean"]
      se = math.sqrt((a["std"] ** 2 + b["std"] ** 2) / num_chains)
      diffs.append(diff)
      ses.append(se)
      within_std.append(abs(diff) <= max(a["std"], b["std"]))
      within_se.append(abs(diff) <= 2 * se)
  if not diffs:
    return {}
  bias_se = math.sqrt(sum(se**2 for se in ses)) / len(ses)
  bias_z = float(np.mean(diffs)) / bias_se if bias_se > 0 else 0.0
  return {
    "num_compared": len(diffs),
    "mean_difference": float(np.mean(diffs)),
    "mean_difference_se": bias_se,
    "bias_z": bias_z,
    "mean_abs_z": float(
      np.mean(np.abs(np.asarray(diffs) / np.maximum(ses, 1e-12)))
    ),
    "fraction_within_chain_std": float(np.mean(within_std)),
    "fraction_within_2se": float(np.mean(within_se)),
    "agree": bool(abs(bias_z) < 3),
  }


def _pick_torch_threads(
  bt,
  cfg: workload.BenchConfig,
  net,
  x_NxD,
  y_NxP,
  nbeta: float,
  fixed: Optional[int],
) -> dict:
  """Measures the plain loop at 1 and ``cfg.torch_threads`` threads, sets
  the thread count (``fixed``, else the configured one unless 1 thread is
  ``workload.OVERSUBSCRIBED`` times faster) and returns the record."""
  sgld = cfg.sgld
  rates = bt.thread_check(
    net,
    x_NxD,
    y_NxP,
    tuple(sorted({1, cfg.torch_threads})),
    min(100, workload.steps_per_chain(sgld)),
    step_size=sgld.step_size,
    nbeta=nbeta,
    localization=sgld.localization,
    batch_size=sgld.batch_size,
  )
  threads = fixed or cfg.torch_threads
  if (
    fixed is None and rates["1"] > workload.OVERSUBSCRIBED * rates[str(threads)]
  ):
    print(
      f"warning: 1 torch thread is {rates['1'] / rates[str(threads)]:.1f}x "
      f"faster than {threads} (the cores are busy); the PyTorch baselines "
      "use 1 thread"
    )
    threads = 1
  bt.torch.set_num_threads(threads)
  return {
    "plain_loop_steps_per_second_by_threads": rates,
    "torch_threads_used": threads,
  }


def side_by_side(
  cfg: workload.BenchConfig,
  engine: workload.Engine,
  ref: dict,
  key,
  bt,
  torch_status: dict,
  seed: int,
  torch_threads: Optional[int] = None,
  bj=None,
) -> list[dict]:
  """Part 1: the reference workload at each C with (a), (b), (c) and (d).

  slt_jax runs twice, with ``cfg.sgld.noise`` and with ``counter_hash``
  noise (``OURS``), each with its ratios to every baseline.

  The PyTorch baselines alternate checkpoint by checkpoint, so that a change
  of load on a shared machine hits both alike; before each checkpoint their
  thread count is checked (``_pick_torch_threads``; ``torch_threads`` fixes
  it). Each row records the load average around it.
  """
  sgld = cfg.sgld
  nbeta = sgld.resolve_nbeta(engine.n)
  steps = workload.steps_per_chain(sgld)
  total = jax.tree.leaves(ref["checkpoints"])[0].shape[0]
  methods = []
  if bt is not None:
    x_NxD, y_NxP = bt.one_hot_data(
      ref["dataset"].train.pairs, ref["dataset"].train.labels, cfg.p
    )
    if torch_status.get("devinterp"):
      methods.append(("devinterp", bt.devinterp_llc))
    methods.append(("torch_loop", bt.plain_llc))
  rows = []
  for count in cfg.checkpoints:
    load_start = workload.load()
    idx = workload.spread(total, count)
    params = workload.take(ref["checkpoints"], idx)
    row = {"C": count, "checkpoint_steps": ref["ckpt_steps"][idx].tolist()}
    for name, _, noise in OURS:
      noise = noise or sgld.noise
      result, timing = engine.timed(
        key, dataclasses.replace(sgld, noise=noise), params
      )
      row[name] = {
        **timing,
        "noise": noise,
        "per_checkpoint": [
          dict(
            zip(("mean", "std"), _chain_stats(result.per_chain[i])),
            per_chain=result.per_chain[i].tolist(),
          )
          for i in range(count)
        ],
      }
      print(
        f"C={count}: {name} {timing['seconds']:.1f} s, "
        f"{timing['steps_per_second']:.0f} SGLD steps/s"
      )
    if bj is not None:  # blackjax: all checkpoints x chains in one program.
      out = bj.timed_llc(
        engine.loss_fn,
        engine.data,
        params,
        key,
        step_size=sgld.step_size,
        nbeta=nbeta,
        localization=sgld.localization,
        num_chains=sgld.num_chains,
        num_draws=sgld.num_draws,
        num_burnin=sgld.num_burnin,
        batch_size=sgld.batch_size,
      )
      row["blackjax"] = {
        **{
          k: out[k]
          for k in (
            "seconds",
            "compile_seconds",
            "chain_steps",
            "steps_per_second",
          )
        },
        "per_checkpoint": [
          dict(zip(("mean", "std"), _chain_stats(c)), per_chain=c)
          for c in out["per_chain"]
        ],
      }
      _add_ratios(row, "blackjax")
      print(
        f"C={count}: blackjax {out['seconds']:.1f} s, "
        f"{out['steps_per_second']:.0f} SGLD steps/s; slt_jax is "
        f"{row['ratio_vs_blackjax']:.2f}x"
      )
    seconds = {name: 0.0 for name, _ in methods}
    per_point = {name: [] for name, _ in methods}
    threads = []
    for j, i in enumerate(idx):
      if methods:
        threads.append(
          _pick_torch_threads(
            bt,
            cfg,
            bt.make_model(
              ref["checkpoints"]["W"][i], ref["checkpoints"]["V"][i]
            ),
            x_NxD,
            y_NxP,
            nbeta,
            torch_threads,
          )
        )
      for name, fn in methods:
        net = bt.make_model(
          ref["checkpoints"]["W"][i], ref["checkpoints"]["V"][i]
        )
        out = fn(
          net,
          x_NxD,
          y_NxP,
          step_size=sgld.step_size,
          nbeta=nbeta,
          localization=sgld.localization,
          num_chains=sgld.num_chains,
          num_draws=sgld.num_draws,
          num_burnin=sgld.num_burnin,
          batch_size=sgld.batch_size,
          seed=seed + 1000 * j + 1,
        )
        seconds[name] += out["seconds"]
        per_point[name].append(
          dict(
            zip(("mean", "std"), _chain_stats(out["per_chain"])),
            per_chain=out["per_chain"],
          )
        )
    for name, _ in methods:
      chain_steps = count * sgld.num_chains * steps
      row[name] = {
        "seconds": seconds[name],
        "chain_steps": chain_steps,
        "steps_per_second": chain_steps / seconds[name],
        "per_checkpoint": per_point[name],
      }
      _add_ratios(row, name)
      print(
        f"C={count}: {name} {seconds[name]:.1f} s, "
        f"{row[name]['steps_per_second']:.0f} SGLD steps/s; slt_jax is "
        f"{row[f'ratio_vs_{name}']:.2f}x"
      )
    if threads:
      row["torch_threads"] = threads
      torch_status.update(threads[-1])
    row["load_average"] = {"start": load_start, "end": workload.load()}
    rows.append(row)
  return rows


def _timed_calls(calls) -> tuple[float, dict, list]:
  """Wall seconds, compile summary and results of ``[call() for call in
  calls]``."""
  with workload.CompileClock() as clock:
    start = time.perf_counter()
    results = [call() for call in calls]
    seconds = time.perf_counter() - start
  return seconds, clock.summary(), results


def settings_grid(
  cfg: workload.BenchConfig, engine: workload.Engine, ref: dict, key
) -> dict:
  """Issue 11: SGLD steps/s of a grid of settings in one call vs one call each.

  At ``cfg.grid_checkpoints`` checkpoints of the reference run, with the
  reference budget, the grid ``grid_step_sizes x grid_localizations`` runs
  (a) as one ``estimate_llc`` call with an ``SGLDSettings`` grid (one
  compiled program) and (b) as one ``estimate_llc`` call per setting (each
  compiles its own). Both are timed with compilation (``wall_seconds``,
  compiles counted by a ``jax.monitoring`` listener) and again warm
  (``steady_*``): (a) as a second run of its ``Sweep``, (b) as one run per
  setting of a single-setting ``Sweep`` compiled beforehand. Every setting
  uses the same keys (common random numbers), so (a) and (b) estimate the
  same numbers: ``max_abs_difference`` compares their per-chain values.
  """
  sgld = cfg.sgld
  grid = SGLDSettings.product(
    step_size=cfg.grid_step_sizes, localization=cfg.grid_localizations
  )
  settings = list(zip(grid.step_size, grid.localization))
  total = jax.tree.leaves(ref["checkpoints"])[0].shape[0]
  idx = workload.spread(total, cfg.grid_checkpoints)
  params = workload.take(ref["checkpoints"], idx)
  chain_steps = (
    len(settings)
    * cfg.grid_checkpoints
    * sgld.num_chains
    * workload.steps_per_chain(sgld)
  )
  load_start = workload.load()

  def one_call():
    sweep = engine.sweep(sgld, params, num_settings=len(settings))
    return sweep, sweep.run(
      key, params, 1, settings=grid, progress=False, warn=False
    )

  seconds, compiles, [(sweep, grid_result)] = _timed_calls([one_call])
  steady, _, _ = _timed_calls(
    [
      lambda: sweep.run(
        key, params, 1, settings=grid, progress=False, warn=False
      )
    ]
  )
  one = {
    "wall_seconds": seconds,
    "steps_per_second": chain_steps / seconds,
    **compiles,
    "chunk": workload.chunk_used(sweep, len(settings) * len(idx)),
    "steady_seconds": steady,
    "steady_steps_per_second": chain_steps / steady,
  }
  print(
    f"settings grid, 1 call: {seconds:.1f} s with "
    f"{compiles['program_compiles']} compile(s), steady "
    f"{one['steady_steps_per_second']:.0f} SGLD steps/s"
  )

  seconds, compiles, results = _timed_calls(
    [
      lambda eps=eps, gamma=gamma: engine.run(
        key,
        dataclasses.replace(sgld, step_size=eps, localization=gamma),
        params,
      )
      for eps, gamma in settings
    ]
  )
  single = engine.sweep(sgld, params)
  single.memory_analysis()  # compiles it, outside the timing.
  steady, _, _ = _timed_calls(
    [
      lambda eps=eps, gamma=gamma: single.run(
        key,
        params,
        1,
        settings=SGLDSettings(step_size=[eps], localization=[gamma]),
        progress=False,
        warn=False,
      )
      for eps, gamma in settings
    ]
  )
  separate = {
    "calls": len(settings),
    "wall_seconds": seconds,
    "steps_per_second": chain_steps / seconds,
    **compiles,
    "chunk": workload.chunk_used(single, len(idx)),
    "steady_seconds": steady,
    "steady_steps_per_second": chain_steps / steady,
  }
  print(
    f"settings grid, {len(settings)} calls: {seconds:.1f} s with "
    f"{compiles['program_compiles']} compile(s), steady "
    f"{separate['steady_steps_per_second']:.0f} SGLD steps/s"
  )

  per_chain = np.stack([r.per_chain for r in results])
  with np.errstate(invalid="ignore"):
    difference = np.nanmax(np.abs(grid_result.per_chain - per_chain))
  return {
    "settings": {
      "step_size": list(grid.step_size),
      "localization": list(grid.localization),
      "nbeta": sgld.resolve_nbeta(engine.n),
    },
    "C": cfg.grid_checkpoints,
    "checkpoint_steps": ref["ckpt_steps"][idx].tolist(),
    "chain_steps": chain_steps,
    "one_call": one,
    "separate_calls": separate,
    "wall_speedup": separate["wall_seconds"] / one["wall_seconds"],
    "steady_speedup": (
      one["steady_steps_per_second"] / separate["steady_steps_per_second"]
    ),
    "max_abs_difference": float(difference),
    "llc_mean": np.nanmean(grid_result.mean, axis=1).tolist(),
    "diverged_chains": grid_result.diagnostics.diverged.sum(
      axis=(1, 2)
    ).tolist(),
    "load_average": {"start": load_start, "end": workload.load()},
  }
