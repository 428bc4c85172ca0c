"""``autotune``: the numerics of an LLC estimate, chosen from the problem.

The caller's ``SGLDConfig`` fixes the modelling choices (nβ, γ, the sampler,
the minibatch size, and the samplers' own hyperparameters, which are kept);
``autotune`` chooses the step size, the burn-in and the number of draws:

1. **Curvature.** The top eigenvalue ``h_max`` of the Hessian of the
   localized potential ``U(w) = nβ L_n(w) + γ/2 |w - w*|^2`` at each point,
   by power iteration with Hessian-vector products. On a quadratic of
   curvature h the step ``w <- w - (eps/2) grad U + sqrt(eps) xi`` is stable
   only for ``eps h < 4`` and inflates the stationary variance by ``1 / (1 -
   eps h / 4)``: the bias of the estimate is first order in eps. The search
   starts at ``eps = 1 / h_max`` (``delta / h_max`` for RMSprop-SGLD, whose
   preconditioner never exceeds ``1 / delta``).
2. **A ladder of step sizes** ``eps_0, eps_0 / r, ..., eps_0 / r^(K-1)``, run
   as one settings grid (one compiled program), with a burn-in of two
   relaxation times of the smallest step (``2 / (eps γ)`` steps for SGLD: the
   localization's; the stationarity check alone misses this transient;
   ``2 / (eps G γ)`` for RMSprop-SGLD, G the preconditioner's smallest value
   over the coordinates, measured on the ladder before: 1 on the first).
   With a bias linear in eps, ``est(eps) - est(eps / r) = (1 - 1/r)
   bias(eps)``: a rung's relative bias is ``r / (r - 1)`` times its
   difference to the next smaller rung, bounded above with a one-sided 95%
   margin (from the chains and from the MCSEs, see ``_bias``). The choice is the largest step from
   which every smaller rung's bound is within ``tolerance`` at every point:
   one config serves the whole batch, so the most demanding point decides.
   Otherwise the smallest pair says where to go: down (to where the linear
   model puts the bias at ``tolerance``) when its bias exceeds ``tolerance /
   2``, else more draws (see ``_read_ladder``). The reason says how much the
   gap shrinks from one pair of rungs to the next (``1 / r`` if the bias is
   linear) and warns when the chosen bound, scaled to that shrink, exceeds
   ``tolerance`` (``_decay_note``).
3. **Chain length.** At the chosen step every point must pass: no diverged
   chain, the stationarity check, split R-hat <= ``max_rhat``, ESS >=
   ``min_ess`` and MCSE <= ``max_rel_mcse`` of the estimate. Otherwise the
   draws grow (by the ESS and MCSE shortfall, 2x to 4x; the burn-in doubles
   when a point drifts) until they pass or ``budget_grads`` gradient
   evaluations are spent. A result that does not pass is flagged
   (``report.settled`` is False and a ``RuntimeWarning`` says why), never
   returned silently.

Every run uses the caller's key, so ``estimate_llc(key, loss_fn, params,
data, cfg_tuned, batch_ndim, mask=mask)`` reproduces ``report.result``.
γ is the caller's: the reason ends with how much it moves the tuned
estimate (``ChainDiagnostics.localization_slope``, relative to the
estimate, per unit of ln γ), and says "γ sets much of this number" when
that slope exceeds 10% by two standard errors.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
import warnings
from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy import stats

from slt_jax import batching
from slt_jax.checks import check, is_int, is_real
from slt_jax.llc.arguments import count_examples, flatten_points, resolve_mask
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.estimate import estimate_llc
from slt_jax.llc.result import LLCResult
from slt_jax.samplers.sgld import SGLDSettings, num_moving
from slt_jax.tree_types import ArrayLikeTree, PRNGKey

__all__ = [
  "AutotuneReport",
  "BudgetTooSmall",
  "TuneRow",
  "autotune",
  "hessian_top_eigenvalue",
  "relaxation_steps",
]

LOG = logging.getLogger(__name__)  # one line per run, at INFO level.
MIN_CHAINS = 4  # the chain-to-chain spread of the estimate needs a few.
MIN_DRAWS = 200  # draws of a ladder run, at least.
BURNIN_RELAXATIONS = 2.0  # burn-in in relaxation times (mean and variance).
MAX_LADDERS = 30  # a guard: the budget ends every search long before.
NUM_LOSS_PROBES = 2  # points at the localization scale for the constant check.
CONSTANT_LOSS = 1e-6  # nβ |L(w* + δ) - L(w*)| below this: a constant loss.
GAMMA_SETS = 0.1  # |slope| / estimate per ln γ surely above this: γ sets it.


class TuneRow(NamedTuple):
  """One run of one step size; arrays have the points' batch shape.

  Attributes:
    phase: ``"ladder i"`` (the i-th ladder of step sizes) or ``"extend i"``.
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
      lines.append(_row_text(r))
    c = self.config
    lines.append(
      f"chosen: step_size={c.step_size:.4g} num_burnin={c.num_burnin}"
      f" num_draws={c.num_draws} num_chains={c.num_chains}"
    )
    if self.extrapolated is not None:
      lines.append(f"eps -> 0 extrapolation: {_span(self.extrapolated, '.4g')}")
    return "\n".join(lines + [f"reason: {self.reason}"])


