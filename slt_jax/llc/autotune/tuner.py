"""``autotune``: its arguments, the tuned config and the report's reason."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable, Optional, Union

import jax
import numpy as np

from slt_jax.checks import check, is_int, is_real
from slt_jax.llc.arguments import count_examples
from slt_jax.llc.autotune.curvature import check_points, probe_points
from slt_jax.llc.autotune.ladders import (
  Ladder,
  Runner,
  extrapolate,
  relaxation_steps,
  search,
  settle,
)
from slt_jax.llc.autotune.reading import is_stable, mcse
from slt_jax.llc.autotune.report import AutotuneReport, BudgetTooSmall
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.result import LLCResult
from slt_jax.tree_types import ArrayLikeTree, PRNGKey

MIN_CHAINS = 4  # the chain-to-chain spread of the estimate needs a few.
GAMMA_SETS = 0.1  # |slope| / estimate per ln γ surely above this: γ sets it.


def _check_arguments(cfg, budget_grads, tolerance, options: dict) -> None:
  """Raises naming the first bad argument of ``autotune``."""
  if not isinstance(cfg, SGLDConfig):
    raise TypeError(f"cfg={cfg!r} is invalid: must be an SGLDConfig")
  check(
    cfg.noise != "zeros",
    "cfg.noise",
    cfg.noise,
    "injects no noise: the chain is gradient descent, with no step size to "
    "tune for an LLC",
  )
  check(
    cfg.localization > 0,
    "cfg.localization",
    cfg.localization,
    "must be > 0: its relaxation time sets the burn-in",
  )
  check(
    is_real(budget_grads) and budget_grads >= 1,
    "budget_grads",
    budget_grads,
    "must be a number >= 1 of gradient evaluations",
  )
  check(
    is_real(tolerance) and 0 < tolerance < 1,
    "tolerance",
    tolerance,
    "must lie in (0, 1)",
  )
  rules = {
    "min_ess": (is_real, lambda v: v > 0, "must be > 0"),
    "max_rhat": (is_real, lambda v: v > 1, "must be > 1"),
    "max_rel_mcse": (is_real, lambda v: v > 0, "must be > 0 or None"),
    "ladder_size": (is_int, lambda v: v >= 2, "must be an integer >= 2"),
    "ladder_ratio": (is_real, lambda v: v > 1, "must be > 1"),
    "power_iters": (is_int, lambda v: v >= 1, "must be an integer >= 1"),
    "curvature_examples": (is_int, lambda v: v >= 1, "must be >= 1 or None"),
  }
  for name, (kind, ok, requirement) in rules.items():
    value = options[name]
    if value is not None or name not in ("max_rel_mcse", "curvature_examples"):
      check(kind(value) and ok(value), name, value, requirement)


def _final_reason(
  why: str,
  res: LLCResult,
  cfg: SGLDConfig,
  fails: list,
  limits: tuple,
  step_scale: float,
) -> str:
  """The report's reason: the choice, then the final run's verdict, then
  how much γ moves the estimate (``step_scale``: the G the chosen ladder
  was sized for)."""
  if fails:
    return f"{why}; still failing: {'; '.join(fails)}; {_gamma_note(res)}"
  min_ess, max_rhat, max_rel_mcse = limits
  relax = relaxation_steps(cfg.step_size, cfg, step_scale)
  scaled = (
    ""
    if step_scale == 1.0
    else f" of 2 / (eps G γ) with G = {step_scale:.3g}, the preconditioner's"
    " smallest value on the run before"
  )
  return (
    f"{why}; with {cfg.num_burnin} burn-in steps "
    f"({cfg.num_burnin / relax:.1f} relaxation times{scaled}) and "
    f"{cfg.num_draws} "
    f"draws x {cfg.num_chains} chains every point passes: R-hat "
    f"{np.nanmax(res.diagnostics.rhat):.4f} <= {max_rhat:g}, ESS "
    f"{np.nanmin(res.diagnostics.ess):.0f} >= {min_ess:g}, relative MCSE "
    f"{np.nanmax(mcse(res) / np.abs(res.mean)):.2%} <= {max_rel_mcse:.2%}, "
    f"stationary, no divergence; {_gamma_note(res)}"
  )


def _gamma_note(res: LLCResult) -> str:
  """The largest relative slope of the estimate in ln γ over the points."""
  d = res.diagnostics
  with np.errstate(invalid="ignore", divide="ignore"):
    rel = np.ravel(d.localization_slope / np.abs(res.mean))
    rel_se = np.ravel(d.localization_slope_se / np.abs(res.mean))
  if not np.isfinite(rel).any():
    return "the slope in ln γ is unknown"
  worst = np.nanargmax(np.where(np.isfinite(rel), np.abs(rel), np.nan))
  note = (
    f"γ moves the estimate by {rel[worst]:+.1%} ± {rel_se[worst]:.1%} per "
    "unit of ln γ (localization_slope, largest over the points)"
  )
  if abs(rel[worst]) - 2 * rel_se[worst] > GAMMA_SETS:
    note += (
      f"; beyond {GAMMA_SETS:.0%} by 2 s.e.: γ sets much of this number,"
      " so quote γ with it"
    )
  return note


def _conclude(
  runner: Runner,
  ladder: Ladder,
  index: Optional[int],
  why: str,
  limits: tuple,
  ratio: float,
  h_max: np.ndarray,
  start: float,
) -> tuple[SGLDConfig, AutotuneReport]:
  """The tuned config and the report: chains settled at the chosen rung
  ``index`` of the last ``ladder``, or, with no rung chosen, its smallest
  stable rung, flagged; with the ladder's extrapolation to eps -> 0 either
  way (``start``: the ``time.perf_counter()`` when tuning began)."""
  if index is None:
    stable = [k for k, r in enumerate(ladder.rungs) if is_stable(r)]
    index = stable[-1] if stable else len(ladder.steps) - 1
    res, burnin, draws = ladder.rungs[index], ladder.burnin, ladder.draws
    fails = ["no step size passed the bias bound"]
  else:
    res, burnin, draws, fails = settle(
      runner, ladder.steps[index], ladder, ladder.rungs[index], limits
    )
  tuned = dataclasses.replace(
    runner.cfg,
    step_size=ladder.steps[index],
    num_burnin=burnin,
    num_draws=draws,
  )
  return tuned, AutotuneReport(
    config=tuned,
    settled=not fails,
    reason=_final_reason(why, res, tuned, fails, limits, ladder.step_scale),
    h_max=h_max,
    rows=tuple(runner.rows),
    result=res if is_stable(res) else None,
    extrapolated=extrapolate(ladder, ratio),
    gradient_evaluations=runner.spent,
    seconds=time.perf_counter() - start,
  )


def autotune(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  cfg: SGLDConfig,
  *,
  batch_ndim: int = 0,
  budget_grads: Union[int, float] = 10_000_000,
  mask=None,
  tolerance: float = 0.05,
  num_examples: Optional[int] = None,
  min_ess: float = 100.0,
  max_rhat: float = 1.01,
  max_rel_mcse: Optional[float] = None,
  ladder_size: int = 3,
  ladder_ratio: float = 2.0,
  power_iters: int = 30,
  curvature_examples: Optional[int] = 4096,
  out_path: Optional[str] = None,
) -> tuple[SGLDConfig, AutotuneReport]:
  """Chooses the step size, burn-in and chain length of an LLC estimate.

  ``cfg`` supplies the modelling choices (nβ, γ, the sampler and its own
  hyperparameters, the minibatch size), kept as they are; ``num_chains``
  becomes at least 4. The method is in the docstring of the package
  ``slt_jax.llc.autotune``: a curvature bound, ladders of step sizes with
  common random numbers read for the discretisation bias, then chains
  extended until the diagnostics pass.

  Args:
    key: PRNG key; every run uses it, so ``estimate_llc(key, loss_fn,
      params, data, cfg_tuned, batch_ndim, mask=mask)`` reproduces
      ``report.result``.
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over a batch.
    params: the points w* (``batch_ndim`` leading axes): one config serves
      them all, so the most demanding point sets the step and lengths.
    data: pytree with the example axis first.
    cfg: SGLDConfig (its step_size, num_burnin and num_draws are ignored).
    batch_ndim: number of leading point axes of ``params``.
    budget_grads: gradient evaluations to spend in all (points x chains x
      steps, every run counted).
    mask: which parameters move (see ``slt_jax.llc.resolve_mask``).
    tolerance: largest accepted relative discretisation bias (its upper 95%
      bound from the step-size ladder).
    num_examples: n in place of the data length (as ``estimate_llc``).
    min_ess: smallest accepted effective sample size per point.
    max_rhat: largest accepted split R-hat of the loss traces.
    max_rel_mcse: largest accepted MCSE relative to the estimate (None:
      ``tolerance / 4``).
    ladder_size: step sizes per ladder, K >= 2.
    ladder_ratio: ratio r of consecutive step sizes of a ladder.
    power_iters: power iterations for ``h_max``.
    curvature_examples: examples (random) for ``h_max`` and the checks of
      the points (None: all).
    out_path: folder where every run saves its chunks (``run_1``, ``run_2``,
      ... in the order they ran; see ``estimate_llc``), or None. The runs
      are a function of the arguments, so calling again with the same
      arguments loads the runs that finished and resumes an interrupted
      tuning where it stopped; a loaded run's ``seconds`` are the time to
      load it. A folder of other runs is refused.

  Returns:
    (the tuned SGLDConfig, ``AutotuneReport``). If the budget ends before a
    step size passes or its chains settle, the config is the best one run,
    ``report.settled`` is False and a ``RuntimeWarning`` says what failed.

  Raises:
    ValueError: naming the bad value: ``cfg.noise="zeros"``, ``cfg.localization
      <= 0``, a budget < 1 or too small for the first ladder (then a
      ``BudgetTooSmall``), a bad option,
      a point whose loss or curvature is not finite, a loss constant near a
      point, or a point far from a minimum (the drop of the potential along
      its gradient, ``|g|^2 / (2 g'Hg / |g|^2)`` with g the gradient of nβ L
      and H the Hessian of the potential, exceeds d/2).

  Example:
    >>> import jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2) + 0.0 * jnp.sum(batch)
    >>> cfg = SGLDConfig(nbeta=100.0, localization=10.0, batch_size=None)
    >>> tuned, report = autotune(jax.random.key(0), loss, jnp.zeros(100),
    ...                          jnp.zeros((8, 1)), cfg, tolerance=0.15)
    >>> report.settled, round(float(report.h_max), 1)  # nβ · 1 + γ
    (True, 110.0)
    >>> exact = 50 * 100 / 110  # (d/2) nβ / (nβ + γ)
    >>> abs(float(report.result.mean) / exact - 1) < 0.15
    True
  """
  start = time.perf_counter()
  options = dict(
    min_ess=min_ess,
    max_rhat=max_rhat,
    max_rel_mcse=max_rel_mcse,
    ladder_size=ladder_size,
    ladder_ratio=ladder_ratio,
    power_iters=power_iters,
    curvature_examples=curvature_examples,
  )
  _check_arguments(cfg, budget_grads, tolerance, options)
  limits = (
    min_ess,
    max_rhat,
    tolerance / 4 if max_rel_mcse is None else max_rel_mcse,
  )
  nbeta = cfg.resolve_nbeta(count_examples(data, num_examples))
  probe, batch_shape, num_params = probe_points(
    jax.random.fold_in(key, 1),
    loss_fn,
    params,
    data,
    nbeta,
    cfg.localization,
    batch_ndim,
    mask,
    power_iters,
    curvature_examples,
  )
  check_points(probe, num_params)
  h_max = probe.h_loss + cfg.localization
  runner = Runner(
    key,
    loss_fn,
    params,
    data,
    dataclasses.replace(cfg, num_chains=max(cfg.num_chains, MIN_CHAINS)),
    batch_ndim,
    mask,
    num_examples,
    math.prod(batch_shape),
    int(budget_grads),
    out_path,
  )
  top = (
    cfg.rmsprop_eps if cfg.sampler == "rmsprop_sgld" else 1.0
  ) / h_max.max()
  index, ladder, why = search(runner, top, ladder_ratio, ladder_size, tolerance)
  if ladder is None:
    raise BudgetTooSmall(f"budget_grads={budget_grads!r} is invalid: {why}")
  tuned, report = _conclude(
    runner,
    ladder,
    index,
    why,
    limits,
    ladder_ratio,
    h_max.reshape(batch_shape),
    start,
  )
  if not report.settled:
    warnings.warn(
      f"autotune did not settle within budget_grads={budget_grads:,}: "
      f"{report.reason} (report.settled is False)",
      RuntimeWarning,
      stacklevel=2,
    )
  return tuned, report
