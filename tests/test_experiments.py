"""Smoke tests of the experiment scripts, plus a real grokking run."""

import importlib
import math
import os

import numpy as np
import pytest

from experiments import (common, gsm_vs_lr, llc_by_layer, regimes, robustness,
                         toy_landscapes, train_modular, train_speed)
from slt_jax import io, metrics
from slt_jax.config import DataConfig, ModelConfig, TrainConfig

TINY = ["--p", "7", "--width", "16", "--train-frac", "0.6", "--batch-size",
        "8", "--lr", "1e-2", "--steps", "200", "--log-every", "10",
        "--ckpt-every", "50", "--seeds", "2", "--no-progress"]
RESULT_KEYS = ("config", "num_train", "num_params", "log_steps", "ckpt_steps",
               "metrics", "memorisation_step", "generalisation_step",
               "grokking_delay", "gsm", "final", "steps_per_second",
               "wall_seconds", "environment")


def _all_finite(x) -> bool:
  if isinstance(x, dict):
    return all(_all_finite(v) for v in x.values())
  if isinstance(x, list):
    return all(_all_finite(v) for v in x)
  if isinstance(x, float):
    return math.isfinite(x)
  return x is not None


def test_common_parse_args_and_output_dir(tmp_path, monkeypatch):
  args = common.parse_args("x", argv=[])
  assert (args.quick, args.out, args.seed) == (False, None, 0)
  args = common.parse_args(
      "x", lambda p: p.add_argument("--foo", type=int, default=1),
      ["--quick", "--out", str(tmp_path), "--seed", "3", "--foo", "2"])
  assert (args.quick, args.out, args.seed, args.foo) == (True, str(tmp_path),
                                                         3, 2)
  monkeypatch.chdir(tmp_path)
  assert common.output_dir("exp") == os.path.join("figures", "exp")
  assert os.path.isdir(tmp_path / "figures" / "exp")
  assert common.output_dir("exp", str(tmp_path / "o")) == str(tmp_path / "o")
  path = common.write_results(str(tmp_path / "o"), {"a": np.arange(3),
                                                    "b": float("nan")})
  loaded = io.load_json(path)
  assert loaded["a"] == [0, 1, 2] and loaded["b"] is None
  assert "jax" in loaded["environment"]


def test_get_config():
  for quick in (True, False):
    data_cfg, model_cfg, train_cfg, seeds = train_modular.get_config(quick)
    assert data_cfg.p == model_cfg.p == 53 and model_cfg.width == 1024
    assert train_cfg.loss == "centered_mse" and train_cfg.optimizer == "adam"
    assert seeds >= 1


def test_flags_override_config():
  args = common.parse_args("x", train_modular._add_flags, ["--quick"] + TINY)
  data_cfg, model_cfg, train_cfg, seeds = train_modular.configs_from_args(args)
  assert data_cfg.p == model_cfg.p == 7 and data_cfg.train_frac == 0.6
  assert model_cfg.width == 16 and seeds == 2
  assert (train_cfg.num_steps, train_cfg.log_every, train_cfg.ckpt_every,
          train_cfg.chunk_steps, train_cfg.batch_size) == (200, 10, 50, 50, 8)
  args = common.parse_args("x", train_modular._add_flags, ["--steps", "300"])
  with pytest.raises(ValueError, match="num_steps=300"):
    train_modular.configs_from_args(args)


def test_train_modular_smoke(tmp_path):
  out = str(tmp_path / "run")
  payload = train_modular.main(TINY + ["--out", out])
  results = io.load_json(os.path.join(out, "results.json"))
  for key in RESULT_KEYS:
    assert key in results, key
  assert _all_finite({k: v for k, v in results.items()
                      if k not in ("config", "environment")})
  assert results["steps_per_second"] > 0
  assert len(results["log_steps"]) == 21 and results["ckpt_steps"][-1] == 200
  for name in ("train_loss", "val_loss", "train_acc", "val_acc"):
    assert np.shape(results["metrics"][name]) == (2, 21)
  for name in ("memorisation_step", "generalisation_step", "grokking_delay",
               "gsm"):
    assert np.shape(results[name]) == (2,)
  assert results["config"]["TrainConfig"]["num_steps"] == 200
  assert payload["num_train"] == results["num_train"] == round(0.6 * 49)
  assert os.path.getsize(os.path.join(out, "curves.png")) > 0
  assert not os.path.exists(os.path.join(out, "train_state.npz"))
  steps, params, dataset = train_modular.load_checkpoints(
      os.path.join(out, "checkpoints.npz"))
  np.testing.assert_array_equal(steps, [50, 100, 150, 200])
  assert params["W"].shape == (2, 4, 16, 14) and params["V"].shape == (2, 4, 7,
                                                                        16)
  assert dataset.p == 7 and dataset.num_train == results["num_train"]


