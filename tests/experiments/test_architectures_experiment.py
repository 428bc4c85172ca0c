"""``experiments.architectures``: the smoke run end to end (one architecture;
autotune stubbed, it has its own tests), its numbers against independent
recomputations, the curves and masks of every architecture, the saved tuning,
the curve summary and ``--replot``."""

import dataclasses
import os
import types

import jax
import numpy as np
import pytest

from experiments import architectures as E
from experiments import tuning
from slt_jax.grokking import architectures as arch_lib
from slt_jax.llc import SGLDConfig, resolve_mask
from slt_jax.samplers.sgld import num_moving

pytestmark = pytest.mark.usefixtures("cheap_compiles")


def _fake_autotune(key, loss_fn, params, data, cfg, **kwargs):
  """The tuned config autotune would hand back, without its runs: a step
  small enough for the smoke networks (h_max < 100 there), and a report
  that says it did not settle."""
  del key, loss_fn, params, data, kwargs
  report = types.SimpleNamespace(
    settled=False,
    reason="stubbed",
    h_max=np.full(2, 50.0),
    result=None,
    gradient_evaluations=0,
  )
  return dataclasses.replace(cfg, step_size=2e-3, num_burnin=100), report


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("arch"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tuning, "autotune", _fake_autotune)
    results = E.main(["--smoke", "--archs", "relu_net", "--out", out])
  return results, out


def test_smoke_run_memorises_and_estimates(smoke):
  results, out = smoke
  assert list(results["architectures"]) == ["relu_net"]
  r = results["architectures"]["relu_net"]
  setup = E.CONFIGS["smoke"].setups[0]
  # Every seed memorised its training pairs (train acc 1 at the end).
  np.testing.assert_array_equal(
    np.asarray(r["metrics"]["train_acc"])[:, -1], 1.0
  )
  assert all(0 < m <= setup.training.num_steps for m in r["memorisation_step"])
  # d = 3 p K, and the layers W, V partition it.
  assert r["num_params"] == setup.arch.num_params() == 3 * 17 * 128
  curves = r["curves"]
  assert list(curves) == ["whole", "W (input)", "V (output)"]
  assert curves["whole"]["num_moving_params"] == r["num_params"]
  assert curves["W (input)"]["num_moving_params"] == 2 * 17 * 128
  assert curves["V (output)"]["num_moving_params"] == 128 * 17
  # The LLC at every (seed, checkpoint): finite, positive, below d/2.
  for name, sweep in curves.items():
    mean = np.asarray(sweep["mean"], float)
    assert mean.shape == (2, len(r["llc_steps"]))
    assert np.all(np.isfinite(mean)) and np.all(mean > 0), name
    assert np.all(mean < sweep["num_moving_params"] / 2), name
    assert sweep["config"]["localization"] == 5.0
  # The summaries are the seed means of the sweeps.
  whole = r["summaries"]["whole"]
  seed_mean = np.asarray(curves["whole"]["mean"], float).mean(0)
  np.testing.assert_allclose(whole["seed_mean"], seed_mean)
  assert whole["peak_llc"] == pytest.approx(seed_mean.max())
  assert whole["final_llc"] == pytest.approx(seed_mean[-1])
  assert whole["drop"] == pytest.approx(seed_mean.max() - seed_mean[-1])
  v = r["verdict"]
  assert v["settled_llc_over_half_d"] == pytest.approx(
    2 * seed_mean[-1] / r["num_params"]
  )
  assert v["drop_carried_by"] in ("W (input)", "V (output)")
  assert r["tune"]["reason"] and not r["tune"]["settled"]
  counts = sum(np.sum(c["diverged_chains"]) for c in curves.values())
  assert sum(d["diverged_chains"] for d in r["diverged"]) == counts
  assert os.path.exists(os.path.join(out, "architectures.png"))
  assert "relu_net" in E.summary(results, out)
  rows = E.paper_rows(results)
  assert len(rows) == 7
  assert rows[-1]["ours"] is False  # autotune stubbed: not settled.


def test_replot_redraws_from_results(smoke):
  results, out = smoke
  figure = os.path.join(out, "architectures.png")
  os.remove(figure)
  again = E.main(["--smoke", "--replot", "--out", out])
  assert os.path.exists(figure)
  assert (
    again["architectures"]["relu_net"]["verdict"]
    == (results["architectures"]["relu_net"]["verdict"])
  )


