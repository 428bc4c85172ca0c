"""The LLC estimator's configuration: ``SGLDConfig`` and the paper's presets.

``SGLDConfig`` is the flat, user-facing composite of five groups, one per
concern, each a frozen dataclass that validates its own fields:

* ``SamplerConfig``: which sampler, and its own constants (compiled in).
* ``TracedSettings``: step size, nβ and γ, the values a sweep traces
  (``slt_jax.samplers.sgld.SGLDSettings``), so configs that differ only here
  share one compiled program.
* ``ChainBudget``: chains, draws, burn-in and minibatch size.
* ``EngineConfig``: noise implementation, chunking, memory, MALA thinning.
* ``DivergencePolicy``: when a chain counts as diverged (host side).

All are frozen and hashable; bad values raise ``ValueError`` naming the field
and value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

from slt_jax.checks import check, check_positive_float32, check_types

__all__ = [
  "GROUPS",
  "NOISE_IMPLS",
  "PAPER_SGLD",
  "SAMPLERS",
  "SETTLED_SGLD",
  "ChainBudget",
  "DivergencePolicy",
  "EngineConfig",
  "SGLDConfig",
  "SamplerConfig",
  "TracedSettings",
]

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
class SamplerConfig:
  """The sampler and its own constants: fixed in the compiled program.

  Attributes:
    sampler: one of ``SAMPLERS``.
    rmsprop_decay: second-moment decay of ``rmsprop_sgld``, in [0, 1) (at 1
      the running average never updates).
    rmsprop_eps: damping of ``rmsprop_sgld``, > 0, nonzero in float32.
    sghmc_friction: momentum decay of ``sghmc`` per step, in (0, 1].
    sgnht_diffusion: diffusion factor of ``sgnht``, in (0, 1].

  Example:
    >>> SamplerConfig(sampler="sghmc").sghmc_friction
    0.1
    >>> SamplerConfig(rmsprop_decay=1.0)
    Traceback (most recent call last):
    ...
    ValueError: rmsprop_decay=1.0 is invalid: must lie in [0, 1)
  """

  sampler: str = "sgld"
  rmsprop_decay: float = 0.99
  rmsprop_eps: float = 1e-1
  sghmc_friction: float = 0.1
  sgnht_diffusion: float = 0.01

  def __post_init__(self):
    check_types(self)
    check(
      self.sampler in SAMPLERS,
      "sampler",
      self.sampler,
      f"must be one of {SAMPLERS}",
    )
    check(
      0.0 <= self.rmsprop_decay < 1.0,
      "rmsprop_decay",
      self.rmsprop_decay,
      "must lie in [0, 1)",
    )
    check_positive_float32("rmsprop_eps", self.rmsprop_eps)
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


@dataclasses.dataclass(frozen=True)
class TracedSettings:
  """Step size and target: the values a sweep passes at call time.

  Attributes:
    step_size: eps > 0, nonzero and finite in float32.
    nbeta: n·beta: a float (> 0, nonzero and finite in float32),
      ``"default"`` or ``"n_log_n"`` (see ``SGLDConfig``).
    localization: gamma >= 0.

  Example:
    >>> TracedSettings(step_size=1e-50)
    Traceback (most recent call last):
    ...
    ValueError: step_size=1e-50 is invalid: rounds to 0 in float32
  """

  step_size: float = 5e-4
  nbeta: Union[float, str] = "default"
  localization: float = 5.0

  def __post_init__(self):
    check_types(self)
    check_positive_float32("step_size", self.step_size)
    if isinstance(self.nbeta, str):
      check(
        self.nbeta in ("default", "n_log_n"),
        "nbeta",
        self.nbeta,
        "must be a positive float, 'default' or 'n_log_n'",
      )
    else:
      check_positive_float32("nbeta", self.nbeta)
    check(
      self.localization >= 0, "localization", self.localization, "must be >= 0"
    )


@dataclasses.dataclass(frozen=True)
class ChainBudget:
  """How many chains run at each point, for how long, on which minibatches.

  Attributes:
    num_chains: independent chains per point, >= 1.
    num_draws: steps whose losses enter the estimate, >= 2.
    num_burnin: steps discarded first, >= 0.
    batch_size: minibatch size >= 2, or None for full batch.
    burnin_step_size: the step size of the burn-in steps (> 0, nonzero in
      float32), or None for the draws' own. A larger burn-in step relaxes
      the chain sooner; every setting of a grid then burns in alike.

  Example:
    >>> ChainBudget(num_chains=4).num_chains * ChainBudget().num_draws
    2000
  """

  num_chains: int = 3
  num_draws: int = 500
  num_burnin: int = 100
  batch_size: Optional[int] = 128
  burnin_step_size: Optional[float] = None

  def __post_init__(self):
    check_types(self)
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
    if self.burnin_step_size is not None:
      check_positive_float32("burnin_step_size", self.burnin_step_size)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
  """How the chains are computed: noise bits, chunking, MALA thinning.

  ``noise`` and ``mala_every`` change the saved numbers; ``chunk_size`` and
  ``memory_budget_bytes`` only how the work is cut.

  Attributes:
    noise: one of ``NOISE_IMPLS`` (see ``SGLDConfig``).
    chunk_size: points (x chains) per compiled chunk, >= 1, or None to pick
      it from ``memory_budget_bytes``.
    memory_budget_bytes: peak-memory budget per chunk, > 0.
    mala_every: the MALA acceptance proxy's period in steps, >= 1.

  Example:
    >>> EngineConfig(chunk_size=0)
    Traceback (most recent call last):
    ...
    ValueError: chunk_size=0 is invalid: must be >= 1
  """

  noise: str = "threefry2x32_unpartitioned"
  chunk_size: Optional[int] = None
  memory_budget_bytes: int = 2 * 1024**3
  mala_every: int = 10

  def __post_init__(self):
    check_types(self)
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
    check(self.mala_every >= 1, "mala_every", self.mala_every, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class DivergencePolicy:
  """When a chain is reported as ``diverged`` (applied on the host).

  Attributes:
    divergence_factor: a chain diverged when its loss is non-finite or
      ``nbeta (L - L_n(w*))`` exceeds this factor (> 0) times the number of
      moving parameters.

  Example:
    >>> DivergencePolicy(divergence_factor=0.0)
    Traceback (most recent call last):
    ...
    ValueError: divergence_factor=0.0 is invalid: must be > 0
  """

  divergence_factor: float = 10.0

  def __post_init__(self):
    check_types(self)
    check(
      self.divergence_factor > 0,
      "divergence_factor",
      self.divergence_factor,
      "must be > 0",
    )


# SGLDConfig's groups by the name of the property that returns each.
GROUPS = {
  "sampler_config": SamplerConfig,
  "traced_settings": TracedSettings,
  "budget": ChainBudget,
  "engine": EngineConfig,
  "divergence": DivergencePolicy,
}


def _group(cfg, group_cls):
  """The ``group_cls`` instance holding ``cfg``'s values of its fields."""
  names = [field.name for field in dataclasses.fields(group_cls)]
  return group_cls(**{name: getattr(cfg, name) for name in names})


