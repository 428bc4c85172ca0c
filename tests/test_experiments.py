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


@pytest.mark.parametrize("name", ["llc_vs_p", "llc_vs_width"])
def test_llc_scaling_smoke(name, tmp_path):
  module = importlib.import_module(f"experiments.{name}")
  r = _smoke(module, tmp_path)
  cfg = module.get_config("smoke")
  assert len(r["points"]) == len(cfg["series"]) * len(cfg["xs"])
  for point in r["points"]:
    for sweep in ("llc_paper_settings", "llc_settled"):
      assert np.shape(point[sweep]["mean"]) == (cfg["seeds"],)
      assert _finite(point[sweep]["mean"], point[sweep]["std"])
    assert point["theory_generic_llc"] > 0 and point["theory_lazy_llc"] > 0
  for fit in r["fits"].values():
    for kind in ("paper_settings", "settled"):
      assert _finite(fit[kind]["slope"], fit[kind]["intercept"],
                     fit[kind]["r2"], fit[kind]["slope_ci95"])
    assert _finite(fit["theory_generic"]["slope"], fit["theory_lazy"]["slope"])
  assert set(r["linearity_survives_settled"]) == set(r["fits"])


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
  assert r["drop_carried_by"] in ("W", "V")


def test_robustness_smoke(tmp_path):
  r = _smoke(robustness, tmp_path)
  assert set(r["panels"]) == {"seed", "step size ε", "localization γ", "nβ",
                              "chain length"}
  for entries in r["panels"].values():
    assert len(entries) >= 2
    for curve in entries.values():
      assert _finite(curve["llc_mean"], curve["summary"]["final_over_peak"])
      assert isinstance(curve["holds"], bool)
  assert set(r["panel_holds"]) == set(r["panels"])
