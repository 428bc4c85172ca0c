"""The basin-selection study: its tests on synthetic records, and the study
end to end at its smoke size (p = 11: a cell that never generalises and one
that groks)."""

import math
import os

import numpy as np
import pytest

from experiments import basin_selection
from experiments.basin_selection import analysis, config
from slt_jax import persist

# Compile-bound smoke run: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")


def _basin(kind, source, loss, llc, mcse=1.0):
  return {
    "kind": kind,
    "source": source,
    "kept": True,
    "train_loss": loss,
    "default": {"llc": llc, "mcse": mcse},
  }


def _cell(m, n, regime, mem_llc, gen_llc):
  """A synthetic cell record with one pair (losses 0.01 and 0.02)."""
  mem = _basin("memorising", "memorisation_checkpoint", 0.01, mem_llc)
  gen = _basin("generalising", "grokked_checkpoint", 0.02, gen_llc)
  return {
    "modulus": m,
    "num_train": n,
    "x": config.x_of(m, n),
    "regimes": {"100": regime},
    "generalised": regime != "none",
    "conventions": ["default"],
    "basins": [mem, gen],
    "pair": {"memorising": mem["source"], "generalising": gen["source"]},
    "comparisons": {mem["source"]: analysis.compare(mem, gen, n, ["default"])},
  }


def test_compare_is_the_free_energy_difference():
  mem = _basin("memorising", "final_point", 0.01, 100.0, mcse=3.0)
  gen = _basin("generalising", "superset_finetune", 0.03, 88.0, mcse=4.0)
  out = analysis.compare(mem, gen, 200, ["default"])["default"]
  assert out["delta_llc"] == -12.0
  assert out["delta_llc_mcse"] == pytest.approx(5.0)
  assert out["delta_free_energy"] == pytest.approx(
    200 * 0.02 - 12 * math.log(200)
  )
  assert out["delta_free_energy_mcse"] == pytest.approx(5 * math.log(200))
  assert out["gen_lower_llc"] and out["resolved"]
  assert out["posterior_prefers"] == "generalising"


def test_free_energy_flip_against_the_observed_boundary():
  # Δλ = +10, +5, -20, -30: the posterior prefers the generalising basin
  # (ΔF < 0) from the third cell on, training generalises from the second:
  # one cell disagrees.
  cells = [
    _cell(53, 300, "none", 100.0, 110.0),
    _cell(53, 600, "grokking", 100.0, 105.0),
    _cell(53, 900, "grokking", 100.0, 80.0),
    _cell(53, 1200, "immediate", 100.0, 70.0),
  ]
  test = analysis.free_energy_test(cells, "default", ["100"])
  assert test["cells"] == 4
  assert test["budgets"]["100"]["matches"] == 3
  flip, seen = test["flip"]["53"], test["budgets"]["100"]["observed_boundary"]
  assert (flip["low"], flip["high"]) == (cells[1]["x"], cells[2]["x"])
  assert (seen["low"], seen["high"]) == (cells[0]["x"], cells[1]["x"])
  counts = analysis.llc_counts(cells, "default")
  assert counts["gen_lower_llc"] == 2 and counts["cells_with_both_basins"] == 4
  assert counts["largest_relative_delta_llc"] == pytest.approx(0.3)


def _check_basin(cell, basin):
  """A kept basin interpolates the cell's training set; F is N L + λ ln N."""
  n = cell["num_train"]
  assert basin["kept"] and basin["train_acc"] == 1.0
  if basin["kind"] == "memorising":
    assert basin["val_acc"] < config.MEMORISING_VAL_ACC
  else:
    assert basin["val_acc"] >= config.GENERALISED_ACC
  assert 0 < basin["train_loss"] < 0.1 and basin["param_norm"] > 0
  for conv in cell["conventions"]:
    est = basin[conv]
    assert np.isfinite(est["llc"]) and est["llc"] > 0
    assert 0 < est["mcse"] < 0.2 * est["llc"]
    assert est["free_energy"] == pytest.approx(
      n * basin["train_loss"] + est["llc"] * math.log(n)
    )
  assert basin["paper_window"]["llc"] > 0


