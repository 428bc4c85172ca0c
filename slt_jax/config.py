"""Frozen configuration dataclasses, one per concern.

They are hashable, so they can be bound with ``functools.partial`` and passed as
static arguments to ``jax.jit``. Each validates its values on construction and
raises ``ValueError`` naming the bad field and value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Optional, Union

OPERATIONS = ("+", "-", "*")
INITS = ("kaiming_uniform", "lecun_normal")
LOSSES = ("centered_mse", "mse", "cross_entropy")
OPTIMIZERS = ("adam", "adamw", "sgd")
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


def is_prime(p: int) -> bool:
  """Returns whether ``p`` is a prime number."""
  if p < 2:
    return False
  return all(p % q for q in range(2, math.isqrt(p) + 1))


def _check(condition: bool, name: str, value, requirement: str) -> None:
  if not condition:
    raise ValueError(f"{name}={value!r} is invalid: {requirement}")


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
  return (
    isinstance(value, numbers.Real)
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def check_types(config) -> None:
  """Checks every field of a config dataclass against its annotation.

  ``int`` fields must be integers (not bools, not 2.5), ``float`` fields
  finite real numbers; ``Optional`` fields may also be None, and a ``str``
  in a ``Union`` admits strings (their values are checked by the config).

  Raises:
    ValueError: naming the first bad field and its value.
  """
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    kinds = set(re.findall(r"\b(int|float|str|bool)\b", str(field.type)))
    if value is None and "Optional" in str(field.type):
      continue
    if isinstance(value, str) and "str" in kinds:
      continue
    if "float" in kinds:
      _check(_is_real(value), field.name, value, "must be a finite number")
    elif "int" in kinds:
      _check(_is_int(value), field.name, value, "must be an integer")
    elif "bool" in kinds:
      _check(isinstance(value, bool), field.name, value, "must be a bool")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Modular-arithmetic dataset.

  Attributes:
    p: prime modulus (>= 3).
    op: one of ``+``, ``-``, ``*``.
    train_frac: fraction of the p² pairs used for training, in (0, 1).
    num_train: number of training pairs; overrides ``train_frac`` when set.
  """

  p: int = 53
  op: str = "+"
  train_frac: float = 0.4
  num_train: Optional[int] = None

  def __post_init__(self):
    check_types(self)
    _check(
      isinstance(self.p, int) and self.p >= 3 and is_prime(self.p),
      "p",
      self.p,
      "must be a prime >= 3",
    )
    _check(self.op in OPERATIONS, "op", self.op, f"must be one of {OPERATIONS}")
    _check(
      0.0 < self.train_frac < 1.0,
      "train_frac",
      self.train_frac,
      "must lie in (0, 1)",
    )
    if self.num_train is not None:
      _check(
        0 < self.num_train < self.p**2,
        "num_train",
        self.num_train,
        f"must lie in [1, p^2 - 1] = [1, {self.p**2 - 1}]",
      )

  @property
  def train_size(self) -> int:
    """Number of training pairs."""
    if self.num_train is not None:
      return self.num_train
    n = int(round(self.train_frac * self.p**2))
    _check(
      0 < n < self.p**2,
      "train_frac",
      self.train_frac,
      f"gives an empty train or validation split at p={self.p}",
    )
    return n


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Quadratic network ``f(a, b) = V (W x)^2`` without biases.

  Attributes:
    p: modulus; inputs are two residues (d_in = 2p), outputs p logits.
    width: hidden width K.
    init: ``kaiming_uniform`` (PyTorch ``nn.Linear``) or ``lecun_normal``.
    init_scale: factor multiplying both initial weight matrices.
  """

  p: int = 53
  width: int = 1024
  init: str = "kaiming_uniform"
  init_scale: float = 1.0

  def __post_init__(self):
    check_types(self)
    _check(
      isinstance(self.p, int) and self.p >= 3 and is_prime(self.p),
      "p",
      self.p,
      "must be a prime >= 3",
    )
    _check(self.width >= 1, "width", self.width, "must be >= 1")
    _check(self.init in INITS, "init", self.init, f"must be one of {INITS}")
    _check(self.init_scale > 0, "init_scale", self.init_scale, "must be > 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation of the quadratic network (SPEC §1 recipe by default).

  Attributes:
    loss: ``centered_mse``, ``mse`` or ``cross_entropy``.
    optimizer: ``adam`` (coupled L2 via ``add_decayed_weights``), ``adamw``
      (decoupled) or ``sgd`` (with momentum).
    lr: learning rate.
    weight_decay: L2 coefficient (coupled for adam/sgd, decoupled for adamw).
    momentum: SGD momentum.
    batch_size: minibatch size; batches are epoch-wise shuffled, drop-last.
    num_steps: optimisation steps (one step is one minibatch).
    log_every: steps between full-set loss/accuracy evaluations.
    ckpt_every: steps between parameter checkpoints (multiple of log_every).
    chunk_steps: steps per compiled chunk; progress and resume points fall on
      chunk boundaries (multiple of ckpt_every).
    stop_acc: early stopping (SPEC §2b), or None to train all ``num_steps``:
      a run stops once its validation accuracy was >= ``stop_acc`` at
      ``stop_patience`` consecutive checks; its parameters then freeze. The
      authors' protocols are 0.95 × 3 and 0.99 × 10, checked every 100 steps.
    stop_patience: consecutive checks at or above ``stop_acc`` that stop a run.
    stop_check_every: steps between checks, a multiple of log_every (None:
      every logged step).
  """

  loss: str = "centered_mse"
  optimizer: str = "adam"
  lr: float = 1e-3
  weight_decay: float = 1e-5
  momentum: float = 0.9
  batch_size: int = 128
  num_steps: int = 8000
  log_every: int = 50
  ckpt_every: int = 250
  chunk_steps: int = 1000
  stop_acc: Optional[float] = None
  stop_patience: int = 3
  stop_check_every: Optional[int] = None

  def __post_init__(self):
    check_types(self)
    _check(self.loss in LOSSES, "loss", self.loss, f"must be one of {LOSSES}")
    _check(
      self.optimizer in OPTIMIZERS,
      "optimizer",
      self.optimizer,
      f"must be one of {OPTIMIZERS}",
    )
    _check(self.lr > 0, "lr", self.lr, "must be > 0")
    _check(
      self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0"
    )
    _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
    _check(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
    _check(
      self.ckpt_every % self.log_every == 0,
      "ckpt_every",
      self.ckpt_every,
      f"must be a multiple of log_every={self.log_every}",
    )
    _check(
      self.chunk_steps % self.ckpt_every == 0,
      "chunk_steps",
      self.chunk_steps,
      f"must be a multiple of ckpt_every={self.ckpt_every}",
    )
    _check(
      self.num_steps >= 1 and self.num_steps % self.chunk_steps == 0,
      "num_steps",
      self.num_steps,
      f"must be a positive multiple of chunk_steps={self.chunk_steps}",
    )
    if self.stop_acc is not None:
      _check(
        0.0 < self.stop_acc <= 1.0,
        "stop_acc",
        self.stop_acc,
        "must lie in (0, 1] or be None",
      )
    _check(
      self.stop_patience >= 1,
      "stop_patience",
      self.stop_patience,
      "must be >= 1",
    )
    if self.stop_check_every is not None:
      _check(
        self.stop_check_every >= 1
        and self.stop_check_every % self.log_every == 0,
        "stop_check_every",
        self.stop_check_every,
        f"must be a positive multiple of log_every={self.log_every}",
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
    _check(self.step_size > 0, "step_size", self.step_size, "must be > 0")
    if isinstance(self.nbeta, str):
      _check(
        self.nbeta in ("default", "n_log_n"),
        "nbeta",
        self.nbeta,
        "must be a positive float, 'default' or 'n_log_n'",
      )
    else:
      _check(self.nbeta > 0, "nbeta", self.nbeta, "must be > 0")
    _check(
      self.localization >= 0, "localization", self.localization, "must be >= 0"
    )
    _check(self.num_chains >= 1, "num_chains", self.num_chains, "must be >= 1")
    _check(self.num_draws >= 2, "num_draws", self.num_draws, "must be >= 2")
    _check(self.num_burnin >= 0, "num_burnin", self.num_burnin, "must be >= 0")
    if self.batch_size is not None:
      _check(
        self.batch_size >= 2,
        "batch_size",
        self.batch_size,
        "must be >= 2 or None (full batch)",
      )
    _check(
      self.sampler in SAMPLERS,
      "sampler",
      self.sampler,
      f"must be one of {SAMPLERS}",
    )
    _check(
      0.0 < self.sghmc_friction <= 1.0,
      "sghmc_friction",
      self.sghmc_friction,
      "must lie in (0, 1] (1 is SGLD)",
    )
    _check(
      0.0 < self.sgnht_diffusion <= 1.0,
      "sgnht_diffusion",
      self.sgnht_diffusion,
      "must lie in (0, 1]",
    )
    _check(
      self.noise in NOISE_IMPLS,
      "noise",
      self.noise,
      f"must be one of {NOISE_IMPLS}",
    )
    if self.chunk_size is not None:
      _check(
        self.chunk_size >= 1, "chunk_size", self.chunk_size, "must be >= 1"
      )
    _check(
      self.memory_budget_bytes > 0,
      "memory_budget_bytes",
      self.memory_budget_bytes,
      "must be > 0",
    )
    _check(
      self.divergence_factor > 0,
      "divergence_factor",
      self.divergence_factor,
      "must be > 0",
    )
    _check(self.mala_every >= 1, "mala_every", self.mala_every, "must be >= 1")

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
