"""On-device minibatch indices, epoch-wise shuffled without replacement.

Generic (used by training and by the LLC engine alike). Step ``t`` belongs to
epoch ``t // (n // B)``; each epoch's permutation comes from
``fold_in(key, epoch)``, so any step's batch can be recomputed from the key
alone (which makes chunked and resumed runs identical to uninterrupted ones).
Batches are full size: the ``n mod B`` examples left over in an epoch are
skipped, a different set each epoch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slt_jax.types import PRNGKey


def epoch_batch_indices(key: PRNGKey, step: jax.Array, num_examples: jax.Array,
                        batch_size: int, capacity: int) -> jax.Array:
  """Indices of the minibatch used at ``step``.

  Args:
    key: PRNG key of the run (never advanced; epochs fold into it).
    step: scalar int step counter.
    num_examples: number of examples n (may be traced), n >= batch_size.
    batch_size: B, static.
    capacity: static length of the array the indices point into (>= n).

  Returns:
    (B,) int32 indices in [0, n).
  """
  steps_per_epoch = jnp.maximum(num_examples // batch_size, 1)
  epoch = step // steps_per_epoch
  u = jax.random.uniform(jax.random.fold_in(key, epoch), (capacity,))
  u = jnp.where(jnp.arange(capacity) < num_examples, u, 2.0)
  perm = jnp.argsort(u)
  start = (step % steps_per_epoch) * batch_size
  return jax.lax.dynamic_slice_in_dim(perm, start, batch_size).astype(jnp.int32)


def take(data, idx: jax.Array):
  """Gathers rows ``idx`` from every leaf of ``data`` (example axis first)."""
  return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), data)
