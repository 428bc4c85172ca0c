"""experiments.bench.time_to_accuracy: the bookkeeping on hand-made traces
(no torch), and a smoke run against devinterp where torch and devinterp
can be imported (``.venv-bench``)."""

import math
import os

import numpy as np
import pytest

from experiments.bench import __main__ as bench
from experiments.bench import time_to_accuracy as tta
from slt_jax import persist


def test_first_time_within_needs_to_stay_inside():
  seconds = [1.0, 2.0, 4.0, 8.0, 16.0]
  # Inside at 2 s, out again at 4 s, inside from 8 s on.
  assert tta.first_time_within(seconds, [80, 99, 107, 104, 96], 100, 0.05) == 8
  assert tta.first_time_within(seconds, [96, 99, 97, 104, 96], 100, 0.05) == 1
  assert (
    tta.first_time_within(seconds, [96, 99, 97, 104, 94], 100, 0.05) is None
  )
  # nan (a window not yet filled) counts as outside; a negative target works.
  assert (
    tta.first_time_within(seconds, [np.nan, -99, -97, -104, -96], -100, 0.05)
    == 2
  )
  assert tta.first_time_within([], [], 100, 0.05) is None


def test_running_estimates_and_times_by_hand():
  # Two chains of six draws; nbeta = 10, init_loss = 1.
  loss = np.array(
    [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]
  )
  draws = np.array([2, 4, 6])
  # Chain means per draw: 2, 3, 4, 5, 6, 7.
  # half: t=2 -> draw 1 -> 3; t=4 -> draws 2,3 -> 4.5; t=6 -> 3..5 -> 6.
  np.testing.assert_allclose(
    tta.running_estimates(loss, 1.0, 10.0, draws), [20.0, 35.0, 50.0]
  )
  # burn-in 3: t=2 not filled; t=4 -> draw 3 -> 5; t=6 -> 3..5 -> 6.
  np.testing.assert_allclose(
    tta.running_estimates(loss, 1.0, 10.0, draws, burnin=3),
    [np.nan, 40.0, 50.0],
  )
  # Chain 0 ran from 0 s to 6 s, chain 1 from 6 s to 18 s (2 s a draw).
  stamps = np.array(
    [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [8.0, 10.0, 12.0, 14.0, 16.0, 18.0]]
  )
  seconds = tta.draw_seconds(stamps, np.array([0.0, 6.0]), draws)
  np.testing.assert_allclose(seconds, [2 + 4, 4 + 8, 6 + 12])
  est = tta.running_estimates(loss, 1.0, 10.0, draws)
  assert tta.first_time_within(seconds, est, 48.0, 0.05) == 18.0
  assert tta.ratio(
    {"seconds": 18.0, "reached": True}, {"seconds": 1.5, "reached": True}
  ) == {
    "ratio": 12.0,
    "kind": "measured",
  }


def test_checkpoints_end_at_the_last_draw():
  draws = tta.checkpoint_draws(5000, 50)
  assert draws[-1] == 5000 and draws[0] == 10
  assert np.all(np.diff(draws) > 0)
  assert tta.checkpoint_draws(4, 10).tolist() == [4]


def test_configs_list_the_large_networks_as_not_run():
  cfg = tta.get_config(False)
  labels = [n.label for n in cfg.networks] + [n.label for n in cfg.not_run]
  assert "1e3" in labels and "1e5" in labels and "1e6" in labels
  for net in cfg.networks + cfg.not_run:
    assert tta._network_record(net)["multiplicity"] == 1
  assert cfg.samplers[0] == "sgld" and cfg.num_chains == 4


def test_devinterp_trace_bookkeeping():
  torch = pytest.importorskip("torch")
  pytest.importorskip("devinterp")
  import jax

  from slt_jax import known_cases

  case = known_cases.deep_linear(
    jax.random.key(0), (3, 2, 3), 1, 200, noise_std=0.0
  )
  x = torch.tensor(np.asarray(case.data["x"]))
  y = torch.tensor(np.asarray(case.data["y"]))
  net = tta.torch_network(torch, case.params)
  expected = float(case.loss_fn(case.params, case.data))
  with torch.no_grad():
    loss = float(tta._torch_loss(net, (x, y)))
  assert loss == pytest.approx(expected, abs=1e-6)
  nbeta = 200 / math.log(200)
  out, stamps, starts, seconds = tta._devinterp_call(
    torch,
    net,
    tta._loader(torch, x, y, 50),
    num_draws=30,
    seed=0,
    kwargs={
      "num_chains": 2,
      "optimizer_kwargs": {"lr": 1e-3, "nbeta": nbeta, "localization": 2.0},
    },
    init_loss=0.25,
  )
  trace = np.asarray(out["loss/trace"])
  assert trace.shape == (2, 30)
  # Every draw kept (burnin=0): devinterp's own estimate.
  mine = tta.running_estimates(trace, 0.25, nbeta, [30], burnin=0)
  assert mine[0] == pytest.approx(out["llc/mean"], rel=1e-5)
  # Chain 1 starts where chain 0 ended; the stamps increase; the time of all
  # draws is the call's (up to the setup before the first draw).
  assert starts[1] == stamps[0, -1]
  assert np.all(np.diff(stamps.ravel()) > 0)
  total = tta.draw_seconds(stamps, starts, np.array([30]))[0]
  assert 0 < total <= seconds


def test_time_to_accuracy_quick(tmp_path, capsys):
  pytest.importorskip("torch")
  pytest.importorskip("devinterp")
  out = str(tmp_path / "tta")
  bench.main(
    ["--quick", "--only", "time_to_accuracy", "--out", out, "--device-report"]
  )
  results = persist.load_json(os.path.join(out, "results.json"))
  assert results["config"]["parts"] == ["time_to_accuracy"]
  assert "reference" not in results and results["cpu"]["cpu_count"] >= 1
  part = results["time_to_accuracy"]
  (record,) = part["networks"]
  assert record["multiplicity"] >= 1 and record["true_llc"] > 0
  for sampler in ("sgld", "sghmc"):
    row = record["slt_jax"][sampler]
    assert row["seconds"] > 0 and math.isfinite(row["estimate"])
    assert row["reached"] == (abs(row["rel_err"]) <= 0.05)
    r = record["ratio"][sampler]
    assert 0 < r["ratio"] < math.inf and r["kind"] in tta.KINDS
    assert r["ratio"] == pytest.approx(
      record["devinterp"]["seconds"] / row["seconds"]
    )
  di = record["devinterp"]
  assert di["step_size"] == record["slt_jax"]["sgld"]["step_size"]
  assert di["num_chains"] == 4 and di["steps_per_second"] > 0
  run = di["running"]
  assert len(run["seconds"]) == len(run["draws"]) == len(run["half"])
  assert np.all(np.diff(run["seconds"]) > 0)
  assert run["draws"][-1] == di["num_draws"]
  if di["reached"]:
    assert di["seconds"] == min(
      t for t in di["seconds_to_accuracy"].values() if t is not None
    )
  else:
    assert di["seconds"] == run["seconds"][-1]
  assert os.path.getsize(os.path.join(out, "time_to_accuracy.png")) > 0
  report = capsys.readouterr().out.strip().splitlines()[-1]
  assert '"time_to_accuracy_ratio"' in report
