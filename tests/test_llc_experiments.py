"""Smoke runs of the LLC experiments with tiny configs (seconds each)."""

import json
import math
import os

import pytest

from experiments import llc_over_training, llc_validation
from slt_jax import validation


def _finite(values):
  return all(v is not None and math.isfinite(v) for v in values)


def test_llc_over_training_smoke(tmp_path):
  llc_over_training.main(["--smoke", "--out", str(tmp_path)])
  with open(tmp_path / "results.json") as f:
    res = json.load(f)
  for key in ("config", "log_steps", "metrics", "ckpt_steps",
              "llc_paper_settings", "llc_settled", "summary",
              "memorisation_step", "generalisation_step", "paper_reference"):
    assert key in res
  paper = res["llc_paper_settings"]
  assert len(paper["mean"][0]) == len(res["ckpt_steps"])
  assert _finite(paper["mean"][0]) and _finite(res["llc_settled"]["mean"][0])
  assert os.path.exists(tmp_path / "llc_over_training.png")


def test_llc_validation_smoke(tmp_path):
  llc_validation.main(["--smoke", "--out", str(tmp_path)])
  with open(tmp_path / "results.json") as f:
    res = json.load(f)
  assert [case["name"] for case in res["cases"]] == list(validation.CASES)
  for case in res["cases"]:
    for key in ("name", "true", "mean", "std", "rel_err", "passed", "ess",
                "rhat"):
      assert key in case
    assert _finite([case["true"], case["mean"], case["std"]])
    # The verdict is the tolerance rule applied to the reported numbers.
    err = abs(case["mean"] - case["true"])
    assert case["passed"] == (err <= case["rel_tol"] * abs(case["true"])
                              or err <= case["std_tol"] * case["std"])
    assert case["rel_err"] == pytest.approx(
        (case["mean"] - case["true"]) / case["true"])
  # Even at smoke size the isotropic quadratic (d = 20, nbeta 100, gamma 10)
  # lands near its closed form (d/2) nbeta / (nbeta + gamma) = 9.09: within
  # 4 standard errors over the chains (about 50% here; a factor 2 fails).
  iso = res["cases"][0]
  assert iso["true"] == pytest.approx(10 * 100 / 110)
  se = iso["std"] / math.sqrt(iso["num_chains"])
  assert abs(iso["mean"] - iso["true"]) <= 4 * se + 0.03 * iso["true"]
  assert os.path.exists(tmp_path / "validation.png")
