"""Samplers: SGLD / RMSprop-SGLD / MALA kernels with call-time settings."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.llc import chain, registry
from slt_jax.llc.config import SGLDConfig
from slt_jax.samplers import mala, sgld
from slt_jax.samplers.sgld import SGLDSettings


def _quadratic(w, batch):
  return 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)


def test_sgld_state_and_info_shapes_and_no_second_moment():
  state = sgld.init(jnp.ones((2, 3)))
  assert state.second_moment is None
  kernel = sgld.build_kernel(_quadratic)
  new, info = kernel(
    jax.random.key(0), state, jnp.zeros(1), SGLDSettings(1e-3, 10.0, 1.0)
  )
  chex.assert_shape([new.position, new.anchor, new.prev_position], (2, 3))
  chex.assert_shape(
    [
      info.loss,
      info.grad_norm,
      info.noise_norm,
      info.distance_sq,
      info.mala_accept,
    ],
    (),
  )
  assert new.second_moment is None
  pre = sgld.init(jnp.ones(3), preconditioned=True)
  chex.assert_shape(pre.second_moment, (3,))
  new, _ = sgld.build_kernel(_quadratic, rmsprop=(0.99, 0.1))(
    jax.random.key(0), pre, jnp.zeros(1), SGLDSettings(1e-3, 10.0, 1.0)
  )
  chex.assert_shape(new.second_moment, (3,))
  assert float(jnp.sum(new.second_moment)) > 0


def test_settings_are_traced_one_compile_for_many_values():
  chex.clear_trace_counter()  # chex counts traces across tests.
  traced = chex.assert_max_traces(_quadratic, n=1)
  kernel = jax.jit(sgld.build_kernel(traced))
  state = sgld.init(jnp.ones(3))
  for eps, nbeta, gamma in (
    (1e-3, 10.0, 1.0),
    (2e-3, 5.0, 0.0),
    (1e-4, 100.0, 10.0),
  ):
    new, _ = kernel(
      jax.random.key(0),
      state,
      jnp.zeros(1),
      SGLDSettings(jnp.float32(eps), jnp.float32(nbeta), jnp.float32(gamma)),
    )
    # Zero-noise part of the move: w - eps/2 (nbeta w + gamma (w - w*)).
    noise = sgld.gaussian_noise(
      jax.random.key(0), state.position, "threefry2x32_unpartitioned"
    )
    expected = 1.0 - 0.5 * eps * nbeta + np.sqrt(eps) * np.asarray(noise)
    np.testing.assert_allclose(new.position, expected, rtol=1e-5)


def test_zero_noise_kernel_is_gradient_descent():
  kernel = sgld.build_kernel(_quadratic, noise="zeros")
  state = sgld.init(jnp.ones(4))
  new, info = kernel(
    jax.random.key(0), state, jnp.zeros(1), SGLDSettings(0.1, 2.0, 0.0)
  )
  np.testing.assert_allclose(new.position, 0.9 * np.ones(4), rtol=1e-6)
  assert float(info.noise_norm) == 0.0


@pytest.mark.parametrize(
  "sampler", ["sgld", "rmsprop_sgld", "sghmc", "sgnht", "mala"]
)
def test_recording_only_before_proxy_steps_gives_the_same_proxies(sampler):
  # Every step keeping all its kernel computes, against the chain's schedule
  # (plain, ..., record, proxy) applied by keep_for_role: the same chain, the
  # same proxies on the proxy steps, bit for bit, and plain steps carrying
  # the previous move's record. MALA's acceptance is exact: always kept.
  built = registry.chain_sampler(_quadratic, SGLDConfig(sampler=sampler))
  settings = SGLDSettings(0.05, 3.0, 1.0)
  every, keys = 4, jax.random.split(jax.random.key(3), 12)
  a = b = built.init(jnp.ones(5), jnp.zeros(1))
  for t, key in enumerate(keys):
    role = chain.step_role(t, every)
    a, info_a = built.kernel(key, a, jnp.zeros(1), settings)
    new_b, info_b = built.kernel(key, b, jnp.zeros(1), settings)
    previous, (b, info_b) = (
      b,
      chain.keep_for_role(role, built, b, new_b, info_b),
    )
    np.testing.assert_array_equal(a.position, b.position)
    if role == "proxy" or sampler == "mala":
      assert 0 < float(info_b.mala_accept) <= 1
      assert float(info_a.mala_accept) == float(info_b.mala_accept)
    else:
      assert np.isnan(info_b.mala_accept)
    for name in built.move_record:
      kept = previous if role == "plain" else new_b
      np.testing.assert_array_equal(getattr(b, name), getattr(kept, name))
  assert (built.move_record == ()) == (sampler == "mala")


def test_mala_costs_one_gradient_per_move():
  # sin appears in the forward pass of every loss evaluation: one per move.
  loss = lambda w, batch: jnp.sum(jnp.sin(w)) + 0.0 * jnp.sum(batch)
  state = mala.init(jnp.ones(3), loss, jnp.zeros(1))
  jaxpr = jax.make_jaxpr(mala.build_kernel(loss))(
    jax.random.key(0), state, jnp.zeros(1), SGLDSettings(1e-2, 1.0, 1.0)
  )
  assert str(jaxpr).count(" sin ") == 1


def test_mala_samples_the_localized_gaussian_exactly():
  # Target exp(-nbeta |w|^2 / 2 - gamma / 2 |w|^2): variance 1 / (nbeta + gamma),
  # whatever the (large) step size.
  nbeta, gamma = 3.0, 1.0
  kernel = mala.build_kernel(_quadratic)
  settings = SGLDSettings(0.3, nbeta, gamma)

  def step(state, key):
    state, info = kernel(key, state, jnp.zeros(1), settings)
    return state, (state.position, info.mala_accept)

  init = mala.init(jnp.zeros(8), _quadratic, jnp.zeros(1))
  _, (draws, accept) = jax.lax.scan(
    step, init, jax.random.split(jax.random.key(1), 20000)
  )
  variance = float(jnp.var(draws[2000:]))
  assert variance == pytest.approx(1.0 / (nbeta + gamma), rel=0.05)
  assert 0.3 < float(jnp.mean(accept)) < 1.0
