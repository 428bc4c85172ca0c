"""The LLC of every basin of a cell, with tuned chains, and its free energy.

All basins of a cell share its training set, so they are sampled together
(one batch of points, ``batch_ndim=1``): ``autotune`` chooses one step size,
burn-in and chain length for them at nβ of each convention, and the paper
window (eps 5e-4, γ 5, 3 chains x (100 + 500) steps at SGLD minibatch 64)
runs beside it. Each result is kept in ``DIR/chains/`` under the fingerprint
of what determines it (the points, the data, the settings), so an
interrupted study resumes where it stopped.

Free energy: ``F = N L_N(w*) + λ ln N`` with N the cell's training-set size,
``L_N`` the centred MSE on it (the Gaussian negative log likelihood at unit
variance, less its constant, which is the same for both basins) and λ the
estimate at the convention's nβ.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import store, tuning
from experiments.basin_selection import config
from experiments.basin_selection.basins import Basin, Cell
from slt_jax import persist
from slt_jax.llc import estimate_llc

LOSS = "centered_mse"


def free_energy(n: int, train_loss: float, llc: float) -> float:
  """``N L_N + λ ln N``.

  >>> round(free_energy(100, 0.01, 2.0), 4)  # 1 + 2 ln 100
  10.2103
  """
  return n * train_loss + llc * math.log(n)


def _points(basins: list[Basin]):
  """The basins' params stacked on a leading axis."""
  return jax.tree.map(lambda *x: jnp.stack(x), *[b.params for b in basins])


def _spec(cell: Cell, basins: list[Basin], what: str, settings: dict) -> dict:
  """What determines an estimate: the points, the data, the settings."""
  return {
    "what": what,
    "modulus": cell.modulus,
    "num_train": cell.num_train,
    "data": persist.array_digest(cell.data.train.pairs),
    "points": [
      persist.array_digest(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(b.params)])
      )
      for b in basins
    ],
    "settings": settings,
  }


def _cached(folder: str, spec: dict, compute) -> dict:
  """``compute()``'s dict, read from ``folder`` if an earlier run saved it
  under ``spec``'s fingerprint, else computed and saved there."""
  name = (
    f"M{spec['modulus']}_N{spec['num_train']}_{spec['what']}-"
    f"{persist.fingerprint(spec)[:12]}.json"
  )
  path = os.path.join(folder, name)
  if os.path.exists(path):
    return persist.load_json(path)["result"]
  os.makedirs(folder, exist_ok=True)
  persist.save_json(path, {"spec": spec, "result": compute()})
  return persist.load_json(path)["result"]


def tuned_llc(
  key, cell: Cell, basins: list[Basin], cfg: config.BasinConfig, convention: str
) -> dict:
  """``autotune`` at nβ of ``convention`` over the basins (together).

  Returns:
    dict: nbeta, the tuned step_size / num_burnin / num_draws / num_chains,
    settled, reason, h_max, gradient_evaluations, seconds, runs (each
    run's phase and step size), and per basin
    (in order) llc, mcse, rhat, ess, stationary, diverged_chains.
  """
  sgld = dataclasses.replace(cfg.sgld, nbeta=config.CONVENTIONS[convention])
  tuned, report, _ = tuning.autotune_or_reason(
    key,
    store.loss_fn(LOSS),
    _points(basins),
    cell.data.train,
    sgld,
    recorded=(),
    batch_ndim=1,
    budget_grads=cfg.budget_grads,
    tolerance=cfg.tolerance,
    max_rhat=cfg.max_rhat,
    min_ess=cfg.min_ess,
  )
  row = report.final_row
  return {
    "nbeta": sgld.resolve_nbeta(cell.num_train),
    "step_size": tuned.step_size,
    "num_burnin": tuned.num_burnin,
    "num_draws": tuned.num_draws,
    "num_chains": tuned.num_chains,
    "settled": bool(report.settled),
    "reason": report.reason,
    "h_max": report.h_max,
    "gradient_evaluations": report.gradient_evaluations,
    "seconds": report.seconds,
    "runs": [f"{r.phase} eps={r.step_size:.3g}" for r in report.rows],
    "per_basin": [
      {
        "llc": float(row.estimate[i]),
        "mcse": float(row.mcse[i]),
        "rhat": float(row.rhat[i]),
        "ess": float(row.ess[i]),
        "stationary": bool(row.stationary[i]),
        "diverged_chains": int(row.diverged_chains[i]),
      }
      for i in range(len(basins))
    ],
  }


def paper_window_llc(
  key, cell: Cell, basins: list[Basin], cfg: config.BasinConfig
) -> dict:
  """The paper window (``cfg.sgld`` as it is) over the basins: per basin
  the mean and std over chains and whether it passed the stationarity
  check."""
  res = estimate_llc(
    key,
    store.loss_fn(LOSS),
    _points(basins),
    cell.data.train,
    cfg.sgld,
    1,
    progress=False,
    warn=False,
  )
  return {
    "nbeta": float(res.nbeta),
    "per_basin": [
      {
        "llc": float(res.mean[i]),
        "std": float(res.std[i]),
        "stationary": bool(res.diagnostics.stationary[i]),
      }
      for i in range(len(basins))
    ],
  }


def autotune_settings(cfg: config.BasinConfig, convention: str) -> dict:
  """The settings that determine a tuned estimate (for its fingerprint)."""
  return {
    "convention": convention,
    "sgld": dataclasses.asdict(cfg.sgld),
    "tolerance": cfg.tolerance,
    "max_rhat": cfg.max_rhat,
    "min_ess": cfg.min_ess,
    "budget_grads": cfg.budget_grads,
  }


def measure_cell(
  key, cell: Cell, cfg: config.BasinConfig, conventions, folder: str
) -> dict:
  """The estimates of the cell's basins: ``paper_window`` and one tuned
  entry per convention in ``conventions`` (each read from ``folder`` when
  an earlier run saved it)."""
  basins = cell.basins
  out = {
    "paper_window": _cached(
      folder,
      _spec(cell, basins, "paper_window", dataclasses.asdict(cfg.sgld)),
      lambda: paper_window_llc(key, cell, basins, cfg),
    )
  }
  for convention in conventions:
    out[convention] = _cached(
      folder,
      _spec(cell, basins, convention, autotune_settings(cfg, convention)),
      lambda c=convention: tuned_llc(key, cell, basins, cfg, c),
    )
  return out
