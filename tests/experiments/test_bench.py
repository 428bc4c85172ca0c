"""Smoke tests of experiments.bench on a tiny configuration.

The JAX parts always run; the PyTorch/devinterp baselines only where torch
(and devinterp) can be imported, as in ``.venv-bench``.
"""

import json
import math
import os

import numpy as np
import pytest

from experiments.bench import __main__ as bench
from experiments.bench import workload
from slt_jax import persist
from slt_jax.llc.config import SGLDConfig

# Compile-bound smoke runs: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")

TINY = workload.BenchConfig(
  p=7,
  width=16,
  train_frac=0.6,
  num_train=None,
  train_steps=40,
  checkpoints=(2,),
  grid_checkpoints=1,
  grid_step_sizes=(5e-4, 1e-3),
  grid_localizations=(5.0,),
  sgld=SGLDConfig(
    step_size=1e-3,
    nbeta=8 / math.log(8),
    localization=5.0,
    num_chains=2,
    num_draws=10,
    num_burnin=4,
    batch_size=8,
  ),
  scaling_burnin=2,
  scaling_draws=6,
  scaling_points=(2,),
  chunk_points=2,
  chunk_sizes=(1,),
  device_counts=(2,),
  device_points=2,
  train_seeds=(2,),
  train_chunk_steps=5,
  torch_train_steps=5,
  matmul_sizes=(32,),
  repeats=2,
)
KEYS = (
  "config",
  "load_average",
  "baselines",
  "reference",
  "llc",
  "agreement",
  "settings_grid",
  "roofline",
  "profile",
  "scaling",
  "training",
  "forms",
  "max_rss_bytes",
  "wall_seconds",
  "environment",
)


def _finite(x) -> bool:
  if isinstance(x, dict):
    return all(_finite(v) for v in x.values())
  if isinstance(x, list):
    return all(_finite(v) for v in x)
  if isinstance(x, float):
    return math.isfinite(x)
  return True


def _run(tmp_path, monkeypatch, capsys, extra):
  monkeypatch.setattr(workload, "get_config", lambda quick: TINY)
  out = str(tmp_path / "bench")
  bench.main(["--out", out, "--device-report"] + extra)
  results = persist.load_json(os.path.join(out, "results.json"))
  report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  return out, results, report


def test_config_validation():
  assert workload.get_config(True).checkpoints == (1, 10)
  assert workload.get_config(True).grid_checkpoints == 1
  assert workload.get_config(False).checkpoints == (1, 10, 50)
  assert workload.get_config(False).sgld.resolve_nbeta(1123) == pytest.approx(
    26.38, abs=0.01
  )
  assert workload.data_config(workload.get_config(True)).train_size == 1123
  with pytest.raises(ValueError, match="train_steps=45"):
    workload.BenchConfig(train_steps=45, checkpoints=(1, 10))
  np.testing.assert_array_equal(workload.spread(50, 10), np.arange(4, 50, 5))
  np.testing.assert_array_equal(workload.spread(50, 1), [49])


# Each part runs once in the suite: the settings grid and the forms (whose
# compiles dominate) in their own ``--only`` runs below, the rest here.
JAX_PARTS = ("llc", "roofline", "profile", "scaling", "training")


