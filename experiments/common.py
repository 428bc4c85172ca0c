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
import warnings
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from slt_jax import io, losses
from slt_jax.config import SGLDConfig
from slt_jax.llc import estimate_llc

FIGURES_DIR = "figures"


def parse_args(description: str,
               extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
               argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  """Parses the common flags plus an experiment's own.

  Args:
    description: help text (usually the module docstring).
    extra: called with the parser to add the experiment's flags.
    argv: arguments (default: ``sys.argv[1:]``).

  Returns:
    Namespace with ``quick`` (bool), ``out`` (str or None), ``seed`` (int)
    and the extra flags.
  """
  parser = argparse.ArgumentParser(
      description=description,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="small configuration that finishes in minutes")
  parser.add_argument("--out", default=None,
                      help="output folder (default figures/NAME/)")
  parser.add_argument("--seed", type=int, default=0,
                      help="root PRNG seed (default 0)")
  if extra is not None:
    extra(parser)
  return parser.parse_args(argv)


def parse_mode(description: str,
               extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
               argv: Optional[Sequence[str]] = None,
               ) -> tuple[argparse.Namespace, str]:
  """``parse_args`` plus ``--paper`` and a hidden ``--smoke`` (for tests).

  Returns:
    (namespace, mode) with mode ``smoke``, ``quick``, ``paper`` or
    ``default``.
  """

  def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paper", action="store_true",
                        help="paper-sized configuration (sized for a GPU)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    if extra is not None:
      extra(parser)

  args = parse_args(description, add, argv)
  mode = ("smoke" if args.smoke else "quick" if args.quick
          else "paper" if args.paper else "default")
  return args, mode


def output_dir(name: str, out: Optional[str] = None) -> str:
  """Creates and returns the output folder: ``out`` or ``figures/NAME/``."""
  path = out if out else os.path.join(FIGURES_DIR, name)
  os.makedirs(path, exist_ok=True)
  return path


def config_dict(*configs: Any) -> dict:
  """Frozen config dataclasses as ``{ClassName: {field: value}}``."""
  return {type(c).__name__: dataclasses.asdict(c) for c in configs}


def environment() -> dict:
  """Where a result was produced: versions, backend and devices."""
  return {"jax": jax.__version__, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "python": platform.python_version(), "machine": platform.machine(),
          "cpu_count": os.cpu_count()}


def write_results(out_dir: str, payload: dict,
                  name: str = "results.json") -> str:
  """Atomically writes ``payload`` plus ``environment()`` as JSON.

  Args:
    out_dir: output folder.
    payload: JSON-able dict (arrays become lists, NaN becomes null).
    name: file name.

  Returns:
    The path written.
  """
  path = os.path.join(out_dir, name)
  io.save_json(path, {**payload, "environment": environment()})
  return path


@functools.lru_cache(maxsize=None)
def loss_fn(name: str):
  """``losses.make_loss(name)``, one object per name, so that LLC programs
  (cached by loss function) are shared across sweeps and experiments."""
  return losses.make_loss(name)


def llc_sweep(key, loss_fn, checkpoints, data, cfg: SGLDConfig,
              path: Optional[str], batch_ndim: int = 2, mask=None) -> dict:
  """LLC at a batch of points as plain arrays plus diagnostics.

  Args:
    key: PRNG key.
    loss_fn: ``loss_fn(params, batch)``.
    checkpoints: params with ``batch_ndim`` leading axes, e.g. (seeds, ckpts).
    data: the data the chains see (n = its length).
    cfg: SGLD settings.
    path: ``.npz`` for resuming the sweep, or None.
    batch_ndim: leading point axes of ``checkpoints``.
    mask: moving parameters (see ``slt_jax.llc.resolve_mask``).

  Returns:
    dict of mean/std (batch shape), per-chain values, diagnostics, timing
    (``sgld_steps_per_second`` is None when the sweep resumed from ``path``)
    and the SGLD config.
  """
  resumed = path is not None and os.path.exists(path)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    start = time.perf_counter()
    res = estimate_llc(key, loss_fn, checkpoints, data, cfg,
                       batch_ndim=batch_ndim, mask=mask, out_path=path)
    seconds = time.perf_counter() - start
  num_steps = res.per_chain.size * (cfg.num_burnin + cfg.num_draws)
  d = res.diagnostics
  return {"mean": res.mean, "std": res.std, "per_chain": res.per_chain,
          "init_loss": res.init_loss, "nbeta": res.nbeta,
          "num_moving_params": res.num_moving_params,
          "stationary": d.stationary, "ess": d.ess, "rhat": d.rhat,
          "drift_z": d.drift_z, "first_half_llc": d.first_half_llc,
          "second_half_llc": d.second_half_llc,
          "mala_accept": np.nanmean(d.mala_accept, axis=-1),
          "diverged_chains": d.diverged.sum(-1),
          "distance_sq": d.distance_sq.mean(-1),
          "fraction_stationary": float(np.mean(d.stationary)),
          # A resumed sweep only timed the chunks it had left: no rate.
          "resumed": resumed, "seconds": seconds,
          "sgld_steps_per_second": None if resumed else num_steps / seconds,
          "config": dataclasses.asdict(cfg)}
