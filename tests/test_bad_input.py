"""Bad input to the analysis helpers is a ValueError (or RuntimeError) that
names the bad argument and its value, raised at entry: never a silent number,
a NumPy broadcast or reshape error, or an abort inside XLA."""

import math
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import checks, distributed, known_cases
from slt_jax.grokking import grokking_metrics as gm
from slt_jax.llc import influence, nuts


def _result(observables, init_observables=None, chains=2):
  """A stand-in ``LLCResult`` for influence's functions (one point)."""
  return types.SimpleNamespace(
    observables=observables,
    init_observables=init_observables,
    diagnostics=types.SimpleNamespace(diverged=np.zeros((1, chains), bool)),
  )


# --- slt_jax.llc.influence ---------------------------------------------------


def test_bif_without_draws_raises_instead_of_returning_zeros():
  res = _result({"probe": np.zeros((1, 2, 0, 3))})
  for per_chain in (False, True):
    with pytest.raises(
      ValueError, match=r"'probe' has shape \(1, 2, 0, 3\): no draws were"
    ):
      influence.bif(res, "probe", "probe", per_chain=per_chain)
  with pytest.raises(ValueError, match="no draws were recorded"):
    influence.effective_sample_size(res, "probe")


def test_bif_without_examples_raises_a_clear_error():
  res = _result(
    {"probe": np.zeros((1, 2, 5, 0)), "train": np.ones((1, 2, 5, 3))}
  )
  with pytest.raises(
    ValueError, match=r"'probe' has shape \(1, 2, 5, 0\): it holds no examples"
  ):
    influence.bif(res, "train", "probe")


def test_bif_of_a_well_formed_result_is_the_sample_covariance():
  # The checks leave valid input alone: one chain, four draws, two examples.
  draws = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [6.0, 0.0]])
  res = _result({"x": draws[None, None]}, chains=1)
  np.testing.assert_allclose(
    influence.bif(res, "x", "x")[0], np.cov(draws, rowvar=False), rtol=1e-12
  )


def test_susceptibility_names_losses_that_are_not_finite():
  rng = np.random.default_rng(0)
  losses = 1.0 + 0.1 * rng.normal(size=(1, 2, 50, 3))
  observables = {"train": losses[..., :2], "val": losses[..., 2:]}
  good = _result(
    observables, {"train": np.ones((1, 2)), "val": np.ones((1, 1))}
  )
  bad = _result(
    observables, {"train": np.array([[1.0, np.nan]]), "val": np.ones((1, 1))}
  )
  with pytest.raises(
    ValueError,
    match=r"losses of 'train' at w\* in the full result are not finite: 1 of "
    r"2 \(the first, nan, at index \(0, 1\)\)",
  ):
    influence.susceptibility(good, bad, "val")
  with pytest.raises(ValueError, match="in the restricted result are not fin"):
    influence.susceptibility(bad, good, "val")
  assert np.isfinite(influence.susceptibility(good, good, "val")).all()


# --- slt_jax.llc.nuts --------------------------------------------------------


def _quadratic(w, x):
  return 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(x)


NUTS_BUDGET = dict(num_warmup=10, num_samples=10, num_chains=1)


@pytest.mark.parametrize(
  "batch_ndim, message",
  [
    (-1, r"batch_ndim=-1 is invalid: must be an integer in \[0, 2\]"),
    (3, r"batch_ndim=3 is invalid: .* shapes \[\(2, 3\)\]"),
    (1.0, r"batch_ndim=1.0 is invalid"),
    (True, r"batch_ndim=True is invalid"),
  ],
)
def test_nuts_rejects_a_bad_batch_ndim(batch_ndim, message):
  with pytest.raises(ValueError, match=message):
    nuts.nuts_llc(
      jax.random.key(0),
      _quadratic,
      jnp.zeros((2, 3)),
      jnp.zeros(1),
      nbeta=9.0,
      localization=1.0,
      batch_ndim=batch_ndim,
      **NUTS_BUDGET,
    )


