"""Convergence diagnostics of LLC chains (host NumPy, chains axis first).

ESS and split R-hat come from ``numpyro.diagnostics``. On top of them:
divergence (non-finite or exploding losses), and a stationarity check that
compares the estimate over the first and second halves of the draws (SPEC §3:
at the paper's settings the chains are still climbing when they stop).
"""

from __future__ import annotations

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
    first_half_llc: estimate from the first half of the draws.
    second_half_llc: estimate from the second half of the draws.
    drift_z: (second - first) / its standard error (from the ESS).
    trend_per_draw: least-squares slope of the chain-mean trace, in LLC units
      per draw.
    stationary: False when the halves differ by more than ``DRIFT_Z``
      standard errors and ``DRIFT_REL`` of the estimate.
  """

  ess: np.ndarray
  rhat: np.ndarray
  diverged: np.ndarray
  mala_accept: np.ndarray
  frac_below_init: np.ndarray
  distance_sq: np.ndarray
  first_half_llc: np.ndarray
  second_half_llc: np.ndarray
  drift_z: np.ndarray
  trend_per_draw: np.ndarray
  stationary: np.ndarray


def effective_sample_size(trace_CxT: np.ndarray) -> float:
  """ESS of (chains, draws) samples (numpyro; Geyer's initial sequence)."""
  return float(npd.effective_sample_size(np.asarray(trace_CxT, np.float64)))


def split_rhat(trace_CxT: np.ndarray) -> float:
  """Split R-hat of (chains, draws) samples (numpyro's split_gelman_rubin)."""
  if trace_CxT.shape[1] < 4:
    return float("nan")
  return float(npd.split_gelman_rubin(np.asarray(trace_CxT, np.float64)))


def diverged_chains(trace_CxT: np.ndarray, init_loss: float, nbeta: float,
                    threshold: float) -> np.ndarray:
  """Chains whose loss is non-finite or whose ``nbeta (L - L0)`` > threshold.

  Args:
    trace_CxT: (chains, draws) losses.
    init_loss: L at the localization centre.
    nbeta: n·beta.
    threshold: largest believable ``nbeta (L - L0)`` of a single draw.

  Returns:
    (chains,) bool.
  """
  finite = np.all(np.isfinite(trace_CxT), axis=1)
  with np.errstate(invalid="ignore"):
    blown = np.nanmax(nbeta * (trace_CxT - init_loss), axis=1) > threshold
  return ~finite | blown | ~np.isfinite(init_loss)


def summarize_point(trace_CxT: np.ndarray, init_loss: float, nbeta: float,
                    threshold: float, mala_accept_C: np.ndarray,
                    distance_sq_C: np.ndarray) -> ChainDiagnostics:
  """Diagnostics of one point's chains.

  Args:
    trace_CxT: (chains, draws) losses of the draws.
    init_loss: L_n(w*).
    nbeta: n·beta.
    threshold: divergence threshold (see ``diverged_chains``).
    mala_accept_C: (chains,) mean MALA acceptance.
    distance_sq_C: (chains,) mean squared distance to w*.

  Returns:
    ChainDiagnostics of scalars (and (chains,) arrays).
  """
  diverged = diverged_chains(trace_CxT, init_loss, nbeta, threshold)
  good = trace_CxT[~diverged]
  nan = float("nan")
  with np.errstate(invalid="ignore"):
    frac_below = np.mean(trace_CxT < init_loss, axis=1)
  if good.shape[0] == 0:
    return ChainDiagnostics(nan, nan, diverged, mala_accept_C, frac_below,
                            distance_sq_C, nan, nan, nan, nan, False)
  half = good.shape[1] // 2
  halves = [good[:, :half], good[:, half:]]
  llcs = [nbeta * (np.mean(h) - init_loss) for h in halves]
  ses = [nbeta * np.std(h) / np.sqrt(max(effective_sample_size(h), 1.0))
         for h in halves]
  change = llcs[1] - llcs[0]
  se = np.hypot(*ses)
  drift_z = change / se if se > 0 else (0.0 if change == 0 else np.inf)
  estimate = nbeta * (np.mean(good) - init_loss)
  drifting = abs(drift_z) > DRIFT_Z and abs(change) > DRIFT_REL * abs(estimate)
  chain_mean_T = np.mean(good, axis=0)
  slope = np.polyfit(np.arange(chain_mean_T.shape[0]), chain_mean_T, 1)[0]
  return ChainDiagnostics(
      ess=effective_sample_size(good), rhat=split_rhat(good), diverged=diverged,
      mala_accept=mala_accept_C, frac_below_init=frac_below,
      distance_sq=distance_sq_C, first_half_llc=llcs[0],
      second_half_llc=llcs[1], drift_z=drift_z, trend_per_draw=nbeta * slope,
      stationary=not drifting)


def stack(points: list[ChainDiagnostics], batch_shape: tuple) -> ChainDiagnostics:
  """Stacks per-point diagnostics and reshapes them to ``batch_shape``."""
  return ChainDiagnostics(*[
      np.asarray([getattr(d, f) for d in points]).reshape(
          batch_shape + np.shape(getattr(points[0], f)))
      for f in ChainDiagnostics._fields])