def _row_text(r: TuneRow) -> str:
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


# ----------------------------------------------------------------------------
# Curvature and the checks of the points.
# ----------------------------------------------------------------------------


class BudgetTooSmall(ValueError):
  """``budget_grads`` cannot pay for the first ladder of step sizes."""


class _Probe(NamedTuple):
  """Per-point quantities at w* (each (P,)), in units of the potential U."""

  loss: np.ndarray  # L at w* on the probe data.
  h_loss: np.ndarray  # top |eigenvalue| of the Hessian of nβ L.
  grad_norm: np.ndarray  # |grad nβ L| over the moving coordinates.
  descent: np.ndarray  # |g|^2 / (2 g'Hg/|g|^2): the drop along -g of U.
  change: np.ndarray  # max nβ |L(w* + δ) - L(w*)|, δ ~ N(0, I / γ).


def _power_iteration(hvp: Callable, v: jax.Array, num_iters: int) -> jax.Array:
  """The Rayleigh quotient of ``hvp`` after ``num_iters`` power steps from
  ``v`` (0 for a zero Hessian): its eigenvalue of largest magnitude."""

  def step(_, v):
    hv = hvp(v)
    return hv / jnp.maximum(jnp.linalg.norm(hv), jnp.finfo(hv.dtype).tiny)

  v = jax.lax.fori_loop(0, num_iters, step, v / jnp.linalg.norm(v))
  return jnp.vdot(v, hvp(v))


def _probe_point(
  key, w, mask, *, unravel, loss_fn, data, nbeta, localization, num_iters
) -> dict:
  """``_Probe``'s fields at one point ``w`` (flat), moving coordinates
  ``mask`` (flat 0/1)."""
  potential = lambda v: nbeta * loss_fn(unravel(v), data)
  hvp = lambda v: mask * jax.jvp(jax.grad(potential), (w,), (mask * v,))[1]
  key_v, key_delta = jax.random.split(key)
  value, grad = jax.value_and_grad(potential)(w)
  grad = mask * grad
  grad_sq = jnp.vdot(grad, grad)
  tiny = jnp.finfo(grad.dtype).tiny
  along = jnp.vdot(grad, hvp(grad)) / jnp.maximum(grad_sq, tiny) + localization
  scale = 1.0 / math.sqrt(localization) if localization > 0 else 1.0
  deltas = jax.random.normal(key_delta, (NUM_LOSS_PROBES,) + w.shape, w.dtype)
  probes = jax.vmap(potential)(w[None] + scale * mask[None] * deltas)
  return {
    "loss": value / nbeta,
    "h_loss": _power_iteration(
      hvp, mask * jax.random.normal(key_v, w.shape, w.dtype), num_iters
    ),
    "grad_norm": jnp.sqrt(grad_sq),
    "descent": jnp.where(along > 0, grad_sq / (2 * along), jnp.inf),
    "change": jnp.max(jnp.abs(probes - value)),
  }


