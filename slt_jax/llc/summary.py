"""Host-side estimates, diagnostics and warnings from a sweep's raw outputs."""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

from slt_jax.llc import diagnostics
from slt_jax.llc.arguments import ObservablesSpec
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.diagnostics import ChainDiagnostics
from slt_jax.llc.result import LLCResult
from slt_jax.samplers.sgld import SGLDSettings

__all__ = ["summarize"]


def _warn(diag: ChainDiagnostics) -> None:
  """Warns about diverged chains and non-stationary points, if any."""
  num_diverged = int(diag.diverged.sum())
  if num_diverged:
    warnings.warn(
      f"{num_diverged} of {diag.diverged.size} chains diverged "
      "(non-finite or exploding loss) and were excluded; lower "
      "step_size (see slt_jax.llc.calibrate)",
      RuntimeWarning,
      stacklevel=4,
    )
  num_drifting = int((~diag.stationary & ~diag.diverged.all(-1)).sum())
  if num_drifting:
    warnings.warn(
      f"{num_drifting} of {diag.stationary.size} points are not "
      "stationary: the estimate changed between the halves of the "
      "draws; run longer chains (num_burnin/num_draws)",
      RuntimeWarning,
      stacklevel=4,
    )


def _observed(out: dict, prefix: str, spec: Optional[ObservablesSpec], shape):
  """``{name: shape(out[prefix/name])}`` for the recorded sets, or None."""
  if spec is None:
    return None
  return {name: shape(out[f"{prefix}/{name}"]) for name in spec.names}


def summarize(
  out: dict,
  cfg: SGLDConfig,
  grid: SGLDSettings,
  is_grid: bool,
  lead_shape: tuple,
  num_examples: int,
  num_moving: int,
  warn: bool,
  spec: Optional[ObservablesSpec] = None,
) -> LLCResult:
  """The ``LLCResult`` of a sweep's work items.

  Args:
    out: the concatenated chunk outputs, one row per work item (setting
      ``j // P``, point ``j % P``): ``init_loss`` (items,), ``loss_trace``
      (items, chains, draws), ``mala_accept`` and ``distance_sq`` (items,
      chains), ``item_seconds`` (items,) and the observables.
    cfg: the sweep's configuration.
    grid: the (S,) settings.
    is_grid: whether the caller passed a grid (results keep the (S,) axis).
    lead_shape: the results' leading shape, ((S,) if a grid) + batch shape.
    num_examples: n.
    num_moving: parameters the chains move.
    warn: warn about diverged chains and non-stationary points.
    spec: the recorded observables, or None.

  Returns:
    LLCResult; diverged chains are excluded from ``mean`` and ``std``.
  """
  num_points = math.prod(lead_shape[1:] if is_grid else lead_shape)
  nbeta_items = grid.nbeta[np.arange(len(out["init_loss"])) // num_points]
  trace = out["loss_trace"].astype(np.float64)
  init_loss = out["init_loss"].astype(np.float64)
  diag = diagnostics.summarize(
    trace,
    init_loss,
    nbeta_items,
    cfg.divergence_factor * num_moving,
    out["mala_accept"],
    out["distance_sq"],
    out["item_seconds"],
    cfg.num_chains * (cfg.num_burnin + cfg.num_draws),
  )
  with np.errstate(invalid="ignore"):
    per_chain = nbeta_items[:, None] * (
      trace.mean(axis=-1) - init_loss[:, None]
    )
  good = np.where(diag.diverged, np.nan, per_chain)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: nan.
    mean, std = np.nanmean(good, axis=1), np.nanstd(good, axis=1)
  if warn:
    _warn(diag)
  shape = lambda x: x.reshape(lead_shape + x.shape[1:])
  if is_grid:
    nbeta, settings = grid.nbeta, grid
  else:
    nbeta = float(grid.nbeta[0])
    settings = SGLDSettings(*[float(v[0]) for v in grid])
  return LLCResult(
    mean=shape(mean),
    std=shape(std),
    per_chain=shape(per_chain),
    loss_trace=shape(trace),
    init_loss=shape(init_loss),
    diagnostics=diagnostics.reshape(diag, lead_shape),
    nbeta=nbeta,
    num_examples=num_examples,
    num_moving_params=num_moving,
    settings=settings,
    observables=_observed(out, "observables", spec, shape),
    init_observables=_observed(out, "init_observables", spec, shape),
    observe_every=None if spec is None else spec.every,
  )
