"""The samplers a sweep can run, by ``SGLDConfig.sampler`` name.

Each entry adapts one module of ``slt_jax.samplers`` to the chain program
(``slt_jax.llc.chain``): it reads that sampler's constants from the
``SGLDConfig`` and returns a ``ChainSampler``. Adding a sampler is adding an
entry here (and its name to ``slt_jax.llc.config.SAMPLERS``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from slt_jax.llc.config import SGLDConfig
from slt_jax.samplers import mala, sghmc, sgld
from slt_jax.tree_types import ArrayTree

__all__ = ["SAMPLERS", "ChainSampler", "SamplerEntry", "chain_sampler"]


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
  """

  init: Callable
  kernel: Callable
  move_record: tuple[str, ...]
  full_batch: bool


class SamplerEntry(NamedTuple):
  """A registry entry.

  Attributes:
    build: ``build(loss_fn, cfg, mask) -> ChainSampler``.
    parameters: the ``SGLDConfig`` fields of the sampler's own constants
      (they change the chains, so they enter a sweep's fingerprint).
  """

  build: Callable
  parameters: tuple[str, ...]


SGLD_RECORD = ("prev_position", "prev_logdensity", "prev_log_proposal")
SGHMC_RECORD = ("prev_energy",)


def _sgld(loss_fn: Callable, cfg: SGLDConfig, mask: Optional[ArrayTree]):
  return ChainSampler(
    lambda anchor, data: sgld.init(anchor),
    sgld.build_kernel(loss_fn, mask, noise=cfg.noise),
    SGLD_RECORD,
    False,
  )


def _rmsprop_sgld(loss_fn: Callable, cfg: SGLDConfig, mask):
  rmsprop = (cfg.rmsprop_decay, cfg.rmsprop_eps)
  return ChainSampler(
    lambda anchor, data: sgld.init(anchor, preconditioned=True),
    sgld.build_kernel(loss_fn, mask, rmsprop=rmsprop, noise=cfg.noise),
    SGLD_RECORD,
    False,
  )


def _mala(loss_fn: Callable, cfg: SGLDConfig, mask: Optional[ArrayTree]):
  return ChainSampler(
    lambda anchor, data: mala.init(anchor, loss_fn, data, mask=mask),
    mala.build_kernel(loss_fn, mask, noise=cfg.noise),
    (),
    True,
  )


def _sghmc(loss_fn: Callable, cfg: SGLDConfig, mask: Optional[ArrayTree]):
  return ChainSampler(
    lambda anchor, data: sghmc.init(anchor),
    sghmc.build_kernel(
      loss_fn, mask, friction=cfg.sghmc_friction, noise=cfg.noise
    ),
    SGHMC_RECORD,
    False,
  )


def _sgnht(loss_fn: Callable, cfg: SGLDConfig, mask: Optional[ArrayTree]):
  diffusion = cfg.sgnht_diffusion
  return ChainSampler(
    lambda anchor, data: sghmc.init(anchor, thermostat=diffusion),
    sghmc.build_kernel(
      loss_fn, mask, friction=diffusion, thermostat=True, noise=cfg.noise
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
  return SAMPLERS[cfg.sampler].build(loss_fn, cfg, mask)