def _probe(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  nbeta: float,
  localization: float,
  batch_ndim: int,
  mask,
  num_iters: int,
  max_examples: Optional[int],
) -> tuple[_Probe, tuple, int]:
  """``_Probe`` of every point (on at most ``max_examples`` random examples),
  the points' batch shape and the number of moving parameters."""
  flat, batch_shape, num_points = flatten_points(params, batch_ndim)
  point = jax.tree.map(lambda x: jnp.asarray(x[0]), flat)
  _, unravel = ravel_pytree(point)
  moving = resolve_mask(mask, point)
  if moving is None:
    moving = jax.tree.map(jnp.ones_like, point)
  mask_flat = ravel_pytree(
    jax.tree.map(lambda m, x: jnp.broadcast_to(m, x.shape), moving, point)
  )[0].astype(ravel_pytree(point)[0].dtype)
  key_data, key_points = jax.random.split(key)
  n = count_examples(data, None)
  if max_examples is not None and max_examples < n:
    data = batching.take(
      data, jax.random.permutation(key_data, n)[:max_examples]
    )
  fn = functools.partial(
    _probe_point,
    unravel=unravel,
    loss_fn=loss_fn,
    data=data,
    nbeta=nbeta,
    localization=localization,
    num_iters=num_iters,
  )
  points = jax.vmap(lambda p: ravel_pytree(p)[0])(flat)
  out = jax.jit(jax.vmap(fn, (0, 0, None)))(
    jax.random.split(key_points, num_points), points, mask_flat
  )
  probe = _Probe(**{k: np.asarray(v, np.float64) for k, v in out.items()})
  return probe, batch_shape, num_moving(point, moving)


def hessian_top_eigenvalue(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  nbeta: float,
  localization: float = 0.0,
  *,
  batch_ndim: int = 0,
  mask=None,
  num_iters: int = 30,
  max_examples: Optional[int] = None,
) -> np.ndarray:
  """Top eigenvalue of the Hessian of ``nbeta L_n(w) + localization/2 |w -
  w*|^2`` at each point w*, by power iteration with Hessian-vector products
  (``jax.jvp`` of ``jax.grad``), over the coordinates ``mask`` moves.

  Power iteration finds the eigenvalue of largest magnitude (the top one at
  a minimum); its Rayleigh quotient approaches it from below.

  Args:
    key: PRNG key (start vectors; the subset of examples).
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss.
    params: points with ``batch_ndim`` leading axes.
    data: pytree with the example axis first.
    nbeta: n·beta > 0.
    localization: gamma >= 0.
    batch_ndim: number of leading point axes of ``params``.
    mask: which parameters move (see ``slt_jax.llc.resolve_mask``).
    num_iters: power iterations.
    max_examples: evaluate L on at most this many random examples (None: all).

  Returns:
    (batch shape) float64.

  Example:
    >>> loss = lambda w, batch: 0.5 * (4.0 * w[0] ** 2 + w[1] ** 2)
    >>> h = hessian_top_eigenvalue(jax.random.key(0), loss, jnp.zeros(2),
    ...                            jnp.zeros((3, 1)), 10.0, 1.0)
    >>> round(float(h), 3)  # 10 * 4 + 1
    41.0
  """
  check(is_real(nbeta) and nbeta > 0, "nbeta", nbeta, "must be > 0")
  check(
    is_real(localization) and localization >= 0,
    "localization",
    localization,
    "must be >= 0",
  )
  check(
    is_int(num_iters) and num_iters >= 1, "num_iters", num_iters, "must be >= 1"
  )
  probe, batch_shape, _ = _probe(
    key,
    loss_fn,
    params,
    data,
    float(nbeta),
    float(localization),
    batch_ndim,
    mask,
    num_iters,
    max_examples,
  )
  return (probe.h_loss + localization).reshape(batch_shape)


