"""Localized SGHMC and its thermostat variant SGNHT, in the blackjax pattern.

``init(position, anchor) -> SGHMCState`` and ``build_kernel(loss_fn, ...) ->
kernel(key, state, batch, settings) -> (SGHMCState, SGHMCInfo)``, with
``settings`` an ``sgld.SGLDSettings`` of (possibly traced) scalars, exactly as
``slt_jax.samplers.sgld``: the engine (``slt_jax.llc``) runs either sampler unchanged.
SGNHT is SGHMC whose friction is a state variable driven by the kinetic
energy, so both live here (``build_kernel(..., thermostat=True)``).

The target is ``log pi(w) = -nbeta L(w) - gamma/2 ||w - w*||^2``. SGHMC
(Chen et al. 2014, eq. 15: the "SGD with momentum" form that devinterp and
blackjax use), with learning rate eta and momentum decay (friction) alpha,
no gradient-noise estimate (beta-hat = 0) and unit mass::

  v <- (1 - alpha) v + eta grad log pi_B(w) + sqrt(2 alpha eta) xi
  w <- w + v

SGNHT (Ding et al. 2014, Algorithm 2, written in the same variables ``v = h
p``, ``eta = h^2``, thermostat ``alpha = h xi``) makes alpha adaptive, with a
fixed diffusion factor A (the injected noise; alpha starts at A)::

  v <- (1 - alpha) v + eta grad log pi_B(w) + sqrt(2 A eta) xi
  w <- w + v
  alpha <- alpha + (||v||^2 / d - eta)

with d the number of moving parameters: alpha grows while the kinetic energy
per coordinate exceeds its equilibrium value eta (i.e. temperature 1) and
shrinks below it. devinterp's ``SGNHT(lr=eta, diffusion_factor=A)`` is this
update (it applies the friction after the kick).

How ``step_size`` maps: ``eta = step_size / 2``. Then ``alpha = 1`` is SGLD
with step ``step_size`` exactly (same drift ``eps/2 grad log pi``, same
noise ``sqrt(eps) xi``), and a step-size grid or ``llc.calibrate`` means the
same first-order move for every sampler. (To reproduce a run with learning
rate eta, pass ``step_size = 2 eta``.) In Chen's physical units the time step
is ``h = sqrt(eta)`` and the friction ``C = alpha / h``; in the overdamped
regime a step advances Langevin time ``eta / alpha``, ``1 / alpha`` times
SGLD's, and in the underdamped regime soft directions (curvature k) mix in
``~1 / sqrt(eta k)`` steps instead of ``~1 / (eta k)``. The scheme is stable
for ``eta k < 4 - 2 alpha`` on a quadratic of curvature k.

The chain starts at rest (v = 0). Each step records the minibatch loss at the
pre-move point, as SGLD does, so the LLC estimator is unchanged.

Acceptance proxy (``SGHMCInfo.mala_accept``, the analogue of SGLD's MALA
proxy): the kick-then-drift of a move is one leapfrog step between the
synchronized momenta ``p_t = v_half - (eta/2) grad U(w_t)`` and ``p_{t+1} =
v_{t+1} - (eta/2) grad U(w_{t+1})`` (``v_half``: the momentum after friction
and noise, ``U = -log pi_B``), so ``min(1, exp(-dH))`` with ``dH`` the change
of ``H(w, p) = U(w) + ||p||^2 / (2 eta)`` over it is what an HMC step of
one leapfrog step (MALA's momentum form) would accept on. It tends to 1 as
the step shrinks (the energy error is third order in ``sqrt(eta)`` per
coordinate, as MALA's) and collapses when the integrator goes unstable;
like SGLD's proxy it uses each end's minibatch. As in ``slt_jax.samplers.sgld``,
the kernel always records its start energy (one reduction over the
parameters) and reports the acceptance of the previous move (a second
reduction); a caller that discards the proxy and keeps the previous
``prev_energy`` leaves both dead, and XLA removes them. With
minibatch gradients the energy change also carries the work of the gradient
noise on the momentum, so the proxy does not reach 1 at small steps on large
models: on the Fig. 3 network (162,816 parameters, B = 128) it read 0.63,
0.52, 0.48 at eps 1e-5, 3e-5, 1e-4 where SGLD's MALA proxy read 0.95, 0.85,
0.62 (``experiments.sampler_efficiency``): one threshold picks a smaller
step for the momentum samplers than for SGLD.

References:
  Chen, Fox, Guestrin (2014), Stochastic Gradient Hamiltonian Monte Carlo,
  ICML. Ding, Fang, Babbush, Chen, Skeel, Neven (2014), Bayesian Sampling
  Using Stochastic Gradient Thermostats, NeurIPS.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from slt_jax.samplers.sgld import (
  SGLDSettings,
  apply_mask,
  gaussian_noise,
  num_moving,
  sq_norm,
)
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = ["SGHMCInfo", "SGHMCState", "build_kernel", "init"]


class SGHMCState(NamedTuple):
  """State of one chain.

  Attributes:
    position: current parameters w.
    anchor: localization centre w*.
    momentum: v (in parameter units, ``v = h p``); zero at the start.
    friction: SGNHT's thermostat alpha (a scalar); None for SGHMC, whose
      friction is fixed when the kernel is built.
    prev_energy: ``H(w_t, p_t)`` at the start of the last move's leapfrog
      step (nan before the first move), on that move's minibatch.
  """

  position: ArrayTree
  anchor: ArrayTree
  momentum: ArrayTree
  friction: Optional[jax.Array]
  prev_energy: jax.Array


class SGHMCInfo(NamedTuple):
  """Diagnostics of one transition (not carried forward).

  The first five fields are ``sgld.SGLDInfo``'s, with the same meaning.

  Attributes:
    loss: minibatch loss at the pre-move position.
    grad_norm: norm of the (masked) minibatch loss gradient there.
    noise_norm: norm of the injected noise.
    distance_sq: ``||w - w*||^2`` at the pre-move position.
    mala_accept: energy-error acceptance ``min(1, exp(-dH))`` of the previous
      move (nan on the first step).
    friction: the friction alpha this move used (SGNHT: the thermostat).
    kinetic_temperature: ``||v||^2 / (d eta)`` of the new momentum, 1 at
      equilibrium.
  """

  loss: jax.Array
  grad_norm: jax.Array
  noise_norm: jax.Array
  distance_sq: jax.Array
  mala_accept: jax.Array
  friction: jax.Array
  kinetic_temperature: jax.Array


def init(
  position: ArrayTree,
  anchor: Optional[ArrayTree] = None,
  *,
  thermostat: Optional[float] = None,
) -> SGHMCState:
  """Starts a chain at rest at ``position``, localized at ``anchor``.

  Args:
    position: initial parameters (any pytree of float arrays).
    anchor: localization centre; defaults to ``position``.
    thermostat: SGNHT's initial friction (its diffusion factor A); None for
      SGHMC.

  Returns:
    SGHMCState.

  Example:
    >>> import jax.numpy as jnp
    >>> state = init(jnp.ones(3))
    >>> state.momentum.tolist(), state.friction is None
    ([0.0, 0.0, 0.0], True)
  """
  anchor = position if anchor is None else anchor
  nan = jnp.array(jnp.nan, jnp.float32)
  friction = (
    None if thermostat is None else jnp.asarray(thermostat, jnp.float32)
  )
  return SGHMCState(
    position, anchor, jax.tree.map(jnp.zeros_like, position), friction, nan
  )


def build_kernel(
  loss_fn: Callable,
  mask: Optional[ArrayTree] = None,
  friction: float = 0.1,
  thermostat: bool = False,
  noise: str = "threefry2x32_unpartitioned",
) -> Callable:
  """Builds the localized SGHMC (or SGNHT) transition.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss.
    mask: optional pytree of booleans (or 0/1) like the parameters; masked-out
      entries stay at the anchor (no kick, no noise: their momentum stays 0).
    friction: SGHMC's momentum decay alpha in (0, 1] (1: SGLD); for SGNHT the
      diffusion factor A (noise ``sqrt(2 A eta)``), the friction being the
      state's thermostat (start it with ``init(..., thermostat=A)``).
    thermostat: build SGNHT instead of SGHMC.
    noise: PRNG implementation for the noise (see ``sgld.gaussian_noise``).

  Returns:
    ``kernel(key, state, batch, settings) -> (SGHMCState, SGHMCInfo)`` with
    ``settings`` an ``SGLDSettings`` of scalars (eps > 0, nβ > 0, γ >= 0;
    validated by the caller, since they may be traced); ``eta = eps / 2``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2)
    >>> kernel = build_kernel(loss, friction=0.1)
    >>> state, info = kernel(jax.random.key(0), init(jnp.zeros(3)), None,
    ...                      SGLDSettings(1e-3, 10.0, 1.0))
    >>> state.momentum.shape, info.loss.shape
    ((3,), ())
  """

  def kernel(
    key: PRNGKey, state: SGHMCState, batch, settings: SGLDSettings
  ) -> tuple[SGHMCState, SGHMCInfo]:
    step_size, nbeta, localization = settings
    eta = 0.5 * step_size
    w, v = state.position, state.momentum
    loss, grad = jax.value_and_grad(loss_fn)(w, batch)
    grad = apply_mask(grad, mask)
    delta = apply_mask(jax.tree.map(jnp.subtract, w, state.anchor), mask)
    distance_sq = sq_norm(delta)
    potential = nbeta * loss + 0.5 * localization * distance_sq
    force = jax.tree.map(
      lambda g, d: nbeta * g + localization * d, grad, delta
    )  # grad U
    # dH of the previous move: its end is (w_t, p_t^-).
    p_end = jax.tree.map(lambda p, f: p - 0.5 * eta * f, v, force)
    end_energy = potential + sq_norm(p_end) / (2.0 * eta)
    accept = jnp.minimum(1.0, jnp.exp(state.prev_energy - end_energy))
    alpha = (
      jnp.asarray(friction, loss.dtype)
      if state.friction is None
      else state.friction
    )
    diffusion = friction if thermostat else alpha
    xi = apply_mask(gaussian_noise(key, w, noise), mask)
    noise_scale = jnp.sqrt(2.0 * diffusion * eta)
    v_half = jax.tree.map(
      lambda p, z: (1.0 - alpha) * p + noise_scale * z, v, xi
    )
    new_v = jax.tree.map(lambda p, f: p - eta * f, v_half, force)
    new_w = jax.tree.map(jnp.add, w, new_v)
    # This move's start energy H(w_t, p_t^+), p_t^+ = v_half - (eta/2) grad U.
    start_energy = potential + sq_norm(
      jax.tree.map(lambda p, f: p - 0.5 * eta * f, v_half, force)
    ) / (2.0 * eta)
    dims = float(num_moving(w, mask))
    new_kinetic = sq_norm(new_v)
    temperature = new_kinetic / (dims * eta)
    new_friction = (
      alpha + (new_kinetic / dims - eta) if thermostat else state.friction
    )
    info = SGHMCInfo(
      loss,
      jnp.sqrt(sq_norm(grad)),
      noise_scale * jnp.sqrt(sq_norm(xi)),
      distance_sq,
      accept,
      alpha,
      temperature,
    )
    new_state = SGHMCState(
      new_w,
      state.anchor,
      new_v,
      new_friction,
      start_energy,
    )
    return new_state, info

  return kernel
