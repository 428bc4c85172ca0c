"""The NUTS reference (slt_jax.llc.nuts) against closed forms and against SGLD.

About 33 s on 2 CPU cores (load ~1); the reduced-rank regression check (NUTS vs
MALA vs small-step SGLD, ~90 s) is marked slow.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from slt_jax import known_cases
from slt_jax.grokking import data as data_lib
from slt_jax.grokking import losses, model
from slt_jax.grokking.config import DataConfig, ModelConfig
from slt_jax.llc import estimate_llc, nuts
from slt_jax.llc.config import SGLDConfig

QUIET = dict(progress=False, warn=False)


def _sgld_mcse(res) -> float:
  """MCSE of an ``estimate_llc`` mean from the ESS of its pooled loss trace
  (the same definition as ``NUTSResult.mcse``)."""
  sd = res.nbeta * np.std(res.loss_trace, ddof=1)
  return float(sd / np.sqrt(res.diagnostics.ess))


def _quadratic_network(p: int = 5, width: int = 8, steps: int = 1500):
  """A quadratic network (p=5, K=8: 120 parameters) fit to the training pairs
  of addition mod 5 by full-batch Adam: (loss_fn, w*, train set)."""
  key_data, key_init = jax.random.split(jax.random.key(0))
  train = data_lib.modular_arithmetic(
    key_data, DataConfig(p=p, train_frac=0.6)
  ).train
  params = model.init(key_init, ModelConfig(p=p, width=width))
  loss_fn = losses.make_loss("mse")
  opt = optax.adam(1e-2)

  def step(carry, _):
    params, state = carry
    updates, state = opt.update(jax.grad(loss_fn)(params, train), state)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(
    step, (params, opt.init(params)), None, length=steps
  )
  return loss_fn, params, train


def test_shapes_points_and_mask():
  # L = |w|^2 / 2 on 6 coordinates, 3 of them frozen: nβ/(nβ+γ) * 3/2.
  loss = lambda w, x: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(x)
  res = nuts.nuts_llc(
    jax.random.key(0),
    loss,
    jnp.zeros((2, 6)),
    jnp.zeros(1),
    nbeta=9.0,
    localization=1.0,
    num_warmup=200,
    num_samples=400,
    num_chains=3,
    batch_ndim=1,
    mask=jnp.array([1.0] * 3 + [0.0] * 3),
  )
  chex.assert_shape(
    [res.mean, res.mcse, res.ess, res.rhat, res.init_loss], (2,)
  )
  chex.assert_shape(
    [res.per_chain, res.num_divergent, res.step_size, res.gradient_evals],
    (2, 3),
  )
  chex.assert_shape(res.loss_trace, (2, 3, 400))
  assert np.all(np.abs(res.mean - 1.5 * 0.9) < 5 * res.mcse)
  assert not res.num_divergent.any() and np.all(res.rhat < 1.05)
  assert np.all(res.gradient_evals >= 600)  # at least one per iteration


@pytest.mark.slow
@pytest.mark.parametrize("name", ["normal_crossing_12", "normal_crossing_23"])
def test_nuts_hits_the_exact_finite_temperature_value(name):
  # The quadrature of the known case (theory.gibbs_expectation_2d) at its nβ
  # and γ: NUTS has no step-size bias, so only Monte Carlo error remains.
  # The cross-shaped posterior needs a high acceptance target (small steps)
  # to keep divergences rare.
  case = known_cases.make_case(name, jax.random.key(0))
  res = nuts.nuts_llc(
    jax.random.key(1),
    case.loss_fn,
    case.params,
    case.data,
    case.cfg.nbeta,
    case.cfg.localization,
    num_warmup=500,
    num_samples=1000,
    num_chains=4,
    target_accept_prob=0.99,
  )
  assert abs(res.mean - case.finite_temp) <= 4 * res.mcse, (
    f"{name}: {res.mean:.4f} ± {res.mcse:.4f} vs {case.finite_temp:.4f}"
  )
  assert res.num_divergent.sum() <= 0.02 * res.loss_trace.size
  assert res.rhat < 1.05


@pytest.mark.slow
def test_sgld_and_nuts_agree_on_a_quadratic_network():
  # p=5, K=8 (120 parameters), at a trained point: settled SGLD at a small
  # step and NUTS agree within 3 combined standard errors (both from ESS).
  loss_fn, params, train = _quadratic_network()
  nbeta, gamma = 10.0, 10.0
  ref = nuts.nuts_llc(
    jax.random.key(1),
    loss_fn,
    params,
    train,
    nbeta,
    gamma,
    num_warmup=300,
    num_samples=500,
    num_chains=4,
  )
  cfg = SGLDConfig(
    step_size=1e-3,
    nbeta=nbeta,
    localization=gamma,
    num_chains=8,
    num_draws=4000,
    num_burnin=1000,
    batch_size=None,
  )
  sgld = estimate_llc(jax.random.key(2), loss_fn, params, train, cfg, **QUIET)
  assert bool(sgld.diagnostics.stationary)
  combined = np.hypot(_sgld_mcse(sgld), ref.mcse)
  assert abs(float(sgld.mean) - ref.mean) <= 3 * combined, (
    f"SGLD {float(sgld.mean):.3f} vs NUTS {ref.mean:.3f} ± {combined:.3f}"
  )
  assert not ref.num_divergent.any()


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(nbeta=0.0), "nbeta=0.0 is invalid"),
    (dict(localization=-1.0), "localization=-1.0 is invalid"),
    (dict(num_samples=2), "num_samples=2 is invalid"),
    (dict(num_chains=0), "num_chains=0 is invalid"),
    (dict(target_accept_prob=1.0), "target_accept_prob=1.0 is invalid"),
  ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
  args = {"nbeta": 1.0, "localization": 1.0, "num_samples": 10, **kwargs}
  with pytest.raises(ValueError, match=match):
    nuts.nuts_llc(
      jax.random.key(0),
      lambda w, x: jnp.sum(w**2),
      jnp.zeros(2),
      jnp.zeros(1),
      **args,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_compiles_one_test")
def test_legacy_key_gives_the_typed_keys_numbers_and_an_int_is_refused():
  run = lambda key: nuts.nuts_llc(
    key,
    lambda w, x: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(x),
    jnp.zeros((2, 3)),
    jnp.zeros(1),
    nbeta=10.0,
    localization=1.0,
    num_warmup=20,
    num_samples=20,
    num_chains=2,
    batch_ndim=1,
  )
  typed, legacy = run(jax.random.key(3)), run(jax.random.PRNGKey(3))
  np.testing.assert_array_equal(typed.per_chain, legacy.per_chain)
  with pytest.raises(TypeError, match="key"):
    run(3)


@pytest.mark.slow
def test_nuts_mala_and_small_step_sgld_agree_on_reduced_rank_regression():
  # rrr_5_3_5 at nβ = 100: three samplers, two of them exact (NUTS, MALA).
  # (At eps = 1e-3 SGLD is ~4% high here: the step-size bias NUTS exposes.)
  # 200 of the examples keep it short: the three sample one posterior.
  case = known_cases.make_case("rrr_5_3_5", jax.random.key(0))
  case = dataclasses.replace(case, data=case.data[:200])
  nbeta = 100.0
  ref = nuts.nuts_llc(
    jax.random.key(5),
    case.loss_fn,
    case.params,
    case.data,
    nbeta,
    1.0,
    num_warmup=1000,
    num_samples=1000,
    num_chains=4,
    target_accept_prob=0.95,
  )
  for sampler, eps in (("mala", 3e-3), ("sgld", 3e-4)):
    cfg = dataclasses.replace(
      case.cfg,
      nbeta=nbeta,
      step_size=eps,
      num_draws=20000,
      num_burnin=2000,
      sampler=sampler,
    )
    res = estimate_llc(
      jax.random.key(2), case.loss_fn, case.params, case.data, cfg, **QUIET
    )
    combined = np.hypot(_sgld_mcse(res), ref.mcse)
    assert abs(float(res.mean) - ref.mean) <= 3 * combined, sampler