def _check_points(probe: _Probe, num_params: int) -> None:
  """Raises ``ValueError`` naming the first point whose loss is not finite or
  constant, or which is not near a minimum."""
  for i in range(len(probe.loss)):
    at = f"at point {i}"
    for name in ("loss", "grad_norm", "h_loss"):
      value = float(getattr(probe, name)[i])
      check(np.isfinite(value), f"{name} {at}", value, "must be finite")
    check(
      probe.change[i] > CONSTANT_LOSS,
      f"nbeta * |L(w* + delta) - L(w*)| {at}",
      float(probe.change[i]),
      f"must exceed {CONSTANT_LOSS}: the loss is constant near w* (delta at "
      "the localization scale 1/sqrt(gamma)), there is no LLC to estimate",
    )
    check(
      probe.descent[i] <= num_params / 2,
      f"descent along the gradient {at}",
      float(probe.descent[i]),
      f"must be <= d/2 = {num_params / 2:g}: params is not near a minimum "
      f"(|grad nbeta L| = {probe.grad_norm[i]:.4g}); the chains would descend "
      "rather than sample around w*",
    )


# ----------------------------------------------------------------------------
# Runs and their reading.
# ----------------------------------------------------------------------------


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


def _rung(res: LLCResult, k: int) -> LLCResult:
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


def _mcse(res: LLCResult) -> np.ndarray:
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


class _Bias(NamedTuple):
  """(batch) relative bias of a rung from its difference to the next one:
  the estimate ``gap`` and the one-sided 95% ``margin`` of it."""

  gap: np.ndarray
  margin: np.ndarray


def _bias(coarse: LLCResult, fine: LLCResult, ratio: float) -> _Bias:
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
  traces = stats.t.ppf(0.95, dof - 1) * np.hypot(_mcse(coarse), _mcse(fine))
  with np.errstate(divide="ignore", invalid="ignore"):
    scale = ratio / (ratio - 1) / np.abs(fine.mean)
  return _Bias(
    np.abs(coarse.mean - fine.mean) * scale,
    np.maximum(paired, traces) * scale,
  )


def _stable(res: LLCResult) -> bool:
  """No diverged chain and a finite estimate at every point."""
  return not res.diagnostics.diverged.any() and bool(
    np.isfinite(res.mean).all()
  )


class _Verdict(NamedTuple):
  """What a ladder says: ``choose`` rung ``index``, move ``down`` to top
  ``step_size``, or run ``more``: ``factor`` times the draws (and the
  burn-in if ``longer_burnin``)."""

  action: str
  index: int = -1
  step_size: float = math.nan
  factor: int = 2
  longer_burnin: bool = False


MAX_FACTOR = 4  # the most the draws grow at once (then the ladder is re-read).


def _draws_factor(needed: float) -> int:
  """``needed`` rounded up to an integer in [2, MAX_FACTOR]."""
  return int(
    np.clip(
      math.ceil(needed) if np.isfinite(needed) else MAX_FACTOR, 2, MAX_FACTOR
    )
  )