def test_quick_config_groks(tmp_path):
  """The real --quick run: memorises, then generalises (seconds on 2 cores)."""
  out = str(tmp_path / "quick")
  train_modular.main(["--quick", "--no-progress", "--out", out])
  r = io.load_json(os.path.join(out, "results.json"))
  train_acc = np.asarray(r["metrics"]["train_acc"])
  val_acc = np.asarray(r["metrics"]["val_acc"])
  assert np.all(train_acc.max(axis=1) == 1.0)
  mem = np.asarray(r["memorisation_step"])
  gen = np.asarray(r["generalisation_step"])
  assert np.all(mem >= 0) and np.all(gen >= 0)
  assert np.all(mem < gen)
  assert np.all(val_acc[:, -1] >= metrics.GENERALISATION_ACC)
  assert np.all(np.asarray(r["gsm"]) > 0)


def test_train_speed_smoke(tmp_path, monkeypatch):
  monkeypatch.setattr(train_speed, "SEEDS", (1, 2))
  monkeypatch.setattr(train_speed, "get_config", lambda quick: (
      DataConfig(p=7, train_frac=0.6), ModelConfig(p=7, width=8),
      TrainConfig(batch_size=8, num_steps=30, log_every=10, ckpt_every=10,
                  chunk_steps=10)))
  payload = train_speed.main(["--out", str(tmp_path)])
  results = io.load_json(os.path.join(tmp_path, "results.json"))
  assert set(results["runs"]) == {"1", "2"}
  for run in results["runs"].values():
    assert run["steps_per_second"] > 0
  assert payload["vmap_speedup"] > 0


# Smoke runs of the figure experiments (hidden --smoke configs: p = 7 or 11,
# width 16-32, 200 training steps, a few SGLD draws). They share compiled
# programs, so together they take about a minute.


def _smoke(module, tmp_path) -> dict:
  out = str(tmp_path / module.NAME)
  payload = module.main(["--smoke", "--out", out])
  results = io.load_json(os.path.join(out, "results.json"))
  assert results["mode"] == "smoke"
  assert os.path.getsize(os.path.join(out, f"{module.NAME}.png")) > 0
  assert set(payload) | {"environment"} == set(results)
  return results


def _finite(*values) -> bool:
  return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values)


def test_llc_scaling_smoke_both_protocols_share_runs_and_replot(
    tmp_path, monkeypatch):
  from experiments import llc_vs_p, llc_vs_width
  store = str(tmp_path / "runs")
  flags = ["--smoke", "--protocol", "both", "--runs", store]
  results = {}
  for module in (llc_vs_p, llc_vs_width):
    out = str(tmp_path / module.NAME)
    results[module.NAME] = module.main(flags + ["--out", out])
    assert os.path.getsize(os.path.join(out, f"{module.NAME}.png")) > 0
  # Fig. 1 (K=32; p=7, 11) and Fig. 2 (p=7; K=16, 32) share (7, 32): three
  # trained runs per protocol, not four.
  stored = sorted(d for d in os.listdir(store) if not d.endswith(".partial"))
  assert len(stored) == 6, stored
  for name, module in (("llc_vs_p", llc_vs_p), ("llc_vs_width", llc_vs_width)):
    r, cfg = results[name], module.CONFIGS["smoke"]
    assert set(r["fits"]) == {"recipe", "authors"}
    assert len(r["points"]) == 2 * len(cfg.series) * len(cfg.xs)
    for proto_name in ("recipe", "authors"):
      for fixed in cfg.series:
        fit = r["fits"][proto_name][str(fixed)]
        if fit["slope"] is None:  # every run dropped by the authors' filter
          continue
        # The fit is the least-squares line through its own points.
        slope, intercept = np.polyfit(fit["xs"], fit["llc"], 1)
        assert fit["slope"] == pytest.approx(slope, rel=1e-6)
        assert fit["intercept"] == pytest.approx(intercept, rel=1e-6, abs=1e-6)
    for point in r["points"]:
      proto = point["protocol"]
      sgld = r["protocols"][proto]["sgld"]
      b = sgld["batch_size"]
      assert point["llc_paper_settings"]["nbeta"] == pytest.approx(b / np.log(b))
      assert np.shape(point["llc_paper_settings"]["mean"]) == (cfg.seeds,)
      assert _finite(point["llc_paper_settings"]["mean"])
      assert point["theory_generic_llc"] > 0 and point["theory_lazy_llc"] > 0
  # The recipe protocol uses batch 128 (nβ 26.4), the authors' 64 (15.4):
  # in smoke mode both are shrunk to 16, so check the real protocols.
  from experiments import protocols
  assert protocols.scaling_protocol("authors").sgld.batch_size == 64
  assert protocols.scaling_protocol("recipe").sgld.batch_size == 128
  # --replot redraws from results.json without computing anything.
  monkeypatch.setattr(llc_vs_p, "compute_scan", None)
  png = tmp_path / "llc_vs_p" / "llc_vs_p.png"
  png.unlink()
  again = llc_vs_p.main(["--smoke", "--replot", "--protocol", "both",
                         "--out", str(tmp_path / "llc_vs_p")])
  assert png.stat().st_size > 0
  assert again["fits"] == results["llc_vs_p"]["fits"]


