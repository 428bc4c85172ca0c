"""Smoke runs of the LLC experiments with tiny configs (seconds each)."""

import json
import math
import os

import pytest

from experiments import fig3, llc_over_training, llc_validation, protocols
from slt_jax import known_cases

_COMMITTED = os.path.join(
  os.path.dirname(__file__),
  os.pardir,
  os.pardir,
  "figures",
  "llc_over_training",
)

# Compile-bound smoke runs: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")


def _finite(values):
  return all(v is not None and math.isfinite(v) for v in values)


def test_llc_over_training_smoke_both_protocols_and_replot(
  tmp_path, monkeypatch
):
  out, store = tmp_path / "out", str(tmp_path / "runs")
  payload = llc_over_training.main(
    ["--smoke", "--protocol", "both", "--runs", store, "--out", str(out)]
  )
  with open(out / "results.json") as f:
    res = json.load(f)
  assert res["mode"] == "smoke" and set(payload) == set(res)
  cfg = fig3.CONFIGS["smoke"]
  assert set(res["protocols"]) == {"recipe", "authors"}
  # One stored run per protocol, trained with that protocol's config.
  assert len([d for d in os.listdir(store) if not d.endswith(".partial")]) == 2
  for name, r in res["protocols"].items():
    assert r["train"]["lr"] == cfg.protocol(name).train.lr
    assert r["source"] == protocols.fig3_protocol(name).source
    for key in (
      "log_steps",
      "metrics",
      "ckpt_steps",
      "llc_paper_settings",
      "llc_settled",
      "paper",
      "settled",
      "memorisation_step",
      "generalisation_step",
      "source",
    ):
      assert key in r
    paper, settled = r["llc_paper_settings"], r["llc_settled"]
    assert len(paper["mean"][0]) == len(r["ckpt_steps"])
    assert r["settled_ckpt_steps"] == [
      s for s in r["ckpt_steps"] if s % cfg.settled_every == 0
    ]
    assert len(settled["mean"][0]) == len(r["settled_ckpt_steps"])
    assert _finite(paper["mean"][0]) and _finite(settled["mean"][0])
    # autotune's config runs at the settled checkpoints; its cost is counted.
    tune, tuned = r["tune"], r["llc_tuned"]
    assert tuned["config"] == tune["config"]
    assert tune["point_steps"][-1] == r["settled_ckpt_steps"][-1]
    assert len(tuned["mean"][0]) == len(r["settled_ckpt_steps"])
    assert _finite(tuned["mean"][0]) and tune["gradient_evaluations"] > 0
    c, points = tune["config"], cfg.seeds * len(r["settled_ckpt_steps"])
    assert r["cost"] == {
      "tune_grads": tune["gradient_evaluations"],
      "tuned_sweep_grads": points
      * c["num_chains"]
      * (c["num_burnin"] + c["num_draws"]),
      "settled_sweep_grads": points
      * cfg.settled.num_chains
      * (cfg.settled.num_burnin + cfg.settled.num_draws),
    }
    # Peak and final LLC are those of the seed-mean curve.
    for window, sweep, steps in (
      ("paper", paper, r["ckpt_steps"]),
      ("settled", settled, r["settled_ckpt_steps"]),
      ("tuned", tuned, r["settled_ckpt_steps"]),
    ):
      curve = [sum(c) / len(c) for c in zip(*sweep["mean"])]
      s = r[window]
      assert s["peak_llc"] == pytest.approx(max(curve))
      assert s["peak_step"] == steps[curve.index(max(curve))]
      assert s["final_llc"] == pytest.approx(curve[-1])
      assert s["drop_coincides_with_val_loss_drop"] == (
        s["lag"] is not None
        and abs(s["lag"])
        <= res["coincidence_fraction"] * s["val_loss_drop_step"]
      )
    assert os.path.getsize(out / f"llc_over_training_{name}.png") > 0
  assert (
    res["protocols"]["recipe"]["metrics"]
    != (res["protocols"]["authors"]["metrics"])
  )
  # --replot redraws every PNG from results.json without computing.
  monkeypatch.setattr(llc_over_training, "compute", None)
  for name in res["protocols"]:
    (out / f"llc_over_training_{name}.png").unlink()
  again = llc_over_training.main(["--smoke", "--replot", "--out", str(out)])
  assert again == payload
  for name in res["protocols"]:
    assert os.path.getsize(out / f"llc_over_training_{name}.png") > 0


def test_llc_over_training_paper_config_is_the_caption():
  cfg = fig3.CONFIGS["paper"]
  assert cfg.default_protocols == ("recipe", "authors") and cfg.seeds == 1
  assert (cfg.data.p, cfg.model.width) == (53, 1024)
  caption = cfg.protocol("authors").train
  assert (caption.lr, caption.weight_decay, caption.batch_size) == (
    1e-4,
    1e-4,
    128,
  )
  # It memorises by ~1000 and generalises at ~8000 : train past it.
  assert 12000 <= caption.num_steps <= 16000 and caption.stop_acc is None
  recipe = cfg.protocol("recipe").train
  assert (recipe.lr, recipe.weight_decay, recipe.batch_size) == (
    1e-3,
    1e-5,
    128,
  )
  # Every mode's Fig. 3 run is one config that the other experiments reuse.
  from experiments import llc_by_layer, robustness

  for mode in ("smoke", "quick", "default", "paper"):
    assert llc_by_layer.CONFIGS[mode].fig3 == fig3.CONFIGS[mode]
    assert robustness.CONFIGS[mode].fig3 == fig3.CONFIGS[mode]
  assert llc_by_layer.CONFIGS["paper"].protocol == "authors"
  assert robustness.CONFIGS["paper"].protocol == "authors"


