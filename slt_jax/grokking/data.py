"""Modular-arithmetic datasets as integer pairs.

All p² pairs ``(a, b)`` are labelled ``(a op b) mod p`` and permuted once by a
key; the first ``num_train`` rows of the permutation are the training set and
the rest the validation set. Because the split is a prefix, runs with different
train fractions share one array and differ only in ``num_train`` (which lets
the trainer vmap over train fractions).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from slt_jax.grokking.config import DataConfig
from slt_jax.tree_types import PRNGKey

__all__ = [
  "Batch",
  "ModularData",
  "make_batch",
  "modular_arithmetic",
  "modular_addition",
  "one_hot_inputs",
]


class Batch(NamedTuple):
  """A set of examples; every field has the example axis first.

  Attributes:
    pairs: (N, 2) int32 residues ``(a, b)``.
    labels: (N,) int32 targets ``(a op b) mod p``.
    weights: (N,) float32 example weights (1 = in the set, 0 = padding).
  """

  pairs: jax.Array
  labels: jax.Array
  weights: jax.Array


class ModularData(NamedTuple):
  """All p² pairs in split order plus the size of the training prefix.

  Attributes:
    all: Batch of all p² pairs, training pairs first.
    num_train: number of training pairs (a Python int).
    p: modulus.
  """

  all: Batch
  num_train: int
  p: int

  @property
  def train(self) -> Batch:
    """The training pairs, (num_train, ...)."""
    return jax.tree.map(lambda x: x[: self.num_train], self.all)

  @property
  def val(self) -> Batch:
    """The validation pairs, (p² - num_train, ...)."""
    return jax.tree.map(lambda x: x[self.num_train :], self.all)


def _apply_op(a: jax.Array, b: jax.Array, op: str, p: int) -> jax.Array:
  if op == "+":
    return (a + b) % p
  if op == "-":
    return (a - b) % p
  return (a * b) % p


def make_batch(pairs: jax.Array, labels: jax.Array) -> Batch:
  """Wraps pairs and labels in a Batch with unit weights.

  Args:
    pairs: (N, 2) integer residues.
    labels: (N,) integer labels.

  Returns:
    Batch with float32 unit weights.
  """
  if pairs.shape[0] == 0:
    raise ValueError("pairs is empty: a data set needs at least one example")
  chex.assert_rank(pairs, 2)
  chex.assert_axis_dimension(pairs, 1, 2)
  chex.assert_shape(labels, (pairs.shape[0],))
  return Batch(
    pairs.astype(jnp.int32),
    labels.astype(jnp.int32),
    jnp.ones(pairs.shape[0], jnp.float32),
  )


def modular_arithmetic(key: PRNGKey, cfg: DataConfig) -> ModularData:
  """Builds the seeded train/validation split of all p² pairs.

  Args:
    key: PRNG key for the split permutation.
    cfg: data configuration (validated on construction).

  Returns:
    ModularData whose ``train`` has ``cfg.train_size`` rows.

  Example:
    >>> import jax
    >>> from slt_jax.grokking.config import DataConfig
    >>> d = modular_arithmetic(jax.random.key(0), DataConfig(p=5, train_frac=0.4))
    >>> d.train.pairs.shape, d.val.pairs.shape
    ((10, 2), (15, 2))
  """
  p = cfg.p
  grid_a, grid_b = jnp.meshgrid(jnp.arange(p), jnp.arange(p), indexing="ij")
  pairs = jnp.stack([grid_a.ravel(), grid_b.ravel()], axis=1)
  labels = _apply_op(pairs[:, 0], pairs[:, 1], cfg.op, p)
  order = jax.random.permutation(key, p * p)
  return ModularData(make_batch(pairs[order], labels[order]), cfg.train_size, p)


def modular_addition(
  p: int = 53,
  train_frac: float = 0.4,
  *,
  key: PRNGKey,
  num_train: Optional[int] = None,
) -> ModularData:
  """``(a + b) mod p`` with a seeded split (see ``modular_arithmetic``)."""
  return modular_arithmetic(
    key, DataConfig(p=p, op="+", train_frac=train_frac, num_train=num_train)
  )


def one_hot_inputs(pairs: jax.Array, p: int) -> jax.Array:
  """The one-hot view ``x = [e_a ; e_b]`` of integer pairs.

  Args:
    pairs: (N, 2) integer residues.
    p: modulus.

  Returns:
    (N, 2p) float32 inputs.
  """
  chex.assert_rank(pairs, 2)
  x = jnp.concatenate(
    [jax.nn.one_hot(pairs[:, 0], p), jax.nn.one_hot(pairs[:, 1], p)], axis=1
  )
  chex.assert_shape(x, (pairs.shape[0], 2 * p))
  return x
