"""Grokking metrics on logged accuracy curves (host NumPy).

Curves are arrays ``(..., L)`` over the logged steps ``steps (L,)``; leading
axes (seeds, grid points) are kept. A step that is never reached is -1.
"""

from __future__ import annotations

import numpy as np

__all__ = [
  "MEMORISATION_ACC",
  "GENERALISATION_ACC",
  "first_step_at_least",
  "memorisation_step",
  "generalisation_step",
  "grokking_delay",
  "grokking_severity",
  "grokking_severity_authors",
  "midpoint_crossing",
  "llc_curve_summary",
  "linear_fit",
  "bootstrap_slope_ci",
  "rank_average",
  "spearman_rho",
]

MEMORISATION_ACC = 0.99
GENERALISATION_ACC = 0.95


def _check_lengths(**arrays) -> None:
  """Raises unless every array has the same number L >= 1 of logged steps.

  Args:
    **arrays: named arrays whose last axes are the logged steps (steps
      ``(L,)``, curves ``(..., L)``).

  Raises:
    ValueError: naming every array and its length when the lengths differ,
      or when there is no step.

  Example:
    >>> _check_lengths(steps=np.arange(3), val_acc=np.zeros((2, 4)))
    Traceback (most recent call last):
    ...
    ValueError: lengths along the step (last) axis differ: steps 3, val_acc 4
  """
  lengths = {
    name: np.shape(array)[-1] if np.ndim(array) else "scalar"
    for name, array in arrays.items()
  }
  described = ", ".join(f"{name} {length}" for name, length in lengths.items())
  if len(set(lengths.values())) > 1 or "scalar" in lengths.values():
    raise ValueError(f"lengths along the step (last) axis differ: {described}")
  if 0 in lengths.values():
    raise ValueError(f"no logged steps: lengths {described}")


def first_step_at_least(
  steps: np.ndarray, curve: np.ndarray, threshold: float
) -> np.ndarray:
  """First logged step where ``curve >= threshold``, or -1.

  Args:
    steps: (L,) logged steps.
    curve: (..., L) values.
    threshold: level to reach.

  Returns:
    (...) int array of steps.

  Raises:
    ValueError: naming the lengths when the arrays differ in length along
      the step axis, or have none.
  """
  steps, curve = np.asarray(steps), np.asarray(curve)
  _check_lengths(steps=steps, curve=curve)
  hit = curve >= threshold
  return np.where(hit.any(-1), steps[np.argmax(hit, axis=-1)], -1)


def memorisation_step(steps, train_acc) -> np.ndarray:
  """First step with train accuracy >= 0.99 (-1 if never)."""
  return first_step_at_least(steps, train_acc, MEMORISATION_ACC)


def generalisation_step(steps, val_acc) -> np.ndarray:
  """First step with validation accuracy >= 0.95 (-1 if never)."""
  return first_step_at_least(steps, val_acc, GENERALISATION_ACC)


def grokking_delay(steps, train_acc, val_acc) -> np.ndarray:
  """Generalisation step minus memorisation step (-1 if either is missing)."""
  _check_lengths(steps=steps, train_acc=train_acc, val_acc=val_acc)
  mem = memorisation_step(steps, train_acc)
  gen = generalisation_step(steps, val_acc)
  return np.where((mem >= 0) & (gen >= 0), gen - mem, -1)


def grokking_severity(steps, train_acc, val_acc) -> np.ndarray:
  """Grokking Severity Metric (paper Fig. 4).

  ``GSM = 1{val_acc(T) >= 0.95} / T * integral_0^T |train_acc - val_acc| dt``:
  the area between the two accuracy curves (trapezoid rule over the logged
  steps) normalised by the final step T; 0 when the run does not generalise
  by T. It lies in [0, 1].

  Args:
    steps: (L,) logged steps, increasing, last one T > 0.
    train_acc: (..., L) train accuracy.
    val_acc: (..., L) validation accuracy.

  Returns:
    (...) float GSM.

  Raises:
    ValueError: naming the lengths when the arrays differ in length along
      the step axis, or have none.
  """
  _check_lengths(steps=steps, train_acc=train_acc, val_acc=val_acc)
  steps = np.asarray(steps, dtype=float)
  gap = np.abs(np.asarray(train_acc) - np.asarray(val_acc))
  area = np.trapezoid(gap, steps, axis=-1)
  generalised = np.asarray(val_acc)[..., -1] >= GENERALISATION_ACC
  return np.where(generalised, area / steps[-1], 0.0)


def grokking_severity_authors(
  train_acc, val_acc, min_final_acc: float = 0.9
) -> np.ndarray:
  """The authors' GSM variant (their ``grokking_test3``).

  The mean over the logged steps of ``train_acc - val_acc`` (signed, no
  absolute value), and 0 unless both final accuracies exceed
  ``min_final_acc``.

  Args:
    train_acc: (..., L) train accuracy at the logged steps.
    val_acc: (..., L) validation accuracy.
    min_final_acc: the gate on the final train and validation accuracy.

  Returns:
    (...) float.

  Raises:
    ValueError: naming the lengths when the arrays differ in length along
      the step axis, or have none.

  Example:
    >>> grokking_severity_authors(np.array([0.5, 1.0, 1.0]),
    ...                           np.array([0.0, 0.0, 1.0])).round(3).tolist()
    0.5
  """
  _check_lengths(train_acc=train_acc, val_acc=val_acc)
  train_acc, val_acc = np.asarray(train_acc), np.asarray(val_acc)
  gap = np.mean(train_acc - val_acc, axis=-1)
  gate = (train_acc[..., -1] > min_final_acc) & (
    val_acc[..., -1] > min_final_acc
  )
  return np.where(gate, gap, 0.0)