def _read_ladder(
  rungs: list, steps: list, ratio: float, tolerance: float, biases: list
) -> _Verdict:
  """The verdict on one ladder (rungs by decreasing step ``steps``), given
  each rung's ``_Bias`` on the next.

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
  if not _stable(rungs[-1]):
    return _Verdict("down", step_size=steps[-1] / ratio)
  if not _stable(rungs[-2]):
    return _Verdict("down", step_size=steps[-1])
  if not rungs[-1].diagnostics.stationary.all():
    return _Verdict("more", longer_burnin=True)
  passes = [np.all(b.gap + b.margin <= tolerance) for b in biases]
  k = size - 1
  while k > 0 and _stable(rungs[k - 1]) and passes[k - 1]:
    k -= 1
  if k < size - 1:
    return _Verdict("choose", index=k)
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
    return _Verdict("down", step_size=top)
  return _Verdict("more", factor=_draws_factor(1.2 * np.max(needed)))


def _failures(
  res: LLCResult, min_ess: float, max_rhat: float, max_rel_mcse: float
) -> list[str]:
  """What the result at the chosen step fails, worst value over points."""
  d = res.diagnostics
  rel_mcse = _mcse(res) / np.abs(res.mean)
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


def _row(
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
    mcse=_mcse(res),
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
class _Runner:
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
    rungs = [_rung(res, k) for k in range(len(step_sizes))] if grid else [res]
    grads = cost // len(step_sizes)
    for eps, rung in zip(step_sizes, rungs):
      self.rows.append(_row(phase, eps, rung, burnin, grads, seconds))
      LOG.info("autotune %s", _row_text(self.rows[-1]))
    return rungs


class _Ladder(NamedTuple):
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
  ladder: _Ladder, k: int, biases: list, tolerance: float, ratio: float
) -> str:
  """Why rung ``k`` of ``ladder`` was chosen, with the evidence on the
  linearity of the bias (see ``_decay_note``)."""
  bound = lambda j: np.max(biases[j].gap + biases[j].margin)
  why = (
    f"eps={ladder.steps[k]:.3g} is the largest step from which every smaller "
    f"step agrees (bias bound {bound(k):.1%} <= tolerance {tolerance:.1%} at "
    "every point)"
  )
  if k == 0:
    why += "; it is the ladder's top"
  elif not _stable(ladder.rungs[k - 1]):
    return why + f"; eps={ladder.steps[k - 1]:.3g} had diverged chains"
  else:
    why += f"; eps={ladder.steps[k - 1]:.3g} moved (bound {bound(k - 1):.1%})"
  return why + _decay_note(biases, k, tolerance, ratio)


def _decay_note(biases: list, k: int, tolerance: float, ratio: float) -> str:
  """How much the ladder's gap shrinks from one pair of rungs to the next
  smaller pair, ``rho`` (largest over the points; ``1 / r`` for a bias
  linear in eps), read at the pairs around rung ``k``, and, when it shrinks
  slower, rung ``k``'s bound under a bias that falls by ``rho`` per rung:
  ``(1 - 1/r) / (1 - rho)`` times the linear bound (unbounded for ``rho >=
  1``), said to exceed ``tolerance`` if it does. Empty with one pair, or
  when the upper pair's gap is within its margin at a point.

  >>> B = lambda gap, margin: _Bias(np.array([gap]), np.array([margin]))
  >>> note = _decay_note([B(0.04, 0.005), B(0.025, 0.005)], 0, 0.05, 2.0)
  >>> "shrinks to 0.62" in note, "bound is 6.0%, above tolerance 5.0%" in note
  (True, True)
  >>> _decay_note([B(0.04, 0.005), B(0.018, 0.005)], 0, 0.05, 2.0)
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


