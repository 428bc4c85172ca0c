"""Frozen configuration dataclasses of the paper's domain: data, model, training.

They are hashable, so they can be bound with ``functools.partial`` and passed as
static arguments to ``jax.jit``. Each validates its values on construction and
raises ``ValueError`` naming the bad field and value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from slt_jax.checks import check, check_types
from slt_jax.training.config import LoopConfig

OPERATIONS = ("+", "-", "*")
INITS = ("kaiming_uniform", "lecun_normal")
LOSSES = ("centered_mse", "mse", "cross_entropy")


def is_prime(p: int) -> bool:
  """Returns whether ``p`` is a prime number."""
  if p < 2:
    return False
  return all(p % q for q in range(2, math.isqrt(p) + 1))


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
    check(
      isinstance(self.p, int) and self.p >= 3 and is_prime(self.p),
      "p",
      self.p,
      "must be a prime >= 3",
    )
    check(self.op in OPERATIONS, "op", self.op, f"must be one of {OPERATIONS}")
    check(
      0.0 < self.train_frac < 1.0,
      "train_frac",
      self.train_frac,
      "must lie in (0, 1)",
    )
    if self.num_train is not None:
      check(
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
    check(
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
    check(
      isinstance(self.p, int) and self.p >= 3 and is_prime(self.p),
      "p",
      self.p,
      "must be a prime >= 3",
    )
    check(self.width >= 1, "width", self.width, "must be >= 1")
    check(self.init in INITS, "init", self.init, f"must be one of {INITS}")
    check(self.init_scale > 0, "init_scale", self.init_scale, "must be > 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation of the quadratic network (reproduction recipe by default).

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
    stop_acc: early stopping (the authors' protocol), or None to train all ``num_steps``:
      a run stops once its validation accuracy was >= ``stop_acc`` at
      ``stop_patience`` consecutive checks; its parameters then freeze. The
      authors' protocols are 0.95 × 3 and 0.99 × 10, checked every 100 steps.
    stop_patience: consecutive checks at or above ``stop_acc`` that stop a
      run; with ``stop_acc`` set, at most the checks that ``num_steps`` holds.
    stop_check_every: steps between checks, a multiple of log_every and at
      most num_steps (None: every logged step).
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
    check(self.loss in LOSSES, "loss", self.loss, f"must be one of {LOSSES}")
    if self.stop_acc is not None:
      check(
        0.0 < self.stop_acc <= 1.0,
        "stop_acc",
        self.stop_acc,
        "must lie in (0, 1] or be None",
      )
    self.loop()  # The optimiser, schedule and stopping checks are the loop's.

  def loop(self) -> LoopConfig:
    """The generic loop's configuration: this optimiser and schedule, and
    ``stop_acc`` as a rule on ``val_acc`` (>= ``stop_acc``).

    Example:
      >>> TrainConfig(stop_acc=0.9).loop().stop_metric
      'val_acc'
    """
    return LoopConfig(
      optimizer=self.optimizer,
      lr=self.lr,
      weight_decay=self.weight_decay,
      momentum=self.momentum,
      batch_size=self.batch_size,
      num_steps=self.num_steps,
      log_every=self.log_every,
      ckpt_every=self.ckpt_every,
      chunk_steps=self.chunk_steps,
      stop_metric=None if self.stop_acc is None else "val_acc",
      stop_at=self.stop_acc,
      stop_patience=self.stop_patience,
      stop_check_every=self.stop_check_every,
    )
