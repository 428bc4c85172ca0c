"""Host-side estimates, diagnostics and warnings from a sweep's raw outputs."""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

from slt_jax.llc import diagnostics
from slt_jax.llc.arguments import ObservablesSpec
from slt_jax.llc.chain import COVARIANCE_OUTPUTS
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.diagnostics import ChainDiagnostics
from slt_jax.llc.result import LLCResult
from slt_jax.samplers.sgld import SGLDSettings

__all__ = ["NOISE_SIGMAS", "stuck_chains", "summarize"]


# Minibatch deviations of nβ L_B at w* that a healthy draw may reach above
# the divergence rule's ``divergence_factor`` x d before its chain counts as
# diverged.
NOISE_SIGMAS = 10.0


def stuck_chains(trace_PxCxT: np.ndarray, distance_sq_PxC: np.ndarray):
  """Chains that did not move: every draw's loss equal to the first (with
  two draws or more), or never away from w* (mean ``||w - w*||^2`` of 0).

  Returns:
    (points, chains) bool.

  Example:
    >>> trace = np.array([[[1.0, 1.0], [1.0, 2.0], [3.0, 4.0]]])
    >>> stuck_chains(trace, np.array([[0.1, 0.1, 0.0]])).tolist()
    [[True, False, True]]
  """
  constant = trace_PxCxT.shape[-1] > 1 and np.all(
    trace_PxCxT == trace_PxCxT[..., :1], axis=-1
  )
  return constant | (distance_sq_PxC == 0)


def _where(flags: np.ndarray) -> str:
  """The indices where ``flags`` (the results' leading shape) holds."""
  if flags.ndim == 0:
    return "the point"
  found = [tuple(int(i) for i in idx) for idx in np.argwhere(flags)]
  shown = ", ".join(map(str, found[:10]))
  return f"index {shown}" + (" ..." if len(found) > 10 else "")


def _warn(diag: ChainDiagnostics, stuck: np.ndarray, noiseless: bool) -> None:
  """Warns about diverged or stuck chains, non-stationary points and a
  noiseless run, if any (``stuck`` and ``diag`` in the results' shape)."""
  num_diverged = int((diag.diverged & ~stuck).sum())
  if num_diverged:
    warnings.warn(
      f"{num_diverged} of {diag.diverged.size} chains diverged "
      "(non-finite or exploding loss) and were excluded; lower "
      "step_size (see slt_jax.llc.calibrate)",
      RuntimeWarning,
      stacklevel=4,
    )
  if stuck.any():
    warnings.warn(
      f"{int(stuck.sum())} of {stuck.size} chains did not move (constant "
      f"loss or never left w*) at {_where(stuck.any(-1))} and were "
      "excluded; every proposal rejected (MALA) or a step that rounds "
      "away: change step_size",
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
  if noiseless:
    warnings.warn(
      'cfg.noise="zeros" injects no noise: the chains descend the '
      "gradient and the estimate is not an LLC (a benchmark ablation)",
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

  A chain is diverged when a draw's loss is non-finite or its ``nbeta (L_B -
  L_n(w*))`` exceeds ``divergence_factor`` x d plus ``NOISE_SIGMAS`` times
  the point's minibatch noise ``nbeta std(L_B(w*))``; a chain that did not
  move (``stuck_chains``) is flagged diverged too.

  Args:
    out: the concatenated chunk outputs, one row per work item (setting
      ``j // P``, point ``j % P``): ``init_loss`` and
      ``init_batch_loss_std`` (items,), ``loss_trace``
      (items, chains, draws), ``mala_accept``, ``distance_sq`` and
      ``step_scale`` (items, chains), ``loss_distance/cov`` (items, chains) and
      ``loss_distance/xy``, ``/x``, ``/y`` (items, chains, blocks),
      ``item_seconds`` (items,) and the observables.
    cfg: the sweep's configuration.
    grid: the (S,) settings.
    is_grid: whether the caller passed a grid (results keep the (S,) axis).
    lead_shape: the results' leading shape, ((S,) if a grid) + batch shape.
    num_examples: n.
    num_moving: parameters the chains move.
    warn: warn about diverged or stuck chains, non-stationary points and
      a noiseless run (``cfg.noise == "zeros"``).
    spec: the recorded observables, or None.

  Returns:
    LLCResult; diverged and stuck chains are excluded from ``mean`` and
    ``std``.
  """
  num_points = math.prod(lead_shape[1:] if is_grid else lead_shape)
  setting_items = np.arange(len(out["init_loss"])) // num_points
  nbeta_items = grid.nbeta[setting_items]
  trace = out["loss_trace"].astype(np.float64)
  init_loss = out["init_loss"].astype(np.float64)
  stuck = stuck_chains(trace, out["distance_sq"])
  noise_items = nbeta_items * out["init_batch_loss_std"].astype(np.float64)
  threshold = cfg.divergence_factor * num_moving + NOISE_SIGMAS * noise_items
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
    diag = diagnostics.summarize(
      np.where(stuck[..., None], np.nan, trace),  # stuck: excluded too.
      init_loss,
      nbeta_items,
      threshold[:, None],
      out["mala_accept"],
      out["distance_sq"],
      out["item_seconds"],
      cfg.num_chains * (cfg.num_burnin + cfg.num_draws),
    )
  loss_chains = trace.mean(axis=-1)
  slope, slope_se = diagnostics.localization_slope(
    loss_chains,
    out["distance_sq"],
    ~diag.diverged,
    {k: out[name] for k, name in COVARIANCE_OUTPUTS.items()},
    nbeta_items,
    grid.localization[setting_items],
  )
  diag = diag._replace(
    step_scale=out["step_scale"].astype(np.float64),
    localization_slope=slope,
    localization_slope_se=slope_se,
  )
  with np.errstate(invalid="ignore"):
    per_chain = nbeta_items[:, None] * (loss_chains - init_loss[:, None])
  good = np.where(diag.diverged, np.nan, per_chain)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: nan.
    mean, std = np.nanmean(good, axis=1), np.nanstd(good, axis=1)
  diag = diagnostics.reshape(diag, lead_shape)
  stuck = stuck.reshape(lead_shape + stuck.shape[1:])
  noiseless = cfg.noise == "zeros"
  if warn:
    _warn(diag, stuck, noiseless)
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
    diagnostics=diag,
    nbeta=nbeta,
    num_examples=num_examples,
    num_moving_params=num_moving,
    settings=settings,
    observables=_observed(out, "observables", spec, shape),
    init_observables=_observed(out, "init_observables", spec, shape),
    observe_every=None if spec is None else spec.every,
    stuck=stuck,
    noiseless=noiseless,
  )
