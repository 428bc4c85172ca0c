"""Smoke run of experiments.influence_through_grokking (tiny config)."""

import json
import math
import os

import numpy as np
import pytest

from experiments import influence_through_grokking as itg

# Compile-bound smoke run: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")

FIGURES = ("bif_distribution.png", "bif_by_residue.png", "susceptibility.png")


def test_influence_through_grokking_smoke_and_replot(tmp_path, monkeypatch):
  out, store = tmp_path / "out", str(tmp_path / "runs")
  payload = itg.main(["--smoke", "--runs", store, "--out", str(out)])
  with open(out / "results.json") as f:
    res = json.load(f)
  assert res["mode"] == "smoke" and set(payload) == set(res)
  assert list(res["stages"]) == list(itg.STAGES)
  steps = [r["step"] for r in res["stages"].values()]
  assert steps == sorted(set(steps))
  for r in res["stages"].values():
    assert set(r["by_relation"]) == set(itg.RELATIONS)
    assert 0 <= r["mean_abs_corr"] <= 1 and 0 <= r["null_mean_abs_corr"] <= 1
    assert sum(r["corr_hist"]) == res["num_train"] * res["num_val"]
    for chi in r["susceptibility"].values():
      assert math.isfinite(chi["val_pairs"])
      assert len(chi["per_class"]) == res["config"]["fig3"]["data"]["p"]
  cfg = itg.CONFIGS["smoke"]
  num_obs = cfg.sgld.num_draws // cfg.observe_every
  assert res["observables_bytes_per_point"] == (
    4 * cfg.sgld.num_chains * num_obs * 121
  )
  assert res["timing"] == {}  # the cost is timed from --quick on.
  assert res["headline"].startswith("memorised")
  # The README rows read the findings from the stages.
  rows = itg.paper_rows(res)
  assert len(rows) == len(itg.STAGES) + 2
  for row, r in zip(rows, res["stages"].values()):
    assert row["ours"] == r["val_loss_frac_rhat_above_1.1"]
  found = itg.findings(res)
  assert [row["ours"] for row in rows[-2:]] == list(found.values())
  memorised, grokked = res["stages"]["memorised"], res["stages"]["grokked"]
  assert found["susceptibility_drops"] == all(
    grokked["susceptibility"][r]["val_pairs"]
    < memorised["susceptibility"][r]["val_pairs"]
    for r in ("W only", "V only")
  )
  for name in FIGURES:
    assert os.path.getsize(out / name) > 0
  monkeypatch.setattr(itg, "compute", None)
  for name in FIGURES:
    (out / name).unlink()
  assert itg.main(["--smoke", "--replot", "--out", str(out)]) == payload
  for name in FIGURES:
    assert os.path.getsize(out / name) > 0


def test_residue_relations_and_stages():
  train = np.array([[0, 1], [2, 3]])
  val = np.array([[0, 4], [4, 1], [1, 1]])
  rel = itg.residue_relations(train, val, p=5)
  assert rel["same a"].tolist() == [[True, False, False], [False] * 3]
  assert rel["same b"].tolist() == [[False, True, True], [False] * 3]
  assert rel["same a+b"].tolist() == [[False] * 3, [False, True, False]]
  assert rel["none"].tolist() == [[False] * 3, [True, False, True]]
  log_steps = np.arange(0, 1001, 50)
  train_acc = np.where(log_steps >= 100, 1.0, 0.0)
  val_acc = np.clip((log_steps - 300) / 400, 0, 1)
  stages = itg.stage_checkpoints(
    np.arange(100, 1001, 100), log_steps, train_acc, val_acc, 0.25
  )
  assert stages == {"memorised": 1, "mid-transition": 4, "grokked": 9}
  # A run with too few checkpoints is refused; one that never grokked gets
  # three spread ones.
  with pytest.raises(ValueError, match="checkpoints"):
    itg.stage_checkpoints([100, 200], log_steps, train_acc, val_acc, 0.25)
  assert list(
    itg.stage_checkpoints(
      np.arange(100, 401, 100), log_steps, train_acc, 0 * val_acc, 0.25
    ).values()
  ) == [0, 1, 3]