def midpoint_crossing(
  steps: np.ndarray, curve: np.ndarray, start: int, log: bool = False
) -> int:
  """First step after ``start`` where ``curve`` falls below the midpoint
  between its maximum after ``start`` and its final value (-1 if none).

  Args:
    steps: (T,) steps.
    curve: (T,) values.
    start: only steps >= start count (e.g. the memorisation step).
    log: take the midpoint in log space (for losses).

  Returns:
    The crossing step.

  Raises:
    ValueError: naming the lengths when the arrays differ in length along
      the step axis, or have none.
  """
  _check_lengths(steps=steps, curve=curve)
  steps, curve = np.asarray(steps), np.asarray(curve, dtype=float)
  after = steps >= start
  if not after.any():
    return -1
  values = np.log(curve) if log else curve
  seg_steps, seg = steps[after], values[after]
  peak = int(np.nanargmax(seg))
  mid = 0.5 * (seg[peak] + seg[-1])
  below = np.nonzero(seg[peak:] < mid)[0]
  return int(seg_steps[peak + below[0]]) if below.size else -1


def llc_curve_summary(
  ckpt_steps, llc, log_steps, val_loss, memorisation: int
) -> dict:
  """Peak, final value and timing of an LLC curve against the val loss.

  The LLC drop step is where the LLC falls halfway from its peak to its final
  value; the val-loss drop step is the same in log space, both after
  memorisation. ``lag`` = LLC drop step - val-loss drop step.

  Args:
    ckpt_steps: (C,) checkpoint steps.
    llc: (C,) LLC estimates.
    log_steps: (L,) logged steps.
    val_loss: (L,) validation loss.
    memorisation: memorisation step (0 if unknown).

  Returns:
    dict with peak_llc, peak_step, final_llc, final_over_peak, llc_drop_step,
    val_loss_drop_step and lag (None when a drop is not found).

  Raises:
    ValueError: naming the lengths when the arrays differ in length along
      the step axis, or have none.
  """
  _check_lengths(ckpt_steps=ckpt_steps, llc=llc)
  _check_lengths(log_steps=log_steps, val_loss=val_loss)
  llc = np.asarray(llc, dtype=float)
  peak = int(np.nanargmax(llc))
  llc_drop = midpoint_crossing(ckpt_steps, llc, max(memorisation, 0))
  val_drop = midpoint_crossing(
    log_steps, val_loss, max(memorisation, 0), log=True
  )
  return {
    "peak_llc": float(llc[peak]),
    "peak_step": int(ckpt_steps[peak]),
    "final_llc": float(llc[-1]),
    "final_over_peak": float(llc[-1] / llc[peak]),
    "llc_drop_step": llc_drop if llc_drop >= 0 else None,
    "val_loss_drop_step": val_drop if val_drop >= 0 else None,
    "lag": (llc_drop - val_drop) if min(llc_drop, val_drop) >= 0 else None,
  }


def linear_fit(x, y) -> dict:
  """Least-squares line ``y = slope x + intercept`` and its R².

  Args:
    x: (X,) abscissae (at least two distinct values).
    y: (X,) values.

  Returns:
    dict with slope, intercept and r2 (1 - residual / total sum of squares).

  Example:
    >>> round(linear_fit([0, 1, 2], [1, 3, 5])["slope"], 6)
    2.0
  """
  x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
  slope, intercept = np.polyfit(x, y, 1)
  residual = np.sum((y - (slope * x + intercept)) ** 2)
  total = np.sum((y - y.mean()) ** 2)
  r2 = 1.0 - residual / total if total > 0 else float("nan")
  return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2)}


def bootstrap_slope_ci(
  x, y_SxX, num_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
  """Percentile bootstrap interval of the slope of the seed-mean line.

  Each replicate resamples, independently at every x, the S seeds with
  replacement, averages them and refits the line.

  Args:
    x: (X,) abscissae.
    y_SxX: (S, X) values per seed (S >= 2).
    num_boot: replicates.
    level: coverage of the interval.
    seed: NumPy seed of the resampling.

  Returns:
    (low, high) slope bounds.
  """
  x, y_SxX = np.asarray(x, dtype=float), np.asarray(y_SxX, dtype=float)
  num_seeds, num_x = y_SxX.shape
  rng = np.random.default_rng(seed)
  pick_BxSxX = rng.integers(0, num_seeds, (num_boot, num_seeds, num_x))
  mean_BxX = np.take_along_axis(y_SxX[None], pick_BxSxX, axis=1).mean(1)
  slopes_B = np.polyfit(x, mean_BxX.T, 1)[0]
  tail = 50 * (1 - level)
  low, high = np.percentile(slopes_B, [tail, 100 - tail])
  return float(low), float(high)


def rank_average(x) -> np.ndarray:
  """Ranks 1..n of ``x`` (X,), ties sharing their average rank."""
  x = np.asarray(x, dtype=float)
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x))
  ranks[order] = np.arange(1, len(x) + 1)
  for value in np.unique(x):
    tie = x == value
    ranks[tie] = ranks[tie].mean()
  return ranks


def spearman_rho(x, y) -> float:
  """Spearman rank correlation (Pearson correlation of average ranks).

  Example:
    >>> spearman_rho([1, 2, 3, 4], [0.4, 0.2, 0.1, 0.05])
    -1.0
  """
  rx, ry = rank_average(x), rank_average(y)
  if np.std(rx) == 0 or np.std(ry) == 0:
    return float("nan")
  return float(np.corrcoef(rx, ry)[0, 1])
