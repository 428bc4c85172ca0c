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


def _threefry_normals(key, shape) -> np.ndarray:
  """The kernels' default noise for a one-leaf tree, drawn here directly:
  ``normal(split(key, 1)[0])`` with non-partitionable threefry, float64."""
  with jax.threefry_partitionable(False):
    (leaf_key,) = jax.random.split(key, 1)
    return np.asarray(jax.random.normal(leaf_key, shape), np.float64)


def _sgld_step_numpy(state, xi, settings, rmsprop=None):
  """One (RMSprop-)SGLD step in float64, written from ``sgld``'s equations.

  On ``L = |w|^2 / 2``: ``w <- w + (eps/2) G drift + sqrt(eps G) xi`` with
  ``drift = -(nbeta grad L + gamma (w - w*))``, G = 1 for SGLD and
  ``1 / (delta + sqrt(v))``, ``v <- decay v + (1 - decay) grad^2``, for
  RMSprop-SGLD; the MALA proxy of the previous move from the log densities
  and the Gaussian proposal densities of both directions.

  Args:
    state: dict of float64 arrays: ``w``, ``anchor``, ``prev_w`` (all of one
      shape), ``prev_logdensity``, ``prev_log_proposal`` (scalars; nan
      before the first move) and, for RMSprop, ``v`` (like ``w``).
    xi: the standard normals of this step, like ``w``.
    settings: (eps, nbeta, gamma).
    rmsprop: None, or (decay, delta).

  Returns:
    (the next state dict, dict of the expected ``SGLDInfo`` fields).
  """
  eps, nbeta, gamma = settings
  w, delta = state["w"], state["w"] - state["anchor"]
  logdensity = -nbeta * 0.5 * np.sum(w**2) - 0.5 * gamma * np.sum(delta**2)
  drift = -(nbeta * w + gamma * delta)
  precond, second_moment = np.ones_like(w), None
  if rmsprop is not None:
    decay, damping = rmsprop
    second_moment = decay * state["v"] + (1 - decay) * w**2
    precond = 1.0 / (damping + np.sqrt(second_moment))
  scaled_noise = np.sqrt(eps * precond) * xi
  reverse = (state["prev_w"] - w - 0.5 * eps * precond * drift) / np.sqrt(
    precond
  )
  log_ratio = (
    logdensity
    - state["prev_logdensity"]
    - 0.5 * np.sum(reverse**2) / eps
    - state["prev_log_proposal"]
  )
  new_state = dict(
    w=w + 0.5 * eps * precond * drift + scaled_noise,
    anchor=state["anchor"],
    prev_w=w,
    prev_logdensity=logdensity,
    prev_log_proposal=-0.5 * np.sum(xi**2),
    v=second_moment,
  )
  info = dict(
    loss=0.5 * np.sum(w**2),
    grad_norm=np.linalg.norm(w),
    noise_norm=np.linalg.norm(scaled_noise),
    distance_sq=np.sum(delta**2),
    mala_accept=np.minimum(1.0, np.exp(log_ratio)),
  )
  return new_state, info


@pytest.mark.parametrize("rmsprop", [None, (0.9, 0.1)])
def test_steps_match_the_update_equations_in_numpy(rmsprop):
  # Three steps away from the anchor against the update written out in
  # float64 from the same threefry normals: the state (position, the record
  # of the move, RMSprop's second moment, or none for SGLD) and every info
  # field (a step's acceptance is that of the previous move).
  position = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
  anchor = jnp.full((2, 3), 0.25)
  state = sgld.init(position, anchor, preconditioned=rmsprop is not None)
  assert (state.second_moment is None) == (rmsprop is None)
  kernel = sgld.build_kernel(_quadratic, rmsprop=rmsprop)
  settings = SGLDSettings(0.5 if rmsprop is None else 0.05, 3.0, 2.0)
  expected_state = dict(
    w=np.asarray(position, np.float64),
    anchor=0.25,
    prev_w=np.asarray(position, np.float64),
    prev_logdensity=np.nan,
    prev_log_proposal=np.nan,
    v=np.zeros((2, 3)),
  )
  accepts = []
  for t in range(3):
    key = jax.random.key(t)
    state, info = kernel(key, state, jnp.zeros(1), settings)
    expected_state, expected = _sgld_step_numpy(
      expected_state, _threefry_normals(key, (2, 3)), settings, rmsprop
    )
    chex.assert_shape(
      [state.position, state.anchor, state.prev_position], (2, 3)
    )
    chex.assert_shape(list(info), ())
    np.testing.assert_allclose(state.position, expected_state["w"], atol=1e-6)
    np.testing.assert_array_equal(state.anchor, anchor)
    np.testing.assert_allclose(
      state.prev_position, expected_state["prev_w"], atol=1e-6
    )
    for name in ("prev_logdensity", "prev_log_proposal"):
      np.testing.assert_allclose(
        float(getattr(state, name)), expected_state[name], rtol=1e-5
      )
    if rmsprop is None:
      assert state.second_moment is None
    else:
      np.testing.assert_allclose(
        state.second_moment, expected_state["v"], rtol=1e-5
      )
    for name, value in expected.items():
      np.testing.assert_allclose(
        float(getattr(info, name)), value, rtol=2e-5, err_msg=name
      )
    accepts.append(float(info.mala_accept))
  # No previous move on the first step; a real (unclipped) proxy later.
  assert np.isnan(accepts[0]) and 0 < min(accepts[1:]) < 1


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


def test_preconditioner_and_its_smallest_value():
  # G = 1 / (delta + sqrt(V)) per coordinate; its minimum sits at the
  # largest V, here 0.09 in the second leaf: 1 / (0.1 + 0.3) = 2.5.
  v = {"a": jnp.array([[0.0, 0.01]]), "b": jnp.array([0.09, 0.04, 0.0])}
  g = sgld.preconditioner(v, 0.1)
  chex.assert_trees_all_equal_shapes(g, v)
  np.testing.assert_allclose(g["a"], [[10.0, 5.0]], rtol=1e-6)
  np.testing.assert_allclose(g["b"], [2.5, 1 / 0.3, 10.0], rtol=1e-6)
  state = sgld.init(jax.tree.map(jnp.zeros_like, v), preconditioned=True)
  smallest = sgld.smallest_preconditioner(state._replace(second_moment=v), 0.1)
  chex.assert_shape(smallest, ())
  np.testing.assert_allclose(smallest, 2.5, rtol=1e-6)