def test_bench_jax_parts(tmp_path, monkeypatch, capsys):
  out, results, report = _run(
    tmp_path, monkeypatch, capsys, ["--no-torch", "--only", *JAX_PARTS]
  )
  assert results["config"]["parts"] == list(JAX_PARTS)
  for key in KEYS:
    assert (key in results) == (key not in ("settings_grid", "forms")), key
  assert not results["baselines"]["available"]
  assert [row["C"] for row in results["llc"]] == [2]
  for row in results["llc"]:
    for name, noise in (
      ("slt_jax", "threefry2x32_unpartitioned"),
      ("slt_jax_counter_hash", "counter_hash"),
    ):
      jax_row = row[name]
      assert jax_row["noise"] == noise
      assert jax_row["steps_per_second"] > 0
      assert jax_row["chain_steps"] == row["C"] * 2 * 14
      assert len(jax_row["per_checkpoint"]) == row["C"]
    assert "devinterp" not in row and "torch_loop" not in row
  assert _finite(
    {
      k: results[k]
      for k in ("llc", "roofline", "scaling", "training", "reference")
    }
  )
  step = results["roofline"]["step"]
  assert results["roofline"]["flops_per_step"] == 14 * 8 * 16 * 7
  assert results["roofline"]["gather_form_flops_per_step"] == 6 * 8 * 16 * 7
  assert 0 < step["fraction_of_roofline"]
  np.testing.assert_allclose(
    step["noise_seconds"] + step["without_noise_seconds"],
    step["measured_seconds"],
  )
  for noise in ("threefry2x32_unpartitioned", "counter_hash"):
    prof = results["profile"][noise]
    assert prof["op_seconds_per_chain_step"] > 0
    assert sum(prof["fraction"].values()) == pytest.approx(1.0)
    # Every step has its gradient's matmuls and its noise (their shares
    # depend on the machine's load: only that both are present is fixed).
    assert prof["fraction"]["matmul"] > 0.01
    assert prof["fraction"]["noise and update"] > 0.01
    assert prof["top_ops"][0]["fraction"] >= prof["top_ops"][-1]["fraction"]
  assert set(results["roofline"]["normals"]) >= {
    "threefry2x32",
    "rbg",
    "counter_hash",
  }
  scaling = results["scaling"]
  assert [r["batched_chains"] for r in scaling["batch_width"]] == [4]
  assert [r["chunk_size"] for r in scaling["chunk_size"]] == ["auto", 1]
  assert [r["chunk"] for r in scaling["chunk_size"]] == [2, 1]
  for row in scaling["batch_width"] + scaling["chunk_size"]:
    assert row["memory"]["peak_bytes"] > 0
  assert [r["devices"] for r in scaling["devices"]] == [2]
  assert scaling["devices"][0]["chunk"] == 2
  training = results["training"]
  assert set(training["slt_jax"]) == {"2"}
  assert training["flops_per_step"] == 14 * 8 * 16 * 7
  assert training["slt_jax"]["2"]["model_gflops_per_second"] > 0
  assert training["vmap_speedup"] == 1.0
  assert report["llc_steps_per_s"].keys() == {"2"}
  assert "settings_grid" not in report and "forms" not in report
  for name in ("llc_speed.png", "scaling.png"):
    path = os.path.join(out, name)
    assert os.path.getsize(path) > 0
    os.remove(path)
  bench.main(["--out", out, "--replot"])
  for name in ("llc_speed.png", "scaling.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0


def test_bench_only_settings_grid(tmp_path, monkeypatch, capsys):
  out, results, report = _run(
    tmp_path, monkeypatch, capsys, ["--no-torch", "--only", "settings_grid"]
  )
  assert results["config"]["parts"] == ["settings_grid"]
  for key in ("llc", "roofline", "profile", "scaling", "training", "forms"):
    assert key not in results and key not in report
  grid = results["settings_grid"]
  assert grid["settings"]["step_size"] == [5e-4, 1e-3]
  assert grid["chain_steps"] == 2 * 1 * 2 * 14
  assert grid["one_call"]["program_compiles"] == 1
  assert grid["separate_calls"]["program_compiles"] == 2
  assert grid["separate_calls"]["calls"] == 2
  for row in (grid["one_call"], grid["separate_calls"]):
    assert row["wall_seconds"] > 0 and row["steady_steps_per_second"] > 0
  assert grid["max_abs_difference"] < 1e-3
  assert report["settings_grid"]["compiles"] == [1, 2]
  assert os.path.getsize(os.path.join(out, "llc_speed.png")) > 0
  assert not os.path.exists(os.path.join(out, "scaling.png"))


def test_bench_torch_parts(tmp_path, monkeypatch, capsys):
  pytest.importorskip("torch")
  out, results, report = _run(tmp_path, monkeypatch, capsys, [])
  assert results["baselines"]["available"]
  has_devinterp = bool(results["baselines"].get("devinterp"))
  for row in results["llc"]:
    assert row["torch_loop"]["steps_per_second"] > 0
    assert row["ratio_vs_torch_loop"] > 0
    assert row["counter_hash_ratio_vs_torch_loop"] == pytest.approx(
      row["slt_jax_counter_hash"]["steps_per_second"]
      / row["torch_loop"]["steps_per_second"]
    )
    assert len(row["torch_loop"]["per_checkpoint"]) == row["C"]
    if has_devinterp:
      assert row["ratio_vs_devinterp"] > 0
      assert np.all(
        np.isfinite([c["mean"] for c in row["devinterp"]["per_checkpoint"]])
      )
  agreement = results["agreement"]["torch_loop"]
  assert agreement["num_compared"] == 2
  assert math.isfinite(agreement["bias_z"])
  assert results["training"]["torch_loop"]["steps_per_second"] > 0
  assert "torch.randn" in results["roofline"]["normals"]
  assert report["ratio_vs_torch_loop"]["2"] > 0


def test_torch_models_match_jax():
  torch = pytest.importorskip("torch")
  import jax

  from experiments.bench import torch_baselines as bench_torch
  from slt_jax.grokking import data, losses, model
  from slt_jax.grokking.config import DataConfig, ModelConfig

  dataset = data.modular_arithmetic(
    jax.random.key(0), DataConfig(p=7, train_frac=0.6)
  )
  params = model.init(jax.random.key(1), ModelConfig(p=7, width=16))
  net = bench_torch.make_model(np.asarray(params["W"]), np.asarray(params["V"]))
  x, y = bench_torch.one_hot_data(dataset.train.pairs, dataset.train.labels, 7)
  expected = float(losses.make_loss("centered_mse")(params, dataset.train))
  assert bench_torch.full_loss(net, x, y) == pytest.approx(expected, rel=1e-5)
  with torch.no_grad():
    out = net(x).numpy()
  np.testing.assert_allclose(
    out,
    np.asarray(model.apply(params, dataset.train.pairs)),
    rtol=1e-5,
    atol=1e-6,
  )


def test_compile_counter_reads_jax_compile_logs(tmp_path):
  from experiments.bench import compiles

  log = tmp_path / "run.log"
  log.write_text(
    "x\nFinished XLA compilation of jit(point) in 2.5 sec\n"
    "Finished XLA compilation of jit(add) in 0.25 sec\n"
    "Finished XLA compilation of jit(point) in 1.5 sec\n"
  )
  out = str(tmp_path / "compiles.json")
  r = compiles.main(
    ["--out", out, "--label", "before", "--logs", f"robustness={log}@12.5"]
  )
  entry = r["before"]["robustness"]
  assert (entry["total"], entry["llc_program"]) == (3, 2)
  assert entry["llc_program_seconds"] == 4.0 and entry["wall_seconds"] == 12.5
  assert entry["by_function"] == {"jit(point)": 2, "jit(add)": 1}


def test_bench_only_forms(tmp_path, monkeypatch, capsys):
  _, results, report = _run(
    tmp_path, monkeypatch, capsys, ["--no-torch", "--only", "forms"]
  )
  forms = results["forms"]
  assert forms["default"] == "one_hot" and forms["backend"] == "cpu"
  for form in ("one_hot", "gather"):
    assert forms["sgld"][form]["steps_per_second"] > 0
    assert forms["training"][form] > 0
  assert forms["max_llc_difference"] < 1e-2  # the same chains, up to rounding
  assert report["forms"]["faster"].keys() == {"sgld", "training"}
