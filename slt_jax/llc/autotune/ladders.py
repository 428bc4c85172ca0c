"""The runs of ``autotune``: ladders of step sizes down from the curvature
bound until a rung's bias bound passes, then chains extended at the chosen
step until they settle, every run within the gradient budget."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from typing import Callable, NamedTuple, Optional

import numpy as np

from slt_jax.llc.autotune.reading import (
  bias,
  decay_note,
  draws_growth,
  failures,
  is_stable,
  mcse,
  measured_scale,
  read_ladder,
  rung_of,
  shortfall,
)
from slt_jax.llc.autotune.report import TuneRow, row_text
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.estimate import estimate_llc
from slt_jax.llc.result import LLCResult
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayLikeTree, PRNGKey

LOG = logging.getLogger(__name__)  # one line per run, at INFO level.
MIN_DRAWS = 200  # draws of a ladder run, at least.
BURNIN_RELAXATIONS = 2.0  # burn-in in relaxation times (mean and variance).
MAX_LADDERS = 30  # a guard: the budget ends every search long before.


def relaxation_steps(
  step_size: float, cfg: SGLDConfig, step_scale: float = 1.0
) -> float:
  """Steps for the localization direction (curvature gamma) to relax.

  SGLD, RMSprop-SGLD and MALA: ``2 / (eps G γ)`` (the mean decays as ``(1 -
  eps G γ / 2)^t``), G = ``step_scale``: 1, or for RMSprop-SGLD the
  preconditioner's smallest value over the coordinates (the slowest one),
  measured by an earlier run (``ChainDiagnostics.step_scale``).
  SGHMC/SGNHT (learning rate ``eta = eps / 2``, friction alpha:
  ``sghmc_friction``, or SGNHT's equilibrium ``sgnht_diffusion``): the
  overdamped time ``alpha / (eta γ)`` or, when underdamped, the friction's
  ``2 / alpha``, whichever is longer.

  >>> relaxation_steps(1e-3, SGLDConfig(localization=10.0))
  200.0
  >>> relaxation_steps(1e-3, SGLDConfig(localization=10.0), step_scale=4.0)
  50.0
  """
  gamma = cfg.localization
  if cfg.sampler in ("sghmc", "sgnht"):
    alpha = (
      cfg.sghmc_friction if cfg.sampler == "sghmc" else cfg.sgnht_diffusion
    )
    return max(alpha / (step_size / 2 * gamma), 2.0 / alpha)
  return 2.0 / (step_size * step_scale * gamma)


def tune_row(
  phase: str, eps: float, res: LLCResult, burnin: int, grads: int, seconds
) -> TuneRow:
  """The ``TuneRow`` of one step size's result (bias bound left nan)."""
  d = res.diagnostics
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan acceptance.
    accept = np.nanmean(d.mala_accept, -1)
    scale = np.nanmin(d.step_scale, -1)
  return TuneRow(
    phase=phase,
    step_size=float(eps),
    num_burnin=int(burnin),
    num_draws=int(res.loss_trace.shape[-1]),
    estimate=np.asarray(res.mean),
    mcse=mcse(res),
    bias_bound=np.full(np.shape(res.mean), np.nan),
    rhat=np.asarray(d.rhat),
    ess=np.asarray(d.ess),
    mala_accept=accept,
    step_scale=scale,
    stationary=np.asarray(d.stationary),
    diverged_chains=d.diverged.sum(-1),
    gradient_evaluations=int(grads),
    seconds=float(seconds),
  )


@dataclasses.dataclass
class Runner:
  """The fixed arguments of every run of one ``autotune`` call, and its
  ledger: the rows, the gradient evaluations spent and the budget."""

  key: PRNGKey
  loss_fn: Callable
  params: ArrayLikeTree
  data: ArrayLikeTree
  cfg: SGLDConfig
  batch_ndim: int
  mask: object
  num_examples: Optional[int]
  num_points: int
  budget: int
  out_path: Optional[str] = None
  spent: int = 0
  runs: int = 0
  rows: list = dataclasses.field(default_factory=list)

  def cost(self, num_step_sizes: int, steps: int) -> int:
    """Gradient evaluations of a run of ``num_step_sizes`` x ``steps``."""
    return self.num_points * num_step_sizes * self.cfg.num_chains * steps

  def sample(
    self, phase: str, step_sizes: list, burnin: int, draws: int
  ) -> Optional[list]:
    """One ``LLCResult`` per step size (one grid run; common random
    numbers), or None when the run would exceed the budget. With an
    ``out_path``, run i saves its chunks in ``out_path/run_i`` and loads
    them from there when it finished before."""
    cost = self.cost(len(step_sizes), burnin + draws)
    if self.spent + cost > self.budget:
      return None
    self.runs += 1
    folder = self.out_path and os.path.join(self.out_path, f"run_{self.runs}")
    grid = len(step_sizes) > 1
    cfg = dataclasses.replace(
      self.cfg, step_size=step_sizes[0], num_burnin=burnin, num_draws=draws
    )
    start = time.perf_counter()
    with warnings.catch_warnings():  # diverging rungs are expected here.
      warnings.simplefilter("ignore", RuntimeWarning)
      res = estimate_llc(
        self.key,
        self.loss_fn,
        self.params,
        self.data,
        cfg,
        self.batch_ndim,
        settings=SGLDSettings(step_size=tuple(step_sizes)) if grid else None,
        mask=self.mask,
        num_examples=self.num_examples,
        out_path=folder,
        progress=False,
        warn=False,
      )
    seconds = (time.perf_counter() - start) / len(step_sizes)
    self.spent += cost
    rungs = [rung_of(res, k) for k in range(len(step_sizes))] if grid else [res]
    grads = cost // len(step_sizes)
    for eps, rung in zip(step_sizes, rungs):
      self.rows.append(tune_row(phase, eps, rung, burnin, grads, seconds))
      LOG.info("autotune %s", row_text(self.rows[-1]))
    return rungs


class Ladder(NamedTuple):
  """One ladder run: step sizes (decreasing), their results, its lengths
  and the step scale G they were sized for (see ``relaxation_steps``)."""

  steps: list
  rungs: list
  burnin: int
  draws: int
  step_scale: float


def _ladder_lengths(
  eps_min: float,
  cfg: SGLDConfig,
  burnin_factor: int,
  draws_factor: int,
  step_scale: float,
) -> tuple[int, int]:
  """(burn-in, draws) of a ladder whose smallest step is ``eps_min``."""
  relax = relaxation_steps(eps_min, cfg, step_scale)
  burnin = math.ceil(BURNIN_RELAXATIONS * relax) * burnin_factor
  return burnin, max(math.ceil(relax), MIN_DRAWS) * draws_factor


def _choice_reason(
  ladder: Ladder, k: int, biases: list, tolerance: float, ratio: float
) -> str:
  """Why rung ``k`` of ``ladder`` was chosen, with the evidence on the
  linearity of the bias (see ``decay_note``)."""
  bound = lambda j: np.max(biases[j].gap + biases[j].margin)
  why = (
    f"eps={ladder.steps[k]:.3g} is the largest step from which every smaller "
    f"step agrees (bias bound {bound(k):.1%} <= tolerance {tolerance:.1%} at "
    "every point)"
  )
  if k == 0:
    why += "; it is the ladder's top"
  elif not is_stable(ladder.rungs[k - 1]):
    return why + f"; eps={ladder.steps[k - 1]:.3g} had diverged chains"
  else:
    why += f"; eps={ladder.steps[k - 1]:.3g} moved (bound {bound(k - 1):.1%})"
  return why + decay_note(biases, k, tolerance, ratio)


def pilot_scale(runner: Runner, step_size: float) -> float:
  """The step scale G the first ladder is sized for: 1, or for RMSprop-SGLD
  the smallest preconditioner a pilot run at ``step_size`` measures
  (``measured_scale``; 1 when the budget cannot pay it).

  The pilot's burn-in is ``BURNIN_RELAXATIONS`` relaxation times at the
  largest G, ``1 / delta``, the fastest any coordinate relaxes: the second
  moment V grows as the chains spread, so G falls during the first
  relaxation; a pilot of a few EMA times (``1 / (1 - decay)`` steps) alone
  would read G too large.
  """
  cfg = runner.cfg
  if cfg.sampler != "rmsprop_sgld":
    return 1.0
  fastest = relaxation_steps(step_size, cfg, 1.0 / cfg.rmsprop_eps)
  burnin = math.ceil(BURNIN_RELAXATIONS * fastest)
  rungs = runner.sample("pilot", [step_size], burnin, MIN_DRAWS)
  return 1.0 if rungs is None else measured_scale(rungs, 1.0)


def search(
  runner: Runner, top: float, ratio: float, size: int, tolerance: float
) -> tuple[Optional[int], Optional[Ladder], str]:
  """Ladders down from step ``top`` until a rung's bias bound passes.

  Returns:
    (the chosen rung of the last ladder or None, the last ladder run or
    None, why).
  """
  burnin_factor = draws_factor = 1
  last, scale = None, pilot_scale(runner, top / ratio ** (size - 1))
  for i in range(1, MAX_LADDERS + 1):
    steps = [top / ratio**j for j in range(size)]
    burnin, draws = _ladder_lengths(
      steps[-1], runner.cfg, burnin_factor, draws_factor, scale
    )
    rungs = runner.sample(f"ladder {i}", steps, burnin, draws)
    if rungs is None:
      need = runner.cost(size, burnin + draws)
      return (
        None,
        last,
        (
          f"ladder {i} (eps {steps[0]:.3g}..{steps[-1]:.3g}) needs {need:,} "
          f"gradients; {runner.budget - runner.spent:,} were left"
        ),
      )
    last = Ladder(steps, rungs, burnin, draws, scale)
    scale = measured_scale(rungs, scale)
    biases = [bias(rungs[j], rungs[j + 1], ratio) for j in range(size - 1)]
    for j, (gap, margin) in enumerate(biases):
      row = runner.rows[j - size]
      runner.rows[j - size] = row._replace(bias_bound=gap + margin)
    verdict = read_ladder(rungs, steps, ratio, tolerance, biases)
    if verdict.action == "choose":
      return (
        verdict.index,
        last,
        _choice_reason(last, verdict.index, biases, tolerance, ratio),
      )
    if verdict.action == "down":
      top = verdict.step_size
    else:
      draws_factor *= verdict.factor
      burnin_factor *= verdict.factor if verdict.longer_burnin else 1
  return None, last, f"no ladder settled in {MAX_LADDERS}"


def settle(
  runner: Runner, eps: float, ladder: Ladder, res: LLCResult, limits: tuple
) -> tuple[LLCResult, int, int, list]:
  """Extends the chains at ``eps`` until ``failures(res, *limits)`` is empty,
  a chain diverges, or the budget ends.

  Returns:
    (the last result, its burn-in, its draws, what it still fails).
  """
  burnin, draws = ladder.burnin, ladder.draws
  fails = failures(res, *limits)
  extension = 0
  while fails and not res.diagnostics.diverged.any():
    extension += 1
    drifting = not res.diagnostics.stationary.all()
    factor = draws_growth(1.2 * shortfall(res, limits[0], limits[2]))
    longer = (burnin * (2 if drifting else 1), draws * factor)
    rungs = runner.sample(f"extend {extension}", [eps], *longer)
    if rungs is None:
      break
    (burnin, draws), res = longer, rungs[0]
    fails = failures(res, *limits)
  return res, burnin, draws, fails


def extrapolate(ladder: Optional[Ladder], ratio: float):
  """(batch) linear extrapolation to eps -> 0 from the ladder's two smallest
  steps, or None unless both are stable."""
  if ladder is None or not all(is_stable(r) for r in ladder.rungs[-2:]):
    return None
  coarse, fine = ladder.rungs[-2].mean, ladder.rungs[-1].mean
  return fine - (coarse - fine) / (ratio - 1)