def _measured_scale(rungs: list, previous: float) -> float:
  """The step scale G the next ladder is sized for: the smallest
  ``step_scale`` over the rungs' kept chains at every point (RMSprop-SGLD's
  preconditioner), or ``previous`` where none is measured (the other
  samplers, or every chain diverged).

  >>> from types import SimpleNamespace as NS
  >>> rung = lambda g, div: NS(diagnostics=NS(step_scale=np.array(g),
  ...                                        diverged=np.array(div)))
  >>> _measured_scale([rung([6.0, 0.5], [False, True]),
  ...                  rung([5.5, 7.0], [False, False])], 1.0)
  5.5
  >>> _measured_scale([rung([np.nan], [False])], 1.0)
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


def _search(
  runner: _Runner, top: float, ratio: float, size: int, tolerance: float
) -> tuple[Optional[int], Optional[_Ladder], str]:
  """Ladders down from step ``top`` until a rung's bias bound passes.

  Returns:
    (the chosen rung of the last ladder or None, the last ladder run or
    None, why).
  """
  burnin_factor = draws_factor = 1
  last, scale = None, 1.0
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
    last = _Ladder(steps, rungs, burnin, draws, scale)
    scale = _measured_scale(rungs, scale)
    biases = [_bias(rungs[j], rungs[j + 1], ratio) for j in range(size - 1)]
    for j, (gap, margin) in enumerate(biases):
      row = runner.rows[j - size]
      runner.rows[j - size] = row._replace(bias_bound=gap + margin)
    verdict = _read_ladder(rungs, steps, ratio, tolerance, biases)
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


def _shortfall(res: LLCResult, min_ess: float, max_rel_mcse: float) -> float:
  """How many times the draws would have to grow for the ESS and the
  relative MCSE to pass at every point (both scale with the draws)."""
  rel_mcse = _mcse(res) / np.abs(res.mean)
  with np.errstate(divide="ignore", invalid="ignore"):
    return float(
      np.nanmax(
        np.maximum(
          min_ess / res.diagnostics.ess, (rel_mcse / max_rel_mcse) ** 2
        )
      )
    )


def _settle(
  runner: _Runner, eps: float, ladder: _Ladder, res: LLCResult, limits: tuple
) -> tuple[LLCResult, int, int, list]:
  """Extends the chains at ``eps`` until ``_failures(res, *limits)`` is empty,
  a chain diverges, or the budget ends.

  Returns:
    (the last result, its burn-in, its draws, what it still fails).
  """
  burnin, draws = ladder.burnin, ladder.draws
  fails = _failures(res, *limits)
  extension = 0
  while fails and not res.diagnostics.diverged.any():
    extension += 1
    drifting = not res.diagnostics.stationary.all()
    factor = _draws_factor(1.2 * _shortfall(res, limits[0], limits[2]))
    longer = (burnin * (2 if drifting else 1), draws * factor)
    rungs = runner.sample(f"extend {extension}", [eps], *longer)
    if rungs is None:
      break
    (burnin, draws), res = longer, rungs[0]
    fails = _failures(res, *limits)
  return res, burnin, draws, fails


def _extrapolate(ladder: Optional[_Ladder], ratio: float):
  """(batch) linear extrapolation to eps -> 0 from the ladder's two smallest
  steps, or None unless both are stable."""
  if ladder is None or not all(_stable(r) for r in ladder.rungs[-2:]):
    return None
  coarse, fine = ladder.rungs[-2].mean, ladder.rungs[-1].mean
  return fine - (coarse - fine) / (ratio - 1)


# ----------------------------------------------------------------------------
# The tuner.
# ----------------------------------------------------------------------------


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
    " smallest value on the ladder before"
  )
  return (
    f"{why}; with {cfg.num_burnin} burn-in steps "
    f"({cfg.num_burnin / relax:.1f} relaxation times{scaled}) and "
    f"{cfg.num_draws} "
    f"draws x {cfg.num_chains} chains every point passes: R-hat "
    f"{np.nanmax(res.diagnostics.rhat):.4f} <= {max_rhat:g}, ESS "
    f"{np.nanmin(res.diagnostics.ess):.0f} >= {min_ess:g}, relative MCSE "
    f"{np.nanmax(_mcse(res) / np.abs(res.mean)):.2%} <= {max_rel_mcse:.2%}, "
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
  runner: _Runner,
  ladder: _Ladder,
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
    stable = [k for k, r in enumerate(ladder.rungs) if _stable(r)]
    index = stable[-1] if stable else len(ladder.steps) - 1
    res, burnin, draws = ladder.rungs[index], ladder.burnin, ladder.draws
    fails = ["no step size passed the bias bound"]
  else:
    res, burnin, draws, fails = _settle(
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
    result=res if _stable(res) else None,
    extrapolated=_extrapolate(ladder, ratio),
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
  becomes at least 4. The method is in the module docstring: a curvature
  bound, ladders of step sizes with common random numbers read for the
  discretisation bias, then chains extended until the diagnostics pass.

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
  probe, batch_shape, num_params = _probe(
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
  _check_points(probe, num_params)
  h_max = probe.h_loss + cfg.localization
  runner = _Runner(
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
  index, ladder, why = _search(
    runner, top, ladder_ratio, ladder_size, tolerance
  )
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
