"""``experiments.rmsprop_preconditioner``: G = 1 / (delta + sqrt(V)) along a
chain, read from a saved ``dln_benchmark`` row."""

import json

import chex
import jax
import numpy as np
import pytest

from experiments import rmsprop_preconditioner as rp
from slt_jax import known_cases

WIDTHS, RANK, EXAMPLES = (5, 4, 3, 4), 1, 500

# Compile-bound runs of small programs: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")


@pytest.fixture(scope="module")
def case():
  return known_cases.deep_linear(
    jax.random.key(3), WIDTHS, RANK, EXAMPLES, noise_std=0.0, localization=20.0
  )


def test_a_chain_that_does_not_move_keeps_g_at_one_over_delta(case):
  # Noiseless labels: the loss gradient is 0 at w*, so V stays ~0 while the
  # chain stays there; at eps = 1e-14 the noise alone moves it, and after t
  # steps E |w - w*|^2 = t d eps G with G = 1 / delta (d = 44).
  out = rp.probe(jax.random.key(0), case, 1e-14, 100, 40, 2)
  assert [c["step"] for c in out] == [20, 40]
  delta = case.cfg.rmsprop_eps
  for c in out:
    chex.assert_shape(np.array(c["G_quantiles"]), (len(rp.QUANTILES),))
    np.testing.assert_allclose(c["G_quantiles"], 1 / delta, rtol=1e-4)
    expected = c["step"] * 44 * 1e-14 / delta
    np.testing.assert_allclose(c["distance_sq"], expected, rtol=0.25)


def test_a_moving_chain_has_g_below_one_over_delta(case):
  out = rp.probe(jax.random.key(0), case, 1e-4, 100, 400, 4)
  for c in out:
    q = np.array(c["G_quantiles"])
    assert np.all(np.diff(q) >= 0) and q[-1] <= 1 / case.cfg.rmsprop_eps
    assert q[0] < 0.99 / case.cfg.rmsprop_eps  # V > 0 once it moves.
    assert c["distance_sq"] > 0


def test_main_reads_a_benchmark_row_and_reprints(tmp_path, capsys):
  rows = tmp_path / "bench"
  (rows / "rows").mkdir(parents=True)
  config = dict(num_examples=EXAMPLES, batch_size=100, localization=20.0)
  net = dict(index=3, widths=list(WIDTHS), rank=RANK, num_params=44)
  bench = dict(
    config=config,
    seed=0,
    networks=[net],
    rows=[dict(index=3, sampler="rmsprop_sgld")],
  )
  (rows / "results.json").write_text(json.dumps(bench))
  row = dict(net, step_size=1e-4, num_burnin=100)
  (rows / "rows" / "net03_rmsprop_sgld.json").write_text(
    json.dumps(dict(fingerprint="x", row=row))
  )
  out = tmp_path / "out"
  argv = ["--quick", "--rows", str(rows), "--out", str(out)]
  results = rp.main(argv)
  (got,) = results["rows"]
  assert got["net"] == 3 and results["steps"] == 2_000
  later = got["checkpoints"][2:]
  assert got["relaxation_ratio"] == min(c["G_quantiles"][0] for c in later)
  # The same chain as probe's on the rebuilt case, with the row's step.
  case = known_cases.deep_linear(
    jax.random.fold_in(jax.random.key(0), 3),
    WIDTHS,
    RANK,
    EXAMPLES,
    noise_std=0.0,
    localization=20.0,
  )
  again = rp.probe(
    jax.random.fold_in(jax.random.key(0), 3), case, 1e-4, 100, 2_000, 4
  )
  assert again == got["checkpoints"]
  capsys.readouterr()
  rp.main(argv + ["--replot"])
  assert "overstates the slowest relaxation" in capsys.readouterr().out
