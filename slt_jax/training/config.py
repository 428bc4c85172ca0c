"""The loop's configuration: optimiser, schedule and early-stopping rule."""

from __future__ import annotations

import dataclasses
from typing import Optional

from slt_jax.checks import check, check_types

__all__ = ["OPTIMIZERS", "LoopConfig"]

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """Optimisation of any model by ``slt_jax.training.train_models``.

  Attributes:
    optimizer: ``adam`` (coupled L2 via ``add_decayed_weights``), ``adamw``
      (decoupled) or ``sgd`` (with momentum); see ``make_optimizer``.
    lr: learning rate (the default of the ``lrs`` grid).
    weight_decay: L2 coefficient (the default of the ``weight_decays`` grid).
    momentum: SGD momentum.
    batch_size: minibatch size; batches are epoch-wise shuffled, drop-last.
    num_steps: optimisation steps (one step is one minibatch).
    log_every: steps between evaluations of the task's metrics.
    ckpt_every: steps between parameter checkpoints (multiple of log_every).
    chunk_steps: steps per compiled chunk; progress and resume points fall on
      chunk boundaries (multiple of ckpt_every).
    stop_metric: the metric of the stopping rule (one of the task's
      ``metric_names``), or None to train all ``num_steps``: a run stops
      once the metric was at or past ``stop_at`` at ``stop_patience``
      consecutive checks; its parameters then freeze.
    stop_at: the threshold of the rule (set exactly when ``stop_metric`` is).
    stop_below: the rule's direction: False counts checks with metric >=
      ``stop_at`` (an accuracy), True those with metric <= ``stop_at`` (a
      loss).
    stop_patience: consecutive checks past ``stop_at`` that stop a run; with
      a rule set, at most the checks that ``num_steps`` holds.
    stop_check_every: steps between checks, a multiple of log_every and at
      most num_steps (None: every logged step).

  Example:
    >>> LoopConfig(num_steps=100, log_every=10, ckpt_every=50, chunk_steps=100,
    ...            stop_metric="val_loss", stop_at=1e-3, stop_below=True).stop_at
    0.001
    >>> LoopConfig(stop_metric="val_loss")
    Traceback (most recent call last):
    ...
    ValueError: stop_at=None is invalid: must be a finite number when stop_metric='val_loss'
  """

  optimizer: str = "adam"
  lr: float = 1e-3
  weight_decay: float = 1e-5
  momentum: float = 0.9
  batch_size: int = 128
  num_steps: int = 8000
  log_every: int = 50
  ckpt_every: int = 250
  chunk_steps: int = 1000
  stop_metric: Optional[str] = None
  stop_at: Optional[float] = None
  stop_below: bool = False
  stop_patience: int = 3
  stop_check_every: Optional[int] = None

  def __post_init__(self):
    check_types(self)
    check(
      self.optimizer in OPTIMIZERS,
      "optimizer",
      self.optimizer,
      f"must be one of {OPTIMIZERS}",
    )
    check(self.lr > 0, "lr", self.lr, "must be > 0")
    check(
      self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0"
    )
    check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
    self._check_schedule()
    self._check_stopping()

  def _check_schedule(self) -> None:
    check(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
    check(
      self.ckpt_every % self.log_every == 0,
      "ckpt_every",
      self.ckpt_every,
      f"must be a multiple of log_every={self.log_every}",
    )
    check(
      self.chunk_steps % self.ckpt_every == 0,
      "chunk_steps",
      self.chunk_steps,
      f"must be a multiple of ckpt_every={self.ckpt_every}",
    )
    check(
      self.num_steps >= 1 and self.num_steps % self.chunk_steps == 0,
      "num_steps",
      self.num_steps,
      f"must be a positive multiple of chunk_steps={self.chunk_steps}",
    )

  def _check_stopping(self) -> None:
    if self.stop_metric is None:
      check(
        self.stop_at is None,
        "stop_at",
        self.stop_at,
        "must be None without a stop_metric",
      )
    else:
      check(
        self.stop_at is not None,
        "stop_at",
        self.stop_at,
        f"must be a finite number when stop_metric={self.stop_metric!r}",
      )
    check(
      self.stop_patience >= 1,
      "stop_patience",
      self.stop_patience,
      "must be >= 1",
    )
    if self.stop_check_every is not None:
      check(
        self.stop_check_every >= 1
        and self.stop_check_every % self.log_every == 0,
        "stop_check_every",
        self.stop_check_every,
        f"must be a positive multiple of log_every={self.log_every}",
      )
      check(
        self.stop_check_every <= self.num_steps,
        "stop_check_every",
        self.stop_check_every,
        f"exceeds num_steps={self.num_steps}: the stopping rule would never "
        "be checked",
      )
    if self.stop_metric is not None:
      check_every = self.stop_check_every or self.log_every
      check(
        self.stop_patience <= self.num_steps // check_every,
        "stop_patience",
        self.stop_patience,
        f"exceeds the {self.num_steps // check_every} checks of num_steps="
        f"{self.num_steps} (one every {check_every} steps): the stopping rule "
        "could never fire",
      )
