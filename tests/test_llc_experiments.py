"""Smoke runs of the LLC experiments with tiny configs (seconds each)."""

import json
import math
import os

from experiments import llc_over_training, llc_validation


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
  assert len(res["cases"]) == 8
  for case in res["cases"]:
    for key in ("name", "true", "mean", "std", "rel_err", "passed", "ess",
                "rhat"):
      assert key in case
    assert _finite([case["true"], case["mean"], case["std"]])
  assert os.path.exists(tmp_path / "validation.png")
