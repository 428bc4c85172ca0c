"""Grokking metrics on logged accuracy curves (host NumPy).

Curves are arrays ``(..., L)`` over the logged steps ``steps (L,)``; leading
axes (seeds, grid points) are kept. A step that is never reached is -1.
"""

from __future__ import annotations

import numpy as np

MEMORISATION_ACC = 0.99
GENERALISATION_ACC = 0.95


def first_step_at_least(steps: np.ndarray, curve: np.ndarray,
                        threshold: float) -> np.ndarray:
  """First logged step where ``curve >= threshold``, or -1.

  Args:
    steps: (L,) logged steps.
    curve: (..., L) values.
    threshold: level to reach.

  Returns:
    (...) int array of steps.
  """
  steps, curve = np.asarray(steps), np.asarray(curve)
  if curve.shape[-1] != steps.shape[0]:
    raise ValueError(f"curve has {curve.shape[-1]} points but steps has "
                     f"{steps.shape[0]}")
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
  mem = memorisation_step(steps, train_acc)
  gen = generalisation_step(steps, val_acc)
  return np.where((mem >= 0) & (gen >= 0), gen - mem, -1)


def grokking_severity(steps, train_acc, val_acc) -> np.ndarray:
  """Grokking Severity Metric (SPEC §1, paper Fig. 4).

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
  """
  steps = np.asarray(steps, dtype=float)
  gap = np.abs(np.asarray(train_acc) - np.asarray(val_acc))
  area = np.trapezoid(gap, steps, axis=-1)
  generalised = np.asarray(val_acc)[..., -1] >= GENERALISATION_ACC
  return np.where(generalised, area / steps[-1], 0.0)
