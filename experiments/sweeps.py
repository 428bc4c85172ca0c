"""LLC sweeps of the experiments: ``estimate_llc`` over a batch of points
under one or several SGLD configs, flattened into plain arrays.

``llc_grid`` runs the configs that share a compiled program as one
``SGLDSettings`` grid; ``llc_sweep`` is the one-config case.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional, Sequence

import jax
import numpy as np

from slt_jax.llc import SGLDSettings, estimate_llc
from slt_jax.llc.config import SGLDConfig


def _summary(
  res, cfg: SGLDConfig, index: int, seconds: float, resumed: bool
) -> dict:
  """Setting ``index`` of a grid's ``LLCResult`` as plain arrays."""
  d = jax.tree.map(lambda x: x[index], res.diagnostics)
  per_chain = res.per_chain[index]
  gradient_evaluations = per_chain.size * (cfg.num_burnin + cfg.num_draws)
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
    "localization_slope": d.localization_slope,
    "localization_slope_se": d.localization_slope_se,
    "fraction_stationary": float(np.mean(d.stationary)),
    # A resumed sweep only timed the chunks it had left: no rate.
    "resumed": resumed,
    "seconds": seconds,
    "gradient_evaluations": int(gradient_evaluations),
    "sgld_steps_per_second": None
    if resumed
    else gradient_evaluations / seconds,
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

  Configs with the same ``SGLDConfig.program_key`` (they differ only in their
  ``traced_settings``: eps, nβ and γ) run as one ``SGLDSettings`` grid of a
  single ``slt_jax.llc.Sweep`` (common random numbers: every config uses the
  same chain keys); a config with another sampler, budget, engine or
  divergence policy gets its own sweep.

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
    diagnostics, ``gradient_evaluations`` (points x chains x steps), timing
    (``seconds`` is the group's wall time; ``sgld_steps_per_second`` is None
    when the group resumed from ``path``) and the SGLD config.
  """
  n = jax.tree.leaves(data)[0].shape[0]
  groups: dict = {}
  for i, cfg in enumerate(cfgs):
    groups.setdefault(cfg.program_key, []).append(i)
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


def chain_slope(lower_PxC, upper_PxC, log_span: float) -> tuple:
  """The estimate's slope in ln γ between two sweeps whose chains share
  their random numbers (γ and γ e^log_span), chain by chain: its mean over
  the chains and its standard error (chains with a nan left out).

  Args:
    lower_PxC, upper_PxC: (..., chains) per-chain estimates at the two γ.
    log_span: ln of the ratio of the two γ.

  Returns:
    ((...) mean slopes, (...) standard errors).

  >>> chain_slope([[12.0, 14.0]], [[8.0, 8.0]], 0.4)
  (array([-12.5]), array([2.5]))
  """
  slope_PxC = (np.asarray(upper_PxC) - np.asarray(lower_PxC)) / log_span
  chains = np.sum(np.isfinite(slope_PxC), axis=-1)
  se = np.nanstd(slope_PxC, axis=-1, ddof=1) / np.sqrt(chains)
  return np.nanmean(slope_PxC, axis=-1), se