def test_nuts_names_leaves_that_disagree_on_the_batch_axes():
  params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros((3, 3))}
  with pytest.raises(
    ValueError,
    match=r"leaves of shapes \[\(2, 3\), \(3, 3\)\] disagree on their "
    r"batch_ndim=1 leading axes: \[\(2,\), \(3,\)\]",
  ):
    nuts.nuts_llc(
      jax.random.key(0),
      lambda w, x: _quadratic(w["a"], x) + _quadratic(w["b"], x),
      params,
      jnp.zeros(1),
      nbeta=9.0,
      localization=1.0,
      batch_ndim=1,
      **NUTS_BUDGET,
    )


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(nbeta=np.float32(0)), r"nbeta=np.float32\(0.0\) is invalid"),
    (dict(nbeta=math.nan), "nbeta=nan is invalid"),
    (dict(nbeta=True), "nbeta=True is invalid"),
    (dict(nbeta="9"), "nbeta='9' is invalid"),
    (dict(localization=-1.0), "localization=-1.0 is invalid"),
    (dict(target_accept_prob=math.nan), "target_accept_prob=nan is invalid"),
    (dict(num_samples=3), "num_samples=3 is invalid"),
  ],
)
def test_nuts_names_a_bad_number(kwargs, message):
  args = dict(nbeta=9.0, localization=1.0, **NUTS_BUDGET) | kwargs
  with pytest.raises(ValueError, match=message):
    nuts.nuts_llc(
      jax.random.key(0), _quadratic, jnp.zeros(4), jnp.zeros(1), **args
    )


@pytest.mark.slow
def test_nuts_accepts_numpy_scalars():
  # d = 4, nβ = 9, γ = 1: the Gaussian's LLC is d/2 · nβ / (nβ + γ) = 1.8.
  res = nuts.nuts_llc(
    jax.random.key(0),
    _quadratic,
    jnp.zeros(4),
    jnp.zeros(1),
    nbeta=np.float32(9),
    localization=np.float64(1),
    num_warmup=np.int64(200),
    num_samples=np.int64(500),
    num_chains=2,
  )
  assert type(res.nbeta) is float and res.nbeta == 9.0
  assert res.loss_trace.shape == (2, 500)
  assert abs(res.mean - 1.8) < 5 * res.mcse


# --- slt_jax.distributed -----------------------------------------------------


@pytest.fixture
def no_jax_initialize(monkeypatch):
  """Fails the test if ``jax.distributed.initialize`` is reached."""

  def refuse(**kwargs):
    raise AssertionError(f"jax.distributed.initialize was called: {kwargs}")

  monkeypatch.setattr(jax.distributed, "initialize", refuse)


def test_initialize_names_an_unresolvable_coordinator(no_jax_initialize):
  with pytest.raises(
    RuntimeError,
    match=r"coordinator_address='no-such-host.invalid:1234' cannot be used: "
    r"host 'no-such-host.invalid' does not resolve",
  ):
    distributed.initialize("no-such-host.invalid:1234", 2, 1)


@pytest.mark.parametrize(
  "address, requirement",
  [
    ("localhost", "must be 'HOST:PORT'"),
    ("localhost:", "must be 'HOST:PORT'"),
    (":1234", "must be 'HOST:PORT'"),
    ("localhost:http", "must be 'HOST:PORT'"),
    ("localhost:-1", "must be 'HOST:PORT'"),
    (1234, "must be 'HOST:PORT'"),
    ("localhost:0", r"port 0 is not in \[1, 65535\]"),
    ("localhost:65536", r"port 65536 is not in \[1, 65535\]"),
  ],
)
def test_initialize_checks_the_address_form(
  address, requirement, no_jax_initialize
):
  with pytest.raises(
    ValueError,
    match=re.escape(f"coordinator_address={address!r} is invalid: ")
    + requirement,
  ):
    distributed.initialize(address, 2, 1)


@pytest.mark.parametrize("address", ["localhost:1234", "[::1]:65535"])
def test_initialize_passes_a_good_address_to_jax(address, monkeypatch):
  calls = []
  monkeypatch.setattr(jax.config, "update", lambda *args: None)
  monkeypatch.setattr(
    jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs)
  )
  distributed.initialize(address, 2, 1, timeout_s=5)
  assert calls == [
    dict(
      coordinator_address=address,
      num_processes=2,
      process_id=1,
      local_device_ids=None,
      initialization_timeout=5,
      heartbeat_timeout_seconds=5,
    )
  ]


