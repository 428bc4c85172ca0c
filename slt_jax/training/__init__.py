"""Training any model's parameters: seeds × a hyperparameter grid as one
vmapped, compiled program, with per-run early stopping and chunked,
fingerprinted resumption.

- ``config``: ``LoopConfig``, the optimiser, schedule and stopping rule.
- ``grid``: the runs of a call (seeds × lr × weight decay × train size).
- ``loop``: one run's compiled loop, the ``Task`` it trains (``init``,
  ``loss``, ``metrics``) and ``make_optimizer``.
- ``resume``: the resumable state in ``out_dir`` (through
  ``slt_jax.persist``).
- ``trainer``: ``train_models`` and its ``TrainResult``.

A Flax model becomes a task through ``slt_jax.llc.flax_models.split_nnx``::

    _, apply = split_nnx(Model(nnx.Rngs(0)))
    task = Task(init=lambda key: split_nnx(Model(nnx.Rngs(key)))[0],
                loss=lambda p, b: loss_of(apply(p, b["x"]), b["y"]), ...)

The paper's quadratic network trains through ``slt_jax.grokking.train``, a
thin wrapper that supplies its task. Imports nothing of the domain or the
LLC engine.
"""

from slt_jax.training.config import LoopConfig
from slt_jax.training.grid import resolve_grid
from slt_jax.training.loop import Task, make_optimizer
from slt_jax.training.resume import remove_saved_state
from slt_jax.training.trainer import TrainResult, train_models

__all__ = [
  "LoopConfig",
  "Task",
  "TrainResult",
  "make_optimizer",
  "remove_saved_state",
  "resolve_grid",
  "train_models",
]
