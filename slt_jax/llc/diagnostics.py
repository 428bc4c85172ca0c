"""Convergence diagnostics of LLC chains (host NumPy, chains axis first).

ESS and split R-hat come from ``numpyro.diagnostics``. On top of them:
divergence (non-finite or exploding losses), and a stationarity check that
compares the estimate over the first and second halves of the draws (at
the paper's settings the chains are still climbing when they stop).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpyro import diagnostics as npd

DRIFT_Z = 3.0  # |z| of the half-to-half change above which a trace drifts ...
DRIFT_REL = 0.05  # ... provided the change also exceeds 5% of the estimate.


class ChainDiagnostics(NamedTuple):
  """Per-point diagnostics (leading axes = the estimate's batch axes).

  Attributes:
    ess: effective sample size of the pooled loss traces (non-diverged chains).
    rhat: split R-hat of the loss traces (nan with one usable chain half).
    diverged: (..., chains) bool, chain excluded from the estimate.
    mala_accept: (..., chains) mean MALA acceptance proxy over the draws
      (taken every ``SGLDConfig.mala_every`` steps; nan if none falls there).
    frac_below_init: (..., chains) fraction of draws with loss < L(w*).
    distance_sq: (..., chains) mean ``||w - w*||^2`` over the draws.
    step_scale: (..., chains) the smallest factor by which the sampler
      scaled the step over the coordinates at the chain's last step
      (RMSprop-SGLD's preconditioner ``1 / (delta + sqrt(max V))``; nan for
      the other samplers and for resume files saved before it).
    localization_slope: d(estimate) / d(ln γ) from the same draws, ``-(γ
      nβ / 2) Cov(L_B, ||w - w*||^2)`` with the covariance pooled over the
      non-diverged chains (at stationarity ``d nβ E[L] / dγ = -Cov(nβ L,
      ||w - w*||^2) / 2``, L_B standing in for L: its minibatch is drawn
      almost independently of w). When it is small against the estimate,
      γ barely moves the estimate; nan when unknown (see
      ``localization_slope``).
    localization_slope_se: its standard error (see ``localization_slope``).
    first_half_llc: estimate from the first half of the draws.
    second_half_llc: estimate from the second half of the draws.
    drift_z: (second - first) / its standard error (from the ESS).
    trend_per_draw: least-squares slope of the chain-mean trace, in LLC units
      per draw.
    stationary: False when the halves differ by more than ``DRIFT_Z``
      standard errors and ``DRIFT_REL`` of the estimate.
    seconds: compute wall time attributed to the point: the wall time of the
      chunk that computed it over the items in that chunk (nan when unknown,
      e.g. loaded from an older resume file).
    ess_per_second: ``ess / seconds``.
    ess_per_gradient: ``ess`` over the point's gradient evaluations (chains
      x steps, burn-in included: every sampler takes one per step).
  """

  ess: np.ndarray
  rhat: np.ndarray
  diverged: np.ndarray
  mala_accept: np.ndarray
  frac_below_init: np.ndarray
  distance_sq: np.ndarray
  step_scale: np.ndarray
  localization_slope: np.ndarray
  localization_slope_se: np.ndarray
  first_half_llc: np.ndarray
  second_half_llc: np.ndarray
  drift_z: np.ndarray
  trend_per_draw: np.ndarray
  stationary: np.ndarray
  seconds: np.ndarray
  ess_per_second: np.ndarray
  ess_per_gradient: np.ndarray


def effective_sample_size(trace_CxTx: np.ndarray) -> np.ndarray:
  """ESS of (chains, draws, ...) samples, per trailing index (numpyro;
  Geyer's initial monotone sequence)."""
  with np.errstate(divide="ignore", invalid="ignore"):  # constant traces
    return npd.effective_sample_size(np.asarray(trace_CxTx, np.float64))


def split_rhat(trace_CxTx: np.ndarray) -> np.ndarray:
  """Split R-hat of (chains, draws, ...) samples (numpyro's
  split_gelman_rubin); nan with fewer than 4 draws."""
  if trace_CxTx.shape[1] < 4:
    return np.full(trace_CxTx.shape[2:], np.nan)
  return npd.split_gelman_rubin(np.asarray(trace_CxTx, np.float64))


def diverged_chains(
  trace_PxCxT: np.ndarray,
  init_loss_P: np.ndarray,
  nbeta_P: np.ndarray,
  threshold: float,
) -> np.ndarray:
  """Chains whose loss is non-finite or whose ``nbeta (L - L0)`` > threshold.

  Args:
    trace_PxCxT: (points, chains, draws) losses.
    init_loss_P: (points,) L at the localization centres.
    nbeta_P: (points,) n·beta (or a scalar).
    threshold: largest believable ``nbeta (L - L0)`` of a single draw.

  Returns:
    (points, chains) bool.

  Example:
    >>> trace = np.array([[[1.0, 1.1], [1.0, np.inf]]])
    >>> diverged_chains(trace, np.array([1.0]), 10.0, threshold=5.0).tolist()
    [[False, True]]
  """
  nbeta = np.broadcast_to(np.asarray(nbeta_P, np.float64), init_loss_P.shape)[
    :, None
  ]
  finite = np.all(np.isfinite(trace_PxCxT), axis=-1)
  with np.errstate(invalid="ignore"):
    blown = (
      np.nanmax(
        nbeta[..., None] * (trace_PxCxT - init_loss_P[:, None, None]), axis=-1
      )
      > threshold
    )
  return ~finite | blown | ~np.isfinite(init_loss_P)[:, None]


def _halves(
  good_CxTxP: np.ndarray, init_loss_P: np.ndarray, nbeta_P: np.ndarray
) -> dict:
  """Estimates over all chains of points that share their chain count.

  Args:
    good_CxTxP: (chains, draws, points) traces of non-diverged chains.
    init_loss_P: (points,).
    nbeta_P: (points,).

  Returns:
    dict of (points,) arrays: ess, rhat, first/second-half LLC, drift_z,
    trend_per_draw.
  """
  half = good_CxTxP.shape[1] // 2
  halves = [good_CxTxP[:, :half], good_CxTxP[:, half:]]
  llcs = [nbeta_P * (h.mean(axis=(0, 1)) - init_loss_P) for h in halves]
  ses = [
    nbeta_P
    * h.std(axis=(0, 1))
    / np.sqrt(np.maximum(effective_sample_size(h), 1.0))
    for h in halves
  ]
  change = llcs[1] - llcs[0]
  se = np.hypot(*ses)
  with np.errstate(divide="ignore", invalid="ignore"):
    drift_z = np.where(se > 0, change / se, np.where(change == 0, 0.0, np.inf))
  chain_mean_TxP = good_CxTxP.mean(axis=0)
  draws_T = (
    np.arange(chain_mean_TxP.shape[0]) - (chain_mean_TxP.shape[0] - 1) / 2
  )
  slope = (
    draws_T @ (chain_mean_TxP - chain_mean_TxP.mean(0)) / np.sum(draws_T**2)
  )
  return {
    "ess": effective_sample_size(good_CxTxP),
    "rhat": split_rhat(good_CxTxP),
    "first_half_llc": llcs[0],
    "second_half_llc": llcs[1],
    "drift_z": drift_z,
    "trend_per_draw": nbeta_P * slope,
  }


def summarize(
  trace_PxCxT: np.ndarray,
  init_loss_P: np.ndarray,
  nbeta_P: np.ndarray,
  threshold: float,
  mala_accept_PxC: np.ndarray,
  distance_sq_PxC: np.ndarray,
  seconds_P=np.nan,
  gradients_P=np.nan,
) -> ChainDiagnostics:
  """Diagnostics of every point's chains at once.

  Points are grouped by which chains diverged (almost always: none), and each
  group's ESS, R-hat and half-to-half drift are computed as one NumPy call
  over its points (numpyro's diagnostics take trailing sample axes).

  Args:
    trace_PxCxT: (points, chains, draws) losses of the draws.
    init_loss_P: (points,) L_n(w*).
    nbeta_P: (points,) n·beta (or a scalar).
    threshold: divergence threshold (see ``diverged_chains``).
    mala_accept_PxC: (points, chains) mean MALA acceptance.
    distance_sq_PxC: (points, chains) mean squared distance to w*.
    seconds_P: (points,) compute seconds of each point (or a scalar).
    gradients_P: (points,) gradient evaluations of each point (or a scalar).

  Returns:
    ChainDiagnostics with leading axis (points,).

  Example:
    >>> rng = np.random.default_rng(0)
    >>> trace = 1.0 + 0.01 * rng.normal(size=(4, 2, 100))
    >>> d = summarize(trace, np.ones(4), 10.0, 1e3, np.ones((4, 2)),
    ...               np.ones((4, 2)))
    >>> d.ess.shape, d.diverged.shape, bool(d.stationary.all())
    ((4,), (4, 2), True)
  """
  trace_PxCxT = np.asarray(trace_PxCxT, np.float64)
  init_loss_P = np.asarray(init_loss_P, np.float64)
  num_points = trace_PxCxT.shape[0]
  nbeta_P = np.broadcast_to(np.asarray(nbeta_P, np.float64), (num_points,))
  diverged = diverged_chains(trace_PxCxT, init_loss_P, nbeta_P, threshold)
  with np.errstate(invalid="ignore"):
    frac_below = np.mean(trace_PxCxT < init_loss_P[:, None, None], axis=-1)
  names = (
    "ess",
    "rhat",
    "first_half_llc",
    "second_half_llc",
    "drift_z",
    "trend_per_draw",
  )
  stats = {name: np.full(num_points, np.nan) for name in names}
  for pattern in np.unique(diverged, axis=0):
    points = np.flatnonzero(np.all(diverged == pattern, axis=1))
    if pattern.all():
      continue  # every chain diverged: nothing to summarise (nan).
    good_CxTxP = np.moveaxis(trace_PxCxT[points][:, ~pattern], 0, -1)
    for name, value in _halves(
      good_CxTxP, init_loss_P[points], nbeta_P[points]
    ).items():
      stats[name][points] = value
  kept_PxC = ~diverged
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_loss_P = np.where(kept_PxC[..., None], trace_PxCxT, 0.0).sum(
      (1, 2)
    ) / (kept_PxC.sum(1) * trace_PxCxT.shape[-1])
  estimate = nbeta_P * (mean_loss_P - init_loss_P)
  change = stats["second_half_llc"] - stats["first_half_llc"]
  with np.errstate(invalid="ignore"):
    drifting = (np.abs(stats["drift_z"]) > DRIFT_Z) & (
      np.abs(change) > DRIFT_REL * np.abs(estimate)
    )
  stationary = ~drifting & ~diverged.all(axis=1)
  seconds_P = np.broadcast_to(np.asarray(seconds_P, np.float64), (num_points,))
  with np.errstate(invalid="ignore", divide="ignore"):
    ess_per_second = stats["ess"] / seconds_P
    ess_per_gradient = stats["ess"] / np.asarray(gradients_P, np.float64)
  return ChainDiagnostics(
    diverged=diverged,
    mala_accept=np.asarray(mala_accept_PxC),
    frac_below_init=frac_below,
    distance_sq=np.asarray(distance_sq_PxC),
    step_scale=np.full(np.shape(distance_sq_PxC), np.nan),
    localization_slope=np.full(num_points, np.nan),
    localization_slope_se=np.full(num_points, np.nan),
    stationary=stationary,
    seconds=seconds_P.copy(),
    ess_per_second=ess_per_second,
    ess_per_gradient=np.broadcast_to(ess_per_gradient, (num_points,)).copy(),
    **stats,
  )


def localization_slope(
  loss_PxC: np.ndarray,
  distance_sq_PxC: np.ndarray,
  kept_PxC: np.ndarray,
  covariance: dict,
  nbeta_P,
  localization_P,
) -> tuple[np.ndarray, np.ndarray]:
  """d(estimate) / d(ln γ) of each point, ``-(γ nβ / 2) Cov(L, D)`` with
  ``D = ||w - w*||^2``, and its standard error.

  The covariance is pooled over the kept chains, about the grand means:
  chain c contributes its own covariance plus ``u_c v_c``, where ``u_c``
  and ``v_c`` are its mean loss and mean D less the grand ones. The error is
  the larger of the chains' spread over ``sqrt(chains)`` and the spread of
  the block contributions (the same sum, per block of draws) over
  ``sqrt(chains x blocks)``: blocks shorter than the chains' memory
  understate the second, few chains make the first coarse.

  Args:
    loss_PxC: (points, chains) each chain's mean loss.
    distance_sq_PxC: (points, chains) each chain's mean D.
    kept_PxC: (points, chains) bool, the chains that count.
    covariance: ``slt_jax.llc.chain.covariance_blocks`` of the loss and D,
      per point and chain: ``cov`` (points, chains) and ``xy``, ``x``,
      ``y`` (points, chains, blocks).
    nbeta_P: (points,) n·beta (or a scalar).
    localization_P: (points,) γ (or a scalar).

  Returns:
    ((points,) slopes, (points,) standard errors); nan where no chain is
    kept.

  Example (two chains of covariance 0.5 whose means differ by 2 in the
  loss and in D, each of one block: the pooled covariance is 0.5 + 1):
    >>> covariance = {"cov": np.full((1, 2), 0.5), "xy": np.full((1, 2, 1), 0.5),
    ...               "x": np.zeros((1, 2, 1)), "y": np.zeros((1, 2, 1))}
    >>> slope, se = localization_slope(
    ...   np.array([[1.0, 3.0]]), np.array([[0.0, 2.0]]), np.ones((1, 2), bool),
    ...   covariance, 10.0, 2.0)
    >>> slope.tolist(), se.tolist()
    ([-15.0], [0.0])
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # no kept chain: nan.
    centred = lambda x: x - np.nanmean(x, axis=-1, keepdims=True)
    u_PxC = centred(np.where(kept_PxC, loss_PxC, np.nan))
    v_PxC = centred(np.where(kept_PxC, distance_sq_PxC, np.nan))
    by_chain_PxC = covariance["cov"] + u_PxC * v_PxC
    by_block_PxCxK = (
      covariance["xy"]
      + u_PxC[..., None] * covariance["y"]
      + v_PxC[..., None] * covariance["x"]
      + (u_PxC * v_PxC)[..., None]
    )
    cov_P = np.nanmean(by_chain_PxC, axis=-1)
    se_P = np.fmax(_spread(by_chain_PxC), _spread(by_block_PxCxK))
  scale = -0.5 * np.asarray(localization_P) * np.asarray(nbeta_P)
  return scale * cov_P, np.abs(scale) * se_P


def _spread(x: np.ndarray) -> np.ndarray:
  """Standard error of the mean over the trailing axes of (points, ...)
  values, nan ones left out."""
  flat = x.reshape(len(x), -1)
  count = np.sum(np.isfinite(flat), axis=-1)
  return np.nanstd(flat, axis=-1, ddof=1) / np.sqrt(count)


def reshape(diag: ChainDiagnostics, batch_shape: tuple) -> ChainDiagnostics:
  """Reshapes the leading points axis of every field to ``batch_shape``."""
  return ChainDiagnostics(*[x.reshape(batch_shape + x.shape[1:]) for x in diag])
