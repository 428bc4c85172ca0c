"""Samplers in the blackjax pattern, one module each.

``init(...) -> State`` and ``build_kernel(...) -> kernel(key, state, batch,
settings) -> (State, Info)`` with traced ``SGLDSettings``: ``sgld`` (and
RMSprop-SGLD), ``sghmc`` (and SGNHT), ``mala``; ``noise`` draws the Gaussian
noise. Pure and not jitted; the engine scans and vmaps them. Nothing here
imports the LLC engine or the paper's domain.
"""

from slt_jax.samplers import mala, noise, sghmc, sgld

__all__ = ["mala", "noise", "sghmc", "sgld"]
