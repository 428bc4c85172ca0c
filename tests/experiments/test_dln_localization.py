"""``experiments.dln_localization``: one γ grid against a separate run."""

import dataclasses

import jax
import numpy as np
import pytest

from experiments import dln_localization as study
from slt_jax import known_cases, theory
from slt_jax.llc.estimate import estimate_llc


def test_scan_rows_match_a_separate_run_at_their_gamma(
  monkeypatch, cheap_compiles
):
  widths, rank, index = (3, 4, 2), 1, 0
  monkeypatch.setattr(study, "GAMMAS", (2.0, 50.0))
  rows = study.scan(widths, rank, index, "sgld", steps=40)
  true_llc = theory.deep_linear_llc(widths, rank)[0]
  assert [r["localization"] for r in rows] == [2.0, 50.0]
  for row in rows:
    assert row["true_llc"] == true_llc
    assert np.isclose(row["rel_err"], row["estimate"] / true_llc - 1)
    assert np.isfinite(row["localization_slope"])
  (check,) = study.slope_checks(rows)
  span = np.log(50.0 / 2.0) * true_llc
  assert np.isclose(
    check["finite_difference"],
    (rows[1]["estimate"] - rows[0]["estimate"]) / span,
  )
  key = jax.random.fold_in(jax.random.key(0), index)
  case = known_cases.deep_linear(
    key, widths, rank, study.NUM_EXAMPLES, noise_std=0.0
  )
  cfg = dataclasses.replace(
    case.cfg,
    sampler="sgld",
    batch_size=study.BATCH_SIZE,
    step_size=study.STEPS["sgld"],
    num_chains=study.NUM_CHAINS,
    num_burnin=80,
    num_draws=40,
    localization=50.0,
  )
  alone = estimate_llc(
    key, case.loss_fn, case.params, case.data, cfg, progress=False, warn=False
  )
  np.testing.assert_allclose(rows[1]["estimate"], float(alone.mean), rtol=1e-4)


@pytest.mark.slow
def test_tuned_rows_record_autotunes_estimate_and_slope(monkeypatch):
  monkeypatch.setattr(study, "TUNED_NETWORK", ((3, 4, 2), 1, 500))
  monkeypatch.setattr(study, "TUNED_GAMMAS", (20.0,))
  (row,) = study.tuned_rows(budget_grads=3e5)
  assert row["true_llc"] == theory.deep_linear_llc((3, 4, 2), 1)[0]
  assert np.isclose(row["rel_err"], row["estimate"] / row["true_llc"] - 1)
  assert row["localization_slope"] < 0 < row["localization_slope_se"]
  assert "per unit of ln γ" in row["reason"]
  assert 0 < row["gradient_evaluations"] <= 3e5