def test_basin_selection_smoke(tmp_path):
  out = str(tmp_path / "basins")
  r = basin_selection.main(["--smoke", "--out", out])
  none, grok = r["cells"]
  assert (none["num_train"], grok["num_train"]) == (36, 97)
  assert none["regimes"] == {"600": "none"}
  assert grok["regimes"] == {"600": "grokking"}
  assert [b["source"] for b in none["basins"]] == [
    "memorisation_checkpoint",
    "final_point",
    "superset_finetune",
  ]
  assert [b["source"] for b in grok["basins"]] == [
    "memorisation_checkpoint",
    "grokked_checkpoint",
  ]
  for cell in r["cells"]:
    # The dense re-run retraces the sweep's run; memorised by step 100.
    assert cell["dense_rerun_max_loss_difference"] < 1e-6
    assert cell["memorisation_step"] == 100
    assert cell["conventions"] == ["default"]  # smoke: no n / ln n
    for basin in cell["basins"]:
      _check_basin(cell, basin)
    n = cell["num_train"]
    forms = cell["closed_forms"]
    assert forms["lazy_llc"] == 11 * min(128, n - 1) / 2
    # Both interpolate (K >= N - 1): the generic ranks agree, (N - 1) M / 2.
    assert forms["feature_learning_llc"] == forms["lazy_llc"]
    assert forms["predicted_regime"] == "none"
  fine = none["basins"][2]
  assert fine["note"]["superset_num_train"] == 97
  assert fine["note"]["val_acc_outside_superset"] >= config.GENERALISED_ACC
  assert none["pair"] == {
    "memorising": "final_point",
    "generalising": "superset_finetune",
  }
  assert grok["pair"]["memorising"] == "memorisation_checkpoint"
  # Delta F recomputed from the recorded numbers of each pair.
  for cell in r["cells"]:
    by_source = {b["source"]: b for b in cell["basins"]}
    mem = by_source[cell["pair"]["memorising"]]
    gen = by_source[cell["pair"]["generalising"]]
    for conv in cell["conventions"]:
      cmp = analysis.primary(cell)[conv]
      d_llc = gen[conv]["llc"] - mem[conv]["llc"]
      assert cmp["delta_llc"] == pytest.approx(d_llc)
      assert cmp["delta_free_energy"] == pytest.approx(
        gen[conv]["free_energy"] - mem[conv]["free_energy"]
      )
  for pairing, found in r["tests"]["pairings"].items():
    counts = found["llc_gen_below_mem"]["default"]
    assert counts["cells_with_both_basins"] == 2
    assert counts["gen_lower_llc"] == sum(
      analysis.primary(c, pairing)["default"]["delta_llc"] < 0
      for c in r["cells"]
    )
    (missed,) = found["generalising_basin_not_found"]
    assert missed["num_train"] == 36
    cmp = analysis.primary(none, pairing)["default"]
    assert missed["verdict"]["default"] == (
      "unresolved"
      if abs(cmp["delta_llc"]) <= 2 * cmp["delta_llc_mcse"]
      else "optimisation"
      if cmp["delta_free_energy"] < 0
      else "llc_prefers_memorising"
    )
  # The no-generalisation cell's two memorising points: the final point
  # pairs first, the memorisation checkpoint in the other pairing.
  assert analysis.primary(none) is none["comparisons"]["final_point"]
  assert (
    analysis.primary(none, "memorisation_checkpoint")
    is none["comparisons"]["memorisation_checkpoint"]
  )
  norms = r["tests"]["llc_follows_param_norm"]
  assert norms["pairs"] == 3 + 1  # the pairs of 3 and of 2 basins
  assert 0 <= norms["larger_norm_larger_llc"] <= norms["pairs"]
  rows = basin_selection.paper_rows(r)
  counts = r["tests"]["pairings"]["final_point"]["llc_gen_below_mem"]
  assert rows[0]["ours"] == f"{counts['default']['gen_lower_llc']} of 2"
  assert len(rows) == 2 * 3 + 2  # 2 pairings x 3 rows, norms, closed forms
  assert rows[-2]["ours"] == f"{norms['larger_norm_larger_llc']} of 4"
  # Each estimate is kept for resuming: the paper window and each
  # convention's tuned chains per cell, with the numbers recorded.
  kept = sorted(os.listdir(os.path.join(out, "chains")))
  assert [k.split("-")[0] for k in kept] == [
    f"M11_N{n}_{what}" for n in (36, 97) for what in ("default", "paper_window")
  ]
  saved = persist.load_json(os.path.join(out, "chains", kept[0]))
  assert (
    saved["result"]["per_basin"][1]["llc"]
    == none["basins"][1]["default"]["llc"]
  )
  pngs = ["basin_selection.png", "basin_selection_regimes.png"]
  for png in pngs:
    os.remove(os.path.join(out, png))
  basin_selection.main(["--smoke", "--replot", "--out", out])
  for png in pngs:
    assert os.path.getsize(os.path.join(out, png)) > 0
