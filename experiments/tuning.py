"""``autotune`` as the experiments call it: a line per run on stderr, a
budget that is too small recorded as a reason, and its outcome kept on disk.

``autotune`` warns when its chains do not settle and raises
``BudgetTooSmall`` when the first ladder does not fit the budget; a study
records both in its results (``report.settled``, ``reason``) instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import warnings

import jax
import numpy as np

from slt_jax import persist
from slt_jax.llc import SGLDConfig
from slt_jax.llc.autotune import BudgetTooSmall, autotune

# What autotune raises that a study records by default: a budget too small
# for the first ladder. cached_tune also records the points autotune refuses
# (not a minimum, a constant loss): every ValueError.
RECORDED = (BudgetTooSmall,)


def autotune_or_reason(
  key, loss_fn, points, data, cfg: SGLDConfig, recorded=RECORDED, **options
):
  """``autotune(key, loss_fn, points, data, cfg, **options)`` without its
  not-settled warning (``report.settled`` and ``report.reason`` say it).

  Args:
    key, loss_fn, points, data, cfg: as ``autotune``'s first five.
    recorded: exception types returned as a reason instead of raised.
    **options: ``autotune``'s keyword options.

  Returns:
    (tuned SGLDConfig, AutotuneReport, ``report.reason``); when ``autotune``
    raised one of ``recorded``: (None, None, its message).
  """
  with warnings.catch_warnings(), _progress():
    warnings.filterwarnings(  # report.settled and report.reason say it.
      "ignore", "autotune did not settle", RuntimeWarning
    )
    try:
      tuned, report = autotune(key, loss_fn, points, data, cfg, **options)
    except recorded as err:
      return None, None, str(err)
  return tuned, report, report.reason


def slope_fields(result) -> dict:
  """``localization_slope`` and ``localization_slope_se`` of a tuned run's
  ``LLCResult`` (one point) as floats; nan without a result."""
  d = None if result is None else result.diagnostics
  return {
    name: np.nan if d is None else float(getattr(d, name))
    for name in ("localization_slope", "localization_slope_se")
  }


@contextlib.contextmanager
def _progress():
  """``autotune``'s line per run (its INFO log) on stderr, once, while it
  runs."""
  log = logging.getLogger("slt_jax.llc.autotune")
  handler, level, propagate = logging.StreamHandler(), log.level, log.propagate
  log.addHandler(handler)
  log.setLevel(min(log.getEffectiveLevel(), logging.INFO))
  log.propagate = False
  try:
    yield
  finally:
    log.removeHandler(handler)
    log.setLevel(level)
    log.propagate = propagate


def cached_tune(
  key, loss_fn, points, data, base: SGLDConfig, path: str, spec: dict, **options
) -> dict:
  """``autotune`` on ``points``, or its outcome saved at ``path`` (a JSON
  stamped with the fingerprint of ``spec``, ``base``, ``options``, the key
  and the points). An outcome where autotune refused (any ``ValueError``: a
  budget too small, a point that is not a minimum) is returned, not saved.

  Args:
    key, loss_fn, points, data: as ``autotune``'s.
    base: the modelling choices (``autotune``'s ``cfg``).
    path: the JSON file.
    spec: JSON-able values that also determine the outcome (the data, the
      run the points come from).
    **options: ``autotune``'s keyword options (JSON-able: no callables).

  Returns:
    dict: ``config`` (the tuned SGLDConfig as a dict; ``base`` when autotune
    refused, with ``reason`` saying why), ``settled``, ``reason``, ``h_max``
    and ``estimate`` (over the points; None when it refused),
    ``gradient_evaluations`` and ``seconds``.
  """
  stamp = persist.fingerprint(
    {
      "spec": spec,
      "base": dataclasses.asdict(base),
      "options": options,
      "key": persist.array_digest(key),
      "points": [persist.array_digest(x) for x in jax.tree.leaves(points)],
    }
  )
  saved = persist.load_json(path) if os.path.exists(path) else None
  if saved is not None and saved["fingerprint"] == stamp:
    return saved["tune"]
  start = time.perf_counter()
  tuned, report, reason = autotune_or_reason(
    key, loss_fn, points, data, base, recorded=(ValueError,), **options
  )
  result = None if report is None else report.result
  found = {
    "config": dataclasses.asdict(base if tuned is None else tuned),
    "settled": bool(report is not None and report.settled),
    "reason": f"autotune failed: {reason}" if report is None else reason,
    "h_max": None if report is None else report.h_max.tolist(),
    "estimate": None if result is None else result.mean.tolist(),
    "gradient_evaluations": 0
    if report is None
    else report.gradient_evaluations,
    "seconds": time.perf_counter() - start,
  }
  if report is None:
    return found
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  persist.save_json(path, {"fingerprint": stamp, "tune": found})
  return persist.load_json(path)["tune"]


def memorised_and_last(run, idx: np.ndarray, memorised: int):
  """The points to tune a training run's sweep on: seed 0's first
  checkpoint in ``idx`` at or after step ``memorised`` (the last one when
  ``memorised`` < 0 or no checkpoint is that late) and its last one.

  Args:
    run: a trained run (``checkpoints`` with (seeds, checkpoints) leading
      axes, ``ckpt_steps``).
    idx: indices of the checkpoints the sweep runs at.
    memorised: the memorisation step (-1: never).

  Returns:
    (params with a leading axis of 2, their (2,) steps).
  """
  steps = run.ckpt_steps[idx]
  after = np.flatnonzero(steps >= memorised) if memorised >= 0 else []
  first = idx[after[0]] if len(after) else idx[-1]
  picks = np.array([first, idx[-1]])
  points = jax.tree.map(lambda x: x[0, picks], run.checkpoints)
  return points, run.ckpt_steps[picks]
