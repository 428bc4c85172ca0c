"""``experiments.dln_benchmark``: the networks drawn, a budget too small for a
first ladder, resuming saved rows, refusing another config's rows, the
summary. (Autotune's accuracy on a deep linear network is
``tests/llc/test_autotune.py::test_deep_linear_network_within_ten_percent``.)"""

import dataclasses
import json
import os

import numpy as np
import pytest

from experiments import dln_benchmark as bench
from slt_jax import theory


def test_networks_follow_the_config():
  cfg = bench.CONFIGS["default"]
  nets = bench.draw_networks(0, cfg)
  assert len(nets) == cfg.num_cases
  assert [n["num_params"] for n in nets] == sorted(
    n["num_params"] for n in nets
  )
  for n in nets:
    depth = len(n["widths"]) - 1
    assert cfg.min_depth <= depth <= cfg.max_depth
    assert 1 <= n["rank"] <= min(n["widths"])
    w = n["widths"]
    assert n["num_params"] == sum(a * b for a, b in zip(w, w[1:]))
    assert (n["true_llc"], n["multiplicity"]) == theory.deep_linear_llc(
      tuple(w), n["rank"]
    )
  # Log-uniform sizes over four decades reach both ends' decades.
  sizes = np.log10([n["num_params"] for n in nets])
  assert sizes.min() < 3 and sizes.max() > 5
  assert bench.draw_networks(0, cfg) == nets  # deterministic


def test_a_budget_below_the_first_ladder_is_a_recorded_miss():
  cfg = dataclasses.replace(bench.CONFIGS["smoke"], budget_grads=1000)
  net = bench.draw_networks(0, cfg)[0]
  row = bench.run_network(net, "sgld", cfg, seed=0)
  assert np.isnan(row["estimate"]) and not row["settled"]
  assert row["reason"].startswith("budget_grads=1000")
  assert np.isnan(row["localization_slope"])
  stats = bench.summarize([row], ["sgld"])["sgld"]["m1"]
  assert stats["within_10pct"] == 0.0 and stats["count"] == 1


def _fake_row(net, sampler, cfg, seed, tuning_path):
  assert tuning_path.endswith(f"net{net['index']:02d}_{sampler}")
  return {
    **net,
    "sampler": sampler,
    "estimate": net["true_llc"] * (1.02 if sampler == "sgld" else 0.9),
    "mcse": 0.1,
    "rel_err": 0.02 if sampler == "sgld" else -0.1,
    "ess": 500.0,
    "rhat": 1.0,
    "settled": True,
    "reason": "fake",
    "step_size": 1e-5,
    "num_burnin": 10,
    "num_draws": 10,
    "extrapolated": None,
    "localization_slope": -1.0,
    "gradient_evaluations": 100,
    "seconds": 1.0,
  }


def test_rows_resume_and_another_config_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(bench, "run_network", _fake_row)
  out = str(tmp_path)
  first = bench.main(["--smoke", "--out", out])
  assert os.path.exists(os.path.join(out, "dln_benchmark.png"))
  with open(os.path.join(out, "table.md")) as f:
    lines = f.read().splitlines()
  assert len(lines) == 2 + len(first["networks"])
  others = len(bench.CONFIGS["smoke"].samplers) - 1
  assert lines[2].count("+2.0%") == 1 and lines[2].count("-10.0%") == others
  rows = os.listdir(os.path.join(out, "rows"))
  assert len(rows) == 2 * len(bench.CONFIGS["smoke"].samplers)

  def fail(*args, **kwargs):
    raise AssertionError("a saved row was recomputed")

  monkeypatch.setattr(bench, "run_network", fail)
  again = bench.main(["--smoke", "--out", out])
  assert again["rows"] == first["rows"]
  summary = again["summary"]
  assert summary["ranking"][0] == "sgld"  # 2% against 10%.
  with pytest.raises(ValueError, match="another benchmark config or seed"):
    bench.main(["--smoke", "--out", out, "--seed", "1"])
  with pytest.raises(ValueError, match="another benchmark config or seed"):
    bench.main(["--smoke", "--out", out, "--localization", "2"])
  saved = json.load(open(os.path.join(out, "results.json")))
  assert saved["rows"] == first["rows"]  # the refused run wrote nothing.
