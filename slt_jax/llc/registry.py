"""The samplers a sweep can run, by ``SGLDConfig.sampler`` name.

Each entry adapts one module of ``slt_jax.samplers`` to the chain program
(``slt_jax.llc.chain``): it reads that sampler's constants from the
config's ``SamplerConfig`` group and returns a ``ChainSampler``. Adding a
sampler is adding an entry here (and its name to
``slt_jax.llc.config.SAMPLERS``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from slt_jax.llc.config import SamplerConfig, SGLDConfig
from slt_jax.samplers import mala, sghmc, sgld
from slt_jax.tree_types import ArrayTree

__all__ = [
  "SAMPLERS",
  "ChainSampler",
  "SamplerEntry",
  "chain_sampler",
  "own_constants",
]


class ChainSampler(NamedTuple):
  """One sampler, built for a loss, mask and configuration.

  Attributes:
    init: ``init(anchor, data) -> state``, a chain at rest at the anchor.
    kernel: ``kernel(key, state, batch, settings) -> (state, info)``, with
      ``info.loss``, ``info.mala_accept`` and ``info.distance_sq``.
    move_record: the state fields in which a move records itself for the
      next step's acceptance proxy; the chain keeps the previous record on
      steps that need none. Empty when ``info.mala_accept`` is not a proxy
      but the step's own acceptance (MALA), reported on every step.
    full_batch: whether the kernel needs the full data on every step,
      whatever ``SGLDConfig.batch_size`` says.
    step_scale: ``step_scale(state) -> scalar``, the smallest factor by which
      the kernel scales the step over the coordinates (RMSprop-SGLD's
      preconditioner), or None where the step is the same in every
      coordinate.
  """

  init: Callable
  kernel: Callable
  move_record: tuple[str, ...]
  full_batch: bool
  step_scale: Optional[Callable] = None


class SamplerEntry(NamedTuple):
  """A registry entry.

  Attributes:
    build: ``build(loss_fn, sampler_config, noise, mask) -> ChainSampler``,
      with ``sampler_config`` a ``SamplerConfig`` and ``noise`` the
      ``EngineConfig.noise`` name.
    parameters: the ``SamplerConfig`` fields of the sampler's own constants
      (they change the chains, so they enter a sweep's fingerprint).
  """

  build: Callable
  parameters: tuple[str, ...]


SGLD_RECORD = ("prev_position", "prev_logdensity", "prev_log_proposal")
SGHMC_RECORD = ("prev_energy",)


def _sgld(loss_fn: Callable, own: SamplerConfig, noise: str, mask):
  return ChainSampler(
    lambda anchor, data: sgld.init(anchor),
    sgld.build_kernel(loss_fn, mask, noise=noise),
    SGLD_RECORD,
    False,
  )


def _rmsprop_sgld(loss_fn: Callable, own: SamplerConfig, noise: str, mask):
  rmsprop = (own.rmsprop_decay, own.rmsprop_eps)
  return ChainSampler(
    lambda anchor, data: sgld.init(anchor, preconditioned=True),
    sgld.build_kernel(loss_fn, mask, rmsprop=rmsprop, noise=noise),
    SGLD_RECORD,
    False,
    lambda state: sgld.smallest_preconditioner(state, own.rmsprop_eps),
  )


def _mala(loss_fn: Callable, own: SamplerConfig, noise: str, mask):
  return ChainSampler(
    lambda anchor, data: mala.init(anchor, loss_fn, data, mask=mask),
    mala.build_kernel(loss_fn, mask, noise=noise),
    (),
    True,
  )


def _sghmc(loss_fn: Callable, own: SamplerConfig, noise: str, mask):
  return ChainSampler(
    lambda anchor, data: sghmc.init(anchor),
    sghmc.build_kernel(loss_fn, mask, friction=own.sghmc_friction, noise=noise),
    SGHMC_RECORD,
    False,
  )


def _sgnht(loss_fn: Callable, own: SamplerConfig, noise: str, mask):
  diffusion = own.sgnht_diffusion
  return ChainSampler(
    lambda anchor, data: sghmc.init(anchor, thermostat=diffusion),
    sghmc.build_kernel(
      loss_fn, mask, friction=diffusion, thermostat=True, noise=noise
    ),
    SGHMC_RECORD,
    False,
  )


SAMPLERS = {
  "sgld": SamplerEntry(_sgld, ()),
  "rmsprop_sgld": SamplerEntry(_rmsprop_sgld, ("rmsprop_decay", "rmsprop_eps")),
  "mala": SamplerEntry(_mala, ()),
  "sghmc": SamplerEntry(_sghmc, ("sghmc_friction",)),
  "sgnht": SamplerEntry(_sgnht, ("sgnht_diffusion",)),
}


def own_constants(sampler_config: SamplerConfig) -> dict:
  """The sampler's name and its own constants (those its kernel reads).

  Example:
    >>> own_constants(SamplerConfig(sampler="sghmc", sghmc_friction=0.5))
    {'sampler': 'sghmc', 'sghmc_friction': 0.5}
  """
  names = SAMPLERS[sampler_config.sampler].parameters
  return {
    "sampler": sampler_config.sampler,
    **{name: getattr(sampler_config, name) for name in names},
  }


def chain_sampler(
  loss_fn: Callable, cfg: SGLDConfig, mask: Optional[ArrayTree] = None
) -> ChainSampler:
  """``cfg.sampler`` built for ``loss_fn`` and ``mask``.

  Example:
    >>> import jax.numpy as jnp
    >>> loss = lambda w, batch: 0.5 * jnp.sum(w ** 2)
    >>> s = chain_sampler(loss, SGLDConfig(sampler="sghmc"))
    >>> s.move_record, s.full_batch, float(s.init(jnp.ones(2), None).momentum[0])
    (('prev_energy',), False, 0.0)
  """
  own = cfg.sampler_config
  return SAMPLERS[own.sampler].build(loss_fn, own, cfg.noise, mask)
