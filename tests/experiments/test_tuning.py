"""``experiments.tuning``: autotune's outcome as a study records it."""

import dataclasses
import json
import logging
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import tuning
from slt_jax import known_cases
from slt_jax.llc import SGLDConfig

# Compile-bound runs of small programs: see conftest.cheap_compiles.
pytestmark = pytest.mark.usefixtures("cheap_compiles")


@pytest.fixture(scope="module")
def quadratic():
  return known_cases.isotropic_quadratic(10)


def test_autotune_or_reason_records_a_budget_too_small(key, quadratic):
  q = quadratic
  tuned, report, reason = tuning.autotune_or_reason(
    key, q.loss_fn, q.params, q.data, q.cfg, budget_grads=100
  )
  assert tuned is None and report is None
  assert reason.startswith("budget_grads=100 is invalid: ladder 1")
  with pytest.raises(ValueError, match="budget_grads=100 is invalid"):
    tuning.autotune_or_reason(
      key, q.loss_fn, q.params, q.data, q.cfg, recorded=(), budget_grads=100
    )


def test_cached_tune_saves_then_loads_and_refits_on_a_new_spec(
  key, quadratic, tmp_path, monkeypatch
):
  q = quadratic
  path = str(tmp_path / "tune.json")
  args = (key, q.loss_fn, q.params, q.data, q.cfg, path)
  found = tuning.cached_tune(*args, {"run": "a"}, tolerance=0.15)
  assert found["settled"], found["reason"]
  # h_max of nβ |w|²/2 + γ/2 |w - w*|² is nβ + γ; the tuned config is a
  # config, and its estimate is the finite-temperature value within 15%.
  curvature = q.cfg.nbeta + q.cfg.localization
  np.testing.assert_allclose(found["h_max"], curvature, rtol=1e-5)
  tuned = SGLDConfig(**found["config"])
  assert tuned.nbeta == q.cfg.nbeta and tuned.step_size != q.cfg.step_size
  assert abs(found["estimate"] / q.finite_temp - 1) < 0.15
  with open(path) as f:
    assert json.load(f)["tune"] == found
  # The same spec loads from disk; another one runs autotune again.
  calls = []

  def refuse(*args, **options):
    calls.append(args)
    raise ValueError("x")

  monkeypatch.setattr(tuning, "autotune", refuse)
  assert tuning.cached_tune(*args, {"run": "a"}, tolerance=0.15) == found
  assert not calls
  # Another spec, option or key runs it again; a refusal is not saved.
  refused = tuning.cached_tune(*args, {"run": "b"}, tolerance=0.15)
  assert refused["reason"] == "autotune failed: x" and not refused["settled"]
  assert refused["config"] == dataclasses.asdict(q.cfg)
  assert refused["estimate"] is None and refused["gradient_evaluations"] == 0
  tuning.cached_tune(*args, {"run": "a"}, tolerance=0.1)
  tuning.cached_tune(jax.random.key(7), *args[1:], {"run": "a"}, tolerance=0.15)
  assert len(calls) == 3
  with open(path) as f:
    assert json.load(f)["tune"] == found


def test_autotune_lines_are_shown_once_and_the_logger_restored(
  key, quadratic, capfd
):
  q = quadratic
  log = logging.getLogger("slt_jax.llc.autotune")
  before = (list(log.handlers), log.level, log.propagate)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # the not-settled warning is silenced.
    tuned, report, reason = tuning.autotune_or_reason(
      key, q.loss_fn, q.params, q.data, q.cfg, budget_grads=20_000
    )
  assert not report.settled and reason == report.reason
  lines = capfd.readouterr().err.splitlines()
  assert [r for r in lines if r.startswith("autotune ladder 1")]
  assert len(lines) == len(set(lines)) == len(report.rows)
  assert (list(log.handlers), log.level, log.propagate) == before


def test_memorised_and_last_picks_seed_zeros_points():
  class Run:
    ckpt_steps = np.array([100, 200, 300, 400])
    checkpoints = {"w": jnp.arange(8.0).reshape(2, 4)}  # (seeds, ckpts)

  idx = np.array([1, 2, 3])
  points, steps = tuning.memorised_and_last(Run, idx, memorised=250)
  assert steps.tolist() == [300, 400]
  np.testing.assert_array_equal(points["w"], [2.0, 3.0])
  # Never memorised, or memorised after the last checkpoint: the last twice.
  for memorised in (-1, 500):
    _, steps = tuning.memorised_and_last(Run, idx, memorised)
    assert steps.tolist() == [400, 400]


def test_slope_fields_reads_the_result_or_gives_nan():
  diagnostics = types.SimpleNamespace(
    localization_slope=np.float32(-2.5), localization_slope_se=np.float32(0.5)
  )
  fields = tuning.slope_fields(types.SimpleNamespace(diagnostics=diagnostics))
  assert fields == {"localization_slope": -2.5, "localization_slope_se": 0.5}
  assert all(isinstance(v, float) for v in fields.values())
  assert all(np.isnan(v) for v in tuning.slope_fields(None).values())
