"""On-device minibatch indices, epoch-wise shuffled without replacement.

Generic (used by training and by the LLC engine alike). Step ``t`` belongs to
epoch ``t // (n // B)``; each epoch's permutation comes from
``fold_in(key, epoch)``, so any step's batch can be recomputed from the key
alone (which makes chunked and resumed runs identical to uninterrupted ones).
Batches are full size: the ``n mod B`` examples left over in an epoch are
skipped, a different set each epoch.

A permutation is a sort, which is slow on CPU (XLA's comparator sort costs
more than the model's gradient at p=53), so loops carry the current epoch's
permutation and draw a new one only when an epoch starts (``next_batch``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slt_jax.tree_types import PRNGKey

__all__ = [
  "steps_per_epoch",
  "epoch_permutation",
  "batch_of_step",
  "first_permutation",
  "next_batch",
  "take",
]


def steps_per_epoch(num_examples: jax.Array, batch_size: int) -> jax.Array:
  """Full batches per epoch, ``max(n // B, 1)`` (n may be traced)."""
  return jnp.maximum(num_examples // batch_size, 1)


def epoch_permutation(
  key: PRNGKey, epoch: jax.Array, num_examples: jax.Array, capacity: int
) -> jax.Array:
  """The shuffled example order of one epoch.

  Args:
    key: PRNG key of the run (never advanced; epochs fold into it).
    epoch: scalar int epoch number.
    num_examples: number of examples n (may be traced), n <= capacity.
    capacity: static length of the array the indices point into.

  Returns:
    (capacity,) int32: a permutation of [0, n) followed by [n, capacity).
  """
  u = jax.random.uniform(jax.random.fold_in(key, epoch), (capacity,))
  u = jnp.where(jnp.arange(capacity) < num_examples, u, 2.0)
  return jnp.argsort(u).astype(jnp.int32)


def batch_of_step(
  perm: jax.Array, step: jax.Array, num_examples: jax.Array, batch_size: int
) -> jax.Array:
  """(B,) indices of ``step`` taken from its epoch's permutation ``perm``."""
  start = (step % steps_per_epoch(num_examples, batch_size)) * batch_size
  return jax.lax.dynamic_slice_in_dim(perm, start, batch_size)


def first_permutation(
  key: PRNGKey,
  step: jax.Array,
  num_examples: jax.Array,
  batch_size: int,
  capacity: int,
) -> jax.Array:
  """The permutation of the epoch that ``step`` belongs to (a loop's start)."""
  epoch = step // steps_per_epoch(num_examples, batch_size)
  return epoch_permutation(key, epoch, num_examples, capacity)


def next_batch(
  key: PRNGKey,
  perm: jax.Array,
  step: jax.Array,
  num_examples: jax.Array,
  batch_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Indices of ``step``, redrawing the carried permutation at epoch starts.

  Under ``vmap`` the redraw stays a real branch (one sort per epoch) as long
  as ``step`` and ``num_examples`` are not batched; otherwise it degrades to
  a sort per step with the same results.

  Args:
    key: PRNG key of the run.
    perm: (capacity,) permutation of the epoch of ``step - 1`` (or of
      ``step``, from ``first_permutation``, at a loop's first step).
    step: scalar int step counter.
    num_examples: n (may be traced).
    batch_size: B, static.

  Returns:
    (perm of step's epoch, (B,) int32 indices in [0, n)).
  """
  per_epoch = steps_per_epoch(num_examples, batch_size)
  perm = jax.lax.cond(
    step % per_epoch == 0,
    lambda: epoch_permutation(
      key, step // per_epoch, num_examples, perm.shape[0]
    ),
    lambda: perm,
  )
  return perm, batch_of_step(perm, step, num_examples, batch_size)


def take(data, idx: jax.Array):
  """Gathers rows ``idx`` from every leaf of ``data`` (example axis first)."""
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)
