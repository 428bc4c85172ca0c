"""Tests for slt_jax.grokking.grokking_metrics on hand-made accuracy curves."""

import numpy as np
import pytest

from slt_jax.grokking import grokking_metrics

STEPS = np.array([0, 100, 200, 300, 400])
# Memorises at step 100, generalises (>= 0.95) at step 300.
TRAIN = np.array([0.1, 1.0, 1.0, 1.0, 1.0])
VAL = np.array([0.0, 0.1, 0.5, 0.96, 1.0])
# Never memorises nor generalises.
FLAT = np.array([0.2, 0.3, 0.3, 0.4, 0.5])


def test_memorisation_and_generalisation_steps():
  assert grokking_metrics.memorisation_step(STEPS, TRAIN) == 100
  assert grokking_metrics.generalisation_step(STEPS, VAL) == 300
  assert grokking_metrics.memorisation_step(STEPS, FLAT) == -1
  assert grokking_metrics.generalisation_step(STEPS, FLAT) == -1


def test_thresholds_are_inclusive():
  curve = np.array([0.0, 0.98, 0.99, 0.95, 0.94])
  assert grokking_metrics.memorisation_step(STEPS, curve) == 200
  assert grokking_metrics.generalisation_step(STEPS, curve) == 100
  assert grokking_metrics.first_step_at_least(STEPS, curve, 0.5) == 100


def test_grokking_delay():
  assert grokking_metrics.grokking_delay(STEPS, TRAIN, VAL) == 200
  assert grokking_metrics.grokking_delay(STEPS, TRAIN, FLAT) == -1
  assert grokking_metrics.grokking_delay(STEPS, FLAT, VAL) == -1


def test_gsm_step_functions():
  # Train jumps 0 -> 1 between steps 0 and 100; val jumps 0 -> 1 between 300
  # and 400.  Gap |train - val| = 0, 1, 1, 1, 0.  Trapezoids of width 100:
  # (0+1)/2*100 + (1+1)/2*100 + (1+1)/2*100 + (1+0)/2*100 = 300; T = 400.
  train = np.array([0.0, 1.0, 1.0, 1.0, 1.0])
  val = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
  np.testing.assert_allclose(
    grokking_metrics.grokking_severity(STEPS, train, val), 300.0 / 400.0
  )


def test_gsm_uneven_steps():
  # Steps 0, 100, 1000; gap 0, 1, 0 -> area 50 + 450 = 500; T = 1000.
  steps = np.array([0, 100, 1000])
  train = np.array([0.0, 1.0, 1.0])
  val = np.array([0.0, 0.0, 1.0])
  np.testing.assert_allclose(
    grokking_metrics.grokking_severity(steps, train, val), 0.5
  )


def test_gsm_hand_computed_curve():
  # Gap = 0.1, 0.9, 0.5, 0.04, 0.0 -> trapezoids of width 100:
  # 50 + 70 + 27 + 2 = 149; T = 400.
  np.testing.assert_allclose(
    grokking_metrics.grokking_severity(STEPS, TRAIN, VAL), 149.0 / 400.0
  )


def test_gsm_zero_without_generalisation():
  assert grokking_metrics.grokking_severity(STEPS, TRAIN, FLAT) == 0.0
  # Generalised on the way but not at the final step T: also 0.
  val = np.array([0.0, 0.5, 0.97, 0.99, 0.9])
  assert grokking_metrics.grokking_severity(STEPS, TRAIN, val) == 0.0


def test_gsm_zero_for_immediate_generalisation():
  same = np.array([0.1, 0.5, 1.0, 1.0, 1.0])
  assert grokking_metrics.grokking_severity(STEPS, same, same) == 0.0


def test_leading_axes_are_kept():
  train = np.stack(
    [np.stack([TRAIN, FLAT, TRAIN]), np.stack([FLAT, TRAIN, TRAIN])]
  )  # (2, 3, 5)
  val = np.stack([np.stack([VAL, VAL, FLAT]), np.stack([VAL, FLAT, VAL])])
  mem = grokking_metrics.memorisation_step(STEPS, train)
  gen = grokking_metrics.generalisation_step(STEPS, val)
  delay = grokking_metrics.grokking_delay(STEPS, train, val)
  gsm = grokking_metrics.grokking_severity(STEPS, train, val)
  for x in (mem, gen, delay, gsm):
    assert x.shape == (2, 3)
  np.testing.assert_array_equal(mem, [[100, -1, 100], [-1, 100, 100]])
  np.testing.assert_array_equal(gen, [[300, 300, -1], [300, -1, 300]])
  np.testing.assert_array_equal(delay, [[200, -1, -1], [-1, -1, 200]])
  np.testing.assert_allclose(gsm[0, 0], 149.0 / 400.0)
  np.testing.assert_allclose(gsm[1, 2], 149.0 / 400.0)
  assert gsm[0, 2] == 0.0 and gsm[1, 1] == 0.0


def test_mismatched_lengths_raise():
  with pytest.raises(ValueError, match=f"steps {len(STEPS)}, curve 3"):
    grokking_metrics.memorisation_step(STEPS, TRAIN[:3])