def test_curves_of_the_transformer_name_layers_and_heads():
  setup = E.CONFIGS["smoke"].setups[2]
  task = arch_lib.ArchitectureTask(setup.arch)
  keys = jax.random.split(jax.random.key(0), 6).reshape(2, 3)
  ckpts = jax.vmap(jax.vmap(task.init))(keys)
  masks = E.curve_masks(setup, ckpts)
  assert list(masks) == [
    "whole",
    "embedding",
    "layer 0",
    "layer 1",
    "output",
    "layer 0 head 0",
    "layer 1 head 0",
  ]
  point = jax.tree.map(lambda x: x[0, 0], ckpts)
  moving = {
    name: num_moving(point, resolve_mask(mask, point))
    for name, mask in masks.items()
  }
  arch = setup.arch
  d, f, p = arch.d_model, arch.feedforward_dim, arch.p
  assert (d, f, p, arch.num_layers, arch.num_heads) == (12, 32, 17, 2, 1)
  assert moving["whole"] == setup.arch.num_params()
  assert moving["embedding"] == moving["output"] == p * d
  per_layer = 4 * d * d + 4 * d + 4 * d + 2 * d * f + f + d
  assert moving["layer 0"] == moving["layer 1"] == per_layer
  # One head: its q, k, v kernels and biases and the output kernel; the
  # output bias is shared by the heads and stays out.
  assert moving["layer 0 head 0"] == 4 * d * d + 3 * d


def test_curve_summary_leaves_out_all_diverged_points():
  steps = np.array([100, 200, 300])
  run = type(
    "Run",
    (),
    {
      "log_steps": np.array([0, 100, 200, 300]),
      "metrics": {"val_loss": np.array([[4.0, 3.0, 1.0, 0.1]] * 3)},
    },
  )
  mean = np.array([[10.0, 20.0, 8.0], [12.0, np.nan, 6.0], [11.0, 22.0, 7.0]])
  sweep = {
    "mean": mean,
    "std": np.ones_like(mean),
    "per_chain": np.ones(mean.shape + (4,)),
    "num_moving_params": 100,
  }
  s = E.curve_summary(steps, sweep, run, np.array([100, 100, 100]))
  np.testing.assert_allclose(s["seed_mean"], [11.0, 21.0, 7.0])
  assert s["peak_step"] == 200 and s["final_llc"] == 7.0
  se_peak = np.std([20.0, 22.0], ddof=1) / np.sqrt(3)
  se_final = np.std([8.0, 6.0, 7.0], ddof=1) / np.sqrt(3)
  assert s["drop"] == pytest.approx(14.0)
  assert s["drop_se"] == pytest.approx(np.hypot(se_peak, se_final))
  assert s["drop_significant"]
  assert s["final_llc_over_half_d"] == pytest.approx(2 * 7.0 / 100)
  diverged = E.diverged_points(
    "whole",
    steps,
    {"diverged_chains": np.array([[0, 0, 0], [0, 4, 1], [0] * 3])},
  )
  assert diverged == [
    {"curve": "whole", "seed": 1, "step": 200, "diverged_chains": 4},
    {"curve": "whole", "seed": 1, "step": 300, "diverged_chains": 1},
  ]


def test_saved_tuning_is_reused_and_another_setups_is_not(
  tmp_path, monkeypatch
):
  cfg = E.CONFIGS["smoke"]
  setup = cfg.setups[1]
  task = arch_lib.ArchitectureTask(setup.arch, setup.training.loss)
  points = jax.vmap(task.init)(jax.random.split(jax.random.key(0), 2))
  path = str(tmp_path / "tune.json")
  monkeypatch.setattr(tuning, "autotune", _fake_autotune)
  first = E.tune(setup, cfg, task, points, None, jax.random.key(1), path)
  assert SGLDConfig(**first["config"]).step_size == 2e-3

  def fail(*args, **kwargs):
    raise AssertionError("a saved tuning was recomputed")

  monkeypatch.setattr(tuning, "autotune", fail)
  assert (
    E.tune(setup, cfg, task, points, None, jax.random.key(1), path) == first
  )
  other = dataclasses.replace(setup, localization=50.0)
  with pytest.raises(AssertionError, match="recomputed"):
    E.tune(other, cfg, task, points, None, jax.random.key(1), path)
