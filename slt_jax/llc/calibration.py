"""``calibrate``: the largest stable step size, from one small settings grid."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from slt_jax.checks import check, is_real
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.estimate import estimate_llc
from slt_jax.llc.result import LLCResult
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayLikeTree, PRNGKey

__all__ = ["calibrate"]


def _rows(res: LLCResult, min_accept: float) -> list[dict]:
  """One row per setting of ``res``'s grid (see ``calibrate``)."""
  d = res.diagnostics
  rows = []
  for i in range(len(res.mean)):
    finite = d.mala_accept[i][np.isfinite(d.mala_accept[i])]
    accept = float(finite.mean()) if finite.size else float("nan")
    diverged = int(d.diverged[i].sum())
    rows.append(
      {
        "step_size": float(res.settings.step_size[i]),
        "localization": float(res.settings.localization[i]),
        "nbeta": float(res.settings.nbeta[i]),
        "llc_mean": float(res.mean[i]),
        "llc_std": float(res.std[i]),
        "mala_accept": accept,
        "diverged_chains": diverged,
        "stationary": bool(d.stationary[i]),
        "ok": bool(
          diverged == 0 and np.isfinite(res.mean[i]) and accept >= min_accept
        ),
      }
    )
  return rows


def _choose(rows: list[dict], cfg: SGLDConfig, nbeta: float) -> Optional[dict]:
  """The stable row of the largest step size, ``cfg``'s γ and nβ (``nbeta``)
  preferred among ties, else the first listed; None if no row is stable."""
  good = [r for r in rows if r["ok"]]
  if not good:
    return None
  best_eps = max(r["step_size"] for r in good)
  best = [r for r in good if r["step_size"] == best_eps]
  preferred = [
    r
    for r in best
    if r["localization"] == cfg.localization and np.isclose(r["nbeta"], nbeta)
  ] or best
  return preferred[0]


def calibrate(
  key: PRNGKey,
  loss_fn: Callable,
  params: ArrayLikeTree,
  data: ArrayLikeTree,
  cfg: SGLDConfig,
  step_sizes: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
  localizations: Optional[tuple[float, ...]] = None,
  nbetas: Optional[tuple[float, ...]] = None,
  *,
  min_accept: float = 0.5,
  mask=None,
  progress: bool = False,
) -> tuple[SGLDConfig, list[dict]]:
  """Picks the largest stable step size on a small budget.

  Runs ``cfg`` (use few draws; the MALA proxy is taken on every step) at
  one point for every combination of step size × localization × nbeta, as one
  settings grid in one compiled program. Rule: among the combinations with no
  diverged chain, a finite estimate and mean MALA acceptance >= ``min_accept``
  (the discretisation is then a small perturbation of the Langevin dynamics),
  take the largest step size; ties in (gamma, nbeta) keep ``cfg``'s values
  when present, else the first listed.

  Args:
    key: PRNG key (every combination uses the same chains' keys).
    loss_fn, params, data, mask: as ``estimate_llc`` (params: one point).
    cfg: base configuration (its budget is used as is).
    step_sizes, localizations, nbetas: grids (None keeps ``cfg``'s value;
      ``cfg.nbeta`` may be ``"default"``/``"n_log_n"``, the grid's are floats).
    min_accept: acceptance threshold of the rule.
    progress: show progress bars.

  Returns:
    (chosen config, table of rows ``{step_size, localization, nbeta, llc_mean,
    llc_std, mala_accept, diverged_chains, stationary, ok}``).

  Raises:
    ValueError: if ``min_accept`` is not in [0, 1] (0: no acceptance
      requirement), or no combination is
      stable.
  """
  check(
    is_real(min_accept) and 0 <= min_accept <= 1,
    "min_accept",
    min_accept,
    "must be a number in [0, 1]",
  )
  probe = dataclasses.replace(cfg, mala_every=1)
  grid = SGLDSettings.product(
    step_size=step_sizes, localization=localizations, nbeta=nbetas
  )
  res = estimate_llc(
    key,
    loss_fn,
    params,
    data,
    probe,
    settings=grid,
    mask=mask,
    progress=progress,
    warn=False,
  )
  rows = _rows(res, min_accept)
  choice = _choose(rows, cfg, cfg.resolve_nbeta(res.num_examples))
  if choice is None:
    raise ValueError(
      f"no stable step size among {step_sizes}: every setting "
      f"diverged or had MALA acceptance < {min_accept}"
    )
  return dataclasses.replace(
    cfg,
    step_size=choice["step_size"],
    localization=choice["localization"],
    nbeta=cfg.nbeta if nbetas is None else choice["nbeta"],
  ), rows