# --- slt_jax.grokking.grokking_metrics ---------------------------------------

STEPS = np.array([0, 10, 20, 30, 40])
TRAIN = np.array([0.2, 1.0, 1.0, 1.0, 1.0])
VAL = np.array([0.0, 0.1, 0.5, 0.96, 1.0])


@pytest.mark.parametrize(
  "call, message",
  [
    (
      lambda: gm.grokking_severity(STEPS, TRAIN[:4], VAL[:4]),
      "steps 5, train_acc 4, val_acc 4",
    ),
    (
      lambda: gm.grokking_severity(STEPS, TRAIN, np.tile(VAL[:3], (2, 1))),
      "steps 5, train_acc 5, val_acc 3",
    ),
    (
      lambda: gm.grokking_severity_authors(TRAIN[:3], VAL),
      "train_acc 3, val_acc 5",
    ),
    (
      lambda: gm.grokking_delay(STEPS[:4], TRAIN, VAL),
      "steps 4, train_acc 5, val_acc 5",
    ),
    (lambda: gm.memorisation_step(STEPS, TRAIN[:2]), "steps 5, curve 2"),
    (lambda: gm.midpoint_crossing(STEPS, VAL[:4], 0), "steps 5, curve 4"),
    (
      lambda: gm.llc_curve_summary(STEPS[:3], VAL, STEPS, VAL, 0),
      "ckpt_steps 3, llc 5",
    ),
    (
      lambda: gm.llc_curve_summary(STEPS, VAL, STEPS, VAL[:1], 0),
      "log_steps 5, val_loss 1",
    ),
    (
      lambda: gm.grokking_severity(STEPS, TRAIN, 0.5),
      "steps 5, train_acc 5, val_acc scalar",
    ),
  ],
)
def test_metrics_name_both_lengths_when_they_differ(call, message):
  with pytest.raises(
    ValueError,
    match=f"lengths along the step \\(last\\) axis differ: {message}",
  ):
    call()


def test_metrics_reject_curves_without_steps():
  with pytest.raises(ValueError, match="no logged steps: lengths steps 0"):
    gm.grokking_severity([], [], [])


def test_metrics_of_matching_lengths_are_unchanged():
  # |train - val| = [0.2, 0.9, 0.5, 0.04, 0]: trapezoid area 10 * 1.54.
  np.testing.assert_allclose(gm.grokking_severity(STEPS, TRAIN, VAL), 15.4 / 40)
  assert gm.grokking_delay(STEPS, TRAIN, VAL) == 30 - 10


# --- slt_jax.known_cases -----------------------------------------------------


@pytest.mark.parametrize("scale", [0, -1.0, math.nan, math.inf, "1", True])
def test_make_case_rejects_a_bad_scale_at_entry(scale):
  with pytest.raises(
    ValueError,
    match=re.escape(f"scale={scale!r} is invalid: must be a finite number > 0")
    + "$",
  ):
    known_cases.make_case("normal_crossing_12", jax.random.key(0), scale=scale)


# --- slt_jax.checks ----------------------------------------------------------


@pytest.mark.parametrize("value", [1e-45, 1.0, np.float64(3e38), np.float32(2)])
def test_check_positive_float32_accepts_numbers_float32_keeps(value):
  checks.check_positive_float32("step_size", value)
  assert np.float32(value) > 0 and np.isfinite(np.float32(value))


@pytest.mark.parametrize(
  "value, requirement",
  [
    (1e-50, "rounds to 0 in float32"),
    (1e-46, "rounds to 0 in float32"),
    (4e38, "overflows to inf in float32"),
    (0.0, "must be a finite number > 0"),
    (-1e-3, "must be a finite number > 0"),
    (math.nan, "must be a finite number > 0"),
    (math.inf, "must be a finite number > 0"),
    (True, "must be a finite number > 0"),
    ("0.1", "must be a finite number > 0"),
  ],
)
def test_check_positive_float32_names_the_bad_value(value, requirement):
  with pytest.raises(
    ValueError,
    match=re.escape(f"step_size={value!r} is invalid: {requirement}") + "$",
  ):
    checks.check_positive_float32("step_size", value)
