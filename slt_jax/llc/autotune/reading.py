"""What a run says: its Monte Carlo error, a rung's discretisation bias from
the next smaller step, the verdict on a ladder, and what a chosen step still
fails."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import stats

from slt_jax.llc.result import LLCResult
from slt_jax.samplers.sgld import SGLDSettings

MAX_FACTOR = 4  # the most the draws grow at once (then the ladder is re-read).


def rung_of(res: LLCResult, k: int) -> LLCResult:
  """Setting ``k`` of a grid result, as the result of that setting alone."""
  take = lambda x: x[k]
  return res._replace(
    mean=take(res.mean),
    std=take(res.std),
    per_chain=take(res.per_chain),
    loss_trace=take(res.loss_trace),
    init_loss=take(res.init_loss),
    diagnostics=type(res.diagnostics)(*map(take, res.diagnostics)),
    nbeta=float(res.nbeta[k]),
    settings=SGLDSettings(*[float(v[k]) for v in res.settings]),
  )


def mcse(res: LLCResult) -> np.ndarray:
  """(batch) MCSE of the estimate over the kept chains (nan if all diverged):
  the larger of ``nβ sd(L) / sqrt(ESS)`` from the loss traces and the
  spread of the per-chain estimates over ``sqrt(chains)``. With minibatch
  losses the traces' ESS is close to the number of draws (the minibatch
  noise is white) and misses modes slower than a chain; the chains' spread
  sees them."""
  diverged = res.diagnostics.diverged
  kept = np.where(diverged[..., None], np.nan, res.loss_trace)
  per_chain = np.where(diverged, np.nan, res.per_chain)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    traces = res.nbeta * np.nanstd(kept, axis=(-2, -1))
    chains = np.nanstd(per_chain, -1, ddof=1) / np.sqrt((~diverged).sum(-1))
    return np.fmax(traces / np.sqrt(res.diagnostics.ess), chains)


class Bias(NamedTuple):
  """(batch) relative bias of a rung from its difference to the next one:
  the estimate ``gap`` and the one-sided 95% ``margin`` of it."""

  gap: np.ndarray
  margin: np.ndarray


def bias(coarse: LLCResult, fine: LLCResult, ratio: float) -> Bias:
  """The relative bias of ``coarse`` (step ``ratio`` times ``fine``'s):
  ``r / (r - 1)`` times the difference of the estimates, over ``fine``'s.

  The margin is the larger of two one-sided 95% Student-t margins of the
  difference: from the per-chain differences (the chains of both steps
  share their keys; C - 1 degrees of freedom), which sees modes slower than
  a chain's draws, and from the two ESS-based MCSEs taken as independent,
  which has many degrees of freedom but reads only the loss traces (whose
  minibatch noise can hide a slow mode).
  """
  diff_PxC = coarse.per_chain - fine.per_chain
  num = diff_PxC.shape[-1]
  paired = (
    stats.t.ppf(0.95, num - 1) * np.std(diff_PxC, -1, ddof=1) / math.sqrt(num)
  )
  dof = np.maximum(np.minimum(coarse.diagnostics.ess, fine.diagnostics.ess), 2)
  traces = stats.t.ppf(0.95, dof - 1) * np.hypot(mcse(coarse), mcse(fine))
  with np.errstate(divide="ignore", invalid="ignore"):
    scale = ratio / (ratio - 1) / np.abs(fine.mean)
  return Bias(
    np.abs(coarse.mean - fine.mean) * scale,
    np.maximum(paired, traces) * scale,
  )


def is_stable(res: LLCResult) -> bool:
  """No diverged chain and a finite estimate at every point."""
  return not res.diagnostics.diverged.any() and bool(
    np.isfinite(res.mean).all()
  )


class Verdict(NamedTuple):
  """What a ladder says: ``choose`` rung ``index``, move ``down`` to top
  ``step_size``, or run ``more``: ``factor`` times the draws (and the
  burn-in if ``longer_burnin``)."""

  action: str
  index: int = -1
  step_size: float = math.nan
  factor: int = 2
  longer_burnin: bool = False


MAX_FACTOR = 4  # the most the draws grow at once (then the ladder is re-read).


def draws_growth(needed: float) -> int:
  """``needed`` rounded up to an integer in [2, MAX_FACTOR]."""
  return int(
    np.clip(
      math.ceil(needed) if np.isfinite(needed) else MAX_FACTOR, 2, MAX_FACTOR
    )
  )


def read_ladder(
  rungs: list, steps: list, ratio: float, tolerance: float, biases: list
) -> Verdict:
  """The verdict on one ladder (rungs by decreasing step ``steps``), given
  each rung's ``Bias`` on the next.

  The choice is the largest rung from which every pair's upper bound
  ``gap + margin`` is within ``tolerance`` at every point. Otherwise the
  smallest pair decides, at its most demanding point. It moves the ladder
  down (by a rung at least, and as far as where a bias linear in eps reaches
  ``tolerance``) when its gap exceeds ``tolerance / 2`` surely (``gap -
  margin``), or probably (``gap`` itself, with a margin below
  ``tolerance``) while showing it below ``tolerance`` would need more than
  ``r`` times the draws: a step ``r`` times smaller then costs less and has
  a bias clearly below ``tolerance``. Otherwise the pair is undecided and
  the draws grow by the factor that would shrink the margin to ``tolerance
  - gap`` (margins scale as 1/sqrt(draws)).
  """
  size = len(rungs)
  if not is_stable(rungs[-1]):
    return Verdict("down", step_size=steps[-1] / ratio)
  if not is_stable(rungs[-2]):
    return Verdict("down", step_size=steps[-1])
  if not rungs[-1].diagnostics.stationary.all():
    return Verdict("more", longer_burnin=True)
  passes = [np.all(b.gap + b.margin <= tolerance) for b in biases]
  k = size - 1
  while k > 0 and is_stable(rungs[k - 1]) and passes[k - 1]:
    k -= 1
  if k < size - 1:
    return Verdict("choose", index=k)
  gap, margin = biases[-1]
  half = tolerance / 2
  with np.errstate(divide="ignore", invalid="ignore"):
    needed = np.where(
      gap < tolerance, (margin / (tolerance - gap)) ** 2, np.inf
    )
  costly = (gap > half) & (margin < tolerance) & (needed > ratio)
  if np.any((gap - margin > half) | costly):
    target = steps[-2] * tolerance / np.max(gap)  # bias(eps) = tolerance.
    top = min(steps[1], max(ratio * target, steps[-1] / ratio**size))
    return Verdict("down", step_size=top)
  return Verdict("more", factor=draws_growth(1.2 * np.max(needed)))


def failures(
  res: LLCResult, min_ess: float, max_rhat: float, max_rel_mcse: float
) -> list[str]:
  """What the result at the chosen step fails, worst value over points."""
  d = res.diagnostics
  rel_mcse = mcse(res) / np.abs(res.mean)
  out = []
  if d.diverged.any():
    out.append(f"{int(d.diverged.sum())} diverged chains")
  if not d.stationary.all():
    out.append(f"{int((~d.stationary).sum())} points not stationary")
  for name, value, bad, limit in (
    ("split R-hat", np.nanmax(d.rhat), ~(d.rhat <= max_rhat), max_rhat),
    ("ESS", np.nanmin(d.ess), ~(d.ess >= min_ess), min_ess),
    (
      "relative MCSE",
      np.nanmax(rel_mcse),
      ~(rel_mcse <= max_rel_mcse),
      max_rel_mcse,
    ),
  ):
    if bad.any():
      out.append(f"{name} {value:.4g} (limit {limit:g})")
  return out


def decay_note(biases: list, k: int, tolerance: float, ratio: float) -> str:
  """How much the ladder's gap shrinks from one pair of rungs to the next
  smaller pair, ``rho`` (largest over the points; ``1 / r`` for a bias
  linear in eps), read at the pairs around rung ``k``, and, when it shrinks
  slower, rung ``k``'s bound under a bias that falls by ``rho`` per rung:
  ``(1 - 1/r) / (1 - rho)`` times the linear bound (unbounded for ``rho >=
  1``), said to exceed ``tolerance`` if it does. Empty with one pair, or
  when the upper pair's gap is within its margin at a point.

  >>> B = lambda gap, margin: Bias(np.array([gap]), np.array([margin]))
  >>> note = decay_note([B(0.04, 0.005), B(0.025, 0.005)], 0, 0.05, 2.0)
  >>> "shrinks to 0.62" in note, "bound is 6.0%, above tolerance 5.0%" in note
  (True, True)
  >>> decay_note([B(0.04, 0.005), B(0.018, 0.005)], 0, 0.05, 2.0)
  '; the gap shrinks to 0.45 of the one above it (0.50 for a bias linear in eps)'
  """
  upper = min(k, len(biases) - 2)
  if upper < 0 or not np.all(biases[upper].gap > biases[upper].margin):
    return ""
  rho = float(np.max(biases[upper + 1].gap / biases[upper].gap))
  note = (
    f"; the gap shrinks to {rho:.2f} of the one above it "
    f"({1 / ratio:.2f} for a bias linear in eps)"
  )
  scale = (1 - 1 / ratio) / (1 - rho) if rho < 1 else np.inf
  decayed = float(np.max(biases[k].gap + biases[k].margin)) * scale
  if rho <= 1 / ratio or decayed <= tolerance:
    return note
  bound = f"{decayed:.1%}" if np.isfinite(decayed) else "unbounded"
  return note + (
    f"; under that decay the chosen step's bias bound is {bound}, above "
    f"tolerance {tolerance:.1%}: the bias may exceed the tolerance (compare "
    "report.extrapolated)"
  )


def measured_scale(rungs: list, previous: float) -> float:
  """The step scale G the next ladder is sized for: the smallest
  ``step_scale`` over the rungs' kept chains at every point (RMSprop-SGLD's
  preconditioner), or ``previous`` where none is measured (the other
  samplers, or every chain diverged).

  >>> from types import SimpleNamespace as NS
  >>> rung = lambda g, div: NS(diagnostics=NS(step_scale=np.array(g),
  ...                                        diverged=np.array(div)))
  >>> measured_scale([rung([6.0, 0.5], [False, True]),
  ...                  rung([5.5, 7.0], [False, False])], 1.0)
  5.5
  >>> measured_scale([rung([np.nan], [False])], 1.0)
  1.0
  """
  kept = [
    np.where(r.diagnostics.diverged, np.nan, r.diagnostics.step_scale)
    for r in rungs
  ]
  values = np.concatenate([np.ravel(k) for k in kept])
  if not np.isfinite(values).any():
    return previous
  return float(np.nanmin(values))


def shortfall(res: LLCResult, min_ess: float, max_rel_mcse: float) -> float:
  """How many times the draws would have to grow for the ESS and the
  relative MCSE to pass at every point (both scale with the draws)."""
  rel_mcse = mcse(res) / np.abs(res.mean)
  with np.errstate(divide="ignore", invalid="ignore"):
    return float(
      np.nanmax(
        np.maximum(
          min_ess / res.diagnostics.ess, (rel_mcse / max_rel_mcse) ** 2
        )
      )
    )
