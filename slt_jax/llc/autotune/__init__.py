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
   over the coordinates, measured on the ladder before or, for the first, by
   a pilot run at its smallest step: ``ladders.pilot_scale``).
   With a bias linear in eps, ``est(eps) - est(eps / r) = (1 - 1/r)
   bias(eps)``: a rung's relative bias is ``r / (r - 1)`` times its
   difference to the next smaller rung, bounded above with a one-sided 95%
   margin (from the chains and from the MCSEs, see ``reading.bias``). The
   choice is the largest step from which every smaller rung's bound is
   within ``tolerance`` at every point: one config serves the whole batch,
   so the most demanding point decides. Otherwise the smallest pair says
   where to go: down (to where the linear model puts the bias at
   ``tolerance``) when its bias exceeds ``tolerance / 2``, else more draws
   (see ``reading.read_ladder``). The reason says how much the gap shrinks
   from one pair of rungs to the next (``1 / r`` if the bias is linear) and
   warns when the chosen bound, scaled to that shrink, exceeds ``tolerance``
   (``reading.decay_note``).
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

The package's modules, in the order of a call: ``curvature`` (the bound and
the checks of the points), ``ladders`` (the runs), ``reading`` (what each
run says), ``report`` (what is returned) and ``tuner`` (``autotune``).
"""

from slt_jax.llc.autotune.curvature import hessian_top_eigenvalue
from slt_jax.llc.autotune.ladders import relaxation_steps
from slt_jax.llc.autotune.report import AutotuneReport, BudgetTooSmall, TuneRow
from slt_jax.llc.autotune.tuner import autotune

__all__ = [
  "AutotuneReport",
  "BudgetTooSmall",
  "TuneRow",
  "autotune",
  "hessian_top_eigenvalue",
  "relaxation_steps",
]
