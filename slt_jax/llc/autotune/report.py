"""What ``autotune`` returns: a row per run and the report of the choice."""

from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple, Optional

import numpy as np

from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.result import LLCResult


class TuneRow(NamedTuple):
  """One run of one step size; arrays have the points' batch shape.

  Attributes:
    phase: ``"pilot"`` (RMSprop-SGLD's run that measures its preconditioner
      for the first ladder), ``"ladder i"`` (the i-th ladder of step sizes)
      or ``"extend i"``.
    step_size: eps.
    num_burnin: burn-in steps.
    num_draws: draws.
    estimate: the LLC estimate.
    mcse: its Monte Carlo standard error: the larger of ``nβ sd(L) /
      sqrt(ESS)`` and the per-chain estimates' spread over ``sqrt(chains)``.
    bias_bound: upper bound on the relative discretisation bias from the next
      smaller step of the same ladder (nan without one).
    rhat: split R-hat of the loss traces.
    ess: effective sample size.
    mala_accept: mean MALA acceptance proxy over the chains.
    step_scale: smallest ``ChainDiagnostics.step_scale`` over the chains
      (RMSprop-SGLD's preconditioner; nan for the other samplers).
    stationary: the library's stationarity check.
    diverged_chains: number of diverged chains.
    gradient_evaluations: points x chains x steps of this step size.
    seconds: wall time of the run, shared equally by its step sizes.
  """

  phase: str
  step_size: float
  num_burnin: int
  num_draws: int
  estimate: np.ndarray
  mcse: np.ndarray
  bias_bound: np.ndarray
  rhat: np.ndarray
  ess: np.ndarray
  mala_accept: np.ndarray
  step_scale: np.ndarray
  stationary: np.ndarray
  diverged_chains: np.ndarray
  gradient_evaluations: int
  seconds: float


@dataclasses.dataclass(frozen=True)
class AutotuneReport:
  """The evidence behind ``autotune``'s choice.

  Attributes:
    config: the tuned ``SGLDConfig`` (also returned first by ``autotune``).
    settled: whether the final run passed every check within the budget.
    reason: why this step size and chain length, or what did not pass.
    h_max: (batch) top Hessian eigenvalue of ``nβ L_n + γ/2 |w - w*|^2``.
    rows: every run, in order (``TuneRow``).
    result: the ``LLCResult`` of the tuned config (None if nothing ran
      stably).
    extrapolated: (batch) linear extrapolation of the estimate to eps -> 0
      from the last ladder's two smallest steps (None unless both are
      stable): a cross-check of the chosen step's bias, and the best guess
      when the search ended without a step whose bias bound passed.
    gradient_evaluations: spent in all runs.
    seconds: wall time of ``autotune``.
  """

  config: SGLDConfig
  settled: bool
  reason: str
  h_max: np.ndarray
  rows: tuple
  result: Optional[LLCResult]
  extrapolated: Optional[np.ndarray]
  gradient_evaluations: int
  seconds: float

  @property
  def final_row(self) -> Optional[TuneRow]:
    """The last run at the chosen step size: the row of ``result`` (None if
    nothing ran at it)."""
    rows = [r for r in self.rows if r.step_size == self.config.step_size]
    return rows[-1] if rows else None

  def summary(self) -> str:
    """The table of runs, the choice and the reason, as text (ranges over
    points for a batch)."""
    head = (
      f"{'phase':<10} {'eps':>9} {'burnin':>7} {'draws':>7} {'estimate':>17}"
      f" {'mcse':>9} {'bias<=':>13} {'rhat':>6} {'ess':>7} {'accept':>6}"
      f" {'G':>5}"
      f" {'div':>3} {'grads':>10} {'sec':>6}"
    )
    lines = [
      f"autotune: {'settled' if self.settled else 'NOT SETTLED'};"
      f" h_max {_span(self.h_max, '.4g')};"
      f" {self.gradient_evaluations:,} gradients in {self.seconds:.1f} s",
      head,
    ]
    for r in self.rows:
      lines.append(row_text(r))
    c = self.config
    lines.append(
      f"chosen: step_size={c.step_size:.4g} num_burnin={c.num_burnin}"
      f" num_draws={c.num_draws} num_chains={c.num_chains}"
    )
    if self.extrapolated is not None:
      lines.append(f"eps -> 0 extrapolation: {_span(self.extrapolated, '.4g')}")
    return "\n".join(lines + [f"reason: {self.reason}"])


def row_text(r: TuneRow) -> str:
  """One line of the summary's table (worst value over points)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: nan.
    return (
      f"{r.phase:<10} {r.step_size:>9.3g} {r.num_burnin:>7} {r.num_draws:>7}"
      f" {_span(r.estimate, '.4g'):>17} {np.nanmax(r.mcse):>9.3g}"
      f" {_span(r.bias_bound, '.1%'):>13} {np.nanmax(r.rhat):>6.3f}"
      f" {np.nanmin(r.ess):>7.0f} {np.nanmin(r.mala_accept):>6.2f}"
      f" {_span(np.nanmin(r.step_scale), '.3g'):>5}"
      f" {int(np.max(r.diverged_chains)):>3} {r.gradient_evaluations:>10}"
      f" {r.seconds:>6.1f}"
    )


def _span(x: np.ndarray, fmt: str) -> str:
  """``x`` formatted, or ``min..max`` over its entries."""
  x = np.asarray(x, np.float64)
  if np.all(np.isnan(x)):
    return "-"
  if x.size == 1:
    return format(float(x.reshape(())), fmt)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: nan.
    return f"{format(np.nanmin(x), fmt)}..{format(np.nanmax(x), fmt)}"


class BudgetTooSmall(ValueError):
  """``budget_grads`` cannot pay for the first ladder of step sizes."""
