"""Smoke test of experiments.sampler_efficiency on its tiny configuration
(~19 s on 2 idle cores: ten small compiles)."""

import os

import pytest

from experiments import sampler_efficiency
from slt_jax import persist

# Compile-bound smoke runs: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")


def test_smoke_run_and_replot(tmp_path):
  out = str(tmp_path / "out")
  argv = ["--smoke", "--out", out, "--runs", str(tmp_path / "runs")]
  results = sampler_efficiency.main(argv)
  assert set(results["targets"]) == {"fig3_step200", "normal_crossing_12"}
  steps = {"fig3_step200": 10 + 30, "normal_crossing_12": 10 + 40}
  for name, target in results["targets"].items():
    assert [r["sampler"] for r in target["samplers"]] == ["sgld", "sghmc"]
    for row in target["samplers"]:
      assert "error" not in row, row
      assert row["ess_per_second"] > 0 and row["ess_per_gradient"] > 0
      assert row["gradient_evals"] == 2 * steps[name]
    assert "pick" in target["verdict"]
  case = results["targets"]["normal_crossing_12"]
  assert case["nuts"]["ess"] > 0 and case["finite_temp"] > 0
  assert all("bias_z" in r for r in case["samplers"])
  png = os.path.join(out, "sampler_efficiency.png")
  assert os.path.exists(png)
  os.remove(png)
  again = sampler_efficiency.main(argv + ["--replot"])
  assert again["targets"].keys() == results["targets"].keys()
  assert os.path.exists(png)
  assert persist.load_json(os.path.join(out, "results.json"))["cpu"][
    "cpu_count"
  ]
