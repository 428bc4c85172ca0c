"""The LLC estimator's configuration: ``SGLDConfig`` and the paper's presets.

Frozen and hashable, validated on construction (``ValueError`` naming the bad
field and value).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

from slt_jax.checks import check, check_types

SAMPLERS = ("sgld", "rmsprop_sgld", "mala", "sghmc", "sgnht")
# "zeros" injects no noise: a benchmark ablation only (the chain is then
# gradient descent and its "LLC" is meaningless).
NOISE_IMPLS = (
  "threefry2x32_unpartitioned",
  "threefry2x32",
  "rbg",
  "unsafe_rbg",
  "counter_hash",
  "zeros",
)


@dataclasses.dataclass(frozen=True)
class SGLDConfig:
  """Localized SGLD for LLC estimation (devinterp's conventions).

  The update is ``w <- w - (eps/2) [nbeta grad L_B(w) + gamma (w - w*)] +
  sqrt(eps) xi``, and the estimate is ``nbeta (E[L_B(w)] - L_n(w*))``.

  Attributes:
    step_size: eps > 0.
    nbeta: n·beta. A float, or ``"default"`` for ``B / ln B`` with B the
      minibatch size (devinterp's default: a convention, not a derivation; it
      ignores the data size), or ``"n_log_n"`` for ``n / ln n`` (Watanabe's
      WBIC temperature, with n the number of examples).
    localization: gamma >= 0.
    num_chains: independent chains per point.
    num_draws: steps whose losses enter the estimate.
    num_burnin: steps discarded first.
    batch_size: minibatch size, or None for full batch.
    sampler: ``sgld``, ``rmsprop_sgld`` (preconditioned), ``mala``
      (full-batch Metropolis-adjusted, for small reference runs), ``sghmc``
      (SGHMC, Chen et al. 2014) or ``sgnht`` (SGHMC with a Nosé-Hoover
      thermostat, Ding et al. 2014); see ``slt_jax.sghmc`` for their
      parameterisation (learning rate eta = step_size / 2).
    rmsprop_decay: second-moment decay of ``rmsprop_sgld``.
    rmsprop_eps: damping of ``rmsprop_sgld``.
    sghmc_friction: momentum decay alpha per step of ``sghmc``, in (0, 1]:
      each step keeps ``1 - alpha`` of the momentum (1 is SGLD exactly).
    sgnht_diffusion: diffusion factor A of ``sgnht`` in (0, 1]: its noise is
      ``sqrt(2 A eta)`` and its thermostat starts at A (devinterp's default
      0.01).
    noise: how the Gaussian noise is drawn: ``threefry2x32_unpartitioned``
      (the default: JAX's threefry with its original counter layout,
      ``jax_threefry_partitionable=False``, ~2x faster bits on CPU than the
      partitionable layout; each chain draws from its own key, so sharding is
      unaffected), ``threefry2x32`` (JAX's current default layout), ``rbg``
      or ``unsafe_rbg`` (XLA's RngBitGenerator), or ``counter_hash``
      (``slt_jax.normals``: hashed counters and an inverse-erf polynomial,
      fused into the update; several times cheaper than threefry on CPU,
      statistically tested but not cryptographic). Noise is a dominant cost
      on CPU; ``python -m experiments.bench`` measures each. ``zeros`` draws
      no noise at all: a benchmark ablation only, never an LLC estimate.
    chunk_size: points (x chains) per compiled chunk; None picks it from
      ``memory_budget_bytes``.
    memory_budget_bytes: peak-memory budget per chunk when chunk_size is None.
    divergence_factor: a chain is ``diverged`` when its loss is non-finite or
      ``nbeta (L - L_n(w*))`` exceeds this factor times the number of moving
      parameters (no LLC can exceed d/2).
    mala_every: the MALA acceptance proxy is computed on every
      ``mala_every``-th step (1: every step). Its reduction over all
      parameters costs ~30% of an SGLD step on CPU; a thinned mean is as
      informative.
  """

  step_size: float = 5e-4
  nbeta: Union[float, str] = "default"
  localization: float = 5.0
  num_chains: int = 3
  num_draws: int = 500
  num_burnin: int = 100
  batch_size: Optional[int] = 128
  sampler: str = "sgld"
  rmsprop_decay: float = 0.99
  rmsprop_eps: float = 1e-1
  sghmc_friction: float = 0.1
  sgnht_diffusion: float = 0.01
  noise: str = "threefry2x32_unpartitioned"
  chunk_size: Optional[int] = None
  memory_budget_bytes: int = 2 * 1024**3
  divergence_factor: float = 10.0
  mala_every: int = 10

  def __post_init__(self):
    check_types(self)
    check(self.step_size > 0, "step_size", self.step_size, "must be > 0")
    if isinstance(self.nbeta, str):
      check(
        self.nbeta in ("default", "n_log_n"),
        "nbeta",
        self.nbeta,
        "must be a positive float, 'default' or 'n_log_n'",
      )
    else:
      check(self.nbeta > 0, "nbeta", self.nbeta, "must be > 0")
    check(
      self.localization >= 0, "localization", self.localization, "must be >= 0"
    )
    check(self.num_chains >= 1, "num_chains", self.num_chains, "must be >= 1")
    check(self.num_draws >= 2, "num_draws", self.num_draws, "must be >= 2")
    check(self.num_burnin >= 0, "num_burnin", self.num_burnin, "must be >= 0")
    if self.batch_size is not None:
      check(
        self.batch_size >= 2,
        "batch_size",
        self.batch_size,
        "must be >= 2 or None (full batch)",
      )
    check(
      self.sampler in SAMPLERS,
      "sampler",
      self.sampler,
      f"must be one of {SAMPLERS}",
    )
    check(
      0.0 < self.sghmc_friction <= 1.0,
      "sghmc_friction",
      self.sghmc_friction,
      "must lie in (0, 1] (1 is SGLD)",
    )
    check(
      0.0 < self.sgnht_diffusion <= 1.0,
      "sgnht_diffusion",
      self.sgnht_diffusion,
      "must lie in (0, 1]",
    )
    check(
      self.noise in NOISE_IMPLS,
      "noise",
      self.noise,
      f"must be one of {NOISE_IMPLS}",
    )
    if self.chunk_size is not None:
      check(self.chunk_size >= 1, "chunk_size", self.chunk_size, "must be >= 1")
    check(
      self.memory_budget_bytes > 0,
      "memory_budget_bytes",
      self.memory_budget_bytes,
      "must be > 0",
    )
    check(
      self.divergence_factor > 0,
      "divergence_factor",
      self.divergence_factor,
      "must be > 0",
    )
    check(self.mala_every >= 1, "mala_every", self.mala_every, "must be >= 1")

  def resolve_nbeta(self, num_examples: int) -> float:
    """Returns n·beta as a float for a data set of ``num_examples`` examples."""
    if self.nbeta == "default":
      b = num_examples if self.batch_size is None else self.batch_size
      return b / math.log(b)
    if self.nbeta == "n_log_n":
      return num_examples / math.log(num_examples)
    return float(self.nbeta)


# The paper's SGLD settings (SPEC §1 [repro], devinterp's defaults): eps 5e-4,
# gamma 5, nbeta = B / ln B (B = 128: 26.4), 3 chains x (100 burn-in + 500
# draws), minibatch 128. The 600-step window is shorter than the chains'
# relaxation time 2 / (eps gamma) = 800 steps (SPEC §3).
PAPER_SGLD = SGLDConfig(
  step_size=5e-4,
  nbeta="default",
  localization=5.0,
  num_chains=3,
  num_draws=500,
  num_burnin=100,
  batch_size=128,
)
# The same sampler run long enough to pass the stationarity check.
SETTLED_SGLD = dataclasses.replace(PAPER_SGLD, num_burnin=2000, num_draws=1000)