@dataclasses.dataclass(frozen=True)
class SGLDConfig:
  """Localized SGLD for LLC estimation (devinterp's conventions).

  The update is ``w <- w - (eps/2) [nbeta grad L_B(w) + gamma (w - w*)] +
  sqrt(eps) xi``, and the estimate is ``nbeta (E[L_B(w)] - L_n(w*))``.

  The fields are flat (``SGLDConfig(step_size=...)``, ``cfg.step_size``,
  ``dataclasses.replace(cfg, num_draws=...)``); their groups are the
  properties ``sampler_config``, ``traced_settings``, ``budget``, ``engine`` and
  ``divergence``, and ``from_groups`` builds a config from groups. Each field
  is validated by its group at construction.

  Attributes:
    step_size: eps > 0 (nonzero in float32).
    nbeta: n·beta. A float (> 0, nonzero in float32), or ``"default"`` for
      ``B / ln B`` with B the minibatch size (devinterp's default: a
      convention, not a derivation; it ignores the data size), or
      ``"n_log_n"`` for ``n / ln n`` (Watanabe's WBIC temperature, with n the
      number of examples).
    localization: gamma >= 0.
    num_chains: independent chains per point.
    num_draws: steps whose losses enter the estimate.
    num_burnin: steps discarded first.
    burnin_step_size: step size of the burn-in steps, or None for
      ``step_size``: a larger one relaxes the slow localization direction
      sooner (2 / (eps γ) steps for SGLD).
    batch_size: minibatch size, or None for full batch.
    sampler: ``sgld``, ``rmsprop_sgld`` (preconditioned), ``mala``
      (full-batch Metropolis-adjusted, for small reference runs), ``sghmc``
      (SGHMC, Chen et al. 2014) or ``sgnht`` (SGHMC with a Nosé-Hoover
      thermostat, Ding et al. 2014); see ``slt_jax.samplers.sghmc`` for their
      parameterisation (learning rate eta = step_size / 2).
    rmsprop_decay: second-moment decay of ``rmsprop_sgld``, in [0, 1).
    rmsprop_eps: damping of ``rmsprop_sgld``, > 0, nonzero in float32.
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
      (``slt_jax.samplers.noise``: hashed counters and an inverse-erf
      polynomial, fused into the update; several times cheaper than threefry
      on CPU, statistically tested but not cryptographic). Noise is a
      dominant cost on CPU; ``python -m experiments.bench`` measures each.
      ``zeros`` draws no noise at all: a benchmark ablation only, never an
      LLC estimate.
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

  Example:
    >>> cfg = SGLDConfig(sampler="sghmc", num_draws=200)
    >>> cfg.sampler_config.sampler, cfg.budget.num_draws, cfg.engine.noise
    ('sghmc', 200, 'threefry2x32_unpartitioned')
    >>> SGLDConfig.from_groups(budget=cfg.budget) == SGLDConfig(num_draws=200)
    True
  """

  step_size: float = 5e-4
  nbeta: Union[float, str] = "default"
  localization: float = 5.0
  num_chains: int = 3
  num_draws: int = 500
  num_burnin: int = 100
  batch_size: Optional[int] = 128
  burnin_step_size: Optional[float] = None
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
    for group_cls in GROUPS.values():
      _group(self, group_cls)

  @classmethod
  def from_groups(
    cls,
    sampler_config: Optional[SamplerConfig] = None,
    traced_settings: Optional[TracedSettings] = None,
    budget: Optional[ChainBudget] = None,
    engine: Optional[EngineConfig] = None,
    divergence: Optional[DivergencePolicy] = None,
  ) -> "SGLDConfig":
    """The config holding these groups (None: that group's defaults).

    Raises:
      TypeError: naming a group that is not an instance of its class.
    """
    given = (sampler_config, traced_settings, budget, engine, divergence)
    fields = {}
    for group, (name, group_cls) in zip(given, GROUPS.items()):
      group = group_cls() if group is None else group
      if not isinstance(group, group_cls):
        raise TypeError(
          f"{name}={group!r} is invalid: must be a {group_cls.__name__}"
        )
      fields.update(dataclasses.asdict(group))
    return cls(**fields)

  @property
  def sampler_config(self) -> SamplerConfig:
    """The sampler and its own constants."""
    return _group(self, SamplerConfig)

  @property
  def traced_settings(self) -> TracedSettings:
    """Step size, nβ and γ: traced, not compiled."""
    return _group(self, TracedSettings)

  @property
  def budget(self) -> ChainBudget:
    """Chains, draws, burn-in and minibatch size."""
    return _group(self, ChainBudget)

  @property
  def engine(self) -> EngineConfig:
    """Noise implementation, chunking, memory budget and MALA thinning."""
    return _group(self, EngineConfig)

  @property
  def divergence(self) -> DivergencePolicy:
    """The host-side divergence rule."""
    return _group(self, DivergencePolicy)

  @property
  def program_key(self) -> tuple:
    """Every group but ``traced_settings``: configs with equal keys differ
    only in step size, nβ and γ, so they run as one sweep (one compiled
    program, one divergence rule) over an ``SGLDSettings`` grid.

    >>> a, b = SGLDConfig(step_size=1e-3), SGLDConfig(localization=1.0)
    >>> a.program_key == b.program_key != SGLDConfig(num_draws=9).program_key
    True
    """
    return (self.sampler_config, self.budget, self.engine, self.divergence)

  def resolve_nbeta(self, num_examples: int) -> float:
    """Returns n·beta as a float for a data set of ``num_examples`` examples.

    >>> SGLDConfig(nbeta="n_log_n").resolve_nbeta(100) == 100 / math.log(100)
    True
    """
    if self.nbeta == "default":
      b = num_examples if self.batch_size is None else self.batch_size
      return b / math.log(b)
    if self.nbeta == "n_log_n":
      return num_examples / math.log(num_examples)
    return float(self.nbeta)


# The paper's SGLD settings (devinterp's defaults): eps 5e-4, gamma 5,
# nbeta = B / ln B (B = 128: 26.4), 3 chains x (100 burn-in + 500 draws),
# minibatch 128. The 600-step window is shorter than the chains' relaxation
# time 2 / (eps gamma) = 800 steps.
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
