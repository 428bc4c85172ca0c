"""Smoke tests of the experiment scripts, plus a real grokking run."""

import math
import os

import numpy as np
import pytest

from experiments import common, train_modular, train_speed
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