def test_fig3_protocols_come_from_protocols_module():
  """A mode's Fig. 3 protocol is ``protocols.fig3_protocol`` with the mode's
  training and chains; the quick mode trains the protocols' own configs."""
  smoke = fig3.CONFIGS["smoke"]
  for name in protocols.NAMES:
    base, proto = protocols.fig3_protocol(name), smoke.protocol(name)
    assert proto.train == getattr(smoke, name) and proto.train.num_steps == 200
    assert (proto.sgld, proto.settled) == (smoke.sgld, smoke.settled)
    assert (proto.name, proto.source, proto.final) == (
      name,
      base.source,
      "last",
    )
    # The smoke run keeps the protocol's optimiser, shrunk in size only.
    assert (proto.train.lr, proto.train.weight_decay) == (
      base.train.lr,
      base.train.weight_decay,
    )
    assert fig3.CONFIGS["quick"].protocol(name).train == base.train
  assert fig3.CONFIGS["default"].recipe.num_steps == 10000
  assert protocols.fig3_protocol("authors").source.startswith("Fig. 3 caption")
  with pytest.raises(ValueError, match="protocol='caption'"):
    smoke.protocol("caption")


def test_llc_validation_smoke(tmp_path):
  llc_validation.main(["--smoke", "--out", str(tmp_path)])
  with open(tmp_path / "results.json") as f:
    res = json.load(f)
  assert res["mode"] == "smoke"
  assert res["scale"] == llc_validation.CONFIGS["smoke"].scale
  assert [case["name"] for case in res["cases"]] == list(known_cases.CASES)
  assert res["all_passed"] == all(case["passed"] for case in res["cases"])
  for case in res["cases"]:
    for key in (
      "name",
      "true",
      "mean",
      "std",
      "rel_err",
      "passed",
      "ess",
      "rhat",
      "stationary",
      "diverged_chains",
    ):
      assert key in case
    assert 0 <= case["diverged_chains"] <= case["num_chains"]
    assert _finite([case["true"], case["mean"], case["std"]])
    # The verdict is the tolerance rule applied to the reported numbers.
    err = abs(case["mean"] - case["true"])
    assert case["passed"] == (
      err <= case["rel_tol"] * abs(case["true"])
      or err <= case["std_tol"] * case["std"]
    )
    assert case["rel_err"] == pytest.approx(
      (case["mean"] - case["true"]) / case["true"]
    )
  # Even at smoke size the isotropic quadratic (d = 20, nbeta 100, gamma 10)
  # lands near its closed form (d/2) nbeta / (nbeta + gamma) = 9.09: within
  # 4 standard errors over the chains (about 50% here; a factor 2 fails).
  iso = res["cases"][0]
  assert iso["true"] == pytest.approx(10 * 100 / 110)
  se = iso["std"] / math.sqrt(iso["num_chains"])
  assert abs(iso["mean"] - iso["true"]) <= 4 * se + 0.03 * iso["true"]
  assert os.path.exists(tmp_path / "validation.png")


def test_llc_over_training_reports_runs_without_tuned_chains(tmp_path):
  """Results with no tuned sweep (``tune_budget_grads=0``, or an autotune
  that refused) are summarised, tabled and drawn without one."""
  with open(os.path.join(_COMMITTED, "results.json")) as f:
    res = json.load(f)
  r = res["protocols"]["recipe"]
  untuned = {
    k: v
    for k, v in r.items()
    if k not in ("tune", "llc_tuned", "tuned", "cost")
  }
  reason = "autotune failed: budget_grads=10 is invalid"
  refused = {
    **untuned,
    "tune": {**r["tune"], "estimate": None, "reason": reason},
  }
  for variant in (untuned, refused):
    results = {**res, "protocols": {"recipe": variant}}
    text = llc_over_training.summary(results, str(tmp_path))
    assert "autotune (" not in text and "settled (2000 + 1000)" in text
    assert (f"no tuned chains; {reason}" in text) == (variant is refused)
    assert len(llc_over_training.paper_rows(results)) == 3
    llc_over_training.plot(results, str(tmp_path))
    assert os.path.getsize(tmp_path / "llc_over_training_recipe.png") > 0


def test_llc_over_training_summary_of_committed_demo():
  # make demo's closing summary, from the committed quick results.
  with open(os.path.join(_COMMITTED, "results.json")) as f:
    res = json.load(f)
  text = llc_over_training.summary(res, "figures/llc_over_training")
  assert "results: figures/llc_over_training/results.json" in text
  for name, r in res["protocols"].items():
    assert (
      f"[{name}] figure: figures/llc_over_training/llc_over_training_{name}.png"
    ) in text
    for key, steps in (
      ("llc_paper_settings", "ckpt_steps"),
      ("llc_settled", "settled_ckpt_steps"),
    ):
      sweep = r[key]
      final = sum(m[-1] for m in sweep["mean"]) / len(sweep["mean"])
      assert f"{final:,.0f} ± " in text and f"(step {r[steps][-1]})" in text
      ok = [s for seed in sweep["stationary"] for s in seed]
      assert f"{sum(ok)} of {len(ok)} " in text
  assert ("not stationary" in text) == (
    not all(
      s
      for r in res["protocols"].values()
      for k in ("llc_paper_settings", "llc_settled")
      for seed in r[k]["stationary"]
      for s in seed
    )
  )
