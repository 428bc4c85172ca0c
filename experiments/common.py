"""Helpers shared by the experiment scripts: arguments, output folder, JSON,
and ``llc_sweep`` (an ``estimate_llc`` call flattened into plain arrays).

Every experiment is ``python -m experiments.NAME [--quick] [--out DIR]
[--seed N] ...`` and writes ``figures/NAME/`` (or ``DIR``) with a
``results.json`` of its config and numbers next to its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from slt_jax import distributed, persist
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import losses, runs, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig
from slt_jax.llc import SGLDSettings, estimate_llc
from slt_jax.llc.config import SGLDConfig

FIGURES_DIR = "figures"
# The store of trained runs (slt_jax.grokking.runs): runs/ at the repository root.
RUNS_DIR = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs"
)


def parse_args(
  description: str,
  extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
  argv: Optional[Sequence[str]] = None,
) -> argparse.Namespace:
  """Parses the common flags plus an experiment's own.

  Args:
    description: help text (usually the module docstring).
    extra: called with the parser to add the experiment's flags.
    argv: arguments (default: ``sys.argv[1:]``).

  With ``--coordinator HOST:PORT --num-processes N --process-id I`` the
  process first joins an N-process JAX runtime (``slt_jax.distributed``):
  start the same command on every host, each with its own id; sweeps and
  training then use every process's devices, and process 0 writes the
  results, figures and run store.

  Returns:
    Namespace with ``quick`` (bool), ``out`` (str or None), ``seed`` (int)
    and the extra flags.
  """
  parser = argparse.ArgumentParser(
    description=description,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="small configuration that finishes in minutes",
  )
  parser.add_argument(
    "--out", default=None, help="output folder (default figures/NAME/)"
  )
  parser.add_argument(
    "--seed", type=int, default=0, help="root PRNG seed (default 0)"
  )
  parser.add_argument(
    "--replot",
    action="store_true",
    help="redraw the figures from DIR/results.json alone "
    "(no computation), where the experiment supports it",
  )
  parser.add_argument(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="join a multi-process run coordinated by process 0 "
    "at HOST:PORT (with --num-processes, --process-id)",
  )
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  if extra is not None:
    extra(parser)
  args = parser.parse_args(argv)
  if args.coordinator:
    distributed.initialize(
      args.coordinator, args.num_processes, args.process_id
    )
  elif args.num_processes != 1:
    parser.error("--num-processes needs --coordinator")
  return args


def parse_mode(
  description: str,
  extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
  argv: Optional[Sequence[str]] = None,
) -> tuple[argparse.Namespace, str]:
  """``parse_args`` plus ``--paper`` and a hidden ``--smoke`` (for tests).

  Returns:
    (namespace, mode) with mode ``smoke``, ``quick``, ``paper`` or
    ``default``.
  """

  def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
      "--paper",
      action="store_true",
      help="paper-sized configuration (sized for a GPU)",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    if extra is not None:
      extra(parser)

  args = parse_args(description, add, argv)
  mode = (
    "smoke"
    if args.smoke
    else "quick"
    if args.quick
    else "paper"
    if args.paper
    else "default"
  )
  return args, mode


def compute_then_plot(
  name: str,
  args: argparse.Namespace,
  compute: Callable[[], dict],
  plot: Callable[[dict, str], None],
) -> dict:
  """Runs ``compute`` (its dict goes to ``results.json``), then ``plot``.

  With ``args.replot`` nothing is computed: the figures are redrawn from the
  ``results.json`` already in the output folder.

  Args:
    name: experiment name (default output folder ``figures/NAME/``).
    args: parsed flags (``out``, ``replot``).
    compute: returns the JSON-able results.
    plot: ``plot(results, out_dir)`` draws every figure from ``results``.

  Returns:
    The results (as read back from ``results.json``).
  """
  out_dir = output_dir(name, args.out)
  path = os.path.join(out_dir, "results.json")
  if args.replot:
    if not os.path.exists(path):
      raise ValueError(f"--replot needs {path}: run the experiment first")
  else:
    results = compute()
    if not distributed.is_writer():  # Process 0 writes and plots.
      return results
    write_results(out_dir, results)
  results = persist.load_json(path)
  plot(results, out_dir)
  return results


def run_stored_experiment(
  name: str,
  doc: str,
  configs: dict,
  compute: Callable,
  plot: Callable[[dict, str], None],
  argv: Optional[Sequence[str]] = None,
) -> dict:
  """The ``main`` of an experiment that trains through the run store.

  Parses the mode and ``--runs``, then ``compute_then_plot`` with
  ``compute(configs[mode], seed, out_dir, store)`` (``"mode"`` added).

  Raises:
    SystemExit: if ``configs`` has no instance for the mode.
  """
  args, mode = parse_mode(doc, add_runs_flag, argv)
  if mode not in configs:
    raise SystemExit(
      f"{name} has no --{mode} mode: choose one of {sorted(configs)}"
    )
  out_dir = output_dir(name, args.out)
  return compute_then_plot(
    name,
    args,
    lambda: {
      "mode": mode,
      **compute(configs[mode], args.seed, out_dir, args.runs),
    },
    plot,
  )


def output_dir(name: str, out: Optional[str] = None) -> str:
  """Creates and returns the output folder: ``out`` or ``figures/NAME/``."""
  path = out if out else os.path.join(FIGURES_DIR, name)
  os.makedirs(path, exist_ok=True)
  return path


def config_dict(*configs: Any) -> dict:
  """Frozen config dataclasses as ``{ClassName: {field: value}}``."""
  return {type(c).__name__: dataclasses.asdict(c) for c in configs}


def cpu_info() -> dict:
  """The CPU model, its SIMD flags (from /proc/cpuinfo where it exists), the
  core count and XLA_FLAGS: what the speed ratios were measured on."""
  model_name, flags = None, []
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model_name is None:
          model_name = value.strip()
        elif key.strip() == "flags" and not flags:
          flags = value.split()
  except OSError:
    pass
  model_name = model_name or platform.processor() or None
  simd = sorted(f for f in flags if f.startswith(("avx", "sse", "fma", "amx")))
  return {
    "model": model_name,
    "simd_flags": simd,
    "cpu_count": os.cpu_count(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def environment() -> dict:
  """Where a result was produced: versions, backend, devices and the CPU."""
  return {
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "python": platform.python_version(),
    "machine": platform.machine(),
    "cpu_count": os.cpu_count(),
    "cpu": cpu_info(),
  }


def write_results(
  out_dir: str, payload: dict, name: str = "results.json"
) -> str:
  """Atomically writes ``payload`` plus ``environment()`` as JSON.

  Args:
    out_dir: output folder.
    payload: JSON-able dict (arrays become lists, NaN becomes null).
    name: file name.

  Returns:
    The path written.
  """
  path = os.path.join(out_dir, name)
  persist.save_json(path, {**payload, "environment": environment()})
  return path


def add_runs_flag(parser: argparse.ArgumentParser) -> None:
  """Adds ``--runs DIR``: the store of trained runs (default ``runs/``).

  Pass it as (part of) ``extra`` to ``parse_args``/``parse_mode`` and hand
  ``args.runs`` to ``trained_run(..., store=args.runs)``.
  """
  parser.add_argument(
    "--runs",
    default=RUNS_DIR,
    metavar="DIR",
    help="store of trained runs: a run found there is loaded, not "
    "retrained; an interrupted training resumes (default: runs/ at "
    "the repository root)",
  )


def trained_run(
  key,
  data,
  model_cfg: ModelConfig,
  train_cfg: TrainConfig,
  *,
  data_key=None,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
  store: Optional[str] = None,
  label: Optional[str] = None,
  max_chunks: Optional[int] = None,
  progress: bool = True,
) -> train.TrainResult:
  """``train.train`` through the run store: load the run, or train and save it.

  The run is fingerprinted by everything that determines it (key, data
  arrays, configs, seeds and grids; see ``slt_jax.grokking.runs``), so every
  experiment asking for the same run shares one trained copy. Training goes
  to ``<store>/<label>-<fingerprint>.partial/`` and resumes from there after
  an interruption; the finished run is published atomically. A corrupt
  stored run raises a ValueError naming the file (delete its directory to
  retrain).

  Args:
    key: the training key (as for ``train.train``).
    data: the ``ModularData``, or its ``DataConfig`` (then ``data_key``, the
      key the split is drawn with, is required and the data are built here).
    model_cfg, train_cfg: as for ``train.train``.
    data_key: the data's key; recorded in the manifest (the fingerprint
      hashes the data arrays themselves).
    seeds, seed_ids, lrs, weight_decays, num_trains: as for ``train.train``.
    store: the store folder (default ``RUNS_DIR``, i.e. ``runs/``).
    label: readable directory name (default ``p{p}_K{width}``).
    max_chunks: passed to ``train.train`` (a run cut short is not published).
    progress: show training progress.

  Returns:
    The TrainResult.
  """
  provenance = {}
  if isinstance(data, DataConfig):
    if data_key is None:
      raise ValueError(
        "data is a DataConfig: pass data_key, the key its "
        "split is drawn with (or pass the ModularData)"
      )
    provenance["data_config"] = dataclasses.asdict(data)
    data = data_lib.modular_arithmetic(data_key, data)
  if data_key is not None:
    provenance["data_key"] = runs.key_spec(data_key)
  if label is None:
    label = f"p{model_cfg.p}_K{model_cfg.width}"
  return runs.get_or_train(
    store or RUNS_DIR,
    label,
    key,
    data,
    model_cfg,
    train_cfg,
    seeds=seeds,
    seed_ids=seed_ids,
    lrs=lrs,
    weight_decays=weight_decays,
    num_trains=num_trains,
    provenance=provenance,
    max_chunks=max_chunks,
    progress=progress,
  )


@functools.lru_cache(maxsize=None)
def loss_fn(name: str):
  """``losses.make_loss(name)``, one object per name."""
  return losses.make_loss(name)


def _summary(
  res, cfg: SGLDConfig, index: int, seconds: float, resumed: bool
) -> dict:
  """Setting ``index`` of a grid's ``LLCResult`` as plain arrays."""
  d = jax.tree.map(lambda x: x[index], res.diagnostics)
  per_chain = res.per_chain[index]
  num_steps = per_chain.size * (cfg.num_burnin + cfg.num_draws)
  return {
    "mean": res.mean[index],
    "std": res.std[index],
    "per_chain": per_chain,
    "init_loss": res.init_loss[index],
    "nbeta": float(res.nbeta[index]),
    "num_moving_params": res.num_moving_params,
    "stationary": d.stationary,
    "ess": d.ess,
    "rhat": d.rhat,
    "drift_z": d.drift_z,
    "first_half_llc": d.first_half_llc,
    "second_half_llc": d.second_half_llc,
    "mala_accept": np.nanmean(d.mala_accept, axis=-1),
    "diverged_chains": d.diverged.sum(-1),
    "distance_sq": d.distance_sq.mean(-1),
    "fraction_stationary": float(np.mean(d.stationary)),
    # A resumed sweep only timed the chunks it had left: no rate.
    "resumed": resumed,
    "seconds": seconds,
    "sgld_steps_per_second": None if resumed else num_steps / seconds,
    "config": dataclasses.asdict(cfg),
  }