def test_gsm_vs_lr_smoke(tmp_path):
  r = _smoke(gsm_vs_lr, tmp_path)
  shape = (r["seeds"], len(r["lrs"]))
  for key in ("gsm", "memorisation_step", "generalisation_step"):
    assert np.shape(r[key]) == shape
  assert _finite(r["gsm"], r["gsm_mean"], r["gsm_std"])
  assert np.all((np.asarray(r["gsm"]) >= 0) & (np.asarray(r["gsm"]) <= 1))
  assert np.shape(r["val_acc"]) == shape + (len(r["log_steps"]),)
  # Spearman's rho is undefined (null) when every GSM is equal.
  assert "spearman_rho_runs" in r and "spearman_rho_means" in r


def test_gsm_spearman_matches_definition():
  from slt_jax import metrics as m
  assert m.spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert m.spearman_rho([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8333333)
  assert np.isnan(m.spearman_rho([1, 2, 3], [0, 0, 0]))


def test_toy_landscapes_smoke(tmp_path):
  r = _smoke(toy_landscapes, tmp_path)
  assert set(r["potentials"]) == set(toy_landscapes.POTENTIALS)
  for name, row in r["potentials"].items():
    assert row["exact_llc"] == toy_landscapes.POTENTIALS[name][1]
    assert _finite(row["llc_mean"], row["llc_std"],
                   row["finite_temperature_expectation"])
    assert 0 < row["finite_temperature_expectation"] <= row["exact_llc"] + 1e-3


def test_regimes_smoke(tmp_path):
  r = _smoke(regimes, tmp_path)
  cfg = regimes.get_config("smoke")
  assert len(r["runs"]) == len(cfg["moduli"]) * len(cfg["fractions"])
  for run in r["runs"]:
    assert run["regime"] in regimes.REGIMES and _finite(run["x"])
  assert set(r["boundaries"]) == {"none_vs_generalising",
                                  "grokking_vs_immediate"}


def test_regimes_classify_and_threshold():
  mem = np.array([250, 250, 250, -1])
  gen = np.array([-1, 4000, 500, 250])
  np.testing.assert_array_equal(regimes.classify(mem, gen), [0, 1, 2, 2])
  fit = regimes.fit_threshold([1.0, 2.0, 4.0, 8.0], [False, False, True, True])
  assert (fit["low"], fit["high"], fit["errors"]) == (2.0, 4.0, 0)
  assert fit["midpoint"] == pytest.approx(np.sqrt(8.0))


def test_llc_by_layer_smoke(tmp_path):
  r = _smoke(llc_by_layer, tmp_path)
  assert set(r["curves"]) == set(llc_by_layer.CURVES)
  shape = (r["seeds"], len(r["llc_steps"]))
  for name, sweep in r["curves"].items():
    assert np.shape(sweep["mean"]) == shape and _finite(sweep["mean"])
  moving = {n: s["num_moving_params"] for n, s in r["curves"].items()}
  assert (moving["W only, train pairs"] + moving["V only, train pairs"]
          == moving["W and V, train pairs"])
  # The carrier, recomputed from the curves: drop = peak - final per seed.
  drop = {n: [np.nanmax(m) - m[-1] for m in np.asarray(s["mean"], float)]
          for n, s in r["curves"].items()}
  for name in llc_by_layer.CURVES:
    np.testing.assert_allclose(r["drops"][name]["drop"], drop[name])
  w_drop = np.mean(drop["W only, train pairs"])
  v_drop = np.mean(drop["V only, train pairs"])
  assert r["drop_carried_by"] == ("W" if w_drop > v_drop else "V")


def test_robustness_smoke(tmp_path):
  r = _smoke(robustness, tmp_path)
  assert set(r["panels"]) == {"seed", "step size ε", "localization γ", "nβ",
                              "chain length"}
  for entries in r["panels"].values():
    assert len(entries) >= 2
    for curve in entries.values():
      assert _finite(curve["llc_mean"], curve["summary"]["final_over_peak"])
      # Recomputed from the curve: peak at or after memorisation, then lower.
      llc = np.asarray(curve["llc_mean"], float)
      peak = int(np.nanargmax(llc))
      mem = r["memorisation_step"][curve["train_seed"]]
      assert curve["holds"] is bool(llc[-1] / llc[peak] < 1.0
                                    and r["llc_steps"][peak] >= mem)
  assert r["panel_holds"] == {
      panel: all(c["holds"] for c in entries.values())
      for panel, entries in r["panels"].items()}
  assert r["all_hold"] == all(r["panel_holds"].values())