def llc_grid(
  key,
  loss_fn,
  checkpoints,
  data,
  cfgs: Sequence[SGLDConfig],
  path: Optional[str],
  batch_ndim: int = 2,
  mask=None,
) -> list[dict]:
  """LLC at a batch of points under several SGLD configs, one compiled
  program per chain length.

  Configs that differ only in eps, nβ and γ run as one ``SGLDSettings`` grid
  of a single ``slt_jax.llc.Sweep`` (common random numbers: every config uses
  the same chain keys); a config with another static part (chain length,
  batch size, sampler) gets its own sweep.

  Args:
    key: PRNG key.
    loss_fn: ``loss_fn(params, batch)``.
    checkpoints: params with ``batch_ndim`` leading axes, e.g. (seeds, ckpts).
    data: the data the chains see (n = its length).
    cfgs: SGLD configs.
    path: folder for resuming (one sub-folder per group), or None.
    batch_ndim: leading point axes of ``checkpoints``.
    mask: moving parameters (see ``slt_jax.llc.resolve_mask``).

  Returns:
    One dict per config, in order: mean/std (batch shape), per-chain values,
    diagnostics, timing (``seconds`` is the group's wall time;
    ``sgld_steps_per_second`` is None when the group resumed from ``path``)
    and the SGLD config.
  """
  n = jax.tree.leaves(data)[0].shape[0]
  groups: dict = {}
  for i, cfg in enumerate(cfgs):
    static = dataclasses.replace(
      cfg, step_size=1.0, nbeta=1.0, localization=1.0
    )
    groups.setdefault(static, []).append(i)
  out: list = [None] * len(cfgs)
  for g, members in enumerate(groups.values()):
    grid = SGLDSettings(
      step_size=[cfgs[i].step_size for i in members],
      nbeta=[cfgs[i].resolve_nbeta(n) for i in members],
      localization=[cfgs[i].localization for i in members],
    )
    folder = None if path is None else os.path.join(path, f"group_{g}")
    resumed = folder is not None and os.path.exists(folder)
    start = time.perf_counter()
    res = estimate_llc(
      key,
      loss_fn,
      checkpoints,
      data,
      cfgs[members[0]],
      batch_ndim=batch_ndim,
      mask=mask,
      settings=grid,
      out_path=folder,
      warn=False,
    )
    seconds = time.perf_counter() - start
    for j, i in enumerate(members):
      out[i] = _summary(res, cfgs[i], j, seconds, resumed)
      out[i]["group_seconds_share"] = seconds / len(members)
  return out


def llc_sweep(
  key,
  loss_fn,
  checkpoints,
  data,
  cfg: SGLDConfig,
  path: Optional[str],
  batch_ndim: int = 2,
  mask=None,
) -> dict:
  """``llc_grid`` of one config (same arguments, ``path`` a folder)."""
  return llc_grid(
    key, loss_fn, checkpoints, data, [cfg], path, batch_ndim, mask
  )[0]
